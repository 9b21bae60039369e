"""Marker-based cell-type annotation at two levels: ``cell_type_major`` and ``cell_type``.

Why: every later comparison of the trial (composition, pseudobulk expression per cell type,
signatures) is made per cell type, so every cell needs a label that a reader can check against
known biology and correct. Curated literature markers (``resources/markers.yaml``, each set with
its source) need nothing external, so this is the default method; CellTypist and scANVI transfer
are optional alternatives elsewhere.

What comes from libraries and what is written here:

- **Scoring (library):** decoupler 2.x univariate linear model (``decoupler.mt.ulm``) gives each
  cell an enrichment t-value per marker set; negative markers enter with weight -1. Only the
  marker genes are taken out of the (sparse) matrix and made dense, in blocks of cells; each
  gene is first standardised across the cohort (mean 0, variance 1, clipped at ``max_value``,
  as ``scanpy.pp.scale`` does) so that a highly expressed marker (LYZ, immunoglobulins) does not
  outvote a specific but lowly expressed one (CLEC9A, FOXP3). The scores are cohort-relative.
  One hand-written guard: a cell that detects none of a set's positive markers scores at most 0
  for it (a cell without markers would otherwise score high for sets of rare genes).
- **Hierarchical assignment and smoothing (hand-written, :func:`assign_labels`):** the major
  type is the per-cell best major set (a lineage also counts the evidence of its own subtypes, so
  a FOXP3+ IL2RA+ cell is T/NK even when CD3 transcripts dropped out), called ``unknown`` when
  the best score is low or barely beats the runner-up. Each Leiden cluster whose called cells
  agree by a clear majority then gives its type to all its cells, except a cell whose markers
  speak against the cluster's type and whose own call is strong or shared by a sizeable part of
  the cluster (a mast cell or pDC that Leiden put in a myeloid cluster keeps its label); in a cluster without consensus only strong calls
  stand and the rest are ``unknown``. The subtype is the best subtype set *of that major type
  only*, again ``unknown`` when weak or ambiguous. No library implements this two-level rule with
  abstention, hence the hand-written code. The thresholds (:data:`DEFAULTS`) were chosen on
  simulated cohorts with planted null clusters and checked on real PBMCs.

Further down: CellTypist / scANVI label transfer and the consensus of methods, the analyst's
corrections (:func:`load_corrections`, :func:`apply_corrections`), protein
(CITE-seq) evidence for the labels (:func:`protein_evidence`), and the report figure of
agreement between methods (:func:`plot_method_agreement`), each with its own "why" note.

Nothing here imports the simulator or reads its truth: the annotation must recover the planted
types from literature markers alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from pinnacle.errors import InputError

__all__ = [
    "MAJOR_TYPES",
    "UNKNOWN",
    "DEFAULTS",
    "load_markers",
    "marker_sets",
    "check_markers_present",
    "drop_absent_sets",
    "score_markers",
    "assign_labels",
    "annotate_by_markers",
    "cell_type_counts",
    "crosstab_clusters",
    "plot_marker_dotplot",
]

log = logging.getLogger(__name__)

MAJOR_TYPES = ("T/NK", "B", "plasma", "myeloid", "mast", "pDC", "malignant/epithelial",
               "fibroblast", "endothelial")
UNKNOWN = "unknown"
METHOD_NAME = "markers"

_MAJOR_KEYS = {"markers", "negative", "source", "subtypes"}
_SUBTYPE_KEYS = {"markers", "negative", "source"}

# Defaults of the assignment, in units of the ulm t-value on standardised marker genes.
# Chosen on six simulated cohorts (seeds 0, 1, 3, 7, 11, 23) with null clusters, and checked on
# real PBMCs (tests/test_annotate.py); see assign_labels for what each does.
DEFAULTS = {
    "min_score": 1.0,           # best major score below this: unknown
    "min_margin": 0.3,          # best minus runner-up below this: unknown
    "strong_score": 4.0,        # a call this sure (score and margin) may stand against its cluster
    "strong_margin": 3.0,
    "majority": 0.5,            # share of a cluster's calls one type needs for a consensus
    "min_called": 0.25,         # share of a cluster's cells that must have a call for a consensus
    "against": 0.5,             # a cell's score for its cluster's type at or below this speaks against it
    "minority": 0.15,           # a type with this share of a cluster's calls is a population of its own
    "min_score_subtype": 0.5,   # best subtype score below this: subtype unknown
    "min_margin_subtype": 0.1,  # best minus runner-up subtype below this: subtype unknown
    "margin_full": 3.0,         # margin that counts as full confidence
    "max_value": 10.0,          # clip of the standardised marker genes
}


# --------------------------------------------------------------------------------------------
# marker file
# --------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (PyYAML keeps the last silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, line, first_line):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _gene_list(value, where: str, key: str, *, required: bool) -> list[str]:
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() for g in value):
        raise InputError(where, f"'{key}' must be a list of gene symbols, got {value!r}.",
                         f"write '{key}: [GENE1, GENE2]'.")
    genes = [g.strip() for g in value]
    if required and not genes:
        raise InputError(where, f"'{key}' is empty: a marker set needs at least one positive gene.",
                         f"list the set's marker genes under '{key}:' or remove the set.")
    dup = sorted({g for g in genes if genes.count(g) > 1})
    if dup:
        raise InputError(where, f"'{key}' lists {', '.join(dup)} more than once.", "list each gene once.")
    return genes


def _resource_entry(entry, where: str, allowed: set[str], *, resource: str) -> str:
    """Check one entry of a curated YAML resource: a mapping with only ``allowed`` keys and a
    non-empty ``source``; returns the source."""
    if not isinstance(entry, Mapping):
        raise InputError(where, f"expected a mapping with {sorted(allowed)}, got {type(entry).__name__}.",
                         f"see the format at the top of {resource}.")
    unknown = sorted(set(map(str, entry)) - allowed)
    if unknown:
        raise InputError(where, f"unknown key(s) {', '.join(repr(k) for k in unknown)}.",
                         f"allowed keys here: {', '.join(sorted(allowed))} (check the spelling and indentation).")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise InputError(where, "no 'source' given.",
                         "add 'source: \"Authors, Journal Year\"' (or \"[general knowledge]\") to the entry.")
    return source.strip()


def _marker_entry(entry, where: str, allowed: set[str]) -> dict:
    source = _resource_entry(entry, where, allowed, resource="resources/markers.yaml")
    pos = _gene_list(entry.get("markers"), where, "markers", required=True)
    neg = _gene_list(entry.get("negative"), where, "negative", required=False)
    both = sorted(set(pos) & set(neg))
    if both:
        raise InputError(where, f"{', '.join(both)} listed both as marker and as negative.",
                         "keep each gene in one of 'markers' or 'negative'.")
    return {"markers": pos, "negative": neg, "source": source}


def load_markers(path) -> dict:
    """Read and validate a hierarchical marker YAML (``resources/markers.yaml`` format).

    Returns ``{major: {"markers", "negative", "source", "subtypes": {subtype: {"markers",
    "negative", "source"}}}}``. A major type without ``subtypes`` gets one subtype of its own name
    and markers. Raises :class:`InputError` naming the file and key for: a missing or unparsable
    file, unknown keys, empty marker lists, a gene listed twice or as both marker and negative, a
    set without source, and subtype names that repeat (within or across major types) or are
    ``unknown``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "marker file not found.",
                         "point config 'annotate: markers:' to a YAML file such as resources/markers.yaml.")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader subclass)
    except _DuplicateKey as e:
        raise InputError(f"{path} (line {e.line})",
                         f"key '{e.key}' appears twice (first on line {e.first_line}) in the same mapping; "
                         "set names must be unique and each key given once.",
                         "rename or merge the duplicated set (or key).") from None
    except yaml.YAMLError as e:
        raise InputError(str(path), f"not valid YAML: {e}",
                         "fix the YAML syntax (indentation, colons, brackets).") from None
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(str(path), "no marker sets found (the file must be a mapping of major cell types).",
                         "see resources/markers.yaml for the format.")
    out: dict = {}
    seen_sub: dict[str, str] = {}
    for major, entry in raw.items():
        major = str(major)
        where = f"{path}: '{major}'"
        if major == UNKNOWN:
            raise InputError(where, f"'{UNKNOWN}' is reserved for cells that match no set.", "rename the set.")
        rec = _marker_entry(entry, where, _MAJOR_KEYS)
        subs_raw = entry.get("subtypes")
        if subs_raw is None:
            subs_raw = {major: {k: entry[k] for k in ("markers", "negative", "source") if k in entry}}
        if not isinstance(subs_raw, Mapping) or not subs_raw:
            raise InputError(where, "'subtypes' must be a non-empty mapping of subtype name to set.",
                             "write 'subtypes:' followed by indented 'NAME: {markers: [...], source: ...}' "
                             "entries, or leave 'subtypes' out for a single subtype.")
        subs = {}
        for sub, sentry in subs_raw.items():
            sub = str(sub)
            swhere = f"{path}: '{major}' > subtypes > '{sub}'"
            if sub == UNKNOWN:
                raise InputError(swhere, f"'{UNKNOWN}' is reserved for cells that match no set.", "rename the subtype.")
            if sub in seen_sub:
                raise InputError(swhere, f"subtype name '{sub}' is also a subtype of '{seen_sub[sub]}'; "
                                 "cell_type labels must be unique.",
                                 "rename one of the two subtypes (e.g. add the lineage as a prefix).")
            seen_sub[sub] = major
            subs[sub] = _marker_entry(sentry, swhere, _SUBTYPE_KEYS)
        rec["subtypes"] = subs
        out[major] = rec
    return out


