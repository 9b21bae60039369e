"""Cell-type composition: moderated least squares on transformed per-sample proportions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._design import NotEstimable, design_matrix
from ._moderation import bh, ols_test


def proportions(counts: pd.DataFrame) -> pd.DataFrame:
    """Per-sample proportions from a samples x types count table.

    Parameters
    ----------
    counts
        Samples x cell types; a sample without cells gets proportions 0.
    """
    return counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)


def _descriptives(props: pd.DataFrame, meta: pd.DataFrame, design: str, levels: Sequence[str],
                  timepoints: Sequence[str], types: pd.Series) -> dict:
    """Plain-scale columns with the sign of what each design tests.

    ``baseline`` and the on-treatment designs: mean proportion in the reference and the tested
    group (responders / the second timepoint) and their log2 ratio. ``interaction``: the mean
    paired change (second minus first timepoint) in each response group and their difference
    (second level minus first); mean proportions of "responder resection vs everything else"
    would not have the estimate's sign.
    """
    if design != "interaction":
        test = (meta["response"] == levels[1]) if design == "baseline" else (meta["timepoint"] == timepoints[1])
        ref_mean = props[~test.to_numpy()].mean().reindex(types).to_numpy()
        test_mean = props[test.to_numpy()].mean().reindex(types).to_numpy()
        return {"mean_prop_ref": ref_mean, "mean_prop_test": test_mean,
                "log2_ratio": np.log2((test_mean + 1e-6) / (ref_mean + 1e-6))}
    keyed = props.assign(_patient=meta["patient_id"], _tp=meta["timepoint"], _resp=meta["response"])
    first = keyed[keyed["_tp"] == timepoints[0]].set_index("_patient")
    second = keyed[keyed["_tp"] == timepoints[1]].set_index("_patient")
    change = second[props.columns] - first.loc[second.index, props.columns]
    resp = second["_resp"]
    out = {f"mean_change_{lv}": change[resp == lv].mean().reindex(types).to_numpy() for lv in levels[:2]}
    out["change_difference"] = out[f"mean_change_{levels[1]}"] - out[f"mean_change_{levels[0]}"]
    return out


#: marker-file lineages that are not immune cells (the immune-only denominator leaves them out)
NON_IMMUNE_LINEAGES = ("malignant/epithelial", "fibroblast", "endothelial")


def non_immune_types(markers: dict, *, lineages: Sequence[str] = NON_IMMUNE_LINEAGES,
                     extra: Sequence[str] = ("epithelial_normal", "epithelial_uncertain")) -> list[str]:
    """Labels of non-immune cells: the given lineages of the marker file, their subtypes, and
    ``extra`` labels (the cnv stage's split of the epithelium).

    Parameters
    ----------
    markers
        The marker hierarchy (:func:`pinnacle.annotate.load_markers`): lineage -> ``subtypes``.
    lineages
        Lineages that are not immune cells.
    extra
        Further non-immune labels.
    """
    out = list(extra)
    for lineage in lineages:
        if lineage in markers:
            out += [lineage, *markers[lineage].get("subtypes", {})]
    return list(dict.fromkeys(out))


def composition_tests(counts: pd.DataFrame, meta: pd.DataFrame, *, designs: Sequence[str],
                      non_immune: Sequence[str] = (), **options) -> pd.DataFrame:
    """:func:`composition_test` for every design with two denominators: all labelled cells, and
    immune cells only (``non_immune`` types left out), in a ``denominator`` column.

    A change in the malignant fraction moves every other type's share of all cells (a tumour that
    shrinks under treatment raises every immune proportion); with immune cells as the denominator
    an immune shift is measured among immune cells alone. Each denominator and design is its own
    BH family.

    Parameters
    ----------
    counts
        Samples x cell types, cell counts.
    meta
        Sample metadata (:func:`sample_meta`).
    designs
        Design names.
    non_immune
        Labels left out of the immune-only denominator (:func:`non_immune_types`); empty: no
        immune-only rows.
    **options
        Keywords of :func:`composition_test` (``response_levels``, ``timepoints``, ...).
    """
    parts = [composition_test(counts, meta, design=d, **options).assign(denominator="all cells") for d in designs]
    immune = counts.drop(columns=[c for c in non_immune if c in counts.columns])
    if non_immune and immune.shape[1] < counts.shape[1]:
        parts += [composition_test(immune, meta, design=d, **options).assign(denominator="immune cells")
                  for d in designs]
    out = pd.concat(parts, ignore_index=True)
    return out[["denominator", *[c for c in out.columns if c != "denominator"]]]


def composition_test(counts: pd.DataFrame, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                     timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 3,
                     transform: str = "asin", pseudocount: float = 0.5, paired: bool = True,
                     exclude: Sequence[str] = ("unknown",), trend: bool = True, robust: bool = True) -> pd.DataFrame:
    """Per-type test of proportions: each sample's proportion transformed, least squares on the
    design with moderated variances, BH across types.

    ``transform="asin"`` (default) is arcsin(sqrt(p)); ``"logit"`` is the empirical logit
    ``log((n + c) / (N - n + c))``, whose estimate is a log odds ratio but whose variance is far
    larger for rare types. On either scale the variance still depends on abundance (on the
    arcsine scale rare, zero-heavy types vary less), so by default (``trend``) the variance prior
    follows each type's mean transformed proportion (limma-trend, ``eBayes(trend=TRUE)``), and
    it is fitted robustly (``robust``: ``eBayes(robust=TRUE)``), so that a type far more or less
    variable than the trend (the malignant fraction) keeps most of its own variance. Without the
    trend, rare types pull the prior down and abundant types are called too often. Plain-scale
    columns: ``mean_prop_ref``, ``mean_prop_test`` and ``log2_ratio`` (tested group over
    reference) for baseline and on-treatment designs; for ``interaction`` the mean paired change
    per response group and their difference (``_descriptives``). Returns a one-row
    frame with a ``status`` note when the design is not estimable. Null calibration:
    ``tests/test_compare_null.py`` and docs/statistics.md.

    Parameters
    ----------
    counts
        Samples x cell types cell counts; samples not in ``meta`` are left out.
    meta
        Sample metadata indexed by sample (:func:`sample_meta`).
    design, response_levels, timepoints, covariates, min_patients, paired
        The design and its settings, as in :func:`design_matrix`.
    transform
        ``"asin"`` or ``"logit"`` (above).
    pseudocount
        ``c`` of the empirical logit; not used by ``"asin"``.
    exclude
        Cell types (columns) dropped before the proportions are taken.
    trend
        The variance prior follows each type's mean transformed proportion; False: one prior.
    robust
        Robust variance prior.

    Returns
    -------
    One row per cell type: ``cell_type``, ``estimate`` (on the transformed scale), its 95% interval,
    ``t``, ``pvalue``, degrees of freedom, the plain-scale columns, ``transform``, ``padj`` (BH across
    types), the design's columns, ``test`` and ``status``.
    """
    counts = counts.drop(columns=[c for c in exclude if c in counts.columns])
    counts = counts.loc[counts.index.intersection(meta.index)]
    try:
        d = design_matrix(meta.loc[counts.index], design, response_levels=response_levels, timepoints=timepoints,
                          covariates=covariates, paired=paired, min_patients=min_patients)
    except NotEstimable as why:
        return pd.DataFrame([{"design": design, "status": f"not tested: {why}"}])
    c = counts.loc[d.samples].astype(float)
    total = c.sum(axis=1)
    props = proportions(c)
    if transform == "asin":
        y = np.arcsin(np.sqrt(props))
    elif transform == "logit":
        y = np.log((c + pseudocount) / (c.rsub(total, axis=0) + pseudocount))
    else:
        raise InputError("config.yaml, key compare.composition_transform", f"unknown transform '{transform}'.",
                         "use asin or logit.")
    # limma-trend: the prior variance follows each type's mean transformed proportion (lmFit's Amean)
    amean = y.mean(axis=0).to_numpy()
    res = ols_test(y, d, robust=robust, covariate=amean if trend else None).rename(columns={"feature": "cell_type"})
    res = res.assign(**_descriptives(props, meta.loc[d.samples], design, response_levels, timepoints,
                                     res["cell_type"]))
    res["transform"] = transform
    res["padj"] = bh(res["pvalue"].to_numpy())
    res = res.assign(**d.describe())
    moderation = ", ".join(["trend on mean abundance"] * trend + ["robust"] * robust)
    res["test"] = (f"least squares on {transform}-transformed proportions, moderated variances"
                   f"{f' ({moderation})' if moderation else ''}, BH FDR")
    res["status"] = "tested"
    return res
