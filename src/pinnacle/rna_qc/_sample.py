"""One sample, end to end: thresholds, then Scrublet on the passing cells, and the summary row."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from ._doublets import call_doublets, expected_doublet_rate
from ._metrics import MAD_METRICS, MITO_APPLIED, apply_thresholds, qc_thresholds


def run_sample_qc(adata: ad.AnnData, *, method: str = "mad", n_mads: dict | None = None,
                  mito_floor: float = 15.0, fixed: dict | None = None, doublets: bool = True,
                  remove_doublets: bool = True, doublet_rate_per_1000: float = 0.008,
                  doublet_rate: float | None = None, doublet_threshold: str = "expected",
                  random_state: int = 0) -> tuple[ad.AnnData, dict]:
    """Thresholds, then Scrublet on the cells that pass them; ``obs['keep']`` is the final call.

    QC metrics must already be in ``obs`` (:func:`qc_metrics`). Scrublet runs after the
    threshold filter so dying cells do not shape the simulated doublets. When
    :func:`qc_metrics` found no mitochondrial gene (``uns['mito_filter']`` is not
    ``"applied"``), the mitochondrial filter (MAD or ``max_pct_mt``) is skipped for this sample;
    its summary fields (``pct_counts_mt_low``/``_high``, ``removed_pct_counts_mt``) are NaN and
    ``mito_filter`` says why.

    Parameters
    ----------
    adata
        One sample with QC metrics in ``obs``; flags are added in place.
    method, n_mads, mito_floor, fixed
        Threshold rule, see :func:`qc_thresholds`.
    doublets
        Run Scrublet on the cells passing the thresholds (needs at least 50 of them).
    remove_doublets
        Flagged doublets fail ``obs['keep']`` (else they are only flagged).
    doublet_rate_per_1000
        Expected multiplet rate per 1,000 cells loaded, when ``doublet_rate`` is None.
    doublet_rate
        A fixed expected doublet rate for this sample.
    doublet_threshold
        ``"expected"`` or ``"auto"``, see :func:`call_doublets`.
    random_state
        Seed for Scrublet.

    Returns
    -------
    The sample with every cell and its flags, and a summary dict with the thresholds, the cells
    each filter removed, and ``mito_filter``.
    """
    mito_filter = adata.uns.get("mito_filter")
    if mito_filter is None:  # metrics made elsewhere: infer from the column
        pct = adata.obs.get("pct_counts_mt", pd.Series(dtype=float)).to_numpy(dtype=float)
        mito_filter = MITO_APPLIED if np.isfinite(pct).any() else "skipped: no pct_counts_mt value"
    mito_filter = str(mito_filter)
    use_mito = mito_filter == MITO_APPLIED
    thresholds = qc_thresholds(adata.obs, method=method, n_mads=n_mads, mito_floor=mito_floor, fixed=fixed,
                               use_mito=use_mito)
    apply_thresholds(adata, thresholds)
    # NaN for "no limit": h5ad cannot store None
    adata.uns["qc_thresholds"] = {m: np.array([np.nan if v is None else v for v in lim], dtype=float)
                                  for m, lim in thresholds.items()}
    adata.uns["mito_filter"] = mito_filter
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    summary = {"n_cells_loaded": int(adata.n_obs), "threshold_method": method, "mito_filter": mito_filter}
    for metric in MAD_METRICS:
        low, high = thresholds.get(metric, (np.nan, np.nan))  # NaN: filter not applied
        summary[f"{metric}_low"] = low
        summary[f"{metric}_high"] = high
        summary[f"removed_{metric}"] = (int(adata.obs[f"qc_fail_{metric}"].sum()) if metric in thresholds
                                        else np.nan)
    passing = adata.obs["qc_pass"].to_numpy()
    summary["removed_thresholds"] = int((~passing).sum())
    if doublets and passing.sum() >= 50:
        rate = doublet_rate or expected_doublet_rate(adata.n_obs, rate_per_1000=doublet_rate_per_1000)
        sub = adata[passing].copy()
        call_doublets(sub, expected_rate=rate, threshold=doublet_threshold, random_state=random_state)
        adata.obs.loc[sub.obs_names, "doublet_score"] = sub.obs["doublet_score"]
        adata.obs.loc[sub.obs_names, "predicted_doublet"] = sub.obs["predicted_doublet"].to_numpy()
        adata.uns["scrublet"] = sub.uns["scrublet"]
        summary.update(expected_doublet_rate=rate, doublet_threshold=sub.uns["scrublet"]["threshold"],
                       doublet_threshold_method=sub.uns["scrublet"]["threshold_method"])
    adata.obs["predicted_doublet"] = adata.obs["predicted_doublet"].astype(bool)
    summary["flagged_doublets"] = int(adata.obs["predicted_doublet"].sum())
    keep = passing & ~(adata.obs["predicted_doublet"].to_numpy() if remove_doublets else False)
    adata.obs["keep"] = keep
    summary["removed_doublets"] = int((passing & ~keep).sum())
    summary["n_cells_kept"] = int(keep.sum())
    return adata, summary
