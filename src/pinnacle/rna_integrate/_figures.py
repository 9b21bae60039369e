"""Figures of the integration stage: UMAPs before/after and the metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

def category_palette(n: int) -> list:
    """``n`` colours a reader can tell apart: tab10 / tab20 up to 20 categories, then scanpy's
    28- and 102-colour palettes (tab20 cycled past 20 gives two types one colour).

    Parameters
    ----------
    n
        Number of categories.
    """
    import matplotlib.pyplot as plt
    from scanpy.plotting import palettes

    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    colours = palettes.default_28 if n <= 28 else palettes.default_102
    return [colours[i % len(colours)] for i in range(n)]


#: above this many categories a panel numbers them on the data (legend entries "3 CD8_exhausted")
NUMBER_ON_DATA = 10
#: above this many categories a panel has no legend (the numbers on the data only)
MAX_LEGEND = 60


def plot_embeddings(adata: ad.AnnData, *, bases: dict[str, str], colors: Sequence[str]):
    """One row per embedding's UMAP, one column per obs key: before/after integration at a glance.

    Every panel has its legend beside it, never over the cells; with more than
    :data:`NUMBER_ON_DATA` categories (24 cell subtypes, Leiden clusters) each category is also
    written at the median of its cells (short names as they are, long ones as a number, the
    legend then reading ``number name``), so a colour that looks like its neighbour's is still
    identified.

    Parameters
    ----------
    adata
        The cohort with the embeddings in ``obsm``.
    bases
        ``{row title: obsm key}``.
    colors
        obs columns, one column of panels each.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n_cats = [adata.obs[c].astype("category").cat.categories.size for c in colors]
    legend_cols = [0 if n > MAX_LEGEND else 1 + (n - 1) // 22 for n in n_cats]
    widths = [4.2 + 1.9 * k for k in legend_cols]
    fig, axes = plt.subplots(len(bases), len(colors), figsize=(sum(widths), 4.2 * len(bases)), squeeze=False,
                             constrained_layout=True, gridspec_kw={"width_ratios": widths})
    rng = np.random.default_rng(0)
    order = rng.permutation(adata.n_obs)
    for r, (title, key) in enumerate(bases.items()):
        xy_all = np.asarray(adata.obsm[key])
        xy = xy_all[order]
        axis = "UMAP" if "umap" in key.lower() else key.removeprefix("X_")
        for c, color in enumerate(colors):
            ax = axes[r, c]
            values = adata.obs[color].astype("category")
            cats = values.cat.categories
            palette = category_palette(len(cats))
            codes = values.cat.codes.to_numpy()
            shown = codes[order]
            ax.scatter(xy[:, 0], xy[:, 1], c=[palette[i] if i >= 0 else "lightgrey" for i in shown], s=1.5,
                       linewidths=0, rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{axis} 1", fontsize=8)
            ax.set_ylabel(f"{axis} 2", fontsize=8)
            ax.set_title(f"{title}: {color} ({len(cats)})", fontsize=9)
            on_data = len(cats) > NUMBER_ON_DATA
            # short names (Leiden clusters "0".."23") are written as they are; long ones numbered
            short = all(len(str(cat)) <= 3 for cat in cats)
            tags = [str(cat) if short else str(i + 1) for i, cat in enumerate(cats)]
            if on_data:
                for i in range(len(cats)):
                    where = codes == i
                    if where.any():
                        x, y = np.median(xy_all[where], axis=0)
                        ax.text(x, y, tags[i], fontsize=7, ha="center", va="center", weight="bold",
                                path_effects=[pe.withStroke(linewidth=2, foreground="white")])
            if legend_cols[c]:
                handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=palette[i],
                                  label=f"{tags[i]} {cat}" if on_data and not short else str(cat))
                           for i, cat in enumerate(cats)]
                ax.legend(handles=handles, fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5),
                          frameon=False, ncol=legend_cols[c], handletextpad=0.2, columnspacing=0.8,
                          borderaxespad=0)
    return fig


def plot_integration_metrics(table: pd.DataFrame):
    """Batch-mixing score against biological-conservation score, one point per embedding.

    Parameters
    ----------
    table
        :func:`integration_metrics` output.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax = axes[0]
    ax.scatter(table["batch_score"], table["bio_score"], s=60)
    for _, r in table.iterrows():
        ax.annotate(r["embedding"], (r["batch_score"], r["bio_score"]), xytext=(5, 5), textcoords="offset points")
    ax.set_xlabel("batch mixing (mean of iLISI, batch silhouette, graph connectivity)")
    ax.set_ylabel("bio conservation (cLISI, label silhouette, ARI, NMI)")
    ax.set_title("Integration: up and right is better")
    metrics = ["ilisi", "silhouette_batch", "graph_connectivity", "clisi", "silhouette_label", "ari", "nmi"]
    ax = axes[1]
    width = 0.8 / len(table)
    x = np.arange(len(metrics))
    for i, (_, r) in enumerate(table.iterrows()):
        ax.bar(x + i * width, [r[m] for m in metrics], width=width, label=r["embedding"])
    ax.set_xticks(x + 0.4 - width / 2, metrics, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Each metric (0-1, higher is better)")
    return fig
