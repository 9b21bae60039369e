"""Figures of the integration stage: UMAPs before/after and the metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle._labels import place_labels

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
#: a category is written on the data where at least this share of the cells around is its own;
#: a panel where fewer than half the categories have such a place (batches that mix) writes none
LABEL_PURITY = 0.5
#: where a name may go, in offset points from its place (first free one wins)
_NAME_SPOTS = ((0, 0), (0, 9), (0, -9), (14, 0), (-14, 0), (12, 9), (-12, 9), (12, -9), (-12, -9), (0, 18),
               (0, -18), (24, 0), (-24, 0))


def _label_places(xy: np.ndarray, codes: np.ndarray, n: int, *, bins: int = 40) -> list[tuple | None]:
    """Where to write each of ``n`` categories on a 2-D embedding: at the median of its cells when
    its own cells dominate there, else at the centre of its densest patch; ``None`` when it
    dominates nowhere (a batch spread over every population). Cells without coordinates (NaN:
    left out of a subsampled embedding such as the unintegrated UMAP) are ignored."""
    finite = np.isfinite(xy).all(axis=1)
    xy, codes = xy[finite], codes[finite]
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cell = np.minimum(((xy - lo) / span * bins).astype(int), bins - 1)
    flat = cell[:, 0] * bins + cell[:, 1]
    valid = codes >= 0
    per_cat = np.zeros((n, bins * bins))
    np.add.at(per_cat, (codes[valid], flat[valid]), 1)

    def smooth(m):  # counts of each bin and its 8 neighbours
        g = np.pad(m.reshape(-1, bins, bins), ((0, 0), (1, 1), (1, 1)))
        return sum(g[:, 1 + dx: 1 + dx + bins, 1 + dy: 1 + dy + bins]
                   for dx in (-1, 0, 1) for dy in (-1, 0, 1)).reshape(m.shape[0], -1)

    own = smooth(per_cat)
    every = smooth(per_cat.sum(0, keepdims=True))[0]
    purity = own / np.maximum(every, 1)
    places = []
    for i in range(n):
        mine = codes == i
        if not mine.any():
            places.append(None)
            continue
        # a place needs a few of the category's cells (not one stray cell in an empty gap)
        ok = (purity[i] >= LABEL_PURITY) & (own[i] >= max(3.0, 0.05 * mine.sum()))
        med = np.median(xy[mine], axis=0)
        b = np.minimum(((med - lo) / span * bins).astype(int), bins - 1)
        if ok[b[0] * bins + b[1]]:
            places.append((float(med[0]), float(med[1]), purity[i, b[0] * bins + b[1]]))
            continue
        best = int(np.argmax(own[i] * ok))
        if not ok[best]:
            places.append(None)
            continue
        bx, by = divmod(best, bins)
        near = mine & (np.abs(cell[:, 0] - bx) <= 1) & (np.abs(cell[:, 1] - by) <= 1)
        x, y = np.median(xy[near], axis=0)
        places.append((float(x), float(y), purity[i, best]))
    return places


def plot_embeddings(adata: ad.AnnData, *, bases: dict[str, str], colors: Sequence[str]):
    """One row per embedding's UMAP, one column per obs key: before/after integration at a glance.

    Every panel has its legend beside it, never over the cells; with more than
    :data:`NUMBER_ON_DATA` categories (24 cell subtypes, Leiden clusters) each category is also
    written on its cells (short names as they are, long ones as a number, the legend then reading
    ``number name``), so a colour that looks like its neighbour's is still identified: at the
    median of its cells, or, where other categories dominate there, on its own densest patch;
    names never overlap. Categories that form no population of their own (batches well mixed
    by integration) are not written on the data: a number there would point at nothing.

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
    names = {}
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
            # short names (Leiden clusters "0".."23") are written as they are; long ones numbered
            short = all(len(str(cat)) <= 3 for cat in cats)
            tags = [str(cat) if short else str(i + 1) for i, cat in enumerate(cats)]
            places = _label_places(xy_all, codes, len(cats)) if len(cats) > NUMBER_ON_DATA else []
            # numbers on the data only where the categories are populations, not batches that mix
            on_data = sum(p is not None for p in places) >= len(cats) / 2 if places else False
            if on_data:
                names[ax] = [ax.annotate(tags[i], p[:2], xytext=(0, 0), textcoords="offset points", fontsize=7,
                                         ha="center", va="center", weight="bold",
                                         path_effects=[pe.withStroke(linewidth=2, foreground="white")])
                             for i, p in sorted(enumerate(places), key=lambda ip: -(ip[1] or (0, 0, 0))[2])
                             if p is not None]
            if legend_cols[c]:
                handles = [Line2D([], [], marker="o", linestyle="", markersize=4, color=palette[i],
                                  label=f"{tags[i]} {cat}" if on_data and not short else str(cat))
                           for i, cat in enumerate(cats)]
                ax.legend(handles=handles, fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5),
                          frameon=False, ncol=legend_cols[c], handletextpad=0.2, columnspacing=0.8,
                          borderaxespad=0)
    if names:  # the layout first (names are placed in display space), then kept as it is
        fig.get_layout_engine().execute(fig)
        fig.set_layout_engine("none")
        for ax, texts in names.items():
            place_labels(ax, texts, _NAME_SPOTS)
    return fig