def marker_sets(markers: Mapping, level: str = "major") -> dict[str, dict]:
    """Flat ``{set name: {"markers", "negative", "source", "parent"}}`` of one level."""
    _check_level(level)
    sets = {}
    for major, rec in markers.items():
        if level == "major":
            sets[major] = {"markers": list(rec["markers"]), "negative": list(rec.get("negative", [])),
                           "source": rec.get("source", ""), "parent": major}
        else:
            for sub, srec in rec["subtypes"].items():
                sets[sub] = {"markers": list(srec["markers"]), "negative": list(srec.get("negative", [])),
                             "source": srec.get("source", ""), "parent": major}
    return sets


def _check_level(level: str) -> None:
    if level not in ("major", "subtype"):
        raise InputError("annotate", f"level={level!r} is not known.", "use level='major' or level='subtype'.")


def _flatten(markers: Mapping, level: str | None) -> dict:
    if markers and all("subtypes" in v for v in markers.values()):
        flat = {}
        for lv in ([level] if level else ["major", "subtype"]):
            flat.update({(lv, k): v for k, v in marker_sets(markers, lv).items()})
        return flat
    return {("set", k): v for k, v in markers.items()}


def _missing_genes(markers: Mapping, var_names: Iterable[str], *, where: str,
                   level: str | None = None) -> dict[str, list[str]]:
    names = set(map(str, var_names))
    missing: dict[str, list[str]] = {}
    for (lv, name), rec in _flatten(markers, level).items():
        pos = list(rec["markers"])
        neg = list(rec.get("negative", []))
        if not any(g in names for g in pos):
            raise InputError(
                where,
                f"marker set '{name}'{'' if lv == 'set' else f' ({lv})'} names no gene present in the data: "
                f"{', '.join(pos)}.",
                "use HGNC symbols matching the data's var_names (not Ensembl ids), keep these genes in "
                "the cohort object (the integration stage keeps HVGs + marker genes), or remove the set "
                "from the marker file (or annotate with absent='drop' for data that cannot hold this lineage).",
            )
        gone = [g for g in pos + neg if g not in names]
        if gone:
            missing[name] = gone
    return missing


def check_markers_present(markers: Mapping, var_names: Iterable[str], *, where: str = "annotation markers",
                          level: str | None = None) -> dict[str, list[str]]:
    """Check that every marker set names genes present in the data.

    ``markers`` is the dict of :func:`load_markers` (both levels are checked unless ``level`` is
    given) or a flat ``{set: {"markers": [...], "negative": [...]}}``. Raises :class:`InputError`
    when a set has no positive marker among ``var_names`` (naming the set, its genes and the fix).
    Returns ``{set name: [missing genes]}`` (positive and negative) for sets with some genes
    missing, and logs one warning listing them; an empty dict means everything was found.
    """
    missing = _missing_genes(markers, var_names, where=where, level=level)
    if missing:
        log.warning("%s: marker genes absent from the data (scored without them): %s", where,
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items()))
    return missing


def drop_absent_sets(markers: Mapping, var_names: Iterable[str]) -> tuple[dict, list[str]]:
    """Copy of ``markers`` without the sets that have no positive marker in ``var_names``.

    For data that cannot hold some lineages (blood has no fibroblasts; a small gene panel lacks
    mast-cell genes). A major type whose own markers are all absent is dropped with its subtypes;
    a major type left without subtypes is dropped too. Returns ``(markers, dropped set names)``.
    """
    names = set(map(str, var_names))
    out, dropped = {}, []
    for major, rec in markers.items():
        if not any(g in names for g in rec["markers"]):
            dropped += [major] + [f"{major} > {s}" for s in rec["subtypes"]]
            continue
        subs = {}
        for sub, srec in rec["subtypes"].items():
            if any(g in names for g in srec["markers"]):
                subs[sub] = srec
            else:
                dropped.append(f"{major} > {sub}")
        if not subs:
            dropped.append(major)
            continue
        out[major] = {**rec, "subtypes": subs}
    if dropped:
        log.warning("marker sets with no gene in the data were dropped: %s", ", ".join(dropped))
    return out, dropped


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def _net(sets: Mapping[str, dict], present: set[str]) -> pd.DataFrame:
    rows = []
    for name, rec in sets.items():
        rows += [(name, g, 1.0) for g in rec["markers"] if g in present]
        rows += [(name, g, -1.0) for g in rec.get("negative", []) if g in present]
    return pd.DataFrame(rows, columns=["source", "target", "weight"])


