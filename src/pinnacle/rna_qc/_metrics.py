"""Per-cell QC metrics (gene groups, scanpy's calculate_qc_metrics) and per-sample thresholds."""

from __future__ import annotations

import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from pinnacle.errors import InputError


def flag_gene_groups(adata: ad.AnnData, *, mito_prefix: str = "MT-",
                     ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
                     hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$") -> ad.AnnData:
    """Boolean var columns ``mt``, ``ribo``, ``hb`` from gene symbols (var_names).

    Parameters
    ----------
    adata
        Gene symbols as ``var_names``; the columns are added in place.
    mito_prefix
        Mitochondrial symbol prefix, case-insensitive (``"mt-"`` for mouse).
    ribo_prefixes
        Ribosomal protein symbol prefixes.
    hb_regex
        Regular expression matching haemoglobin symbols.
    """
    names = adata.var_names.to_series().astype(str)
    adata.var["mt"] = names.str.upper().str.startswith(mito_prefix.upper()).to_numpy()
    adata.var["ribo"] = names.str.startswith(tuple(ribo_prefixes)).to_numpy()
    hb = re.compile(hb_regex)
    adata.var["hb"] = np.array([bool(hb.match(n)) for n in names])
    return adata


#: value of ``uns['mito_filter']`` / the QC table's ``mito_filter`` column when the filter runs
MITO_APPLIED = "applied"


def mito_skip_reason(mito_prefix: str) -> str:
    """The QC table's ``mito_filter`` text for a sample whose matrix has no mitochondrial gene.

    Parameters
    ----------
    mito_prefix
        The mitochondrial gene-symbol prefix that matched no gene (``qc.mito_prefix``).
    """
    return f"skipped: no gene with prefix '{mito_prefix}' in the matrix (qc.require_mito: false)"


def qc_metrics(adata: ad.AnnData, *, mito_prefix: str = "MT-",
               ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
               hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$", require_mito: bool = True,
               where: str = "sample") -> ad.AnnData:
    """Per-cell counts, genes, and mitochondrial / ribosomal / haemoglobin percentages.

    Adds obs ``total_counts``, ``n_genes_by_counts``, ``log1p_total_counts``,
    ``log1p_n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``, ``pct_counts_hb``, and
    ``uns['mito_filter']``: ``"applied"``, or the reason the mitochondrial filter is skipped.

    Parameters
    ----------
    adata
        One sample, raw counts in ``X``, gene symbols as ``var_names``. Changed in place.
    mito_prefix
        Prefix of mitochondrial gene symbols (case-insensitive; ``"mt-"`` for mouse).
    ribo_prefixes
        Prefixes of ribosomal protein gene symbols.
    hb_regex
        Regular expression matching haemoglobin gene symbols.
    require_mito
        With no gene starting with ``mito_prefix``: ``True`` stops with an :class:`InputError`
        (usually Ensembl ids or the wrong prefix); ``False`` accepts the matrix (a targeted
        panel, a filtered public object), sets ``pct_counts_mt`` (and ``total_counts_mt``,
        ``log1p_total_counts_mt``) to NaN, not a fake 0, and records the reason in
        ``uns['mito_filter']`` so :func:`run_sample_qc` skips the mitochondrial filter.
    where
        The input's name (file), for the error message.

    Returns
    -------
    The same AnnData, with the metrics added.
    """
    flag_gene_groups(adata, mito_prefix=mito_prefix, ribo_prefixes=ribo_prefixes, hb_regex=hb_regex)
    has_mito = bool(adata.var["mt"].any())
    if not has_mito and require_mito:
        raise InputError(where, f"no gene symbol starts with the mitochondrial prefix '{mito_prefix}'.",
                         "features must be gene symbols (not Ensembl ids), or set qc.mito_prefix "
                         "(e.g. 'mt-' for mouse); if the matrix truly has no mitochondrial genes "
                         "(a targeted panel, a filtered public object), set qc.require_mito: false "
                         "to skip the mitochondrial filter for such samples.")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo", "hb"] if has_mito else ["ribo", "hb"],
                               percent_top=None, log1p=True, inplace=True)
    if not has_mito:
        for col in ("total_counts_mt", "log1p_total_counts_mt", "pct_counts_mt"):
            adata.obs[col] = np.full(adata.n_obs, np.nan)
    adata.uns["mito_filter"] = MITO_APPLIED if has_mito else mito_skip_reason(mito_prefix)
    return adata


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------

