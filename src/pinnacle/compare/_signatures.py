"""Gene signatures: the YAML file, per-cell and per-pseudobulk scores, their tests and DE enrichment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.curated import load_yaml
from pinnacle.errors import InputError

from ._design import NotEstimable, design_matrix
from ._moderation import _coefficient_stats, _xtx_inverse, bh


def load_signatures(path) -> dict[str, dict]:
    """Signatures from YAML: name -> {genes, source, description}; each needs genes and a source.

    Parameters
    ----------
    path
        The YAML file: a mapping name -> ``{genes: [...], source: ..., description: ...}``
        (``description`` optional).

    Raises
    ------
    InputError
        When the file is missing or holds no signatures, or a signature has no genes or no source.
    """
    where = str(path)
    data = load_yaml(path, what="signature file", missing_fix="point compare.signatures (or annotation.states) "
                     "at a YAML file such as resources/signatures.yaml.",
                     duplicate_fix="give each signature once: rename or merge the duplicated one.")
    if not isinstance(data, dict) or not data:
        raise InputError(where, "holds no signatures.", "give a mapping: name -> {genes: [...], source: ...}.")
    out = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("genes"), list) or not entry["genes"]:
            raise InputError(f"{where}, signature '{name}'", "has no list of genes.",
                             "add `genes: [GENE1, GENE2, ...]`.")
        if not entry.get("source"):
            raise InputError(f"{where}, signature '{name}'", "has no source.",
                             "add `source:` with the publication the genes come from.")
        out[str(name)] = {"genes": [str(g) for g in entry["genes"]], "source": str(entry["source"]),
                          "description": str(entry.get("description", ""))}
    return out


def present_signatures(signatures: Mapping[str, dict], genes: Sequence[str], *,
                       min_genes: int = 3) -> dict[str, list[str]]:
    """Each signature's genes found in ``genes``; signatures with fewer than ``min_genes`` dropped.

    Parameters
    ----------
    signatures
        Name -> entry with ``genes`` (:func:`load_signatures`).
    genes
        The genes measured (e.g. ``var_names``).
    min_genes
        Fewest genes found for a signature to be kept.

    Returns
    -------
    Name -> the signature's genes found, in the signature's order.
    """
    have = set(genes)
    out = {}
    for name, s in signatures.items():
        g = [x for x in s["genes"] if x in have]
        if len(g) >= min_genes:
            out[name] = g
    return out


def score_cells(adata: ad.AnnData, signatures: Mapping[str, dict], *, key_prefix: str = "signature_",
                random_state: int = 0) -> ad.AnnData:
    """Per-cell scores (scanpy ``score_genes``: mean of the set minus matched control genes) on
    log-normalised ``X``; one obs column per signature.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised ``X``; scored in place.
    signatures
        Name -> entry with ``genes`` (:func:`load_signatures`); signatures with fewer than 3 genes in
        ``adata`` are not scored.
    key_prefix
        Prefix of the obs columns: ``f"{key_prefix}{name}"``.
    random_state
        Seed of scanpy's choice of control genes.

    Returns
    -------
    ``adata`` itself, with the score columns added.
    """
    import scanpy as sc

    for name, genes in present_signatures(signatures, adata.var_names).items():
        sc.tl.score_genes(adata, genes, score_name=f"{key_prefix}{name}", random_state=random_state)
    return adata


def score_pseudobulks(pb: ad.AnnData, signatures: Mapping[str, dict], *, min_cells: int = 10,
                      min_counts: float = 1000) -> pd.DataFrame:
    """Per-pseudobulk scores: the mean over a signature's genes of log2-CPM standardised across
    the pseudobulks of the same cell type. Long table: sample_id, cell_type, signature, score.

    Parameters
    ----------
    pb
        Pseudobulks (:func:`concat_pseudobulks`): summed counts, ``obs`` ``sample_id``, ``cell_type``,
        ``n_cells`` and ``n_counts``.
    signatures
        Name -> entry with ``genes`` (:func:`load_signatures`); signatures with fewer than 3 genes in
        ``pb`` are not scored.
    min_cells, min_counts
        Pseudobulks with fewer cells or fewer total counts are neither scored nor used to standardise.
    """
    obs = pb.obs
    ok = (obs["n_cells"] >= min_cells).to_numpy() & (obs["n_counts"] >= min_counts).to_numpy()
    sigs = present_signatures(signatures, pb.var_names)
    rows = []
    for ct in sorted(obs.loc[ok, "cell_type"].unique()):
        idx = np.flatnonzero(ok & (obs["cell_type"] == ct).to_numpy())
        X = pb.X[idx]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        cpm = np.log2(X / X.sum(axis=1, keepdims=True) * 1e6 + 1)
        sd = cpm.std(axis=0)
        z = np.where(sd > 0, (cpm - cpm.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
        for name, genes in sigs.items():
            cols = pb.var_names.get_indexer(genes)
            score = z[:, cols].mean(axis=1)
            for i, s in zip(idx, score):
                rows.append({"sample_id": obs["sample_id"].iloc[i], "cell_type": ct, "signature": name,
                             "score": float(s)})
    return pd.DataFrame(rows, columns=["sample_id", "cell_type", "signature", "score"])


def signature_tests(scores: pd.DataFrame, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                    timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 3,
                    paired: bool = True, moderate: bool = True) -> pd.DataFrame:
    """Least squares of per-pseudobulk signature scores on the design, per cell type x signature;
    BH within the design across all of them.

    With ``moderate`` each signature's residual variances are squeezed across the cell types
    (limma's squeezeVar, robust; unequal residual df where types lack pseudobulks), never across
    the signatures of one type: signatures differ in variance by construction (a signature of
    co-regulated genes varies more than one of independent genes), so one prior for them squeezes
    the wide ones towards the narrow ones and calls them too often (measured:
    tests/test_compare_null.py, docs/statistics.md). A signature scored in fewer than 3 types is
    not moderated.

    Parameters
    ----------
    scores
        Long table of :func:`score_pseudobulks`: ``sample_id``, ``cell_type``, ``signature``, ``score``.
    meta
        Sample metadata indexed by sample (:func:`sample_meta`).
    design, response_levels, timepoints, covariates, min_patients, paired
        The design and its settings, as in :func:`design_matrix`; built per cell type on the samples
        that have its pseudobulks (cell types seen in the same samples share one).
    moderate
        Squeeze each signature's residual variances across the cell types; False: the plain t.

    Returns
    -------
    One row per cell type x signature: ``estimate``, its 95% interval, ``t``, ``pvalue``, degrees of
    freedom, the design's columns, ``status``, ``padj`` and ``test``; a cell type whose design is not
    estimable has one row with a ``status`` note.
    """
    # one reshape for all types: samples x (cell type, signature); a type's rows are its pseudobulks
    wide = scores.set_index(["sample_id", "cell_type", "signature"])["score"].unstack(["cell_type", "signature"])
    wide = wide.sort_index(axis=1)
    values, col_types = wide.to_numpy(dtype=float), wide.columns.get_level_values(0)
    col_sigs = wide.columns.get_level_values(1)
    fits, status, described = [], [], []
    designs: dict = {}
    for ct in sorted(scores["cell_type"].unique()):
        cols = np.flatnonzero(col_types == ct)
        block = values[:, cols]
        rows = ~np.isnan(block).all(axis=1)
        cols, block = cols[~np.isnan(block).all(axis=0)], block[:, ~np.isnan(block).all(axis=0)]
        here = wide.index[rows]
        key = tuple(meta.index.intersection(here))
        if key not in designs:  # types seen in the same samples share one design
            try:
                designs[key] = design_matrix(meta.loc[list(key)], design, response_levels=response_levels,
                                             timepoints=timepoints, covariates=covariates, paired=paired,
                                             min_patients=min_patients)
            except NotEstimable as why:
                designs[key] = why
        d = designs[key]
        if isinstance(d, NotEstimable):
            status.append({"cell_type": ct, "design": design, "status": f"not tested: {d}"})
            continue
        X = d.X.to_numpy(dtype=float)
        Y = block[wide.index.get_indexer(d.samples)]
        XtX_inv = _xtx_inverse(X)
        beta = XtX_inv @ X.T @ Y
        df = X.shape[0] - X.shape[1]
        j = d.X.columns.get_loc(d.coef)
        fits.append((np.full(len(cols), ct, dtype=object), col_sigs[cols].to_numpy(), beta[j],
                     ((Y - X @ beta) ** 2).sum(axis=0) / df, np.full(len(cols), float(df)),
                     np.full(len(cols), XtX_inv[j, j])))
        described += [d.describe()] * len(cols)
    if not fits and not status:
        return pd.DataFrame(columns=["cell_type", "signature", "design", "status"])
    out = []
    if fits:
        cell_type, signature, estimate, s2, df, unscaled = (np.concatenate(a) for a in zip(*fits))
        parts = []
        for sig in pd.unique(signature):  # each signature moderated across the cell types
            i = np.flatnonzero(signature == sig)
            parts.append(_coefficient_stats(estimate[i], s2[i], df[i], unscaled[i], moderate=moderate).set_index(i))
        res = pd.concat([pd.DataFrame({"cell_type": cell_type, "signature": signature}),
                         pd.concat(parts).sort_index(), pd.DataFrame(described)], axis=1)
        out.append(res.assign(status="tested"))
    if status:
        out.append(pd.DataFrame(status))
    res = pd.concat(out, ignore_index=True).sort_values("cell_type", kind="stable").reset_index(drop=True)
    cols = ["cell_type", "signature", "estimate", "ci_low", "ci_high", "t", "pvalue", "df_resid", "df_prior",
            "df_total", "design", "formula", "patients", "dropped", "status"]
    res = res[[c for c in cols if c in res.columns]]
    if "pvalue" not in res:
        res["pvalue"] = np.nan
    res["padj"] = bh(res["pvalue"].to_numpy())
    res["test"] = ("least squares on standardised pseudobulk signature score, variances moderated per signature "
                   "across cell types, BH FDR" if moderate else
                   "least squares on standardised pseudobulk signature score, BH FDR")
    return res


def signature_enrichment(de: pd.DataFrame, signatures: Mapping[str, dict], *, min_genes: int = 3) -> pd.DataFrame:
    """Exploratory enrichment of each cell type's DE statistics in the signatures (decoupler ulm: a
    linear model of the Wald statistics on signature membership); BH across cell types x signatures.

    Only the genes tested in a type enter its regression (a gene filtered out there is no
    evidence of no change, so it is not a statistic of 0). Genes are the replicates here and
    co-regulated genes are not independent, so the p-values are too small (Wu & Smyth 2012):
    the per-pseudobulk score test (:func:`signature_tests`, patients as replicates) is the
    primary test of a signature.

    Parameters
    ----------
    de
        Pseudobulk DE results (:func:`pseudobulk_de`, :func:`combine_de`) with ``design``,
        ``cell_type``, ``gene`` and ``stat``; each design is tested on its own.
    signatures
        Name -> entry with ``genes`` (:func:`load_signatures`).
    min_genes
        Fewest of a signature's genes among the type's tested genes for it to be tested there.

    Returns
    -------
    One row per design x cell type x signature: ``score`` (the ulm t), ``pvalue``, ``padj`` (BH within
    the design), ``n_genes`` (the signature's genes tested in the type) and ``test``.
    """
    import decoupler as dc

    cols = ["design", "cell_type", "signature", "score", "pvalue", "padj", "n_genes", "test"]
    if de.empty:
        return pd.DataFrame(columns=cols)
    net = pd.DataFrame([(name, g, 1.0) for name, s in signatures.items() for g in s["genes"]],
                       columns=["source", "target", "weight"]).drop_duplicates(["source", "target"])
    out = []
    for design, sub in de.groupby("design"):
        parts = []
        for ct, g in sub.dropna(subset=["stat"]).groupby("cell_type", sort=False):
            stat = g.drop_duplicates("gene").set_index("gene")["stat"].astype(float)
            present = net[net["target"].isin(stat.index)]
            present = present[present.groupby("source")["target"].transform("size") >= min_genes]
            if present.empty:
                continue
            es, pv = dc.mt.ulm(stat.to_frame(ct).T, present, tmin=min_genes)
            long = pd.concat([es.stack().rename("score"), pv.stack().rename("pvalue")], axis=1).reset_index()
            long.columns = ["cell_type", "signature", "score", "pvalue"]
            long["n_genes"] = long["signature"].map(present.groupby("source").size()).to_numpy()
            parts.append(long)
        if not parts:
            continue
        long = pd.concat(parts, ignore_index=True)
        long.insert(0, "design", design)
        long["padj"] = bh(long["pvalue"].to_numpy())
        long["test"] = ("exploratory: decoupler ulm on the pydeseq2 Wald statistics of the genes tested in the "
                        "type (genes as replicates), BH FDR; signature_tests.tsv is the primary test")
        out.append(long)
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)
