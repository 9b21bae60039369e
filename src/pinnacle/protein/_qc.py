"""Per-sample antibody-tag QC: tags in cells vs empty droplets, and cells with aberrant isotype
signal."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._dsb import _counts, _resolve_isotypes

TAG_QC_COLUMNS = ["tag", "is_isotype", "median_cells", "median_empties", "mean_cells", "mean_empties",
                  "detected_cells", "detected_empties", "cells_over_empties"]


def tag_qc(prot: ad.AnnData, *, empties: ad.AnnData | None = None, isotypes: Sequence[str] | None = None,
           n_mads: float = 5.0, layer: str | None = None, key_added: str = "isotype_outlier") -> pd.DataFrame:
    """Tag table of one sample, and a per-cell flag for aberrant isotype-control signal.

    Why: a tag no higher in cells than in empty droplets (``cells_over_empties`` ~ 1) did not
    bind, and one hardly detected anywhere cannot be normalised (DSB drops it). Isotype controls
    bind nothing specifically, so a cell with far more isotype counts than its sample's cells
    is an aggregate, a doublet or a sticky dead cell: its ``log1p`` isotype sum lies above the
    median + ``n_mads`` MADs (scipy's normal-scaled MAD; the SD when the MAD is 0).

    Parameters
    ----------
    prot
        One sample's cells x tags (raw counts); obs columns are added in place.
    empties
        Empty droplets x tags (:func:`select_empty_droplets`), or None (empty-droplet columns NaN).
    isotypes
        Isotype-control tags; None: found by name (:data:`ISOTYPE_PATTERN`).
    n_mads
        MADs above the median where a cell's isotype signal is aberrant.
    layer
        Layer with the counts; None: X.
    key_added
        obs column of the flag (bool); obs ``isotype_counts`` gets each cell's isotype sum.

    Returns
    -------
    One row per tag (:data:`TAG_QC_COLUMNS`); ``uns['tag_qc']`` holds the isotypes, the
    threshold (isotype counts) and the number of flagged cells.
    """
    where = "tag_qc"
    iso = _resolve_isotypes(prot.var_names, isotypes, where)
    C = _counts(prot, layer, f"{where}: cells")
    if empties is not None:
        missing = prot.var_names.difference(empties.var_names)
        if len(missing):
            raise InputError(where, f"tags not in the empty droplets: {', '.join(map(str, missing[:10]))}.",
                             "take the empty droplets from the same run's raw matrix.")
        E = _counts(empties[:, prot.var_names], layer, f"{where}: empty droplets")
    else:
        E = np.full((0, C.shape[1]), np.nan)

    def stats(M):
        if M.shape[0] == 0:
            nan = np.full(M.shape[1], np.nan)
            return nan, nan, nan
        return np.median(M, axis=0), M.mean(axis=0), (M > 0).mean(axis=0)

    med_c, mean_c, det_c = stats(C)
    med_e, mean_e, det_e = stats(E)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (mean_c + 1.0) / (mean_e + 1.0)
    table = pd.DataFrame({"tag": prot.var_names.astype(str), "is_isotype": prot.var_names.isin(iso),
                          "median_cells": med_c, "median_empties": med_e, "mean_cells": mean_c,
                          "mean_empties": mean_e, "detected_cells": det_c, "detected_empties": det_e,
                          "cells_over_empties": ratio}, columns=TAG_QC_COLUMNS)

    iso_sum = C[:, prot.var_names.get_indexer(iso)].sum(axis=1) if iso else np.zeros(C.shape[0])
    prot.obs["isotype_counts"] = iso_sum.astype(np.float32)
    threshold = np.nan
    flag = np.zeros(C.shape[0], dtype=bool)
    if iso and C.shape[0] >= 3:
        from scipy.stats import median_abs_deviation

        v = np.log1p(iso_sum)
        spread = float(median_abs_deviation(v, scale="normal")) or float(np.std(v))
        if spread > 0:
            cut = float(np.median(v)) + n_mads * spread
            threshold = float(np.expm1(cut))
            flag = v > cut
    prot.obs[key_added] = flag
    prot.uns["tag_qc"] = {"isotypes": list(iso), "n_mads": float(n_mads), "isotype_threshold": threshold,
                          "n_flagged": int(flag.sum()), "flag_key": key_added,
                          "n_empties": int(E.shape[0])}
    return table


def plot_tag_qc(prot: ad.AnnData, table: pd.DataFrame, *, flag_key: str = "isotype_outlier",
                title: str = "Antibody tags", n_label: int = 6):
    """Two panels from :func:`tag_qc`: each tag's mean count in cells against empty droplets
    (isotype controls in their own colour; tags on the diagonal did not bind), and the cells'
    isotype counts with the outlier threshold. Returns a Figure; changes nothing.

    Parameters
    ----------
    prot
        The sample after :func:`tag_qc` (obs ``isotype_counts`` and ``flag_key``).
    table
        :func:`tag_qc` output.
    flag_key
        obs column of the isotype flag.
    title
        Figure title (e.g. the sample id).
    n_label
        Tags named in the first panel: those least above the empty droplets.
    """
    import matplotlib.pyplot as plt

    if table.empty:  # a sample without antibody tags (RNA only)
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no antibody tags in this sample (no CITE-seq)", ha="center", va="center")
        fig.suptitle(title)
        plt.close(fig)
        return fig
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    has_e = table["mean_empties"].notna().any()
    iso = table["is_isotype"].to_numpy(dtype=bool)
    if has_e:
        x, y = np.log10(1 + table["mean_empties"]), np.log10(1 + table["mean_cells"])
        a1.scatter(x[~iso], y[~iso], s=18, color="tab:blue", label="antibody tag")
        a1.scatter(x[iso], y[iso], s=30, color="tab:orange", marker="D", label="isotype control")
        hi = float(max(x.max(), y.max(), 1.0)) * 1.05
        a1.plot([0, hi], [0, hi], ls="--", color="grey", lw=1, label="cells = empty droplets")
        # name the tags least above ambient (the ones a reader should check)
        ratio = table["cells_over_empties"].to_numpy(dtype=float)
        named = np.argsort(np.where(iso, np.inf, ratio))[:min(n_label, int((~iso).sum()))]
        a1.set_xlabel("mean counts in empty droplets (log10(1 + x))")
        a1.set_ylabel("mean counts in cells (log10(1 + x))")
        a1.set_title(f"Tags in cells vs empty droplets (named: the {n_label} weakest tags)", fontsize=10)
        a1.legend(fontsize=8, loc="upper left")
    else:
        from matplotlib.patches import Patch

        order = np.argsort(table["mean_cells"].to_numpy())
        colors = np.where(iso[order], "tab:orange", "tab:blue")
        a1.barh(np.arange(len(table)), np.log10(1 + table["mean_cells"].to_numpy()[order]), color=colors)
        a1.set_yticks(np.arange(len(table)), table["tag"].to_numpy()[order], fontsize=6)
        a1.set_xlabel("mean counts in cells (log10(1 + x))")
        a1.set_title("Tags in cells (no empty droplets given)", fontsize=10)
        a1.legend(handles=[Patch(color="tab:blue", label="antibody tag"),
                           Patch(color="tab:orange", label="isotype control")], fontsize=8)

    qc = prot.uns.get("tag_qc", {})
    if "isotype_counts" in prot.obs and len(qc.get("isotypes", ())) > 0:  # a list, or an array from h5ad
        v = np.log10(1 + prot.obs["isotype_counts"].to_numpy(dtype=float))
        flag = prot.obs[flag_key].to_numpy(dtype=bool) if flag_key in prot.obs else np.zeros(v.size, bool)
        bins = np.linspace(v.min(), v.max() + 1e-9, 40)
        a2.hist(v[~flag], bins=bins, color="tab:grey", label=f"cells ({(~flag).sum():,})")
        a2.hist(v[flag], bins=bins, color="tab:red", label=f"aberrant isotype signal ({flag.sum():,})")
        thr = qc.get("isotype_threshold", np.nan)
        if np.isfinite(thr):
            a2.axvline(np.log10(1 + thr), color="black", ls="--",
                       label=f"threshold: median + {qc.get('n_mads', 0):g} MADs")
        a2.set_xlabel("isotype-control counts per cell (log10(1 + x))")
        a2.set_ylabel("cells")
        a2.legend(fontsize=8)
        a2.set_title("Isotype controls per cell", fontsize=10)
    else:
        a2.axis("off")
        a2.text(0.5, 0.5, "no isotype controls in the panel", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    if has_e and len(named):
        _name_points(a1, x.to_numpy()[named], y.to_numpy()[named], table["tag"].to_numpy()[named], fontsize=7)
    plt.close(fig)
    return fig


def _name_points(ax, x: np.ndarray, y: np.ndarray, names, *, fontsize: float = 7) -> None:
    """Name points that may lie on top of each other: the names stand in a column at the right
    edge of the panel (below the diagonal, where tags hardly ever are), each at its point's
    height where there is room, else pushed apart by one line, with a leader line to its point.
    Called after the layout is final (the spacing is in the panel's size)."""
    ax.get_xlim(), ax.get_ylim()  # fix the autoscaled limits before converting
    to_axes = ax.transData + ax.transAxes.inverted()
    ty = to_axes.transform(np.c_[x, y])[:, 1]
    height_pt = ax.get_window_extent().height * 72 / ax.figure.dpi
    gap, lo, hi = 1.5 * fontsize / height_pt, 0.03, 0.97
    order = np.argsort(ty, kind="stable")
    pos = np.clip(ty[order], lo, hi)
    for k in range(1, len(pos)):  # push up ...
        pos[k] = max(pos[k], pos[k - 1] + gap)
    pos[-1] = min(pos[-1], hi)
    for k in range(len(pos) - 2, -1, -1):  # ... and back down from the top edge
        pos[k] = min(pos[k], pos[k + 1] - gap)
    for i, p in zip(order, pos):
        ax.annotate(str(names[i]), (x[i], y[i]), xytext=(0.98, p), textcoords="axes fraction", fontsize=fontsize,
                    ha="right", va="center", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color="0.55", lw=0.6, shrinkA=2, shrinkB=3))
