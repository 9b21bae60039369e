"""Per-sample scRNA-seq quality control: cell labels, QC metrics, per-sample summaries.

One sample at a time (the trial's unit of work), all genes of that sample in memory, sparse.
Metrics come from ``scanpy.pp.calculate_qc_metrics``; what is written here is only the
bookkeeping around it (which genes are mitochondrial, ribosomal, haemoglobin; the summary row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from pinnacle.errors import InputError

from pinnacle.sheets import OBS_META


def flag_gene_groups(adata: ad.AnnData, *, mito_prefix: str = "MT-",
                     ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
                     hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$") -> ad.AnnData:
    """Boolean var columns ``mt``, ``ribo``, ``hb`` from gene symbols (var_names)."""
    names = adata.var_names.to_series().astype(str)
    adata.var["mt"] = names.str.upper().str.startswith(mito_prefix.upper()).to_numpy()
    adata.var["ribo"] = names.str.startswith(tuple(ribo_prefixes)).to_numpy()
    hb = re.compile(hb_regex)
    adata.var["hb"] = np.array([bool(hb.match(n)) for n in names])
    return adata


def qc_metrics(adata: ad.AnnData, *, mito_prefix: str = "MT-",
               ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
               hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$", where: str = "sample") -> ad.AnnData:
    """Per-cell counts, genes, and mitochondrial / ribosomal / haemoglobin percentages.

    Adds obs ``total_counts``, ``n_genes_by_counts``, ``log1p_total_counts``,
    ``log1p_n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``, ``pct_counts_hb``.
    """
    flag_gene_groups(adata, mito_prefix=mito_prefix, ribo_prefixes=ribo_prefixes, hb_regex=hb_regex)
    if not adata.var["mt"].any():
        raise InputError(where, f"no gene symbol starts with the mitochondrial prefix '{mito_prefix}'.",
                         "features must be gene symbols (not Ensembl ids), or set qc.mito_prefix "
                         "(e.g. 'mt-' for mouse).")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo", "hb"], percent_top=None,
                               log1p=True, inplace=True)
    return adata


def summarise_sample(adata: ad.AnnData, *, n_adt: int = 0) -> pd.DataFrame:
    """One row per sample: cell and gene counts and the medians of the QC metrics."""
    obs = adata.obs
    detected = np.asarray((adata.X > 0).sum(axis=0)).ravel() if sp.issparse(adata.X) else (adata.X > 0).sum(0)
    row = {key: str(obs[key].iloc[0]) for key in OBS_META if key in obs}
    row.update(
        n_cells=int(adata.n_obs),
        n_genes_detected=int((detected > 0).sum()),
        n_adt=int(n_adt),
        median_counts=float(obs["total_counts"].median()),
        median_genes=float(obs["n_genes_by_counts"].median()),
        median_pct_mt=float(obs["pct_counts_mt"].median()),
        median_pct_ribo=float(obs["pct_counts_ribo"].median()),
    )
    return pd.DataFrame([row])


def plot_qc_summary(obs: pd.DataFrame, *, metrics: Sequence[str] = (
        "log1p_total_counts", "log1p_n_genes_by_counts", "pct_counts_mt")):
    """Violin per sample for each metric, samples grouped by patient: a sample that stands out is
    a sample to look at before QC filtering."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = (obs[["patient_id", "timepoint", "sample_id"]].drop_duplicates()
             .sort_values(["patient_id", "timepoint"])["sample_id"].astype(str).tolist())
    labels = {"log1p_total_counts": "log(1 + UMIs)", "log1p_n_genes_by_counts": "log(1 + genes)",
              "pct_counts_mt": "% mitochondrial"}
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, 0.5 * len(order) + 2), 2.6 * len(metrics)),
                             sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    sid = obs["sample_id"].astype(str)
    for ax, metric in zip(axes, metrics):
        data = [obs.loc[sid == s, metric].to_numpy(dtype=float) for s in order]
        parts = ax.violinplot([d if len(d) else [np.nan] for d in data], showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
        ax.set_ylabel(labels.get(metric, metric))
    axes[-1].set_xticks(np.arange(1, len(order) + 1), order, rotation=90)
    axes[0].set_title("Per-cell QC metrics by sample (before filtering)")
    return fig
