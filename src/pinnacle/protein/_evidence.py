"""CITE-seq antibody tags: CLR, per-tag positive/negative calls, and protein evidence for the
RNA cell-type labels."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.curated import load_yaml as _load_yaml
from pinnacle.curated import resource_entry as _resource_entry
from pinnacle.errors import InputError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# protein evidence for RNA labels (CITE-seq antibody tags)
# --------------------------------------------------------------------------------------------
#
# Why: a cell's RNA label is a claim about its surface too. CD3, CD4, CD8, CD19, CD14, CD16 and
# CD56 protein are measured by the antibody tags, independently of the transcripts, so a label
# that the tags contradict (a "CD8 T cell" with CD4 and no CD8 protein, a "B cell" with CD3) is
# doubtful. The expected pattern per label is curated with sources in
# ``resources/protein_markers.yaml``.
# Library vs hand-written: scikit-learn's GaussianMixture finds each tag's two modes and scipy's
# gaussian_kde the valley between them. The CLR (muon is not a dependency; scanpy has none), the
# tag-name matching, the negative-tail band and the expectation check are hand-written: a few
# lines each, and no library does the label check.

__all__ = ["PROTEIN_EVIDENCE", "load_protein_expectations", "match_tags", "isotype_controls", "clr",
            "call_tags", "protein_evidence", "protein_evidence_by_label", "plot_protein_evidence"]

#: values of the per-cell ``protein_evidence`` column
PROTEIN_EVIDENCE = ("confirms", "contradicts", "no_tags", "no_expectation")

_PROT_TOP_KEYS = {"tags", "cell_types"}
_PROT_TAG_KEYS = {"aliases", "source"}
_PROT_TYPE_KEYS = {"expect", "source", "subtypes"}
_PROT_SUB_KEYS = {"expect", "source"}
_PROT_CALLS = {"pos": True, "neg": False}


def _prot_keys(entry, where: str, allowed: set[str]) -> Mapping:
    _resource_entry(entry, where, allowed, resource="resources/protein_markers.yaml")
    return entry


def _prot_expect(entry, where: str, tags: Mapping) -> dict[str, bool]:
    raw = entry.get("expect") or {}
    if not isinstance(raw, Mapping):
        raise InputError(where, f"'expect' must map tag names to pos/neg, got {raw!r}.", "write 'expect: {CD3: pos}'.")
    out = {}
    for tag, call in raw.items():
        if str(tag) not in tags:
            raise InputError(where, f"tag '{tag}' is not defined under 'tags'.",
                             f"use one of {', '.join(tags)} or add the tag with its aliases.")
        if str(call) not in _PROT_CALLS:
            raise InputError(where, f"tag '{tag}': expected 'pos' or 'neg', got {call!r}.", "write pos or neg.")
        out[str(tag)] = _PROT_CALLS[str(call)]
    return out


def load_protein_expectations(path) -> dict:
    """Read and validate ``resources/protein_markers.yaml``: which tags each label should carry.

    Returns ``{"tags": {tag: [aliases]}, "labels": {label: {"expect": {tag: True|False},
    "parent": major type, "source"}}}``, with both major types and subtypes as labels; a
    subtype's ``expect`` holds its major type's entries overridden by its own, so the lineage
    facts are written once. Raises :class:`InputError` naming the file and entry for unknown or
    repeated keys, missing sources, undefined tags and calls other than ``pos``/``neg``.

    Parameters
    ----------
    path
        The YAML file.
    """
    path = Path(path)
    raw = _load_yaml(path, what="protein expectation file",
                     missing_fix="use resources/protein_markers.yaml or a file in its format.",
                     duplicate_fix="give each tag, label and key once.")
    if not isinstance(raw, Mapping) or set(raw) != _PROT_TOP_KEYS:
        raise InputError(str(path), "the file must have exactly the top-level keys 'tags' and 'cell_types'.",
                         "see resources/protein_markers.yaml.")
    tags = {}
    for tag, entry in raw["tags"].items():
        entry = _prot_keys(entry, f"{path}: tags > '{tag}'", _PROT_TAG_KEYS)
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InputError(f"{path}: tags > '{tag}'", "'aliases' must be a list of names.",
                             "write 'aliases: [CD3, CD3E]'.")
        tags[str(tag)] = [str(tag)] + [a for a in aliases if a != str(tag)]
    labels: dict[str, dict] = {}
    for major, entry in raw["cell_types"].items():
        where = f"{path}: cell_types > '{major}'"
        entry = _prot_keys(entry, where, _PROT_TYPE_KEYS)
        base = _prot_expect(entry, where, tags)
        labels[str(major)] = {"expect": base, "parent": str(major), "source": entry["source"].strip()}
        for sub, sentry in (entry.get("subtypes") or {}).items():
            swhere = f"{where} > subtypes > '{sub}'"
            sentry = _prot_keys(sentry, swhere, _PROT_SUB_KEYS)
            if str(sub) in labels:
                raise InputError(swhere, f"label '{sub}' is given twice.", "give each label once.")
            labels[str(sub)] = {"expect": {**base, **_prot_expect(sentry, swhere, tags)}, "parent": str(major),
                                "source": sentry["source"].strip()}
    return {"tags": tags, "labels": labels}


_TAG_PREFIX = ("ADT_", "ADT-")
_TAG_SUFFIX = ("_PROT", "_TOTALSEQA", "_TOTALSEQB", "_TOTALSEQC", "_ADT")


def _tag_key(name: str) -> str:
    """Canonical spelling of an antibody-tag name: upper case, vendor prefix/suffix removed,
    separators unified to '_', a trailing clone number ('CD4-1') dropped. Separators are kept,
    so 'CD4-1' never becomes 'CD41' (a different antigen)."""
    s = re.sub(r"[\s.\-]+", "_", str(name).strip().upper())
    for p in _TAG_PREFIX:
        if s.startswith(p.replace("-", "_")):
            s = s[len(p):]
    for suf in _TAG_SUFFIX:
        if s.endswith(suf):
            s = s[: -len(suf)]
    s = s.strip("_")
    return re.sub(r"_\d+$", "", s)


def match_tags(var_names: Iterable[str], tags: Mapping[str, list[str]]) -> dict[str, str]:
    """``{canonical tag: column of the data}`` for the tags of ``tags`` (canonical -> aliases)
    that the panel has. Several columns for one tag (two clones): the first is used.

    Parameters
    ----------
    var_names
        The panel's tag names.
    tags
        ``{canonical tag: [aliases]}`` (``load_protein_expectations(...)["tags"]``).
    """
    lookup = {_tag_key(a): canon for canon, aliases in tags.items() for a in aliases}
    found: dict[str, str] = {}
    for name in map(str, var_names):
        canon = lookup.get(_tag_key(name))
        if canon is None:
            continue
        if canon in found:
            log.info("antibody tag %s: column %s ignored (already using %s)", canon, name, found[canon])
            continue
        found[canon] = name
    return found


def isotype_controls(var_names: Iterable[str]) -> list[str]:
    """Tags that are isotype controls: names containing 'isotype' or 'control' (IgG1_control,
    MouseIgG1kappaisotype_PROT). IgA/IgD/IgM are real targets and are not matched.

    Parameters
    ----------
    var_names
        The panel's tag names.
    """
    return [str(v) for v in var_names if re.search(r"isotype|control", str(v), flags=re.IGNORECASE)]


def clr(prot: ad.AnnData, *, layer: str | None = None, key_added: str = "clr") -> ad.AnnData:
    """Per-cell centred log-ratio of antibody counts into ``layers[key_added]`` (dense float32).

    Why per cell: a cell's tags share its capture efficiency and droplet background, so each
    cell is centred on its own geometric mean, ``log1p(x / exp(mean(log1p(x))))`` over all its
    tags. This is Seurat's ``NormalizeData(method="CLR", margin=2)`` and muon's
    ``prot.pp.clr(axis=1)``; muon's default ``axis=0`` and Seurat's default ``margin=1`` centre
    each tag across cells instead, which leaves the per-cell capture differences in. Hand-written
    (muon is not a dependency; the formula is one line). Counts from ``layers[layer]`` or ``X``.

    Parameters
    ----------
    prot
        Antibody counts (cells x tags); the layer is added in place.
    layer
        Layer with the counts; default ``X``.
    key_added
        Layer to write.
    """
    X = prot.layers[layer] if layer is not None else prot.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    if X.size and X.min() < 0:
        raise InputError("clr", "antibody counts are negative.", "give raw tag counts (layers['counts'] or X).")
    g = np.exp(np.log1p(X).mean(axis=1, keepdims=True)) if X.shape[1] else np.ones((X.shape[0], 1))
    prot.layers[key_added] = np.log1p(X / g).astype(np.float32)
    return prot


def _two_modes(x: np.ndarray, random_state: int, max_kde_cells: int = 5000):
    """The two modes of one tag: a 2-component Gaussian mixture gives their means, sds and
    weights (sorted low to high); the threshold is the density minimum (Gaussian KDE) between
    the two means. The valley, not the mixture's crossing point: a negative mode with a right
    tail (monocytes bind antibodies unspecifically) makes the wide upper component start too
    low, calling the tail positive."""
    from scipy.stats import gaussian_kde
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=2, random_state=random_state, n_init=2).fit(x.reshape(-1, 1))
    order = np.argsort(gm.means_.ravel())
    means = gm.means_.ravel()[order]
    sds = np.sqrt(gm.covariances_.reshape(-1)[order])
    weights = gm.weights_[order]
    rng = np.random.default_rng(random_state)
    pts = x if x.size <= max_kde_cells else rng.choice(x, max_kde_cells, replace=False)
    grid = np.linspace(means[0], means[1], 400)
    thr = float(grid[np.argmin(gaussian_kde(pts)(grid))])
    return means, sds, weights, thr


_CALL_COLUMNS = ["tag", "threshold", "positive_above", "method", "separation", "positive_fraction",
                 "undetermined_fraction"]


def _negative_tail(neg: np.ndarray, n_sd: float) -> float:
    """Upper edge of the negative mode: its median plus ``n_sd`` sds, the sd taken from the
    mode's left half (mirrored), which the positive cells cannot inflate."""
    if neg.size < 3:
        return -np.inf
    m = float(np.median(neg))
    left = neg[neg <= m] - m
    return m + n_sd * float(np.sqrt(np.mean(left ** 2))) if left.size else m


