"""Bulk proteomics: moderated least squares per protein on log2 intensities, missing values left out."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ._design import NotEstimable, design_matrix
from ._moderation import _coefficient_stats, bh


def protein_test(prot: ad.AnnData, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                 timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 3,
                 min_valid: float = 0.7, median_centre: bool = True) -> pd.DataFrame:
    """Bulk proteomics (samples x proteins, NaN = missing; linear intensities, as
    ``uns['proteomics']['scale']`` says, are taken to log2) tested with a design:
    least squares per protein on its observed samples, variances moderated with per-protein
    degrees of freedom (as limma does for proteomics), BH. Proteins observed in fewer than
    ``min_valid`` of the design's samples are not tested; missing values are never imputed.
    ``median_centre`` subtracts each sample's median over the proteins seen in every sample
    (loading differences between runs), the usual normalisation of label-free intensities.

    Parameters
    ----------
    prot
        Samples x proteins (:func:`pinnacle.io.read_proteomics`); ``var`` ``protein_id`` and ``gene``
        name the proteins in the result (the var names where a column is absent).
    meta
        Sample metadata indexed by sample (:func:`sample_meta`); samples not in ``prot`` are left out.
    design, response_levels, timepoints, covariates, min_patients
        The design and its settings, as in :func:`design_matrix` (``response_levels``: reference
        first; ``timepoints``: baseline first).
    min_valid
        Smallest share of the design's samples in which a protein must be observed to be tested.
    median_centre
        Subtract each sample's median log2 intensity (over the proteins observed in every sample when
        there are at least 10 of them, else over all); False: intensities as read.

    Returns
    -------
    One row per tested protein: ``protein_id``, ``gene``, ``log2fc``, its 95% interval, ``t``,
    ``pvalue``, the residual, prior and total degrees of freedom, ``n_samples``, ``padj`` (BH) and the
    design's columns, then one row per protein not tested with its ``status`` saying why (too
    rarely quantified, or its coefficient not estimable from the samples that quantify it); a
    one-row frame with a ``status`` note when the design is not estimable. As limma's lmFit does
    per gene, design columns a protein's observed samples cannot support (a patient with neither
    sample quantified) are dropped and the residual df counts what is left.
    """
    try:
        d = design_matrix(meta.loc[meta.index.intersection(prot.obs_names)], design, response_levels=response_levels,
                          timepoints=timepoints, covariates=covariates, min_patients=min_patients)
    except NotEstimable as why:
        return pd.DataFrame([{"design": design, "status": f"not tested: {why}"}])
    Y = np.asarray(prot[d.samples].X, dtype=float)
    if prot.uns.get("proteomics", {}).get("scale", "log2") == "linear":  # as read (io.read_proteomics)
        with np.errstate(divide="ignore", invalid="ignore"):
            Y = np.where(Y > 0, np.log2(Y), np.nan)
    if median_centre:
        complete = np.isfinite(Y).all(axis=0)
        ref = Y[:, complete] if complete.sum() >= 10 else Y
        Y = Y - np.nanmedian(ref, axis=1, keepdims=True)
    X = d.X.to_numpy(dtype=float)
    j = d.X.columns.get_loc(d.coef)
    n_prot = Y.shape[1]
    beta, s2, dfs, cjj = (np.full(n_prot, np.nan) for _ in range(4))
    why = np.full(n_prot, "", dtype=object)
    share = np.isfinite(Y).mean(axis=0)
    for k in range(n_prot):
        if share[k] < min_valid:
            why[k] = f"not tested: quantified in {share[k]:.0%} of the design's samples (< proteomics_min_valid)"
            continue
        obs = np.isfinite(Y[:, k])
        keep = _estimable_columns(X[obs])
        if j not in keep:
            why[k] = "not tested: the tested coefficient is not estimable from the samples that quantify it"
            continue
        Xk = X[obs][:, keep]
        if obs.sum() <= len(keep):
            why[k] = "not tested: no residual degrees of freedom in the samples that quantify it"
            continue
        inv = np.linalg.inv(Xk.T @ Xk)
        b = inv @ Xk.T @ Y[obs, k]
        r = Y[obs, k] - Xk @ b
        jk = keep.index(j)
        beta[k], dfs[k], cjj[k] = b[jk], obs.sum() - len(keep), inv[jk, jk]
        s2[k] = (r ** 2).sum() / dfs[k]
    tested = np.isfinite(s2)
    var = prot.var
    ids = var.get("protein_id", var.index).to_numpy()
    genes = var.get("gene", var.index).to_numpy()
    res = _coefficient_stats(beta[tested], s2[tested], dfs[tested], cjj[tested])
    res.insert(0, "protein_id", ids[tested])
    res.insert(1, "gene", genes[tested])
    res = res.rename(columns={"estimate": "log2fc"})
    res["n_samples"] = np.isfinite(Y[:, tested]).sum(axis=0)
    res["padj"] = bh(res["pvalue"].to_numpy())
    res = res.assign(**d.describe())
    res["test"] = "moderated least squares on log2 intensity (missing left out), BH FDR"
    res["status"] = "tested"
    untested = pd.DataFrame({"protein_id": ids[~tested], "gene": genes[~tested],
                             "n_samples": np.isfinite(Y[:, ~tested]).sum(axis=0), "status": why[~tested]})
    untested = untested.assign(**d.describe()) if len(untested) else untested
    return pd.concat([res, untested], ignore_index=True) if len(untested) else res


def _estimable_columns(X: np.ndarray) -> list[int]:
    """Columns of ``X`` kept for a fit on some of the samples, as limma's lmFit does per gene:
    all-zero columns (a patient none of whose samples is observed) are dropped, then any column
    that adds no rank (aliased with earlier ones)."""
    cols = [c for c in range(X.shape[1]) if np.any(X[:, c] != 0)]
    if np.linalg.matrix_rank(X[:, cols]) == len(cols):
        return cols
    keep: list[int] = []
    for c in cols:
        if np.linalg.matrix_rank(X[:, [*keep, c]]) > len(keep):
            keep.append(c)
    return keep
