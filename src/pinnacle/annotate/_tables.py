"""Tables, cell-state scores and figures of the marker annotation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._constants import UNKNOWN
from ._markers import _check_level, marker_sets

log = logging.getLogger("pinnacle.annotate")

# --------------------------------------------------------------------------------------------
# tables and figures
# --------------------------------------------------------------------------------------------


def cell_type_counts(obs: pd.DataFrame, *, sample_key: str = "sample_id", label_key: str = "cell_type") -> pd.DataFrame:
    """Cells per sample (rows) and label (columns), ``unknown`` included; all-zero labels kept.

    Parameters
    ----------
    obs
        The annotated cohort's obs.
    sample_key
        obs column of the sample.
    label_key
        obs column of the label.
    """
    tab = _crosstab(obs, sample_key, label_key, where="cell_type_counts", fix="annotate the cells first.",
                    dropna=False)
    if isinstance(obs[label_key].dtype, pd.CategoricalDtype):
        tab = tab.reindex(columns=obs[label_key].cat.categories, fill_value=0)
    return tab.astype(int)


def crosstab_clusters(obs: pd.DataFrame, cluster_key: str, label_key: str = "cell_type") -> pd.DataFrame:
    """Cells per cluster (rows) and label (columns): how clusters split into labels.

    Parameters
    ----------
    obs
        The annotated cohort's obs.
    cluster_key
        obs column of the clusters.
    label_key
        obs column of the label.
    """
    return _crosstab(obs, cluster_key, label_key, where="crosstab_clusters", fix="cluster and annotate first.")


def _crosstab(obs: pd.DataFrame, row_key: str, col_key: str, *, where: str, fix: str,
              dropna: bool = True) -> pd.DataFrame:
    """Cells per value of ``row_key`` (rows) and ``col_key`` (columns), both axes named."""
    for k in (row_key, col_key):
        if k not in obs:
            raise InputError(where, f"obs column '{k}' is missing.", fix)
    tab = pd.crosstab(obs[row_key], obs[col_key], dropna=dropna)
    tab.index.name, tab.columns.name = row_key, col_key
    return tab


def score_states(adata: ad.AnnData, states: Mapping[str, dict], *, key_prefix: str = "state_",
                 min_genes: int = 3, random_state: int = 0) -> ad.AnnData:
    """Score each cell-state programme per cell (scanpy ``score_genes`` on log-normalised ``X``).

    States sit next to the labels and never change them (see :func:`remove_state_genes`); the
    genes used per state are in ``uns['cell_states']``.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised ``X``.
    states
        ``{name: {"genes": [...], ...}}`` as read by :func:`pinnacle.compare.load_signatures`
        from ``resources/states.yaml``.
    key_prefix
        Scores go to ``obs[key_prefix + name]``.
    min_genes
        A state with fewer of its genes in the data is not scored (recorded).
    random_state
        Seed of the control-gene draw.
    """
    import scanpy as sc

    have = set(map(str, adata.var_names))
    used, skipped = {}, []
    for name, rec in states.items():
        genes = [g for g in rec["genes"] if g in have]
        if len(genes) < min_genes:
            skipped.append(name)
            log.warning("state '%s': only %d of its genes in the data; not scored", name, len(genes))
            continue
        sc.tl.score_genes(adata, genes, score_name=f"{key_prefix}{name}", random_state=random_state,
                          ctrl_size=min(50, max(10, adata.n_vars // 20)))
        adata.obs[f"{key_prefix}{name}"] = adata.obs[f"{key_prefix}{name}"].astype(np.float32)
        used[name] = genes
    adata.uns["cell_states"] = {"genes": {k: list(v) for k, v in used.items()}, "not_scored": skipped,
                                "key_prefix": key_prefix}
    return adata


def plot_state_scores(obs: pd.DataFrame, *, states: Iterable[str], groupby: str = "cell_type_major",
                      split: str = "timepoint", key_prefix: str = "state_"):
    """Box plots of each state score per cell type, one box per ``split`` level (legend).

    What a reader should see: states (interferon above all) may move between timepoints in every
    type at once; that is biology of the state, and the labels do not follow it.

    Parameters
    ----------
    obs
        The cohort's obs with the ``state_*`` scores (:func:`score_states`).
    states
        State names; those without a score column are skipped.
    groupby
        obs column of the groups on the x axis (``unknown`` left out).
    split
        obs column whose levels get one box each per group.
    key_prefix
        Prefix of the score columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = [s for s in states if f"{key_prefix}{s}" in obs]
    groups = [g for g in pd.unique(obs[groupby].astype(str)) if g != UNKNOWN]
    groups = sorted(groups)
    levels = list(pd.unique(obs[split].astype(str))) if split in obs else ["all"]
    figsize = (max(6, 0.9 * len(groups) * len(levels)), 2.4 * max(1, len(states)))
    fig, axes = plt.subplots(len(states) or 1, 1, figsize=figsize, squeeze=False)
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(1, len(levels))
    for ax, state in zip(axes[:, 0], states, strict=False):
        for j, lev in enumerate(levels):
            sub = obs if lev == "all" else obs[obs[split].astype(str) == lev]
            data = [sub.loc[sub[groupby].astype(str) == g, f"{key_prefix}{state}"].to_numpy() for g in groups]
            pos = np.arange(len(groups)) + (j - (len(levels) - 1) / 2) * width
            keep = [i for i, d in enumerate(data) if d.size]
            bp = ax.boxplot([data[i] for i in keep], positions=pos[keep], widths=width * 0.9, showfliers=False,
                            patch_artist=True, medianprops={"color": "black", "linewidth": 1.2})
            for box in bp["boxes"]:
                box.set_facecolor(colours[j % len(colours)])
        # score_genes: mean log1p expression of the state's genes minus that of control genes
        ax.set_ylabel(f"{state} score\n(log1p expr. -\ncontrol genes)", fontsize=8)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    if not states:
        axes[0, 0].text(0.5, 0.5, "no state could be scored (too few of its genes in the data)",
                        ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figsize[1]))
    if states:  # one key for every panel, above them (never over a box)
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=colours[j % len(colours)], label=f"{split}: {lev}")
                            for j, lev in enumerate(levels)],
                   loc="upper center", ncol=len(levels), fontsize=8, frameon=False)
    return fig