def call_tags(prot: ad.AnnData, tags: Iterable[str], *, layer: str = "clr", min_separation: float = 2.0,
              min_fraction: float = 0.005, min_cells: int = 5, negative_sd: float = 3.0,
              isotype_quantile: float = 0.99, random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call each tag positive/negative per cell, with a threshold learned per tag in this sample.

    Why a mixture: a lineage tag is bimodal (negative background vs positive cells), and its
    background level differs between antibodies, samples and runs, so a fixed cut-off or the
    isotype controls' level (another antibody's background) would misplace it. A 2-component
    Gaussian mixture on the tag's CLR values (:func:`clr`) finds both modes; the threshold is
    the density minimum between them (see :func:`_two_modes`). The split is trusted when the modes
    are separated (Ashman's D >= ``min_separation``; D > 2 is the usual bimodality criterion) and
    the smaller mode holds >= ``min_fraction`` of the cells and >= ``min_cells`` cells. Cells at
    or below the valley are negative; cells above it are positive only beyond the negative mode's
    tail (median + ``negative_sd`` sds, :func:`_negative_tail`), and undetermined in between: a
    weak antibody whose background overlaps its positives (a CD14 with a few dozen counts) then
    leaves the overlap uncalled instead of calling T cells CD14+.
    Otherwise the tag is unimodal here: it is called negative in every cell when its median is
    at or below the isotype controls' ``isotype_quantile`` (the background of non-binding
    antibodies), and left undetermined (NaN) otherwise, or without isotype controls.

    Parameters
    ----------
    prot
        One sample's antibody counts (cells x tags); the CLR is computed into ``layers[layer]``
        when absent.
    tags
        Columns (var_names) to call.
    layer
        Layer holding the CLR values.
    min_separation
        Smallest Ashman's D of a trusted mixture split.
    min_fraction
        Smallest share of cells in the smaller mode.
    min_cells
        Fewest cells in the smaller mode.
    negative_sd
        Sds above the negative mode's median where positives start.
    isotype_quantile
        Quantile of the isotype controls' CLR values taken as background.
    random_state
        Seed for the mixture.

    Returns
    -------
    ``(calls, thresholds)``: calls (cells x tags: 1.0 positive, 0.0 negative, NaN
    undetermined) and one row per tag (``threshold`` (the valley), ``positive_above``,
    ``method`` mixture / isotype / undetermined, ``separation``, ``positive_fraction`` and
    ``undetermined_fraction``).
    """
    if layer not in prot.layers:
        clr(prot, key_added=layer)
    tags = [str(t) for t in tags]
    V = prot.layers[layer]
    iso = isotype_controls(prot.var_names)
    iso_bg = (float(np.quantile(V[:, prot.var_names.get_indexer(iso)], isotype_quantile))
              if iso and prot.n_obs else None)
    calls = pd.DataFrame(np.nan, index=prot.obs_names, columns=tags, dtype=np.float32)
    rows = []
    for tag in tags:
        x = np.asarray(V[:, prot.var_names.get_loc(tag)], dtype=np.float64)
        rec = {"tag": tag, "threshold": np.nan, "positive_above": np.nan, "method": "undetermined",
               "separation": np.nan}
        if x.size >= 2 * min_cells and np.ptp(x) > 0:
            means, sds, weights, thr = _two_modes(x, random_state)
            d = float(np.sqrt(2) * (means[1] - means[0]) / np.sqrt(max(sds[0] ** 2 + sds[1] ** 2, 1e-12)))
            rec["separation"] = d
            small = float(weights.min())
            if d >= min_separation and small >= min_fraction and small * x.size >= min_cells:
                upper = _negative_tail(x[x <= thr], negative_sd)
                rec.update(threshold=thr, positive_above=max(thr, upper), method="mixture")
                calls[tag] = np.where(x > rec["positive_above"], 1.0, np.where(x <= thr, 0.0, np.nan))
        if rec["method"] == "undetermined" and iso_bg is not None and x.size and np.median(x) <= iso_bg:
            rec.update(threshold=iso_bg, positive_above=np.inf, method="isotype")
            calls[tag] = np.float32(0.0)
        rec["positive_fraction"] = float(calls[tag].mean()) if calls[tag].notna().any() else np.nan
        rec["undetermined_fraction"] = float(calls[tag].isna().mean()) if len(calls) else np.nan
        rows.append(rec)
    return calls, pd.DataFrame(rows, columns=_CALL_COLUMNS)


def _protein_label(labels: pd.DataFrame, known: Mapping, label_key: str, major_key: str | None) -> np.ndarray:
    """The label whose expectation applies: the cell's label, else (subtype unknown or not in
    the table) its major type."""
    lab = labels[label_key].astype(str).to_numpy(dtype=object)
    if major_key and major_key in labels:
        major = labels[major_key].astype(str).to_numpy(dtype=object)
        use_major = ~np.isin(lab, list(known)) & np.isin(major, list(known))
        lab = np.where(use_major, major, lab)
    return lab


def protein_evidence(prot: ad.AnnData, labels: pd.DataFrame, expectations: Mapping, *,
                     label_key: str = "cell_type", major_key: str | None = "cell_type_major",
                     max_discordant: int = 0, random_state: int = 0,
                     **call_options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check one sample's RNA labels against its antibody tags; one row per cell of ``labels``.

    Tags are found by alias (:func:`match_tags`), CLR-normalised per cell (:func:`clr`, over the
    whole panel) and called per tag in this sample (:func:`call_tags`).

    Parameters
    ----------
    prot
        One sample's raw tag counts (cells x tags, any number of tags, 0 included).
    labels
        obs-like table indexed by cell id with ``label_key`` (and ``major_key``).
    expectations
        :func:`load_protein_expectations` output.
    label_key
        Column of the label checked.
    major_key
        Column of the major type, used when the label is unknown or has no entry.
    max_discordant
        Most discordant tags a confirmed cell may have (default: none, since lineage tags are
        near on/off).
    random_state
        Seed for :func:`call_tags`.
    call_options
        Further options of :func:`call_tags`.

    Returns
    -------
    ``(cells, tags)``. ``cells`` columns: ``protein_label`` (the label whose expectation
    applied), ``tag_<TAG>`` (1 positive, 0 negative, NaN undetermined or not in the panel),
    ``n_tags_checked``, ``n_tags_discordant``, ``discordant_tags`` (observed state of each
    discordant tag, e.g. ``CD4+ CD8-``) and ``protein_evidence``: ``contradicts`` when more than
    ``max_discordant`` checked tags disagree with the expectation, else ``confirms``;
    ``no_tags`` when no expected tag was measured and called (no CITE-seq, or the panel lacks
    them); ``no_expectation`` for a label without an entry (``unknown``) in a cell that has tag
    calls. ``tags``: one row per matched tag (``tag``, the panel's ``column``, and
    :func:`call_tags`' columns), for the run log; empty without tags.
    """
    if label_key not in labels:
        raise InputError("protein_evidence", f"labels column '{label_key}' is missing.", "annotate the cells first.")
    known, tags = expectations["labels"], list(expectations["tags"])
    out = pd.DataFrame(index=labels.index)
    out["protein_label"] = _protein_label(labels, known, label_key, major_key)
    calls = pd.DataFrame(np.nan, index=labels.index, columns=tags, dtype=np.float32)
    matched = match_tags(prot.var_names, expectations["tags"]) if prot.n_vars else {}
    shared = labels.index.intersection(prot.obs_names)
    tag_table = pd.DataFrame(columns=["tag", "column", *_CALL_COLUMNS[1:]])
    if matched and len(shared):
        sub = prot[shared].copy()
        clr(sub)
        got, thresholds = call_tags(sub, list(matched.values()), random_state=random_state, **call_options)
        calls.loc[shared, list(matched)] = got[list(matched.values())].to_numpy()
        tag_table = thresholds.rename(columns={"tag": "column"})
        tag_table.insert(0, "tag", list(matched))
    per_label = pd.DataFrame({lab: {t: float(v) for t, v in rec["expect"].items()} for lab, rec in known.items()},
                             index=tags, dtype=np.float32).T
    expected = per_label.reindex(out["protein_label"]).set_axis(labels.index)
    checked = expected.notna() & calls.notna()
    discord = checked & (expected != calls)
    for t in tags:
        out[f"tag_{t}"] = calls[t]
    out["n_tags_checked"] = checked.sum(axis=1).astype(int)
    out["n_tags_discordant"] = discord.sum(axis=1).astype(int)
    sign = np.where(calls.to_numpy() == 1, "+", "-")
    d = discord.to_numpy()
    out["discordant_tags"] = [" ".join(f"{t}{s}" for t, s, x in zip(tags, srow, drow) if x)
                              for srow, drow in zip(sign, d)]
    ev = np.where(out["n_tags_discordant"] > max_discordant, "contradicts", "confirms").astype(object)
    has_label = np.isin(out["protein_label"].to_numpy(), list(known))
    ev[~has_label] = "no_expectation"
    ev[(has_label & (out["n_tags_checked"].to_numpy() == 0)) | calls.isna().all(axis=1).to_numpy()] = "no_tags"
    out["protein_evidence"] = pd.Categorical(ev, categories=list(PROTEIN_EVIDENCE))
    return out, tag_table