def _column_stats(M) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population sd of each column of a (sparse) cells x genes matrix."""
    if sp.issparse(M):
        mean = np.asarray(M.mean(axis=0)).ravel().astype(np.float64)
        sq = np.asarray(M.multiply(M).mean(axis=0)).ravel().astype(np.float64)
    else:
        M = np.asarray(M, dtype=np.float64)
        mean, sq = M.mean(0), (M * M).mean(0)
    sd = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return mean, sd


def _looks_like_counts(M) -> bool:
    vals = M.data if sp.issparse(M) else np.asarray(M).ravel()
    vals = vals[:200_000]
    # log1p of normalised counts is (practically) never integer; counts always are
    return vals.size >= 20 and bool(np.all(np.mod(vals, 1) == 0))


def score_markers(adata: ad.AnnData, markers: Mapping, *, level: str = "major", layer: str | None = None,
                  key_added: str | None = None, max_value: float = DEFAULTS["max_value"],
                  chunk_size: int = 50_000, where: str = "annotation markers") -> ad.AnnData:
    """Score every cell for each marker set of one level (decoupler ulm on standardised markers).

    ``adata.X`` (or ``layers[layer]``) must be log-normalised (``normalize_total`` + ``log1p``);
    raw counts are refused. Only the marker genes are extracted; they are standardised across all
    cells (mean 0, sd 1, clipped at ``max_value``) and densified ``chunk_size`` cells at a time.
    The score of a set is the t-value of decoupler's univariate linear model (positive markers
    weight +1, negative markers -1) over the universe of this level's marker genes: how much more
    the cell expresses this set's markers than the other sets'. Cells with no variation over the
    marker genes get 0.

    Writes ``obsm[key_added]`` (DataFrame cells x sets; default ``marker_scores_{level}``) and
    ``uns[key_added]`` (level; ``sets`` and their ``parents`` (major type); number of genes used;
    ``missing_genes`` table; parameters).
    """
    import decoupler as dc

    _check_level(level)
    key_added = key_added or f"marker_scores_{level}"
    sets = marker_sets(markers, level)
    missing = _missing_genes(sets, adata.var_names, where=where)
    present = set(map(str, adata.var_names))
    net = _net(sets, present)
    genes = sorted(set(net["target"]))
    if layer is not None and layer not in adata.layers:
        raise InputError(where, f"layer '{layer}' not in the AnnData.",
                         f"use one of {list(adata.layers)} or None for X.")
    M = adata.layers[layer] if layer is not None else adata.X
    idx = adata.var_names.get_indexer(genes)
    Msub = M[:, idx]
    if sp.issparse(Msub):
        Msub = sp.csr_matrix(Msub)
    if _looks_like_counts(Msub):
        raise InputError(where, "the expression values are integer counts, not log-normalised values.",
                         "normalise first (scanpy normalize_total + log1p), or pass the layer holding them.")
    mean, sd = _column_stats(Msub)
    sd[sd == 0] = 1.0
    scores = np.zeros((adata.n_obs, len(sets)), dtype=np.float32)
    cols = list(sets)
    gene_arr = np.asarray(genes)
    for start in range(0, adata.n_obs, chunk_size):
        block = Msub[start:start + chunk_size]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        Z = np.clip((block.astype(np.float64) - mean) / sd, -max_value, max_value)
        ok = Z.std(axis=1) > 0
        if not ok.any():
            continue
        names = np.arange(start, start + Z.shape[0])[ok].astype(str)
        es, _ = dc.mt.ulm([Z[ok], names, gene_arr], net, tmin=1, empty=False, verbose=False)
        es = es.reindex(index=names, columns=cols)
        rows = np.flatnonzero(ok) + start
        scores[rows, :] = np.nan_to_num(es.to_numpy(dtype=np.float32), nan=0.0)
    # A cell that detects none of a set's positive markers has no evidence for it: cap at 0.
    # (Without this, a cell lacking all markers scores high for sets of rare genes, whose
    # standardised zeros are close to 0 while common genes' zeros are strongly negative.)
    pos = sp.csr_matrix(((net["weight"] > 0).to_numpy(dtype=np.float32),
                         (pd.Index(genes).get_indexer(net["target"]), pd.Index(cols).get_indexer(net["source"]))),
                        shape=(len(genes), len(cols)))
    detected = (Msub > 0) if sp.issparse(Msub) else sp.csr_matrix(np.asarray(Msub) > 0)
    n_detected = np.asarray((detected.astype(np.float32) @ pos).todense())
    scores = np.where(n_detected > 0, scores, np.minimum(scores, 0.0)).astype(np.float32)
    adata.obsm[key_added] = pd.DataFrame(scores, index=adata.obs_names, columns=cols)
    adata.uns[key_added] = {
        "level": level,
        "method": "decoupler.mt.ulm on standardised marker genes",
        # lists, not dicts: set names such as "T/NK" would become paths in an h5ad file
        "sets": cols,
        "parents": [sets[k]["parent"] for k in cols],
        "n_genes": len(genes),
        "missing_genes": pd.DataFrame([(k, g) for k, v in missing.items() for g in v], columns=["set", "gene"]),
        "layer": layer if layer is not None else "X",
        "max_value": float(max_value),
    }
    return adata


# --------------------------------------------------------------------------------------------
# assignment
# --------------------------------------------------------------------------------------------


def _best_two(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the best column, best value and margin over the runner-up, per row."""
    if S.shape[1] == 1:
        return np.zeros(S.shape[0], dtype=int), S[:, 0], np.full(S.shape[0], np.inf)
    order = np.argsort(-S, axis=1, kind="stable")
    best = order[:, 0]
    rows = np.arange(S.shape[0])
    top = S[rows, best]
    return best, top, top - S[rows, order[:, 1]]


def _margin_of(S: np.ndarray, label_idx: np.ndarray) -> np.ndarray:
    """Score of the given column minus the best other column (negative when another is higher)."""
    rows = np.arange(S.shape[0])
    own = S[rows, label_idx]
    if S.shape[1] == 1:
        return np.full(S.shape[0], np.inf)
    other = S.copy()
    other[rows, label_idx] = -np.inf
    return own - other.max(axis=1)


def _thresholds(where: str, given: Mapping) -> dict:
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise InputError(where, f"unknown annotation parameter(s) {', '.join(unknown)}.",
                         f"use only {', '.join(sorted(DEFAULTS))}.")
    th = {**DEFAULTS, **{k: float(v) for k, v in given.items()}}
    if not 0 < th["majority"] <= 1 or not 0 <= th["min_called"] <= 1:
        raise InputError(where, "majority must be in (0, 1] and min_called in [0, 1].", "use shares, e.g. 0.5.")
    return th


def assign_labels(adata: ad.AnnData, *, cluster_key: str | None, major_key: str = "marker_scores_major",
                  subtype_key: str = "marker_scores_subtype", subtype_evidence: bool = True,
                  method: str = METHOD_NAME, **thresholds) -> ad.AnnData:
    """Hierarchical labels, with abstention, from the scores of :func:`score_markers`.

    ``thresholds`` override :data:`DEFAULTS` (``min_score``, ``min_margin``, ``strong_score``,
    ``strong_margin``, ``majority``, ``min_called``, ``against``, ``minority``, ``min_score_subtype``,
    ``min_margin_subtype``, ``margin_full``; scores are ulm t-values).

    0. Major evidence: with ``subtype_evidence`` (default), a major type's score is the larger of
       its own set's score and its best subtype's score, so a cell with a clear subtype programme
       (FOXP3/IL2RA/CTLA4...) counts for its lineage even when the pan-lineage markers (CD3D...)
       dropped out.
    1. Per cell: the best major type, or ``unknown`` if its score < ``min_score`` or it beats the
       runner-up by < ``min_margin`` (kept as ``obs['cell_type_major_cell']``). A call is
       *strong* when its score is >= ``strong_score`` and its margin >= ``strong_margin``.
    2. Per cluster of ``cluster_key`` (skipped when None). A cluster has a consensus when at least
       ``min_called`` of its cells have a call and one type holds >= ``majority`` of those calls.
       - consensus: every cell takes the cluster's type, except a cell whose score for the
         cluster's type is <= ``against`` (its markers speak against it) and whose own call is
         strong or of a type holding >= ``minority`` of the cluster's calls: it keeps its call.
         This protects rare cells (mast, pDC) that Leiden puts in a cluster of another type, one
         by one or as a whole population.
       - no consensus: only strong calls are kept, the other cells are ``unknown``. A cluster
         whose cells disagree is no evidence for any type; chimeric or damaged cells are not
         forced into one.
    3. Subtype: the best of the major type's own subtype sets; ``unknown`` when its score <
       ``min_score_subtype`` or its margin < ``min_margin_subtype``. A major type with one
       subtype passes its label down; cells of unknown major type have unknown subtype.

    Writes obs ``cell_type_major`` and ``cell_type`` (categoricals; ``unknown`` in both when the
    major type is unknown, in ``cell_type`` only when the subtype is unresolved),
    ``cell_type_confidence`` (0-1: the major type's margin over the best other type divided by
    ``margin_full`` and clipped, averaged with the share of the cell's cluster whose per-cell call
    is the cell's final type (when clustered); times 0.5 + 0.5 x the scaled subtype margin where
    the major type has several subtypes, times 0.5 when the subtype is unresolved; 0 for an
    unknown major type), ``cell_type_major_cell`` and ``annotation_method``; the thresholds and a
    per-cluster table (``clusters``: cells, share called, top call, its share, label given) in
    ``uns['annotation_markers']``.
    """
    th = _thresholds("annotate", thresholds)
    for key in (major_key, subtype_key):
        if key not in adata.obsm:
            raise InputError("annotate", f"obsm['{key}'] is missing.",
                             "run pinnacle.annotate.score_markers for both levels first.")
    Smaj_df = adata.obsm[major_key]
    Ssub_df = adata.obsm[subtype_key]
    rec = adata.uns.get(subtype_key, {})
    parent = dict(zip(list(rec.get("sets", [])), list(rec.get("parents", [])), strict=True))
    if not parent:
        raise InputError("annotate", f"uns['{subtype_key}']['sets'/'parents'] is missing.",
                         "score subtypes with pinnacle.annotate.score_markers(level='subtype').")
    majors = list(Smaj_df.columns)
    children = {m: [s for s, p in parent.items() if p == m and s in Ssub_df.columns] for m in majors}
    Smaj = Smaj_df.to_numpy(dtype=np.float64)
    n = adata.n_obs

    # 0. subtype evidence counts for the lineage
    if subtype_evidence:
        for j, major in enumerate(majors):
            if len(children[major]) > 1:
                Smaj[:, j] = np.maximum(Smaj[:, j], Ssub_df[children[major]].to_numpy(dtype=np.float64).max(axis=1))

    # 1. per-cell major call
    best, top, margin = _best_two(Smaj)
    called = (top >= th["min_score"]) & (margin >= th["min_margin"])
    cell_call = np.where(called, np.asarray(majors, dtype=object)[best], UNKNOWN).astype(object)
    strong = called & (top >= th["strong_score"]) & (margin >= th["strong_margin"])

    # 2. cluster smoothing
    final = cell_call.copy()
    cluster_rows = []
    agreement = None
    if cluster_key is not None:
        if cluster_key not in adata.obs:
            raise InputError("annotate", f"obs['{cluster_key}'] (clusters) is missing.",
                             "cluster first (Leiden) or pass cluster_key=None for per-cell labels.")
        clusters = adata.obs[cluster_key].astype(str).to_numpy()
        major_pos = {m: i for i, m in enumerate(majors)}
        for cl, members in pd.Series(np.arange(n)).groupby(clusters).indices.items():
            own = cell_call[members]
            counts = pd.Series(own[own != UNKNOWN]).value_counts()
            n_called = int(counts.sum())
            frac_called = n_called / members.size
            lab, share = (str(counts.index[0]), float(counts.iloc[0] / n_called)) if n_called else (UNKNOWN, 0.0)
            consensus = n_called > 0 and share >= th["majority"] and frac_called >= th["min_called"]
            cluster_rows.append((str(cl), int(members.size), frac_called, lab, share, lab if consensus else UNKNOWN))
            if not consensus:
                final[members] = np.where(strong[members], own, UNKNOWN)
                continue
            # a second population in the cluster (rare types Leiden merged) keeps its own calls
            minority = counts.index[(counts / n_called >= th["minority"]).to_numpy()].difference([lab])
            keep = ((strong[members] | np.isin(own, list(minority))) & (own != lab)
                    & (Smaj[members, major_pos[lab]] <= th["against"]))
            final[members] = np.where(keep, own, lab)
        # agreement: share of the cell's cluster whose per-cell call is the cell's final type
        frame = pd.DataFrame({"cl": clusters, "call": cell_call})
        share_tab = frame.groupby(["cl", "call"]).size() / frame.groupby("cl").size()
        agreement = share_tab.reindex(pd.MultiIndex.from_arrays([clusters, final])).fillna(0.0).to_numpy()

    is_known = final != UNKNOWN
    final_idx = np.maximum(pd.Categorical(final, categories=majors).codes, 0)
    conf = np.clip(_margin_of(Smaj, final_idx) / th["margin_full"], 0, 1)
    if agreement is not None:
        conf = 0.5 * conf + 0.5 * agreement
    conf = np.where(is_known, conf, 0.0)

    # 3. subtypes within the major type
    subtype = np.full(n, UNKNOWN, dtype=object)
    for major in majors:
        rows = np.flatnonzero(final == major)
        subs = children[major]
        if rows.size == 0 or not subs:
            continue
        if len(subs) == 1:
            subtype[rows] = subs[0]
            continue
        b, t, m = _best_two(Ssub_df.iloc[rows][subs].to_numpy(dtype=np.float64))
        ok = (t >= th["min_score_subtype"]) & (m >= th["min_margin_subtype"])
        subtype[rows] = np.where(ok, np.asarray(subs, dtype=object)[b], UNKNOWN)
        conf[rows] *= np.where(ok, 0.5 + 0.5 * np.clip(m / th["margin_full"], 0, 1), 0.5)

    adata.obs["cell_type_major_cell"] = pd.Categorical(cell_call, categories=majors + [UNKNOWN])
    adata.obs["cell_type_major"] = pd.Categorical(final, categories=majors + [UNKNOWN])
    adata.obs["cell_type"] = pd.Categorical(subtype, categories=list(Ssub_df.columns) + [UNKNOWN])
    adata.obs["cell_type_confidence"] = conf.astype(np.float32)
    adata.obs["annotation_method"] = pd.Categorical([method] * n)
    adata.uns["annotation_markers"] = {
        "cluster_key": cluster_key if cluster_key is not None else "",
        "subtype_evidence": bool(subtype_evidence),
        **{k: float(v) for k, v in th.items() if k != "max_value"},
        "clusters": pd.DataFrame(cluster_rows, columns=["cluster", "n_cells", "called_share", "top_call",
                                                        "top_share_of_called", "label"]),
    }
    return adata