#: metric -> which tails are outliers ("both", "upper")
MAD_METRICS = {"log1p_total_counts": "both", "log1p_n_genes_by_counts": "both", "pct_counts_mt": "upper"}


def mad(values: np.ndarray) -> float:
    """Median absolute deviation scaled to estimate the SD of a normal (scipy, scale="normal").

    Parameters
    ----------
    values
        The metric of one sample's cells.
    """
    from scipy.stats import median_abs_deviation

    return float(median_abs_deviation(np.asarray(values, dtype=float), scale="normal"))


def qc_thresholds(obs: pd.DataFrame, *, method: str = "mad", n_mads: dict | None = None,
                  mito_floor: float = 15.0, fixed: dict | None = None, use_mito: bool = True) -> dict:
    """Per-sample thresholds on log counts, log genes and mitochondrial %.

    ``mad``: median +/- k MADs within the sample (k per metric in ``n_mads``), so a sample
    sequenced deeper or shallower gets thresholds that move with it; the mitochondrial upper
    limit is never set below ``mito_floor`` %, so a very clean sample does not lose healthy
    cells to a tiny MAD. ``fixed``: the values of ``fixed`` (min/max counts and genes, max %
    mitochondrial) for every sample.

    Parameters
    ----------
    obs
        Per-cell QC metrics of one sample (:func:`qc_metrics`).
    method
        ``"mad"`` or ``"fixed"``.
    n_mads
        MADs from the median per metric (``mad``); missing metrics keep their defaults.
    mito_floor
        Lowest allowed mitochondrial % limit (``mad``).
    fixed
        ``min_counts``, ``max_counts``, ``min_genes``, ``max_genes``, ``max_pct_mt`` (``fixed``);
        a missing key means no limit.
    use_mito
        Threshold ``pct_counts_mt``. ``False`` (a matrix without mitochondrial genes) leaves the
        metric out of the result, so no cell is judged on it.

    Returns
    -------
    ``{metric: (low, high)}`` (None = no limit) in the metric's own units.
    """
    if use_mito and not np.isfinite(obs.get("pct_counts_mt", pd.Series(dtype=float)).to_numpy(dtype=float)).any():
        raise ValueError("pct_counts_mt has no finite value (no mitochondrial gene); "
                         "pass use_mito=False to skip the mitochondrial filter")
    if method == "fixed":
        f = fixed or {}
        out = {
            "log1p_total_counts": (_log1p(f.get("min_counts")), _log1p(f.get("max_counts"))),
            "log1p_n_genes_by_counts": (_log1p(f.get("min_genes")), _log1p(f.get("max_genes"))),
            "pct_counts_mt": (None, f.get("max_pct_mt")),
        }
        if not use_mito:
            del out["pct_counts_mt"]
        return out
    if method != "mad":
        raise ValueError(f"method must be 'mad' or 'fixed', not {method!r}")
    n_mads = {"log1p_total_counts": 5.0, "log1p_n_genes_by_counts": 5.0, "pct_counts_mt": 3.0,
              **(n_mads or {})}
    out = {}
    for metric, tails in MAD_METRICS.items():
        if metric == "pct_counts_mt" and not use_mito:
            continue
        x = obs[metric].to_numpy(dtype=float)
        med, spread = float(np.median(x)), mad(x)
        k = float(n_mads[metric])
        low = med - k * spread if tails == "both" else None
        high = med + k * spread
        if metric == "pct_counts_mt":
            high = max(high, float(mito_floor))
        out[metric] = (low, high)
    return out


def _log1p(v):
    return None if v is None else float(np.log1p(v))


def apply_thresholds(adata: ad.AnnData, thresholds: dict, *, key_added: str = "qc_pass") -> ad.AnnData:
    """Flag cells outside the thresholds: ``obs['qc_fail_<metric>']`` and ``obs[key_added]``.

    Parameters
    ----------
    adata
        One sample with the metrics in ``obs``; flags are added in place.
    thresholds
        ``{metric: (low, high)}`` from :func:`qc_thresholds` (None = no limit).
    key_added
        obs column of the combined call (True = passes every threshold).
    """
    keep = np.ones(adata.n_obs, dtype=bool)
    for metric, (low, high) in thresholds.items():
        x = adata.obs[metric].to_numpy(dtype=float)
        fail = np.zeros(adata.n_obs, dtype=bool)
        if low is not None:
            fail |= x < low
        if high is not None:
            fail |= x > high
        adata.obs[f"qc_fail_{metric}"] = fail
        keep &= ~fail
    adata.obs[key_added] = keep
    return adata
