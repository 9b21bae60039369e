"""Cohort figures of the protein modality: lineage tags per cell type before and after
normalisation, and UMAPs coloured by cell type and by tag. Plotting changes no data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._evidence import match_tags

#: the lineage tags the figures show, in this order, when the panel has them (canonical names
#: of resources/protein_markers.yaml)
LINEAGE_TAGS = ("CD3", "CD4", "CD8", "CD19", "CD14", "CD16", "CD56")


def lineage_tags(var_names: Sequence[str], aliases: Mapping[str, Sequence[str]], *,
                 order: Sequence[str] = LINEAGE_TAGS) -> dict[str, str]:
    """``{canonical tag: panel column}`` of the lineage tags a panel has, in ``order``.

    Parameters
    ----------
    var_names
        The panel's tag names.
    aliases
        ``{canonical tag: [aliases]}`` (``load_protein_expectations(...)["tags"]``).
    order
        Canonical tags wanted, in figure order.
    """
    found = match_tags(var_names, aliases)
    return {t: found[t] for t in order if t in found}


def _empty_figure(message: str, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    fig.suptitle(title)
    plt.close(fig)
    return fig


def _dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def _method_label(prot: ad.AnnData) -> str:
    if "protein_norm_method" not in prot.obs:
        return "normalised"
    counts = prot.obs["protein_norm_method"].astype(str).value_counts()
    return " / ".join(f"{m.upper()} ({n:,} cells)" for m, n in counts.items())


def plot_lineage_tags(prot: ad.AnnData, tags: Mapping[str, str], *, groupby: str = "cell_type_major",
                      counts_layer: str = "counts", max_cells_per_group: int = 2000, random_state: int = 0):
    """Violins of each lineage tag per cell type: raw counts (log1p, grey) beside the normalised
    values (blue), one row per tag. A tag that separates its cell types after normalisation, with
    its negative types at ~0 (DSB), has done its job; before, the negative types sit at their
    ambient and unspecific-binding level.

    Parameters
    ----------
    prot
        The cohort's protein modality: normalised values in ``X``, counts in
        ``layers[counts_layer]``, ``obs[groupby]``.
    tags
        ``{label: column}`` (:func:`lineage_tags`).
    groupby
        obs column of the groups (cell types).
    counts_layer
        Layer of the counts.
    max_cells_per_group
        Cells drawn per group (seeded subsample), for speed.
    random_state
        Seed of the subsample.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    title = "Lineage tags per cell type, before and after normalisation"
    if prot.n_obs == 0 or not tags:
        return _empty_figure("no lineage tags (CD3, CD4, CD8, CD19, CD14, CD16, CD56) in the cohort's shared panel"
                             if prot.n_obs else "no sample of the cohort has antibody tags", title)
    groups = prot.obs[groupby].astype(str)
    cats = sorted(groups.unique())
    rng = np.random.default_rng(random_state)
    idx = {g: np.flatnonzero((groups == g).to_numpy()) for g in cats}
    idx = {g: np.sort(rng.choice(i, max_cells_per_group, replace=False)) if i.size > max_cells_per_group else i
           for g, i in idx.items()}
    cols = prot.var_names.get_indexer(list(tags.values()))
    before = np.log1p(_dense(prot.layers[counts_layer])[:, cols]) if counts_layer in prot.layers else None
    after = _dense(prot.X)[:, cols]
    n = len(tags)
    fig, axes = plt.subplots(n, 2, figsize=(max(8.0, 0.55 * len(cats) * 2 + 2), 1.9 * n + 1.2), squeeze=False,
                             sharex=True)
    colours = ("tab:grey", "tab:blue")
    for r, label in enumerate(tags):
        for c, (M, name) in enumerate(((before, "log1p counts"), (after, "normalised value"))):
            ax = axes[r, c]
            if M is None:
                ax.axis("off")
                continue
            data = [M[idx[g], r] for g in cats]
            pos = [i for i, d in enumerate(data) if d.size > 1 and np.ptp(d) > 0]
            if pos:
                parts = ax.violinplot([data[i] for i in pos], positions=pos, widths=0.8, showmedians=True,
                                      showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(colours[c])
                    body.set_alpha(0.7)
                parts["cmedians"].set_color("black")
            flat = [i for i, d in enumerate(data) if i not in pos and d.size]
            if flat:
                ax.scatter(flat, [float(np.median(data[i])) for i in flat], color=colours[c], s=10, marker="_")
            if c == 1:
                ax.axhline(0, color="black", lw=0.6, ls=":")
            ax.set_ylabel(f"{label}\n{name}", fontsize=8)
            ax.tick_params(labelsize=7)
    for c in range(2):
        axes[-1, c].set_xticks(range(len(cats)), cats, rotation=60, ha="right", fontsize=7)
    axes[0, 0].set_title("before: raw counts, log(1 + x)", fontsize=9)
    axes[0, 1].set_title(f"after: {_method_label(prot)}", fontsize=9)
    fig.legend(handles=[Patch(color=colours[0], label="raw counts (log1p)"),
                        Patch(color=colours[1], label="normalised (dotted line: 0)")],
               loc="upper right", fontsize=8, frameon=False)
    fig.suptitle(f"{title} ({groupby})", fontsize=10, x=0.4)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    plt.close(fig)
    return fig


def _scatter_categories(ax, xy: np.ndarray, values: pd.Series, title: str) -> None:
    import matplotlib.pyplot as plt

    values = values.astype(str).astype("category")
    cats = values.cat.categories
    cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
    codes = values.cat.codes.to_numpy()
    ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(i % cmap.N) for i in codes], s=2, linewidths=0, rasterized=True)
    for i, cat in enumerate(cats):
        ax.scatter([], [], color=cmap(i % cmap.N), s=12, label=str(cat))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, ncol=1 + len(cats) // 16,
              markerscale=1.2, handletextpad=0.2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _axis_names(ax, name: str) -> None:
    """``name 1`` / ``name 2`` on a UMAP panel's axes (UMAP coordinates have no unit)."""
    ax.set_xlabel(f"{name} 1", fontsize=8)
    ax.set_ylabel(f"{name} 2", fontsize=8)