def _expected_sign(expectations: Mapping, label: str, tag: str) -> str:
    exp = expectations["labels"].get(label, {}).get("expect", {})
    return "" if tag not in exp else ("pos" if exp[tag] else "neg")


def protein_evidence_by_label(cells: pd.DataFrame, expectations: Mapping) -> pd.DataFrame:
    """Per label (``protein_label`` of :func:`protein_evidence`, all samples together): cells,
    cells with tags, ``agreement`` (share of the checked cells that the tags confirm; NaN when
    none was checked), ``n_contradicts``, and per canonical tag the share of called cells that
    are positive (``pos_<TAG>``) beside the expected call (``expected_<TAG>``: pos, neg or empty).
    Rows follow the order of the expectation file, then other labels; a label none of whose
    cells has a tag call is left out, so without CITE-seq the table is empty (with its columns).

    Parameters
    ----------
    cells
        The ``cells`` tables of :func:`protein_evidence`, samples stacked.
    expectations
        :func:`load_protein_expectations` output.
    """
    tags = list(expectations["tags"])
    cols = (["label", "n_cells", "n_checked", "n_contradicts", "agreement"]
            + [f"pos_{t}" for t in tags] + [f"expected_{t}" for t in tags])
    if cells.empty:
        return pd.DataFrame(columns=cols)
    present = set(cells["protein_label"].astype(str))
    labels = [lab for lab in expectations["labels"] if lab in present] + sorted(present - set(expectations["labels"]))
    rows = []
    for lab, grp in cells.groupby(cells["protein_label"].astype(str), sort=False):
        ev = grp["protein_evidence"].astype(str)
        n_checked = int(ev.isin(["confirms", "contradicts"]).sum())
        rec = {"label": lab, "n_cells": len(grp), "n_checked": n_checked,
               "n_contradicts": int((ev == "contradicts").sum()),
               "agreement": float((ev == "confirms").sum() / n_checked) if n_checked else np.nan}
        for t in tags:
            called = grp[f"tag_{t}"].dropna()
            rec[f"pos_{t}"] = float(called.mean()) if len(called) else np.nan
            rec[f"expected_{t}"] = _expected_sign(expectations, lab, t)
        rows.append(rec)
    table = pd.DataFrame(rows, columns=cols).set_index("label").loc[labels].reset_index()
    return table[table[[f"pos_{t}" for t in tags]].notna().any(axis=1)].reset_index(drop=True)