def annotate_by_markers(adata: ad.AnnData, markers: Mapping, *, cluster_key: str | None,
                        layer: str | None = None, min_score: float = DEFAULTS["min_score"],
                        min_margin: float = DEFAULTS["min_margin"], majority: float = DEFAULTS["majority"],
                        absent: str = "error", random_state: int = 0, where: str = "annotation markers",
                        **thresholds) -> ad.AnnData:
    """Score both levels of ``markers`` and assign hierarchical labels (in place; returns ``adata``).

    ``markers`` is the dict of :func:`load_markers`; ``cluster_key`` the Leiden column used for
    smoothing (None: per-cell labels only). A set with no gene in the data stops the run
    (``absent="error"``, the default) or is left out (``absent="drop"``, for data that cannot hold
    that lineage, e.g. blood; recorded in ``uns['annotation_markers']['dropped_sets']``).
    ``min_score``, ``min_margin``, ``majority`` and further ``thresholds`` go to
    :func:`assign_labels`; see it and :func:`score_markers` for the outputs. ``random_state`` is
    recorded for the run record: the scoring (ulm, with decoupler's fixed tie-breaking) and the
    assignment are deterministic.
    """
    if absent not in ("error", "drop"):
        raise InputError(where, f"absent={absent!r} is not known.", "use 'error' or 'drop'.")
    _thresholds(where, thresholds)
    dropped: list[str] = []
    if absent == "drop":
        markers, dropped = drop_absent_sets(markers, adata.var_names)
        if not markers:
            raise InputError(where, "no marker set has a gene in the data.",
                             "check that var_names are gene symbols and that marker genes were kept.")
    check_markers_present(markers, adata.var_names, where=where)
    for level in ("major", "subtype"):
        score_markers(adata, markers, level=level, layer=layer, where=where,
                      max_value=thresholds.get("max_value", DEFAULTS["max_value"]))
    assign_labels(adata, cluster_key=cluster_key, min_score=min_score, min_margin=min_margin, majority=majority,
                  **{k: v for k, v in thresholds.items() if k != "max_value"})
    adata.uns["annotation_markers"]["random_state"] = int(random_state)
    adata.uns["annotation_markers"]["dropped_sets"] = list(dropped)
    return adata


# --------------------------------------------------------------------------------------------
# tables and figures
# --------------------------------------------------------------------------------------------


def cell_type_counts(obs: pd.DataFrame, *, sample_key: str = "sample_id", label_key: str = "cell_type") -> pd.DataFrame:
    """Cells per sample (rows) and label (columns), ``unknown`` included; all-zero labels kept."""
    for k in (sample_key, label_key):
        if k not in obs:
            raise InputError("cell_type_counts", f"obs column '{k}' is missing.", "annotate the cells first.")
    tab = pd.crosstab(obs[sample_key], obs[label_key], dropna=False)
    if isinstance(obs[label_key].dtype, pd.CategoricalDtype):
        tab = tab.reindex(columns=obs[label_key].cat.categories, fill_value=0)
    tab.index.name, tab.columns.name = sample_key, label_key
    return tab.astype(int)


def crosstab_clusters(obs: pd.DataFrame, cluster_key: str, label_key: str = "cell_type") -> pd.DataFrame:
    """Cells per cluster (rows) and label (columns): how clusters split into labels."""
    for k in (cluster_key, label_key):
        if k not in obs:
            raise InputError("crosstab_clusters", f"obs column '{k}' is missing.", "cluster and annotate first.")
    tab = pd.crosstab(obs[cluster_key], obs[label_key])
    tab.index.name, tab.columns.name = cluster_key, label_key
    return tab


