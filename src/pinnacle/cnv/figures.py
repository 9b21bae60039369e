"""Figures of the copy-number stage: a patient's cells by clone across the genome, the clones'
consensus profiles, and clone fractions per sample.

matplotlib only; the layouts are written here (no library draws a binned copy-number heatmap
with chromosome and clone bands that takes an AnnData).
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .clones import _NOT_CLONES, NORMAL, OUTLIER, UNCLUSTERED

__all__ = ["plot_clone_dynamics", "plot_clone_fractions", "plot_clone_heatmap", "plot_consensus_profiles"]


def _chrom_bounds(chrom: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Start index of each chromosome's run of bins, its name, and the run midpoints."""
    starts = np.flatnonzero(np.r_[True, chrom[1:] != chrom[:-1]])
    ends = np.r_[starts[1:], len(chrom)]
    names = [str(c).removeprefix("chr") for c in chrom[starts]]
    return starts, names, (starts + ends) / 2


def _chrom_ticks(ax, chrom: np.ndarray, *, fontsize: float = 7) -> None:
    """Chromosome names under their runs of bins; a name whose centre is too close to the one
    before it (the small chromosomes at the end) goes one line lower, alternating, so that no two
    names on a line overlap."""
    _, names, mids = _chrom_bounds(chrom)
    close = np.r_[False, np.diff(mids) < 0.018 * len(chrom)]
    labels, low = [], False
    for name, near in zip(names, close):
        low = bool(near) and not low
        labels.append(("\n" + name) if low else name)
    ax.set_xticks(mids)
    ax.set_xticklabels(labels, fontsize=fontsize)


def _cn_cmap(max_cn: int):
    from matplotlib.colors import BoundaryNorm, ListedColormap

    # losses blue, 2 copies white, gains red; one colour per integer state
    colours = ["#08306b", "#6baed6", "#f7f7f7", "#fcbba1", "#fb6a4a", "#cb181d", "#99000d", "#67000d", "#3b0008"]
    colours = colours[: max_cn + 1] + [colours[-1]] * max(0, max_cn + 1 - len(colours))
    return ListedColormap(colours), BoundaryNorm(np.arange(-0.5, max_cn + 1.5), max_cn + 1)


def _clone_colours(clones) -> dict[str, tuple]:
    import matplotlib as mpl

    palette = mpl.colormaps["tab10"]
    fixed = {NORMAL: (0.75, 0.75, 0.75, 1.0), OUTLIER: (0.2, 0.2, 0.2, 1.0), UNCLUSTERED: (0.45, 0.45, 0.45, 1.0)}
    tumour = [c for c in clones if c not in fixed]
    return {**{c: palette(i % 10) for i, c in enumerate(tumour)}, **{c: fixed[c] for c in clones if c in fixed}}


def _clone_order(labels: pd.Series) -> list[str]:
    tumour = sorted((c for c in labels.unique() if c not in _NOT_CLONES), key=lambda c: (-int((labels == c).sum()), c))
    return tumour + [c for c in _NOT_CLONES if (labels == c).any()]