def plot_marker_dotplot(adata: ad.AnnData, markers: Mapping, *, groupby: str = "cell_type", level: str = "subtype",
                        layer: str | None = None, max_genes: int = 6):
    """Dot plot of each set's (present, positive) markers per label; returns a matplotlib Figure.

    Works on a small copy holding only the marker genes and the ``groupby`` column, so ``adata``
    is never modified. ``max_genes`` caps the genes shown per set.

    Parameters
    ----------
    adata
        The annotated cohort, log-normalised.
    markers
        The dict of :func:`load_markers`.
    groupby
        obs column of the labels (rows).
    level
        ``"major"`` or ``"subtype"`` sets.
    layer
        Layer with the values; default ``X``.
    max_genes
        Genes shown per set.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    _check_level(level)
    if groupby not in adata.obs:
        raise InputError("plot_marker_dotplot", f"obs column '{groupby}' is missing.", "annotate first.")
    present = set(map(str, adata.var_names))
    var_names = {}
    for name, rec in marker_sets(markers, level).items():
        genes = [g for g in rec["markers"] if g in present][:max_genes]
        if genes:
            var_names[name] = genes
    genes = sorted({g for v in var_names.values() for g in v})
    M = adata.layers[layer] if layer is not None else adata.X
    labels = adata.obs[groupby]
    present_labels = set(labels.astype(str))
    order = ([str(c) for c in labels.cat.categories if str(c) in present_labels]
             if isinstance(labels.dtype, pd.CategoricalDtype) else sorted(present_labels))
    small = ad.AnnData(X=M[:, adata.var_names.get_indexer(genes)],
                       obs=pd.DataFrame({groupby: pd.Categorical(labels.astype(str), categories=order)},
                                        index=adata.obs_names),
                       var=pd.DataFrame(index=genes))
    # genes as rows, labels as columns: ~150 marker genes side by side would be too wide to read
    dp = sc.pl.dotplot(small, var_names, groupby=groupby, show=False, return_fig=True, standard_scale="var",
                       swap_axes=True)
    dp.legend(colorbar_title="mean expression\n(scaled 0-1 per gene)", size_title="% of cells\nexpressing")
    dp.make_figure()
    fig = dp.fig
    main = dp.ax_dict["mainplot_ax"]
    # the labels above the columns too (the figure is tall), rows' set names whole and level
    main.tick_params(axis="x", labeltop=True, top=True)
    for label in main.get_xticklabels():
        label.set_rotation(90)
    groups = dp.ax_dict.get("gene_group_ax")
    if groups is not None and len(groups.texts) == len(var_names):
        for text, name in zip(groups.texts, var_names):
            text.set_text(name)
            text.set_rotation(0)
            text.set_horizontalalignment("left")
        # room for the whole names: the keys move right by the longest name's width
        extra = 0.075 * max(map(len, var_names))
        width = fig.get_figwidth()
        fig.set_figwidth(width + extra)
        top, height = main.get_position().y1, fig.get_figheight()
        size_key = dp.ax_dict.get("size_legend_ax")
        below = top - (size_key.get_position().height if size_key is not None else 0) - 0.9 / height
        for key, ax in dp.ax_dict.items():
            box = ax.get_position()
            y0 = box.y0
            if key.endswith("legend_ax"):  # and up to the top of the plot, where a reader starts
                y0 = top - box.height if key.startswith("size") else below - box.height
            ax.set_position((((box.x0 * width) + (extra if key.endswith("legend_ax") else 0.0)) / (width + extra),
                             y0, box.width * width / (width + extra), box.height))
    plt.close(fig)
    return fig