def plot_protein_evidence(table: pd.DataFrame, *, title: str = "Protein evidence for RNA labels"):
    """Heatmap of :func:`protein_evidence_by_label`: share of each label's cells positive for
    each tag (colour), the expected call written in the cell (+ / -; red when the majority of
    cells disagree with it), and the label's agreement and cells on the right. Without tags
    (no CITE-seq, or none of the tags in the panel) the figure says so. Returns a Figure.

    Parameters
    ----------
    table
        :func:`protein_evidence_by_label` output.
    title
        Figure title.
    """
    import matplotlib.pyplot as plt

    tags = [c[len("pos_"):] for c in table.columns if c.startswith("pos_")]
    shown = table[table[[f"pos_{t}" for t in tags]].notna().any(axis=1)] if len(table) else table
    tags = [t for t in tags if len(shown) and shown[f"pos_{t}"].notna().any()]
    if shown.empty or not tags:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no CITE-seq tags: no protein evidence\n(no sample has the antibody tags "
                "of the expectation table)", ha="center", va="center", fontsize=11)
        ax.set_title(title)
        plt.close(fig)
        return fig
    P = shown[[f"pos_{t}" for t in tags]].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(tags) + 2.6, 1.2 + 0.38 * len(shown)))
    im = ax.imshow(np.ma.masked_invalid(P), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, (_, row) in enumerate(shown.iterrows()):
        for j, t in enumerate(tags):
            exp = row[f"expected_{t}"]
            if exp:
                ok = np.isnan(P[i, j]) or ((P[i, j] >= 0.5) == (exp == "pos"))
                ax.text(j, i, "+" if exp == "pos" else "\u2212", ha="center", va="center", fontsize=12,
                        fontweight="bold", color=("black" if P[i, j] < 0.6 else "white") if ok else "red")
        agree = "n/a" if np.isnan(row["agreement"]) else f"{row['agreement']:.0%}"
        ax.text(len(tags) - 0.3, i, f"  {agree} of {row['n_checked']:,}", va="center", fontsize=8,
                transform=ax.transData, clip_on=False)
    ax.set_xticks(range(len(tags)), tags)
    ax.set_yticks(range(len(shown)), shown["label"])
    ax.set_xlim(-0.5, len(tags) - 0.5)
    ax.text(len(tags) - 0.3, -0.9, "  agreement", fontsize=8, fontweight="bold", clip_on=False)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.28, label="share of cells positive")
    ax.set_title(f"{title}\n(+ / \u2212: expected; red: most cells disagree)", fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
