"""QC figures: metric violins of all samples, and one sample's histograms with its thresholds."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ._metrics import MAD_METRICS, MITO_APPLIED


def plot_qc_summary(obs: pd.DataFrame, *, table: pd.DataFrame | None = None, metrics: Sequence[str] = (
        "log1p_total_counts", "log1p_n_genes_by_counts", "pct_counts_mt")):
    """Violin per sample for each metric (all cells loaded), samples grouped by patient, and, with
    the per-sample QC ``table``, the cells kept and removed by each filter.

    Parameters
    ----------
    obs
        Per-cell QC metrics of all samples, with ``sample_id``, ``patient_id``, ``timepoint``.
    table
        The per-sample QC table (:func:`run_sample_qc` summaries), for the kept/removed bars and
        the ``mito_filter`` reasons.
    metrics
        The obs columns drawn as violins, one panel each.

    Returns
    -------
    The matplotlib figure. A sample with no value of a metric (no mitochondrial gene, so the
    mitochondrial filter was skipped) gets no violin but a note at its place saying why.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = (obs[["patient_id", "timepoint", "sample_id"]].drop_duplicates()
             .sort_values(["patient_id", "timepoint"])["sample_id"].astype(str).tolist())
    labels = {"log1p_total_counts": "log(1 + UMIs)", "log1p_n_genes_by_counts": "log(1 + genes)",
              "pct_counts_mt": "% mitochondrial"}
    n_panels = len(metrics) + (table is not None)
    fig, axes = plt.subplots(n_panels, 1, figsize=(max(6, 0.5 * len(order) + 2), 2.6 * n_panels),
                             sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    sid = obs["sample_id"].astype(str)
    skipped = {}
    if table is not None and "mito_filter" in table:
        mf = table.set_index("sample_id")["mito_filter"].astype(str)
        skipped = {str(k): v for k, v in mf.items() if v != MITO_APPLIED and v != "nan"}
    for ax, metric in zip(axes, metrics):
        values = obs[metric].to_numpy(dtype=float) if metric in obs else np.full(len(obs), np.nan)
        data = [values[(sid == s).to_numpy()] for s in order]
        data = [d[np.isfinite(d)] for d in data]
        pos = [i + 1 for i, d in enumerate(data) if len(d)]
        if pos:
            parts = ax.violinplot([data[i - 1] for i in pos], positions=pos, showmedians=True, widths=0.8)
            for body in parts["bodies"]:
                body.set_alpha(0.6)
        for i, s in enumerate(order):
            if not len(data[i]):
                note = ("MT filter skipped:\nno MT genes" if metric == "pct_counts_mt" and s in skipped
                        else "no data")
                ax.text(i + 1, 0.5, note, rotation=90, ha="center", va="center", fontsize=7,
                        color="0.3", transform=ax.get_xaxis_transform())
        ax.set_ylabel(labels.get(metric, metric))
    axes[0].set_xlim(0.4, len(order) + 0.6)
    if table is not None:
        ax = axes[-1]
        t = table.set_index("sample_id").loc[order]
        x = np.arange(1, len(order) + 1)
        bottom = np.zeros(len(order))
        for col, name, color in (("n_cells_kept", "kept", "tab:green"),
                                 ("removed_thresholds", "removed: thresholds", "tab:orange"),
                                 ("removed_doublets", "removed: doublets", "tab:red")):
            if col in t:
                vals = t[col].to_numpy(dtype=float)
                ax.bar(x, vals, bottom=bottom, color=color, label=name, width=0.8)
                bottom += vals
        ax.set_ylabel("cells")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the bars
    axes[-1].set_xticks(np.arange(1, len(order) + 1), order, rotation=90)
    axes[0].set_title("Per-cell QC metrics by sample (all cells loaded)")
    return fig


def plot_sample_qc(adata: ad.AnnData, thresholds: dict | None = None, *, title: str = ""):
    """Histograms of the three QC metrics with the thresholds drawn, and UMIs vs genes coloured
    by mitochondrial %, so a reader sees where the cut falls on this sample's distribution.

    Parameters
    ----------
    adata
        One sample after :func:`run_sample_qc` (or with QC metrics and ``thresholds``).
    thresholds
        ``{metric: (low, high)}``; default: the ones :func:`run_sample_qc` applied.
    title
        Figure title.

    Returns
    -------
    The matplotlib figure. When the sample has no mitochondrial percentage (the filter was
    skipped), the mitochondrial panel states why instead of an empty histogram, and the scatter
    is drawn in one colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = adata.obs
    if thresholds is None:  # the ones run_sample_qc applied
        thresholds = {m: tuple(v) for m, v in adata.uns["qc_thresholds"].items()}
    mito_filter = str(adata.uns.get("mito_filter", MITO_APPLIED))
    pct_mt = obs["pct_counts_mt"].to_numpy(dtype=float) if "pct_counts_mt" in obs else np.full(len(obs), np.nan)
    has_mt = bool(np.isfinite(pct_mt).any())
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), constrained_layout=True)
    names = {"log1p_total_counts": "log(1 + UMIs)", "log1p_n_genes_by_counts": "log(1 + genes)",
             "pct_counts_mt": "% mitochondrial"}
    for ax, metric in zip(axes, MAD_METRICS):
        ax.set_xlabel(names.get(metric, metric))
        if metric == "pct_counts_mt" and not has_mt:
            why = mito_filter if mito_filter != MITO_APPLIED else "no mitochondrial % in the data"
            ax.text(0.5, 0.5, "mitochondrial filter\n" + "\n".join(_wrap(why, 34)), ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        x = obs[metric].to_numpy(dtype=float)
        ax.hist(x[np.isfinite(x)], bins=60, color="0.6")
        for v in thresholds.get(metric, (None, None)):
            if v is not None and np.isfinite(v):
                ax.axvline(v, color="crimson", ls="--")
        ax.set_ylabel("cells")
    ax = axes[3]
    counts, genes = obs["total_counts"].to_numpy(), obs["n_genes_by_counts"].to_numpy()
    if has_mt:
        order = np.argsort(pct_mt)
        pts = ax.scatter(counts[order], genes[order], c=pct_mt[order], s=4, cmap="viridis", vmax=50)
    else:
        ax.scatter(counts, genes, s=4, color="tab:blue")
        ax.set_title("no mitochondrial genes: not coloured", fontsize=8)
    if "predicted_doublet" in obs:
        d = obs["predicted_doublet"].to_numpy(dtype=bool)
        ax.scatter(counts[d], genes[d], facecolors="none", edgecolors="red", s=14, lw=0.6,
                   label="Scrublet doublet")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("UMIs")
    ax.set_ylabel("genes")
    if has_mt:
        fig.colorbar(pts, ax=ax, label="% mitochondrial", extend="max")  # 50% and above: the top colour
    fig.suptitle(title)
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