def plot_marker_dotplot(adata: ad.AnnData, markers: Mapping, *, groupby: str = "cell_type", level: str = "subtype",
                        layer: str | None = None, max_genes: int = 6):
    """Dot plot of each set's (present, positive) markers per label; returns a matplotlib Figure.

    Works on a small copy holding only the marker genes and the ``groupby`` column, so ``adata``
    is never modified. ``max_genes`` caps the genes shown per set.
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
    dp = sc.pl.dotplot(small, var_names, groupby=groupby, show=False, return_fig=True, standard_scale="var")
    dp.make_figure()
    fig = dp.fig
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------------------------
# methods 2 and 3: CellTypist and scANVI label transfer, and the consensus of all methods
# --------------------------------------------------------------------------------------------
#
# Why: a user with a trusted labelled reference (a CellTypist model, or a labelled AnnData) can
# transfer its labels instead of (or besides) the marker rule; the three answers are then
# combined into one consensus label with the fraction of methods that agree with it.
# Libraries: CellTypist (logistic regression on log1p CP10k, optional majority voting over
# clusters) and scvi-tools (scVI then SCANVI.from_scvi_model). Hand-written: input checks, the
# gene-overlap guard, the bookkeeping in ``uns`` and the small majority vote of
# :func:`consensus_labels`. Nothing is downloaded: models and references are paths given by
# the user. The labels are whatever vocabulary the model/reference uses; the consensus is only
# meaningful when that vocabulary is the one of resources/markers.yaml.

__all__ += ["train_celltypist_model", "annotate_celltypist", "annotate_scanvi", "consensus_labels",
            "CONSENSUS_COLUMNS"]

#: method name -> obs column holding its (subtype-level) label
CONSENSUS_COLUMNS = {"markers": "cell_type", "celltypist": "celltypist_label", "scanvi": "scanvi_label"}


def _log1p_cp10k_ok(X, n_check: int = 200) -> bool:
    """True when the first rows of ``X`` look log-normalised (non-negative, max below log1p(1e4));
    warns when they do not sum to 1e4 after expm1 (within 1%), as log1p(CP10k) of all genes would."""
    rows = X[: min(n_check, X.shape[0])]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    if rows.size == 0:
        return False
    if rows.min() < 0 or rows.max() > 9.22:
        return False
    sums = np.expm1(rows.astype(np.float64)).sum(axis=1)
    if not np.all(np.abs(sums - 1e4) <= 100):
        # e.g. normalised on all genes, then subset: usable, but not what CellTypist expects
        log.warning("expression rows do not sum to 10,000 after expm1 (first row: %.0f); CellTypist "
                    "expects log1p(CP10k) of all genes, predictions may be less accurate.", sums[0])
    return True


def train_celltypist_model(adata: ad.AnnData, *, label_key: str, n_jobs: int = 1, layer: str | None = None,
                           feature_selection: bool = False, use_SGD: bool = False, max_iter: int | None = None,
                           random_state: int = 0, **kwargs):
    """Train a CellTypist model on a labelled reference (thin wrapper on ``celltypist.train``).

    ``adata`` (or ``layers[layer]``) must hold log1p(CP10k) expression, as the pipeline's ``X``
    does; ``label_key`` is the obs column of labels (use the marker vocabulary, e.g. ``cell_type``,
    so that the consensus can compare methods). Further ``kwargs`` (``top_genes``, ``C``,
    ``mini_batch``, ``epochs``, ...) go to ``celltypist.train``. Save the returned model with
    ``model.write(path)`` and give the path to :func:`annotate_celltypist`.
    """
    import celltypist

    where = "train_celltypist_model"
    if label_key not in adata.obs:
        raise InputError(where, f"obs column '{label_key}' (the labels) is missing.", "pass the label column.")
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise InputError(where, f"{int(labels.isna().sum())} cells have no label in '{label_key}'.",
                         "drop unlabelled cells from the reference first.")
    X = adata.layers[layer] if layer is not None else adata.X
    if not _log1p_cp10k_ok(X):
        raise InputError(where, f"{'layers[' + repr(layer) + ']' if layer else 'X'} is not log1p(CP10k) expression.",
                         "normalise to 10,000 counts per cell and log1p (pinnacle.rna_integrate.normalise).")
    if max_iter is not None:
        kwargs["max_iter"] = int(max_iter)
    return celltypist.train(X, labels=labels.astype(str).to_numpy(), genes=adata.var_names.astype(str).to_numpy(),
                            n_jobs=n_jobs, feature_selection=feature_selection, use_SGD=use_SGD,
                            random_state=random_state, **kwargs)


def annotate_celltypist(adata: ad.AnnData, model, *, majority_voting: bool = True,
                        over_clustering: str | None = None, key_prefix: str = "celltypist",
                        min_shared_genes: int = 100, layer: str | None = None) -> ad.AnnData:
    """Label cells with a CellTypist model (in place; returns ``adata``).

    ``model``: path to a CellTypist ``.pkl`` model or a loaded ``celltypist.models.Model``.
    ``X`` (or ``layers[layer]``) must be log1p(CP10k), as the pipeline's is. With
    ``majority_voting`` the per-cell predictions are smoothed by majority within clusters:
    ``over_clustering`` names an obs column (e.g. a Leiden column) to use as the clusters;
    None lets CellTypist over-cluster itself (on a private copy; ``adata`` is not modified).

    Writes obs ``{key_prefix}_label`` (the majority-voting label when voting, else the per-cell
    best match), ``{key_prefix}_conf`` (the model's probability of that label for the cell) and
    ``{key_prefix}_label_cell`` (the per-cell best match); ``uns[key_prefix]`` records the model
    (path), its number of genes, the number shared with the data and the settings.
    Stops with :class:`InputError` when fewer than ``min_shared_genes`` model genes are in the data.
    """
    import celltypist
    from celltypist.models import Model

    where = "annotate_celltypist"
    if isinstance(model, Model):
        model_obj, model_desc = model, "<in-memory celltypist.models.Model>"
    else:
        path = Path(model)
        if not path.is_file():
            raise InputError(str(path), "CellTypist model file not found.",
                             "give the path to a .pkl model (models are not downloaded here).")
        try:
            # An absolute path: celltypist treats a bare file name as a model to download.
            model_obj = Model.load(str(path.resolve()))
        except Exception as e:  # noqa: BLE001 - any unreadable file is an input problem
            raise InputError(str(path), f"not a readable CellTypist model ({type(e).__name__}: {e}).",
                             "give a .pkl written by celltypist (model.write).") from e
        model_desc = str(path.resolve())
    features = np.asarray(model_obj.features).astype(str)
    genes = adata.var_names.astype(str)
    n_shared = int(np.isin(features, genes).sum())
    if n_shared < min_shared_genes:
        raise InputError(where, f"the model shares only {n_shared} of its {features.size} genes with the data "
                                f"({adata.n_vars} genes; at least {min_shared_genes} needed).",
                         "use a model trained on the same species and gene symbols (var_names must be symbols).")
    if n_shared < 0.5 * features.size:
        log.warning("CellTypist model: only %d of %d model genes are in the data; predictions may be poor.",
                    n_shared, features.size)
    X = adata.layers[layer] if layer is not None else adata.X
    if not _log1p_cp10k_ok(X):
        raise InputError(where, f"{'layers[' + repr(layer) + ']' if layer else 'X'} is not log1p(CP10k) expression.",
                         "normalise to 10,000 counts per cell and log1p (pinnacle.rna_integrate.normalise).")
    clusters = None
    if majority_voting and over_clustering is not None:
        if over_clustering not in adata.obs:
            raise InputError(where, f"obs column '{over_clustering}' (over_clustering) is missing.",
                             "cluster first (Leiden) or pass over_clustering=None.")
        clusters = adata.obs[over_clustering].astype(str).to_numpy()
    # private light copy: CellTypist over-clustering writes neighbours/PCA into the AnnData it gets
    X_copy = X.copy()
    if sp.issparse(X_copy):
        X_copy = sp.csr_matrix(X_copy)
    small = ad.AnnData(X=X_copy, obs=pd.DataFrame(index=adata.obs_names.copy()),
                       var=pd.DataFrame(index=genes.copy()))
    res = celltypist.annotate(small, model=model_obj, majority_voting=majority_voting,
                              over_clustering=clusters)
    pred = res.predicted_labels
    prob = res.probability_matrix
    cell = pred["predicted_labels"].astype(str)
    voted = majority_voting and "majority_voting" in pred
    label = pred["majority_voting"].astype(str) if voted else cell
    cols = prob.columns.get_indexer(label.to_numpy())
    P = prob.to_numpy()
    conf = np.where(cols >= 0, P[np.arange(P.shape[0]), np.clip(cols, 0, None)], P.max(axis=1))
    adata.obs[f"{key_prefix}_label"] = pd.Categorical(label.reindex(adata.obs_names).to_numpy())
    adata.obs[f"{key_prefix}_conf"] = pd.Series(conf, index=prob.index).reindex(adata.obs_names).to_numpy(np.float32)
    adata.obs[f"{key_prefix}_label_cell"] = pd.Categorical(cell.reindex(adata.obs_names).to_numpy())
    adata.uns[key_prefix] = {
        "model": model_desc,
        "n_genes_model": int(features.size),
        "n_genes_shared": n_shared,
        "n_cell_types_model": int(len(model_obj.cell_types)),
        "majority_voting": bool(voted),
        "over_clustering": over_clustering if clusters is not None else ("celltypist" if voted else None),
        "celltypist_version": celltypist.__version__,
    }
    return adata


def _counts(adata: ad.AnnData, name: str):
    """Raw counts of ``adata``: ``layers['counts']`` or ``X``; must be non-negative integers."""
    M = adata.layers["counts"] if "counts" in adata.layers else adata.X
    rows = M[: min(200, M.shape[0])]
    vals = rows.data if sp.issparse(rows) else np.asarray(rows).ravel()
    if vals.size and (vals.min() < 0 or not np.allclose(vals, np.round(vals))):
        raise InputError(name, "no raw counts: layers['counts'] is absent and X is not integer counts.",
                         "keep the raw counts in layers['counts'].")
    return sp.csr_matrix(M) if sp.issparse(M) else sp.csr_matrix(np.asarray(M))


def annotate_scanvi(query: ad.AnnData, reference: ad.AnnData, *, label_key: str, batch_key: str,
                    n_latent: int = 30, n_layers: int = 2, max_epochs: int | None = None,
                    scanvi_max_epochs: int = 20, epoch_cap: int = 100, random_state: int = 0,
                    unlabeled: str = "Unknown", key_prefix: str = "scanvi", accelerator: str = "auto",
                    min_shared_genes: int = 200, n_samples_per_label: int | None = 100,
                    batch_size: int = 128, num_threads: int | None = None) -> ad.AnnData:
    """Transfer labels from a labelled ``reference`` to ``query`` with scANVI (in place on ``query``).

    Both need raw counts (``layers['counts']``, else integer ``X``) and ``batch_key`` in obs; the
    reference also ``label_key``. They are joined on their shared genes, scVI is trained on all
    cells (reference labelled, query labelled ``unlabeled``), then ``SCANVI.from_scvi_model`` is
    fine-tuned and predicts the query. Epochs: scVI ``max_epochs`` (None: scvi-tools' heuristic
    capped at ``epoch_cap``), SCANVI ``scanvi_max_epochs``. GPU when visible (``accelerator='auto'``).
    ``num_threads``: CPU threads for torch during training (restored after); give the job's
    threads: torch otherwise takes every core, and on a shared or busy machine its threads fight
    (measured: 5 scVI epochs on 1,200 cells, 2 cores under load, 1.7 s with 1 thread, 57 s with 2).

    Writes query obs ``{key_prefix}_label`` and ``{key_prefix}_conf`` (the largest soft
    prediction) and ``uns[key_prefix]`` (genes shared, epochs, device, reference label counts).
    """
    import scvi
    import torch

    from pinnacle.rna_integrate import scvi_max_epochs

    where = "annotate_scanvi"
    for name, obj, keys in (("reference", reference, (label_key, batch_key)), ("query", query, (batch_key,))):
        for k in keys:
            if k not in obj.obs:
                raise InputError(f"{where} ({name})", f"obs column '{k}' is missing.", "add it or pass another key.")
    ref_labels = reference.obs[label_key]
    if ref_labels.isna().any():
        raise InputError(f"{where} (reference)", f"{int(ref_labels.isna().sum())} cells have no '{label_key}'.",
                         "drop unlabelled reference cells or label them.")
    ref_labels = ref_labels.astype(str)
    if (ref_labels == unlabeled).any():
        raise InputError(f"{where} (reference)", f"the label '{unlabeled}' (unlabeled) is used by reference cells.",
                         "pass another unlabeled= value.")
    shared = reference.var_names.intersection(query.var_names)
    if len(shared) < min_shared_genes:
        raise InputError(where, f"reference and query share only {len(shared)} genes (at least {min_shared_genes} "
                                "needed).", "use the same gene symbols in both (var_names).")
    ref_c = _counts(reference, f"{where} (reference)")[:, reference.var_names.get_indexer(shared)]
    qry_c = _counts(query, f"{where} (query)")[:, query.var_names.get_indexer(shared)]
    obs = pd.DataFrame({
        "_batch": np.concatenate([("ref:" + reference.obs[batch_key].astype(str)).to_numpy(),
                                  ("query:" + query.obs[batch_key].astype(str)).to_numpy()]),
        "_label": np.concatenate([ref_labels.to_numpy(), np.full(query.n_obs, unlabeled, dtype=object)]),
    }, index=pd.Index([f"r{i}" for i in range(reference.n_obs)] + [f"q{i}" for i in range(query.n_obs)]))
    joint = ad.AnnData(X=sp.vstack([ref_c, qry_c]).tocsr().astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=pd.Index(shared.astype(str))))

    scvi.settings.seed = random_state
    scvi.model.SCVI.setup_anndata(joint, batch_key="_batch", labels_key="_label")
    vae = scvi.model.SCVI(joint, n_latent=n_latent, n_layers=n_layers)
    epochs = int(max_epochs) if max_epochs else scvi_max_epochs(joint.n_obs, cap=epoch_cap)
    threads_before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        vae.train(max_epochs=epochs, accelerator=accelerator, batch_size=batch_size)
        lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=unlabeled, labels_key="_label")
        lvae.train(max_epochs=int(scanvi_max_epochs), n_samples_per_label=n_samples_per_label,
                   accelerator=accelerator, batch_size=batch_size)
    finally:
        torch.set_num_threads(threads_before)
    q_idx = np.arange(reference.n_obs, joint.n_obs)
    soft = lvae.predict(joint, indices=q_idx, soft=True)
    if isinstance(soft, tuple):
        soft = soft[0]
    soft = soft.drop(columns=[c for c in soft.columns if str(c) == unlabeled], errors="ignore")
    P = soft.to_numpy()
    labels = soft.columns.astype(str).to_numpy()[P.argmax(axis=1)]
    query.obs[f"{key_prefix}_label"] = pd.Categorical(labels)
    query.obs[f"{key_prefix}_conf"] = P.max(axis=1).astype(np.float32)
    device = str(lvae.device) if hasattr(lvae, "device") else ("cuda" if torch.cuda.is_available() else "cpu")
    query.uns[key_prefix] = {
        "n_genes_shared": int(len(shared)),
        "n_reference_cells": int(reference.n_obs),
        "reference_label_counts": {str(k): int(v) for k, v in ref_labels.value_counts().items()},
        "scvi_epochs": epochs,
        "scanvi_epochs": int(scanvi_max_epochs),
        "n_latent": int(n_latent),
        "device": device,
        "random_state": int(random_state),
        "scvi_tools_version": scvi.__version__,
    }
    return query


def consensus_labels(obs: pd.DataFrame, *, methods: list[str] | None = None,
                     columns: Mapping[str, str] | None = None, unknown: str = UNKNOWN) -> pd.DataFrame:
    """Majority vote of the annotation methods, per cell.

    ``methods``: names among ``columns`` (default :data:`CONSENSUS_COLUMNS`: markers ->
    ``cell_type``, celltypist -> ``celltypist_label``, scanvi -> ``scanvi_label``); None: every
    method whose column is in ``obs``; a named method whose column is absent is skipped. A missing
    or ``unknown`` label is an abstention (no vote). The consensus is the most voted label; a tie
    goes to the markers' label when it is among the tied, else to the first tied method in
    ``methods`` order; a cell where all abstain is ``unknown``. ``cell_type_agreement`` = methods
    whose label equals the consensus / methods used (abstentions count against it; 0 when unknown).

    Returns a DataFrame (index of ``obs``) with ``cell_type_consensus`` and ``cell_type_agreement``;
    the ``uns``-free design lets the caller assign it to ``adata.obs``.
    """
    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    if methods is None:
        methods = [m for m, c in columns.items() if c in obs]
    bad = [m for m in methods if m not in columns]
    if bad:
        raise InputError("consensus_labels", f"unknown method(s) {bad}.", f"use names among {sorted(columns)}.")
    used = [m for m in methods if columns[m] in obs]
    if not used:
        raise InputError("consensus_labels", f"none of the label columns of {list(methods)} is in obs.",
                         "run at least one annotation method first.")
    order = (["markers"] if "markers" in used else []) + [m for m in used if m != "markers"]
    votes = pd.DataFrame({m: obs[columns[m]].astype(object).where(obs[columns[m]].notna(), None)
                          for m in order}, index=obs.index)
    cons, agree = [], []
    n = len(used)
    for row in votes.itertuples(index=False):
        labs = [str(v) for v in row if v is not None and str(v) != unknown]
        if not labs:
            cons.append(unknown)
            agree.append(0.0)
            continue
        counts: dict[str, int] = {}
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
        top = max(counts.values())
        # first in ``order`` (markers first) among the most voted
        best = next(lab for lab in labs if counts[lab] == top)
        cons.append(best)
        agree.append(top / n)
    return pd.DataFrame({"cell_type_consensus": pd.Categorical(cons),
                         "cell_type_agreement": np.asarray(agree, dtype=np.float32)}, index=obs.index)


# --------------------------------------------------------------------------------------------
# the analyst's corrections
# --------------------------------------------------------------------------------------------
#
# Why: no automatic method is right everywhere (a cluster of a type the marker file lacks, a
# contaminated cluster); the analyst who checked the dot plot and the cluster cross-table must be
# able to set a label and have every later stage use it, with the change on record. Hand-written:
# reading a small table and relabelling.

_CORRECTION_COLUMNS = ("cluster", "cell_id", "cell_type", "reason")


def load_corrections(path, markers: Mapping) -> pd.DataFrame:
    """Read and check the analyst's label corrections (tab-separated).

    Columns: ``cell_type`` (a subtype of the marker file, or ``unknown``) and, per row, exactly
    one of ``cluster`` (a cluster id of the annotation's Leiden clustering: every cell of it) or
    ``cell_id``; ``reason`` (free text) is optional and kept. Errors name the file, the line and
    the fix; nothing about the data is checked here (see :func:`apply_corrections`).
    """
    where = str(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except FileNotFoundError:
        raise InputError(where, "file not found.", "correct annotation.corrections or set it to \"\".") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(where, f"not a tab-separated table ({err}).",
                         "write a header line 'cluster<TAB>cell_id<TAB>cell_type<TAB>reason'.") from None
    table.columns = [str(c).strip() for c in table.columns]
    unknown_cols = sorted(set(table.columns) - set(_CORRECTION_COLUMNS))
    if unknown_cols or "cell_type" not in table.columns or not {"cluster", "cell_id"} & set(table.columns):
        raise InputError(where, f"columns are {list(table.columns)}.",
                         "use 'cell_type', one or both of 'cluster' and 'cell_id', and optionally 'reason'.")
    table = table.reindex(columns=list(_CORRECTION_COLUMNS), fill_value="")
    table = table.apply(lambda col: col.str.strip())
    parents = {sub: major for major, rec in markers.items() for sub in rec["subtypes"]}
    for i, row in table.iterrows():
        line = f"{where}, line {i + 2}"
        if bool(row["cluster"]) == bool(row["cell_id"]):
            raise InputError(line, "a row must give exactly one of 'cluster' and 'cell_id'.",
                             "split it into two rows, or fill in the one you mean.")
        if row["cell_type"] != UNKNOWN and row["cell_type"] not in parents:
            raise InputError(line, f"'{row['cell_type']}' is not a cell type of the marker file.",
                             f"use one of {sorted(parents)} or '{UNKNOWN}'; add a new type to the marker file first.")
    ids, cl = table["cell_id"], table["cluster"]
    dup = (ids.ne("") & ids.duplicated()) | (cl.ne("") & cl.duplicated())
    if dup.any():
        first = int(dup[dup].index[0])
        raise InputError(f"{where}, line {first + 2}", "this cluster or cell is corrected twice.",
                         "keep one row per cluster or cell.")
    table["cell_type_major"] = table["cell_type"].map(parents).fillna(UNKNOWN)
    return table


def apply_corrections(adata: ad.AnnData, corrections: pd.DataFrame, *, cluster_key: str,
                      where: str = "annotation.corrections") -> ad.AnnData:
    """Set the labels the analyst gave (:func:`load_corrections`): clusters first, then single
    cells (the more specific row wins). ``cell_type`` and ``cell_type_major`` change (and
    ``cell_type_consensus`` where present: the analyst has the last word); the automatic labels
    stay in ``cell_type_auto`` / ``cell_type_major_auto``, and
    ``annotation_corrected`` holds the reason ("" where unchanged). A cluster or cell id that is
    not in the data stops with an error naming it (a cluster id of another resolution is the
    usual cause)."""
    if cluster_key not in adata.obs:
        raise InputError(where, f"obs['{cluster_key}'] (clusters) is missing.", "cluster first.")
    clusters = adata.obs[cluster_key].astype(str)
    missing_cl = sorted(set(corrections.loc[corrections["cluster"] != "", "cluster"]) - set(clusters))
    missing_id = sorted(set(corrections.loc[corrections["cell_id"] != "", "cell_id"]) - set(adata.obs_names))
    if missing_cl or missing_id:
        what = (f"clusters {missing_cl} are not clusters of {cluster_key}" if missing_cl else "") + \
               ("; " if missing_cl and missing_id else "") + \
               (f"cells {missing_id[:5]}{' ...' if len(missing_id) > 5 else ''} are not in the cohort" if missing_id else "")
        raise InputError(where, what + ".", f"use cluster ids of results/tables/cluster_vs_cell_type.tsv "
                         f"({cluster_key}) and cell ids of results/cohort/cell_labels.tsv.gz.")
    adata.obs["cell_type_auto"] = adata.obs["cell_type"].copy()
    adata.obs["cell_type_major_auto"] = adata.obs["cell_type_major"].copy()
    label = adata.obs["cell_type"].astype(str).to_numpy(dtype=object)
    major = adata.obs["cell_type_major"].astype(str).to_numpy(dtype=object)
    reason = np.full(adata.n_obs, "", dtype=object)
    given = corrections.assign(reason=corrections["reason"].replace("", "corrected"))
    for r in given[given["cluster"] != ""].itertuples(index=False):  # clusters first, a mask each
        hit = (clusters == r.cluster).to_numpy()
        label[hit], major[hit], reason[hit] = r.cell_type, r.cell_type_major, r.reason
    cells = given[given["cell_id"] != ""]  # then single cells, all at once
    at = adata.obs_names.get_indexer(cells["cell_id"])
    label[at], major[at], reason[at] = (cells[c].to_numpy() for c in ("cell_type", "cell_type_major", "reason"))
    changed = reason != ""
    todo = [("cell_type", label), ("cell_type_major", major)]
    if "cell_type_consensus" in adata.obs:
        todo.append(("cell_type_consensus", np.where(changed, label, adata.obs["cell_type_consensus"].astype(str))))
    for col, values in todo:
        cats = list(dict.fromkeys([*adata.obs[col].cat.categories, *pd.unique(values)])) \
            if isinstance(adata.obs[col].dtype, pd.CategoricalDtype) else None
        adata.obs[col] = pd.Categorical(values, categories=cats)
    adata.obs["annotation_corrected"] = reason.astype(str)
    return adata


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

__all__ += ["PROTEIN_EVIDENCE", "load_protein_expectations", "match_tags", "isotype_controls", "clr",
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
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "protein expectation file not found.",
                         "use resources/protein_markers.yaml or a file in its format.")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except _DuplicateKey as e:
        raise InputError(f"{path} (line {e.line})", f"key '{e.key}' appears twice (first on line {e.first_line}).",
                         "give each tag, label and key once.") from None
    except yaml.YAMLError as e:
        raise InputError(str(path), f"not valid YAML: {e}", "fix the YAML syntax.") from None
    if not isinstance(raw, Mapping) or set(raw) != _PROT_TOP_KEYS:
        raise InputError(str(path), "the file must have exactly the top-level keys 'tags' and 'cell_types'.",
                         "see resources/protein_markers.yaml.")
    tags = {}
    for tag, entry in raw["tags"].items():
        entry = _prot_keys(entry, f"{path}: tags > '{tag}'", _PROT_TAG_KEYS)
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InputError(f"{path}: tags > '{tag}'", "'aliases' must be a list of names.", "write 'aliases: [CD3, CD3E]'.")
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
    that the panel has. Several columns for one tag (two clones): the first is used."""
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
    MouseIgG1kappaisotype_PROT). IgA/IgD/IgM are real targets and are not matched."""
    return [str(v) for v in var_names if re.search(r"isotype|control", str(v), flags=re.IGNORECASE)]


def clr(prot: ad.AnnData, *, layer: str | None = None, key_added: str = "clr") -> ad.AnnData:
    """Per-cell centred log-ratio of antibody counts into ``layers[key_added]`` (dense float32).

    Why per cell: a cell's tags share its capture efficiency and droplet background, so each
    cell is centred on its own geometric mean, ``log1p(x / exp(mean(log1p(x))))`` over all its
    tags. This is Seurat's ``NormalizeData(method="CLR", margin=2)`` and muon's
    ``prot.pp.clr(axis=1)``; muon's default ``axis=0`` and Seurat's default ``margin=1`` centre
    each tag across cells instead, which leaves the per-cell capture differences in. Hand-written
    (muon is not a dependency; the formula is one line). Counts from ``layers[layer]`` or ``X``.
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

    The CLR is computed into ``layers[layer]`` when absent. Returns ``(calls, thresholds)``:
    calls (cells x tags: 1.0 positive, 0.0 negative, NaN undetermined) and one row per tag
    (``threshold`` (the valley), ``positive_above``, ``method`` mixture / isotype /
    undetermined, ``separation``, ``positive_fraction`` and ``undetermined_fraction``).
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

    ``prot``: one sample's raw tag counts (cells x tags, any number of tags, 0 included);
    ``labels``: obs-like table indexed by cell id with ``label_key`` (and ``major_key``, used when
    the subtype is unknown or has no entry); ``expectations``: :func:`load_protein_expectations`.
    Tags are found by alias (:func:`match_tags`), CLR-normalised per cell (:func:`clr`, over the
    whole panel) and called per tag in this sample (:func:`call_tags`; ``call_options`` go there).

    Returns ``(cells, tags)``. ``cells`` columns: ``protein_label`` (the label whose expectation
    applied), ``tag_<TAG>`` (1 positive, 0 negative, NaN undetermined or not in the panel),
    ``n_tags_checked``, ``n_tags_discordant``,
    ``discordant_tags`` (observed state of each discordant tag, e.g. ``CD4+ CD8-``) and
    ``protein_evidence``: ``contradicts`` when more than ``max_discordant`` checked tags
    disagree with the expectation (default: any, since lineage tags are near on/off), else
    ``confirms``; ``no_tags`` when no expected tag was measured and called (no CITE-seq, or the
    panel lacks them); ``no_expectation`` for a label without an entry (``unknown``) in a cell
    that has tag calls. ``tags``: one row per matched tag (``tag``, the panel's ``column``, and
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
    cells has a tag call is left out, so without CITE-seq the table is empty (with its columns)."""
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
    (no CITE-seq, or none of the tags in the panel) the figure says so. Returns a Figure."""
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


# --------------------------------------------------------------------------------------------
# agreement between annotation methods (report figure)
# --------------------------------------------------------------------------------------------

__all__ += ["method_agreement", "plot_method_agreement"]


def _methods_present(obs: pd.DataFrame, methods: Iterable[str] | None, columns: Mapping[str, str]) -> list[str]:
    names = list(columns) if methods is None else list(methods)
    return [m for m in names if m in columns and columns[m] in obs]


def method_agreement(obs: pd.DataFrame, *, methods: Iterable[str] | None = None,
                     columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per marker label (``cell_type``): cells, and for each other method present the share of
    those cells to which it gives the same label (``agree_<method>``); ``mean_agreement`` is the
    mean ``cell_type_agreement`` of the consensus when present. Why: shows which labels the
    methods agree on and which one method alone calls."""
    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    used = _methods_present(obs, methods, columns)
    if "markers" not in used:
        raise InputError("method_agreement", f"obs column '{columns['markers']}' (markers) is missing.",
                         "annotate with the markers first.")
    col = obs[columns["markers"]]
    ref = col.astype(str)
    table = ref.value_counts().rename("n_cells").to_frame()
    if isinstance(col.dtype, pd.CategoricalDtype):  # the vocabulary's order (markers.yaml)
        table = table.reindex([str(c) for c in col.cat.categories if str(c) in table.index])
    for m in [u for u in used if u != "markers"]:
        same = obs[columns[m]].astype(str).to_numpy() == ref.to_numpy()
        table[f"agree_{m}"] = pd.Series(same, index=obs.index).groupby(ref.to_numpy()).mean()
    if "cell_type_agreement" in obs:
        table["mean_agreement"] = obs["cell_type_agreement"].astype(float).groupby(ref.to_numpy()).mean()
    table.index.name = "label"
    return table


def _confusion(ref: pd.Series, other: pd.Series, order: list[str], max_labels: int) -> pd.DataFrame:
    """Row-normalised crosstab ref x other, rows in ``order``; columns: the labels shared with
    ``ref`` in that order, then the others by size, beyond ``max_labels`` lumped as
    ``(other labels)``."""
    tab = pd.crosstab(ref.astype(str), other.astype(str)).reindex(order, fill_value=0)
    cols = [c for c in order if c in tab.columns]
    rest = tab.drop(columns=cols).sum().sort_values(ascending=False).index.tolist()
    keep = (cols + rest)[:max_labels]
    out = tab[keep].copy()
    lumped = tab.drop(columns=keep).sum(axis=1)
    if lumped.any():
        out["(other labels)"] = lumped
    return out.div(out.sum(axis=1).replace(0, 1), axis=0)


def plot_method_agreement(obs: pd.DataFrame, *, methods: Iterable[str] | None = None,
                          columns: Mapping[str, str] | None = None, max_labels: int = 30):
    """Report figure: how the annotation methods agree. With CellTypist and/or scANVI next to
    the markers: per marker label, the share of cells each other method labels the same (bars),
    and one heatmap per other method of where the marker labels go (rows sum to 1). With the
    markers alone: the label confidence per label (box plots), titled to say that only one
    method ran. ``obs`` is not modified. Returns a Figure."""
    import matplotlib.pyplot as plt

    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    used = _methods_present(obs, methods, columns)
    table = method_agreement(obs, methods=used, columns=columns)
    others = [m for m in used if m != "markers"]
    labels = list(table.index)
    if not others:
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.3 * len(labels)))
        ref = obs[columns["markers"]].astype(str)
        conf = obs["cell_type_confidence"] if "cell_type_confidence" in obs else pd.Series(np.nan, index=obs.index)
        ax.boxplot([conf[ref == lab].astype(float).dropna().to_numpy() for lab in labels], vert=False,
                   tick_labels=[f"{lab} ({table.loc[lab, 'n_cells']:,})" for lab in labels], showfliers=False)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("cell_type_confidence")
        ax.set_title("Only the marker method ran (no CellTypist model or scANVI reference):\n"
                     "label confidence per marker label instead of agreement between methods", fontsize=10)
        fig.tight_layout()
        plt.close(fig)
        return fig
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(5 + 6 * len(others), 1.5 + 0.32 * len(labels)),
                             gridspec_kw={"width_ratios": [1] + [1.6] * len(others)}, squeeze=False)
    ax = axes[0, 0]
    y = np.arange(len(labels))
    h = 0.8 / len(others)
    for k, m in enumerate(others):
        ax.barh(y + (k - (len(others) - 1) / 2) * h, table[f"agree_{m}"].fillna(0), height=h, label=m)
    if "mean_agreement" in table:
        ax.plot(table["mean_agreement"], y, "k|", markersize=10, label="mean consensus agreement")
    ax.set_yticks(y, [f"{lab} ({n:,})" for lab, n in zip(labels, table["n_cells"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the marker label's cells given the same label")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.set_title("Agreement with the marker labels", fontsize=10, pad=12 + 9 * ((len(others) + 2) // 2))
    ref = obs[columns["markers"]].astype(str)
    for k, m in enumerate(others, start=1):
        conf = _confusion(ref, obs[columns[m]], labels, max_labels)
        axk = axes[0, k]
        im = axk.imshow(conf.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axk.set_yticks(y, labels)
        axk.set_xticks(range(conf.shape[1]), conf.columns, rotation=90, fontsize=7)
        axk.set_xlabel(f"{m} label")
        axk.set_title(f"Markers (rows) vs {m} (columns)", fontsize=10)
        fig.colorbar(im, ax=axk, fraction=0.03, label="share of row")
    fig.tight_layout()
    plt.close(fig)
    return fig
