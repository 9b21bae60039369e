"""Figures of the comparisons: paired proportions, volcanoes, top-gene and effect heatmaps."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle._labels import place_labels


def _grid(n: int, *, ncols: int = 5, size: tuple[float, float] = (3.0, 2.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes


def _empty_figure(message: str):
    fig, axes = _grid(1)
    ax = axes[0]
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


RESPONSE_COLOURS = ("#3b6fb6", "#d1495b")
#: colour of the genes / proteins below the FDR in the volcanoes
HIT_COLOUR = "#d1495b"


#: where a point's name may go, in offset points from the point, first free one wins
LABEL_SPOTS = tuple((dx * side, dy, "left" if side > 0 else "right")
                    for dy in (2, -10, 10, -18, 18, -26, 26, -34, 34) for dx in (3, 12) for side in (1, -1))


def plot_composition_pairs(props: pd.DataFrame, meta: pd.DataFrame, tests: pd.DataFrame, *,
                           response_levels: Sequence[str], timepoints: Sequence[str], fdr: float = 0.1):
    """Per-patient proportions at each timepoint, a line per patient coloured by response; panel
    titles give the on-treatment FDR within each response group.

    Parameters
    ----------
    props
        Samples x cell types proportions (:func:`proportions`); one panel per type.
    meta
        Sample metadata indexed by sample with ``patient_id``, ``timepoint`` and ``response``.
    tests
        :func:`composition_test` results of the designs, joined; the ``padj`` of the
        ``on_treatment_<level>`` rows is shown (none without a ``padj`` column).
    response_levels
        Response levels, coloured in this order (the first two; others grey).
    timepoints
        Timepoints along the x axis, in this order; samples at other timepoints are not drawn.
    fdr
        q-values below it are marked ``*``.

    Returns
    -------
    The matplotlib figure.
    """
    types = list(props.columns)
    if not types:
        return _empty_figure("no cell types to show")
    ncols = 6
    fig, axes = _grid(len(types), ncols=ncols, size=(2.6, 2.5))
    colour = dict(zip(response_levels, RESPONSE_COLOURS))
    tp_x = {t: i for i, t in enumerate(timepoints)}
    m = meta.loc[meta.index.intersection(props.index)]
    for k, (ax, ct) in enumerate(zip(axes, types)):
        for _pid, rows in m.groupby("patient_id"):
            rows = rows[rows["timepoint"].isin(tp_x)].sort_values("timepoint", key=lambda s: s.map(tp_x))
            ax.plot(rows["timepoint"].map(tp_x), props.loc[rows.index, ct] * 100, "-o", ms=3, lw=1,
                    color=colour.get(rows["response"].iloc[0], "grey"), alpha=0.8)
        notes = []
        if "padj" in tests:
            for lvl in response_levels:
                hit = tests[(tests["design"] == f"on_treatment_{lvl}") & (tests["cell_type"] == ct)]
                if len(hit) and np.isfinite(hit["padj"].iloc[0]):
                    q = hit["padj"].iloc[0]
                    notes.append(f"{lvl}: q={q:.2g}{'*' if q < fdr else ''}")
        ax.set_title("\n".join([ct, *notes]), fontsize=7)
        ax.set_xticks(range(len(timepoints)), timepoints, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.3, len(timepoints) - 0.7)
        # each panel has its own scale: the first panel of every row names it
        if k % ncols == 0:
            ax.set_ylabel("% of the sample's cells", fontsize=7)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ms=3, label=f"{level} (a line per patient)")
               for level, c in colour.items()]
    free = axes[len(types):]
    if free:  # the key in the first empty grid cell, never over a panel
        free[0].legend(handles=handles, loc="center", fontsize=8, frameon=False, title="response", title_fontsize=8)
    else:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Cell-type proportions per patient (q: FDR of the paired test within each response group; "
                 f"* q < {fdr:g})", fontsize=9)
    fig.tight_layout(rect=(0, 0 if free else 0.3 / fig.get_figheight(), 1, 1))
    return fig


def plot_volcanoes(de: pd.DataFrame, *, fdr: float = 0.1, title: str = "",
                   xlabel: str = "log2 fold change (shrunken)"):
    """One volcano per tested cell type: shrunken log2 fold change vs -log10 p, FDR hits in red.

    Parameters
    ----------
    de
        DE results (:func:`pseudobulk_de`): ``cell_type``, ``gene``, ``log2fc``, ``log2fc_shrunk`` (NaN:
        ``log2fc`` is drawn), ``pvalue``, ``padj``.
    fdr
        Genes with ``padj`` below it are red; the five of them with the smallest p are named.
    title
        Title of the figure.
    xlabel
        Label of the x axes (what the fold change is).

    Returns
    -------
    The matplotlib figure.
    """
    if de.empty:
        return _empty_figure(f"{title}: no cell type could be tested (see the status table)")
    from matplotlib.lines import Line2D

    types = sorted(de["cell_type"].unique())
    fig, axes = _grid(len(types), ncols=5)
    labels = {}
    for ax, ct in zip(axes, types):
        sub = de[de["cell_type"] == ct]
        lfc = sub["log2fc_shrunk"].where(sub["log2fc_shrunk"].notna(), sub["log2fc"])
        hit = (sub["padj"] < fdr).to_numpy()
        y = -np.log10(sub["pvalue"].clip(lower=1e-300))
        ax.scatter(lfc[~hit], y[~hit], s=3, c="grey", alpha=0.5, rasterized=True)
        ax.scatter(lfc[hit], y[hit], s=5, c=HIT_COLOUR)
        ax.margins(x=0.08, y=0.12)  # room for the names of the outermost genes
        ax.axvline(0, color="0.8", lw=0.6, zorder=0)
        ax.set_title(f"{ct} ({hit.sum()} at FDR {fdr:g})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel("-log10 p", fontsize=7)
        labels[ax] = [(r["gene"], lfc[i], -np.log10(max(r["pvalue"], 1e-300)))
                      for i, r in sub[hit].nsmallest(5, "pvalue").iterrows()]
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=HIT_COLOUR, label=f"FDR < {fdr:g} (top 5 named)"),
               Line2D([], [], ls="", marker="o", ms=4, color="grey", alpha=0.5, label="not significant")]
    fig.legend(handles=handles, loc="upper right", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.15 / fig.get_figheight()))
    for ax, named in labels.items():
        # names inside the panel, beside their point, never over another name
        texts = [ax.annotate(gene, (x, y), xytext=(3, 2), textcoords="offset points", va="bottom", fontsize=6,
                             arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.4", "shrinkA": 0, "shrinkB": 2})
                 for gene, x, y in named]
        place_labels(ax, texts, LABEL_SPOTS, pad=(1.04, 1.15))
    return fig


def plot_protein_volcanoes(tests: pd.DataFrame, *, fdr: float = 0.1):
    """One volcano per design of :func:`protein_test` results (fold changes are not shrunk).

    Parameters
    ----------
    tests
        :func:`protein_test` results of one or more designs, joined; rows not ``"tested"`` are left out.
    fdr
        As in :func:`plot_volcanoes`.

    Returns
    -------
    The matplotlib figure.
    """
    tested = tests[tests["status"].eq("tested")] if "status" in tests else tests.iloc[0:0]
    return plot_volcanoes(tested.assign(cell_type=tested.get("design"), log2fc_shrunk=tested.get("log2fc")),
                          fdr=fdr, title="Bulk proteomics by design",
                          xlabel="log2 fold change (median-centred log2 intensity)")


def plot_top_genes(pb: ad.AnnData, de: pd.DataFrame, meta: pd.DataFrame, *, n_top: int = 8, title: str = ""):
    """Per tested cell type, a heatmap of the top genes (by p) across that type's pseudobulks:
    standardised log2-CPM, samples ordered by timepoint then response, the groups separated by
    black lines and labelled with their size (a hundred sample names would not be legible).

    Parameters
    ----------
    pb
        Pseudobulks (:func:`concat_pseudobulks`): counts, ``obs`` ``sample_id`` and ``cell_type``.
    de
        DE results of one design (:func:`pseudobulk_de`): ``cell_type``, ``gene``, ``pvalue``.
    meta
        Sample metadata indexed by sample with ``timepoint`` and ``response``; pseudobulks of other
        samples are left out.
    n_top
        Genes per cell type, smallest p first.
    title
        Start of the figure's title.

    Returns
    -------
    The matplotlib figure.
    """
    if de.empty:
        return _empty_figure(f"{title}: no cell type could be tested")
    types = sorted(de["cell_type"].unique())
    fig, axes = _grid(len(types), ncols=4, size=(3.6, 2.8))
    for ax, ct in zip(axes, types):
        top = de[de["cell_type"] == ct].nsmallest(n_top, "pvalue")["gene"].tolist()
        rows = np.flatnonzero((pb.obs["cell_type"] == ct).to_numpy()
                              & pb.obs["sample_id"].isin(meta.index).to_numpy())
        sids = pb.obs["sample_id"].to_numpy()[rows]
        order = np.lexsort((meta.loc[sids, "response"].to_numpy(), meta.loc[sids, "timepoint"].to_numpy()))
        rows, sids = rows[order], sids[order]
        X = pb.X[rows]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        cpm = np.log2(X / np.maximum(X.sum(axis=1, keepdims=True), 1) * 1e6 + 1)[:, pb.var_names.get_indexer(top)]
        z = (cpm - cpm.mean(0)) / np.where(cpm.std(0) > 0, cpm.std(0), 1)
        im = ax.imshow(z.T, aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2, interpolation="nearest")
        ax.set_yticks(range(len(top)), top, fontsize=6)
        group = pd.Series([f"{meta.loc[s, 'timepoint']}\n{meta.loc[s, 'response']}" for s in sids])
        starts = np.flatnonzero(np.r_[True, group.to_numpy()[1:] != group.to_numpy()[:-1]])
        ends = np.r_[starts[1:], len(group)]
        for x in starts[1:]:
            ax.axvline(x - 0.5, color="black", lw=1)
        ax.set_xticks((starts + ends - 1) / 2, [f"{group[a]}\n(n={b - a})" for a, b in zip(starts, ends)], fontsize=6)
        ax.set_title(ct, fontsize=8)
    fig.suptitle(f"{title}: top genes, standardised log2-CPM of pseudobulks", fontsize=9)
    w = fig.get_figwidth()
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / w, 1))
    cax = fig.add_axes((1 - 0.75 / w, 0.25, 0.12 / w, 0.5))
    fig.colorbar(im, cax=cax, extend="both").set_label("z-score of log2-CPM\n(per gene; ±2 = end of scale)",
                                                       fontsize=7)
    cax.tick_params(labelsize=7)
    return fig


#: colour-bar labels of the values :func:`plot_effect_heatmap` is usually given
VALUE_LABELS = {"t": "t statistic", "score": "enrichment score"}


def plot_effect_heatmap(table: pd.DataFrame, *, value: str, row: str = "cell_type", col: str = "signature",
                        fdr: float = 0.1, title: str = "", value_label: str | None = None):
    """A heatmap per design of ``value`` (rows x cols), with * where padj < fdr; one colour scale,
    symmetric around 0, for every design (colour bar), grey where a pair has no value.

    Parameters
    ----------
    table
        A result table with ``design``, ``padj`` and the ``value``, ``row`` and ``col`` columns (e.g.
        :func:`signature_tests`); rows whose ``status`` is not ``"tested"``, or without a value, are
        left out.
    value
        Column shown as colour, on a scale symmetric around 0 (the 98th percentile of its absolute
        values across designs; larger values take the end colour).
    row, col
        Columns whose values are the heatmap's rows and columns.
    fdr
        Cells with ``padj`` below it are marked ``*``.
    title
        The figure's title.
    value_label
        Label of the colour bar (default: :data:`VALUE_LABELS` of ``value``, or ``value``).

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    tested = table[table["status"].eq("tested")] if "status" in table else table
    tested = tested.dropna(subset=[value]) if value in tested else tested.iloc[0:0]
    if tested.empty:
        return _empty_figure(f"{title}: nothing could be tested")
    designs = list(dict.fromkeys(tested["design"]))
    fig, axes = _grid(len(designs), ncols=3, size=(4.2, 0.25 * tested[row].nunique() + 1.8))
    values = np.abs(tested[value].to_numpy(dtype=float))
    lim = float(np.nanpercentile(values, 98)) if np.isfinite(values).any() else 1.0
    lim = lim if lim > 0 else 1.0
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    im = None
    for ax, d in zip(axes, designs):
        sub = tested[tested["design"] == d]
        M = sub.pivot_table(index=row, columns=col, values=value, aggfunc="first", dropna=False)
        Q = sub.pivot_table(index=row, columns=col, values="padj", aggfunc="first", dropna=False).reindex_like(M)
        V = M.to_numpy(dtype=float)
        im = ax.imshow(np.ma.masked_invalid(V), aspect="auto", cmap=cmap, vmin=-lim, vmax=lim,
                       interpolation="nearest")
        for (i, j), q in np.ndenumerate(Q.to_numpy(dtype=float)):
            if np.isfinite(q) and q < fdr:  # white on the dark end of the scale, black elsewhere
                ax.text(j, i, "*", ha="center", va="center", fontsize=9, fontweight="bold",
                        color="white" if abs(V[i, j]) > 0.6 * lim else "black")
        ax.set_xticks(range(M.shape[1]), M.columns, rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(M.shape[0]), M.index, fontsize=6)
        ax.set_title(d, fontsize=8)
    fig.suptitle(title, fontsize=9)
    w, h = fig.get_figwidth(), fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / w, 1 - 0.2 / h))
    cax = fig.add_axes((1 - 0.85 / w, 0.3, 0.12 / w, 0.4))
    label = value_label or VALUE_LABELS.get(value, value)
    fig.colorbar(im, cax=cax, extend="both").set_label(
        f"{label} (red: up, blue: down)\n* FDR < {fdr:g}; grey: not tested", fontsize=7)
    cax.tick_params(labelsize=7)
    return fig
