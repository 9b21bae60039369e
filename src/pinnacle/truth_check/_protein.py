"""Truth checks of the CITE-seq normalisation (DSB): isotype controls centred, the planted
per-cell non-specific binding removed, lineage tags separating the planted types.

Only the samples normalised with DSB are judged (``uns['protein_norm']['method']``); the
simulator writes a raw matrix with empty droplets for every sample, so on a simulated cohort
all of them should be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._rna import auroc, row

#: the lineage tags whose separation of the planted types is checked
DSB_LINEAGE_TAGS = ("CD3", "CD19", "CD14")


def _panel(panel: Mapping[str, Sequence[str]] | None) -> dict[str, set[str]]:
    """Tag -> planted cell types that carry it (the simulator's ADT panel by default)."""
    if panel is None:
        from pinnacle.simulate import ADT_PANEL

        panel = {t: info["positive"] for t, info in ADT_PANEL.items()}
    return {str(t): set(map(str, types)) for t, types in panel.items()}


def _tag_name(column: str, panel: Mapping[str, set[str]]) -> str | None:
    """The panel tag a matrix column stands for (the simulator writes ``{tag}_TotalSeqB``)."""
    name = str(column)
    if name in panel:
        return name
    base = name.rsplit("_TotalSeq", 1)[0]
    return base if base in panel else None


def _dsb_samples(samples: Mapping[str, ad.AnnData], truth_cells: pd.DataFrame,
                 panel: Mapping[str, set[str]]) -> list[tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Per DSB sample: (sample, DSB values, log1p counts, truth) of its planted singlets, columns
    renamed to panel tags."""
    t = truth_cells.set_index("cell_id") if "cell_id" in truth_cells else truth_cells
    out = []
    for sample, a in samples.items():
        if a.uns.get("protein_norm", {}).get("method") != "dsb":
            continue
        cols = {c: _tag_name(c, panel) for c in a.var_names}
        keep = [c for c, tag in cols.items() if tag is not None]
        cells = a.obs_names.intersection(t.index)
        truth = t.loc[cells]
        single = (truth["cell_type"].astype(str) != "doublet").to_numpy()
        cells, truth = cells[single], truth[single]
        sub = a[cells, keep]
        X = sub.X.toarray() if sp.issparse(sub.X) else np.asarray(sub.X)
        C = sub.layers["counts"] if "counts" in sub.layers else sub.X
        C = C.toarray() if sp.issparse(C) else np.asarray(C)
        names = [cols[c] for c in keep]
        out.append((str(sample), pd.DataFrame(X, index=cells, columns=names),
                    pd.DataFrame(np.log1p(C), index=cells, columns=names), truth))
    return out


def _no_dsb_row() -> list[dict]:
    return [row("dsb_samples", 0.0, 1.0, detail="no sample was normalised with DSB (protein.normalisation: clr, "
                "or no rna_raw with empty droplets), so the DSB rows cannot be checked")]


def check_dsb_isotypes(samples: Mapping[str, ad.AnnData], truth_cells: pd.DataFrame, *,
                       panel: Mapping[str, Sequence[str]] | None = None, max_centre: float = 0.5) -> list[dict]:
    """After DSB, isotype controls in cells centre near 0: the largest absolute median of an
    isotype over a sample's planted singlets, across DSB samples and isotypes.

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}`` (``results/protein/{sample}/prot_norm.h5ad``).
    truth_cells
        ``truth/cells.tsv.gz`` of the simulator (``cell_id``, ``cell_type``).
    panel
        Tag -> planted types carrying it; None: the simulator's panel. Isotypes are the tags no
        type carries.
    max_centre
        The bar on the absolute median.
    """
    pan = _panel(panel)
    parts = _dsb_samples(samples, truth_cells, pan)
    if not parts:
        return _no_dsb_row()
    medians = {}
    for sample, X, _, _ in parts:
        for tag in X.columns:
            if not pan[tag]:  # the panel's isotype controls: no planted type carries them
                medians[(sample, tag)] = float(X[tag].median())
    if not medians:
        return [row("dsb_isotype_centre", float("nan"), max_centre, direction="<=",
                    detail="no isotype control among the DSB-normalised tags")]
    vals = np.array(list(medians.values()))
    worst = max(medians, key=lambda k: abs(medians[k]))
    return [row("dsb_isotype_centre", float(np.abs(vals).max()), max_centre, direction="<=",
                detail=f"largest |median| of {len(medians)} isotype x sample medians (range {vals.min():.2f} to "
                       f"{vals.max():.2f}; worst {worst[1]} in {worst[0]})")]


def check_dsb_nonspecific_binding(samples: Mapping[str, ad.AnnData], truth_cells: pd.DataFrame, *,
                                  panel: Mapping[str, Sequence[str]] | None = None,
                                  max_correlation: float = 0.2) -> list[dict]:
    """The planted per-cell non-specific binding (``truth/cells.tsv.gz`` column ``adt_nsb``) is
    removed: per DSB sample, the Pearson correlation over planted singlets of log(adt_nsb) with
    the cell's mean DSB value over its negative tags (the tags its planted type does not carry,
    isotypes included); the row's value is the median over samples, the detail gives the
    worst sample and the same correlation on log1p counts (before normalisation).

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}``.
    truth_cells
        ``truth/cells.tsv.gz`` (``cell_id``, ``cell_type``, ``adt_nsb``).
    panel
        Tag -> planted types carrying it; None: the simulator's panel.
    max_correlation
        The bar on the median correlation.
    """
    if "adt_nsb" not in truth_cells:
        return []
    pan = _panel(panel)
    parts = _dsb_samples(samples, truth_cells, pan)
    if not parts:
        return _no_dsb_row()
    after, before = {}, {}
    for sample, X, logc, truth in parts:
        types = truth["cell_type"].astype(str).to_numpy()
        neg = np.array([[ct not in pan[tag] for tag in X.columns] for ct in types])
        ok = neg.any(axis=1)
        nsb = np.log(truth["adt_nsb"].to_numpy(dtype=float))[ok]
        if ok.sum() < 10 or np.ptp(nsb) == 0:
            continue
        for store, M in ((after, X.to_numpy()), (before, logc.to_numpy())):
            m = np.nanmean(np.where(neg, M, np.nan)[ok], axis=1)
            store[sample] = float(np.corrcoef(nsb, m)[0, 1])
    if not after:
        return [row("dsb_nonspecific_binding_correlation", float("nan"), max_correlation, direction="<=",
                    detail="no DSB sample with >= 10 planted singlets")]
    worst = max(after, key=after.get)
    return [row("dsb_nonspecific_binding_correlation", float(np.median(list(after.values()))), max_correlation,
                direction="<=",
                detail=f"median over {len(after)} samples of corr(log planted binding, mean DSB of negative tags); "
                       f"highest {after[worst]:.2f} ({worst}); before normalisation (log1p counts) median "
                       f"{np.median(list(before.values())):.2f}")]


def check_dsb_lineage(samples: Mapping[str, ad.AnnData], truth_cells: pd.DataFrame, *,
                      tags: Sequence[str] = DSB_LINEAGE_TAGS, panel: Mapping[str, Sequence[str]] | None = None,
                      min_auroc: float = 0.95, min_cells: int = 10) -> list[dict]:
    """Lineage tags separate the planted types after DSB: one row per tag, the AUROC of its DSB
    value for planted singlets of the types that carry it against those that do not, pooled over
    DSB samples. The value is the lower of two AUROCs: against all other singlets, and within the
    carriers' major types (T vs NK cells for CD3, CD14+ vs CD14- myeloid cells for CD14) when those
    hold at least ``min_cells`` non-carriers.

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}``.
    truth_cells
        ``truth/cells.tsv.gz`` (``cell_id``, ``cell_type``, ``cell_type_major``).
    tags
        Panel tags checked.
    panel
        Tag -> planted types carrying it; None: the simulator's panel.
    min_auroc
        The bar.
    min_cells
        Fewest carriers and non-carriers for an AUROC.
    """
    pan = _panel(panel)
    parts = _dsb_samples(samples, truth_cells, pan)
    if not parts:
        return _no_dsb_row()
    X = pd.concat([p[1] for p in parts])
    truth = pd.concat([p[3] for p in parts])
    types = truth["cell_type"].astype(str)
    major = truth["cell_type_major"].astype(str)
    rows = []
    for tag in tags:
        metric = f"dsb_lineage_auroc_{tag}"
        if tag not in X:
            rows.append(row(metric, float("nan"), min_auroc, detail=f"{tag} is not among the DSB-normalised tags"))
            continue
        pos = types.isin(pan[tag]).to_numpy()
        if pos.sum() < min_cells or (~pos).sum() < min_cells:
            rows.append(row(metric, float("nan"), min_auroc, detail=f"{int(pos.sum())} carriers: too few to judge"))
            continue
        v = X[tag].to_numpy(dtype=float)
        overall = auroc(v, pos)
        within_major = major.isin({m for m, t in zip(major, types) if t in pan[tag]}).to_numpy()
        n_neg_within = int((within_major & ~pos).sum())
        within = auroc(v[within_major], pos[within_major]) if n_neg_within >= min_cells else float("nan")
        value = overall if np.isnan(within) else min(overall, within)
        within_text = (f"vs {n_neg_within} non-carriers of the same major types: {within:.3f}"
                       if n_neg_within >= min_cells else "no major type with enough non-carriers")
        detail = f"{int(pos.sum())} carriers vs {int((~pos).sum())} other singlets: {overall:.3f}; {within_text}"
        rows.append(row(metric, value, min_auroc, detail=detail))
    return rows


def check_dsb(samples: Mapping[str, ad.AnnData], truth_cells: pd.DataFrame, *,
              panel: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """Every DSB row: isotype centre, non-specific binding removed (when the truth records it),
    lineage-tag AUROCs.

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}`` (``results/protein/{sample}/prot_norm.h5ad``).
    truth_cells
        ``truth/cells.tsv.gz`` of the simulator.
    panel
        Tag -> planted types carrying it; None: the simulator's panel.
    """
    if not any(a.uns.get("protein_norm", {}).get("method") == "dsb" for a in samples.values()):
        return _no_dsb_row()
    return (check_dsb_isotypes(samples, truth_cells, panel=panel)
            + check_dsb_nonspecific_binding(samples, truth_cells, panel=panel)
            + check_dsb_lineage(samples, truth_cells, panel=panel))