#: the metrics of :func:`integration_metrics`, as the figure names them, batch mixing first
METRIC_NAMES = {"ilisi": "iLISI", "silhouette_batch": "batch silhouette", "graph_connectivity": "graph connectivity",
                "clisi": "cLISI", "silhouette_label": "label silhouette", "ari": "ARI", "nmi": "NMI"}
_BATCH_METRICS = ("ilisi", "silhouette_batch", "graph_connectivity")


def plot_integration_metrics(table: pd.DataFrame):
    """Batch-mixing score against biological-conservation score, one point per embedding, and
    each metric as bars (batch-mixing metrics left of the line, conservation right), one colour
    per embedding in both panels.

    Parameters
    ----------
    table
        :func:`integration_metrics` output.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(table))]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True, gridspec_kw={"width_ratios": [1, 1.3]})
    ax = axes[0]
    ax.scatter(table["batch_score"], table["bio_score"], s=60, c=colours, zorder=3)
    # names above and below their points in turn along the x axis, so neighbours do not collide
    for k, i in enumerate(np.argsort(table["batch_score"].to_numpy(), kind="stable")):
        r = table.iloc[i]
        ax.annotate(r["embedding"], (r["batch_score"], r["bio_score"]), xytext=(0, 8 if k % 2 == 0 else -9),
                    textcoords="offset points", ha="center", va="bottom" if k % 2 == 0 else "top",
                    color=colours[i], fontsize=9)
    ax.margins(x=0.2, y=0.2)
    ax.set_xlabel("batch mixing score (0-1)\nmean of iLISI, batch silhouette, graph connectivity", fontsize=9)
    ax.set_ylabel("bio conservation score (0-1)\nmean of cLISI, label silhouette, ARI, NMI", fontsize=9)
    ax.set_title("Integration: up and right is better", fontsize=10)
    metrics = [m for m in METRIC_NAMES if m in table]
    ax = axes[1]
    width = 0.8 / len(table)
    x = np.arange(len(metrics))
    for i, ((_, r), colour) in enumerate(zip(table.iterrows(), colours)):
        ax.bar(x + i * width, [r[m] for m in metrics], width=width, label=r["embedding"], color=colour)
    n_batch = sum(m in _BATCH_METRICS for m in metrics)
    if 0 < n_batch < len(metrics):
        ax.axvline(n_batch - 0.1 - width / 2, color="0.3", lw=0.8, ls="--")
        ax.text(n_batch / 2 - 0.1 - width / 2, 1.03, "batch mixing", ha="center", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
        ax.text((n_batch + len(metrics)) / 2 - 0.1 - width / 2, 1.03, "bio conservation", ha="center",
                va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xticks(x + 0.4 - width / 2, [METRIC_NAMES[m] for m in metrics], rotation=30, ha="right", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0-1, higher is better)", fontsize=9)
    ax.legend(fontsize=8, title="embedding", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    ax.set_title("Each metric", fontsize=10, pad=16)
    return fig