def plot_clone_heatmap(adata: ad.AnnData, *, clone_key: str = "clone", layer: str = "copy_number",
                       sample_key: str = "sample_id", max_cn: int = 6, title: str | None = None):
    """Cells (rows, grouped by clone) x bins (columns, genome order) coloured by integer copy number.

    Parameters
    ----------
    adata
        One patient's scDNA cells with ``obs[clone_key]`` and integer copy number in ``layer``.
    clone_key, layer, sample_key
        Where the clone labels, the copy number and the sample of each cell are.
    max_cn
        Copy numbers above it share the top colour.
    title
        Figure title (default: the patient).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = adata.obs[clone_key].astype(str)
    order = _clone_order(labels)
    sample_of = adata.obs[sample_key].astype(str).to_numpy()
    # by clone, then by sample within a clone
    rows = np.concatenate([idx[np.argsort(sample_of[idx], kind="stable")]
                           for idx in (np.flatnonzero((labels == c).to_numpy()) for c in order)])
    X = np.minimum(np.asarray(adata.layers[layer])[rows], max_cn)
    chrom = adata.var["chrom"].astype(str).to_numpy()
    starts = _chrom_bounds(chrom)[0]
    samples = sample_of[rows]
    sample_names = sorted(set(samples))
    colours = _clone_colours(order)

    fig = plt.figure(figsize=(12, 1.5 + min(8.0, 0.02 * len(rows) + 2)))
    grid = fig.add_gridspec(1, 4, width_ratios=[0.3, 0.3, 30, 0.6], wspace=0.04)
    ax_clone, ax_sample, ax, cax = (fig.add_subplot(grid[0, i]) for i in range(4))
    cmap, norm = _cn_cmap(max_cn)
    im = ax.imshow(X, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="black", lw=0.4)
    _chrom_ticks(ax, chrom)
    ax.set_yticks([])
    ax.set_xlabel("chromosome")
    cbar = fig.colorbar(im, cax=cax, ticks=range(max_cn + 1))
    cbar.set_label("copy number")
    if max_cn >= 1:
        cbar.ax.set_yticklabels([*map(str, range(max_cn)), f">={max_cn}"])
    ax_clone.imshow(np.array([colours[c] for c in labels.to_numpy()[rows]])[:, None, :], aspect="auto",
                    interpolation="nearest")
    sample_colour = {s: plt.get_cmap("Pastel1")(i % 9) for i, s in enumerate(sample_names)}
    ax_sample.imshow(np.array([sample_colour[s] for s in samples])[:, None, :], aspect="auto",
                     interpolation="nearest")
    for a, name in ((ax_clone, "clone"), (ax_sample, "sample")):
        a.set_xticks([0])
        a.set_xticklabels([name], rotation=90, fontsize=7)
        a.set_yticks([])
    ax_clone.set_ylabel(f"{len(rows)} cells")
    handles = [Patch(color=colours[c], label=f"{c} ({int((labels == c).sum())})") for c in order]
    handles += [Patch(color=sample_colour[s], label=f"sample {s}") for s in sample_names]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.12), ncol=4, fontsize=7, frameon=False)
    patient = adata.obs["patient_id"].astype(str).iloc[0] if "patient_id" in adata.obs and adata.n_obs else ""
    ax.set_title(title or f"{patient}: integer copy number per cell, grouped by clone")
    return fig


def plot_consensus_profiles(consensus: pd.DataFrame, *, chrom=None, max_cn: int = 6, title: str = ""):
    """One line per clone: its consensus integer copy number along the genome.

    Parameters
    ----------
    consensus
        Clones x bins (:func:`pinnacle.cnv.clone_consensus`), columns named ``chrom:start-end``.
    chrom
        Chromosome of each column (default: parsed from the column names).
    max_cn
        Top of the y axis.
    title
        Figure title.
    """
    import matplotlib.pyplot as plt

    if chrom is None:
        chrom = np.array([str(c).split(":")[0] for c in consensus.columns])
    chrom = np.asarray(chrom, dtype=str)
    starts = _chrom_bounds(chrom)[0]
    clones = list(consensus.index)
    colours = _clone_colours(clones)
    fig, axes = plt.subplots(len(clones), 1, figsize=(12, 0.9 + 1.0 * len(clones)), sharex=True, squeeze=False)
    x = np.arange(consensus.shape[1])
    for ax, clone in zip(axes[:, 0], clones):
        y = np.minimum(consensus.loc[clone].to_numpy(float), max_cn)
        ax.step(x, y, where="mid", color=colours[clone], lw=1.5)
        ax.axhline(2, color="grey", lw=0.6, ls=":")
        for s in starts[1:]:
            ax.axvline(s - 0.5, color="black", lw=0.3)
        ax.set_ylim(-0.3, max_cn + 0.3)
        ax.set_yticks(range(0, max_cn + 1, 2))
        ax.set_ylabel(clone, rotation=0, ha="right", va="center", fontsize=8)
    _chrom_ticks(axes[-1, 0], chrom)
    axes[-1, 0].set_xlabel("chromosome")
    fig.supylabel("copy number (dotted: 2)", fontsize=9)
    fig.suptitle(title or "clone consensus profiles (median integer copy number)")
    fig.tight_layout()
    return fig


def plot_clone_fractions(fractions: pd.DataFrame, *, order: list[str] | None = None, title: str = ""):
    """Stacked bars per sample: each tumour clone's share of the sample's tumour cells, grouped by
    patient, with the tumour cells counted under each bar.

    Parameters
    ----------
    fractions
        Long table with ``patient_id``, ``sample_id``, ``clone``, ``n_cells`` and
        ``fraction_of_tumour`` (:func:`pinnacle.cnv.clone_fractions` plus the patient); rows of
        non-clones (normal, outlier) are ignored.
    order
        Sample order (default: by patient, then as they come).
    title
        Figure title.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    f = fractions[~fractions["clone"].isin(_NOT_CLONES)]
    samples = order or list(dict.fromkeys(f.sort_values(["patient_id", "sample_id"])["sample_id"]))
    samples = [s for s in samples if s in set(f["sample_id"])]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(samples) + 2.5), 4.2))
    if not samples:
        ax.text(0.5, 0.5, "no tumour clones called", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    # clone colours within a patient: C1, C2, ... share a colour across patients (their rank by size)
    rank = f["clone"].str.extract(r"_C(\d+)$")[0].fillna("0").astype(int)
    palette = plt.get_cmap("tab10")
    bottom = np.zeros(len(samples))
    pos = {s: i for i, s in enumerate(samples)}
    for r in sorted(rank.unique()):
        part = f[rank == r].groupby("sample_id")["fraction_of_tumour"].sum()
        y = np.array([part.get(s, 0.0) for s in samples])
        ax.bar(range(len(samples)), y, bottom=bottom, color=palette((r - 1) % 10), edgecolor="white", lw=0.5)
        bottom += y
    totals = f.groupby("sample_id")["n_cells"].sum()
    for s in samples:
        ax.text(pos[s], 1.01, str(int(totals.get(s, 0))), ha="center", va="bottom", fontsize=7)
    patient = f.drop_duplicates("sample_id").set_index("sample_id")["patient_id"]
    edges = [i for i in range(1, len(samples)) if patient[samples[i]] != patient[samples[i - 1]]]
    for e in edges:
        ax.axvline(e - 0.5, color="black", lw=0.6)
    ax.set_xticks(range(len(samples)))
    ax.set_xticklabels(samples, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("share of the sample's tumour cells")
    ax.legend(handles=[Patch(color=palette((r - 1) % 10), label=f"clone C{r} of its patient")
                       for r in sorted(rank.unique())],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or "clone fractions per sample (number above a bar: tumour cells)")
    fig.tight_layout()
    return fig


def plot_clone_dynamics(fractions: pd.DataFrame, *, timepoints: Sequence[str], response_colours: dict | None = None,
                        ncols: int = 6):
    """One panel per patient: each clone's share of the tumour cells at each timepoint (lines
    join a clone's two samples), the panel title coloured by response.

    Parameters
    ----------
    fractions
        Long table with ``patient_id``, ``sample_id``, ``clone``, ``timepoint``, ``response`` and
        ``fraction_of_tumour`` (``results/tables/clone_fractions.tsv``).
    timepoints
        Timepoints in order (x axis).
    response_colours
        Response level -> colour of the panel titles (default: tab10).
    ncols
        Panels per row.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    f = fractions[~fractions["clone"].isin(_NOT_CLONES)].copy()
    patients = sorted(f["patient_id"].unique())
    if not patients:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no tumour clones called", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    levels = list(dict.fromkeys(f["response"].astype(str)))
    colours = response_colours or {lv: plt.get_cmap("tab10")(i) for i, lv in enumerate(levels)}
    ncols = min(ncols, len(patients))
    nrows = int(np.ceil(len(patients) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 1.5, 2.3 * nrows + 0.6), squeeze=False,
                             sharey=True)
    x = {t: i for i, t in enumerate(timepoints)}
    palette = plt.get_cmap("tab10")
    for ax, pid in zip(axes.ravel(), patients):
        part = f[f["patient_id"] == pid]
        for clone, c in part.groupby("clone", sort=True):
            rank = int(str(clone).rsplit("_C", 1)[-1]) if "_C" in str(clone) else 1
            c = c.sort_values("timepoint", key=lambda t: t.map(x))
            ax.plot(c["timepoint"].map(x), c["fraction_of_tumour"], marker="o", color=palette((rank - 1) % 10),
                    label=str(clone))
        response = str(part["response"].iat[0])
        ax.set_title(f"{pid} ({response})", color=colours.get(response, "black"), fontsize=9)
        ax.set_xticks(range(len(timepoints)))
        ax.set_xticklabels(timepoints, fontsize=8)
        ax.set_xlim(-0.3, len(timepoints) - 0.7)
        ax.set_ylim(-0.03, 1.03)
    for ax in axes.ravel()[len(patients):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("share of tumour cells")
    ranks = sorted({int(str(c).rsplit("_C", 1)[-1]) for c in f["clone"] if "_C" in str(c)}) or [1]
    handles = [Line2D([], [], color=palette((r - 1) % 10), marker="o", label=f"clone C{r} of the patient")
               for r in ranks]
    handles += [Line2D([], [], color=colours[lv], lw=0, marker="s", label=f"title colour: {lv}") for lv in levels]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)
    fig.suptitle("clone shares per patient at each timepoint (scDNA)", fontsize=10)
    fig.tight_layout()
    return fig