def plot_tag_umap(prot: ad.AnnData, tags: Mapping[str, str], *, rna_umap: np.ndarray | None = None,
                  color: str = "cell_type_major", max_tags: int = len(LINEAGE_TAGS), random_state: int = 0):
    """The tag UMAP (``prot.obsm['X_umap']``, :func:`tag_umap`) coloured by cell type, and the
    RNA UMAP of the same cells coloured by each lineage tag's normalised value (colour bar per
    panel; clipped at the 1st and 99th percentiles).

    Parameters
    ----------
    prot
        The cohort's protein modality with ``obsm['X_umap']`` and ``obs[color]``.
    tags
        ``{label: column}`` (:func:`lineage_tags`).
    rna_umap
        The RNA UMAP of ``prot``'s cells (same order), or None (the tag UMAP is used instead).
    color
        obs column of the first panel's colours.
    max_tags
        Tags drawn, the first of ``tags`` (default: every lineage tag; 1 + 7 panels fill two rows of 4).
    random_state
        Seed of the drawing order.
    """
    import matplotlib.pyplot as plt

    title = "Cells by their antibody tags"
    if prot.n_obs == 0 or "X_umap" not in prot.obsm:
        return _empty_figure("no sample of the cohort has antibody tags", title)
    tags = dict(list(tags.items())[:max_tags])
    n = 1 + len(tags)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol + 1.5, 4.0 * nrow), squeeze=False)
    order = np.random.default_rng(random_state).permutation(prot.n_obs)
    tag_xy = np.asarray(prot.obsm["X_umap"])[order]
    _scatter_categories(axes[0, 0], tag_xy, prot.obs[color].iloc[order], f"tag UMAP: {color}")
    base, base_name = (np.asarray(rna_umap)[order], "RNA UMAP") if rna_umap is not None else (tag_xy, "tag UMAP")
    X = _dense(prot.X)
    # the colour bar's unit: DSB is in SDs above the empty droplets' level, CLR a log ratio
    methods = set(prot.obs["protein_norm_method"].astype(str)) - {"none"} if "protein_norm_method" in prot.obs \
        else set()
    unit = {frozenset({"dsb"}): "DSB (SDs above ambient)", frozenset({"clr"}): "CLR (log ratio to cell mean)"}.get(
        frozenset(methods), "normalised value (DSB or CLR)")
    axis = base_name.split()[0]
    _axis_names(axes[0, 0], "tag UMAP")
    for k, (label, col) in enumerate(tags.items(), start=1):
        ax = axes.flat[k]
        v = X[order, prot.var_names.get_loc(col)]
        lo, hi = np.nanpercentile(v, [1, 99]) if v.size else (0, 1)
        sc = ax.scatter(base[:, 0], base[:, 1], c=np.clip(v, lo, hi), cmap="viridis", s=2, linewidths=0,
                        rasterized=True)
        fig.colorbar(sc, ax=ax, shrink=0.7, label=f"{label}: {unit}")
        ax.set_title(f"{base_name}: {label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        _axis_names(ax, f"{axis} UMAP")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{title} ({_method_label(prot)})", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
