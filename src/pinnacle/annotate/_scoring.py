"""Scoring marker sets per cell and the hierarchical assignment with abstention (see the
package docstring for what comes from libraries)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from ._constants import DEFAULTS, METHOD_NAME, UNKNOWN
from ._markers import (
    _check_level,
    _missing_genes,
    _scoring_sets,
    check_markers_present,
    drop_absent_sets,
    marker_sets,
    panel_gaps,
    remove_state_genes,
)

log = logging.getLogger("pinnacle.annotate")

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

    Parameters
    ----------
    adata
        The cohort, log-normalised; changed in place.
    markers
        The dict of :func:`load_markers` (after :func:`remove_state_genes` /
        :func:`drop_absent_sets` in the pipeline).
    level
        ``"major"`` or ``"subtype"``.
    layer
        Layer with the log-normalised values; default ``X``.
    key_added
        obsm / uns key of the scores.
    max_value
        Clip of the standardised values.
    chunk_size
        Cells densified at a time.
    where
        The caller's name, for messages.
    """
    import decoupler as dc

    _check_level(level)
    key_added = key_added or f"marker_scores_{level}"
    flat = marker_sets(markers, level)
    missing = _missing_genes(flat, adata.var_names, where=where)
    present = set(map(str, adata.var_names))
    sets = {k: v for k, v in _scoring_sets(markers, level).items() if any(g in present for g in v["markers"])}
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
    # A set with ``requires`` counts only those genes as evidence (CCR7 alone is no LAMP3+ DC).
    evidence = np.array([w > 0 and (not sets[src]["requires"] or g in sets[src]["requires"])
                         for src, g, w in net.itertuples(index=False)], dtype=np.float32)
    pos = sp.csr_matrix((evidence,
                         (pd.Index(genes).get_indexer(net["target"]), pd.Index(cols).get_indexer(net["source"]))),
                        shape=(len(genes), len(cols)))
    detected = (Msub > 0) if sp.issparse(Msub) else sp.csr_matrix(np.asarray(Msub) > 0)
    n_detected = np.asarray((detected.astype(np.float32) @ pos).todense())
    scores = np.where(n_detected > 0, scores, np.minimum(scores, 0.0)).astype(np.float32)
    frame = pd.DataFrame(scores, index=adata.obs_names, columns=cols)
    if level == "major":  # a lineage scored by components: the best of them
        parents = [sets[c]["parent"] for c in cols]
        frame = frame.T.groupby(parents, sort=False).max().T
        cols = list(frame.columns)
        sets = {c: flat[c] for c in cols}
    adata.obsm[key_added] = frame
    if level == "subtype":
        # per cell: does it detect any gene of each sub-lineage group (CD8A/CD8B, CD4/CD40LG)?
        group_genes = {f"{major}|{g}": [x for x in grec["markers"] if x in present]
                       for major, rec in markers.items() for g, grec in rec.get("groups", {}).items()}
        evidence = {}
        for name, gg in group_genes.items():
            if gg:
                sub_m = M[:, adata.var_names.get_indexer(gg)]
                evidence[name] = np.asarray((sub_m > 0).sum(axis=1)).ravel() > 0
            else:
                evidence[name] = np.zeros(adata.n_obs, dtype=bool)
        adata.obsm[f"{key_added}_group_evidence"] = pd.DataFrame(evidence, index=adata.obs_names)
    adata.uns[key_added] = {
        "level": level,
        "method": "decoupler.mt.ulm on standardised marker genes",
        # lists, not dicts: set names such as "T/NK" would become paths in an h5ad file
        "sets": cols,
        "parents": [sets[k]["parent"] for k in cols],
        "groups": [sets[k].get("group", "") for k in cols],
        # subtypes whose lineage lost siblings to the panel: a lone one must earn its call
        "siblings_dropped": [k for k in cols if k != sets[k]["parent"]
                             and markers.get(sets[k]["parent"], {}).get("dropped_subtypes")],
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
                  subtype_key: str = "marker_scores_subtype", method: str = METHOD_NAME,
                  **thresholds) -> ad.AnnData:
    """Hierarchical labels, with abstention, from the scores of :func:`score_markers`.

    0. Lineage first, from lineage genes only: the major type is decided by the major sets'
       scores alone. Subtype sets never vote for a lineage: their genes (CCR7, SELL, IDO1...) are
       shared across lineages or induced by a state, and counting them let B cells with CCR7/SELL
       become T/NK on a panel without CD79A/CD19.
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
       subtype passes its label down, unless the panel cost it its other subtypes (then the one
       left must score ``min_score_subtype``: a B cell is not "memory" because the naive-B genes
       are missing); cells of unknown major type have unknown subtype.

    Writes obs ``cell_type_major`` and ``cell_type`` (categoricals; ``unknown`` in both when the
    major type is unknown, in ``cell_type`` only when the subtype is unresolved),
    ``cell_type_confidence`` (0-1: the major type's margin over the best other type divided by
    ``margin_full`` and clipped, averaged with the share of the cell's cluster whose per-cell call
    is the cell's final type (when clustered); times 0.5 + 0.5 x the scaled subtype margin where
    the major type has several subtypes, times 0.5 when the subtype is unresolved; 0 for an
    unknown major type), ``cell_type_major_cell`` and ``annotation_method``; the thresholds and a
    per-cluster table (``clusters``: cells, share called, top call, its share, label given) in
    ``uns['annotation_markers']``.

    Parameters
    ----------
    adata
        The cohort with both levels' scores in ``obsm``; changed in place.
    cluster_key
        obs column of the clusters that smooth the labels; None: per-cell calls only.
    major_key, subtype_key
        obsm keys of the major and subtype scores.
    method
        Value of ``obs['annotation_method']``.
    thresholds
        Override :data:`DEFAULTS` (``min_score``, ``min_margin``, ``strong_score``,
        ``strong_margin``, ``majority``, ``min_called``, ``against``, ``minority``,
        ``min_score_subtype``, ``min_margin_subtype``, ``margin_full``; scores are ulm t-values).
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
    siblings_dropped = set(rec.get("siblings_dropped", []))
    majors = list(Smaj_df.columns)
    children = {m: [s for s, p in parent.items() if p == m and s in Ssub_df.columns] for m in majors}
    Smaj = Smaj_df.to_numpy(dtype=np.float64)
    n = adata.n_obs

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
        if len(subs) == 1 and subs[0] not in siblings_dropped:
            subtype[rows] = subs[0]
            continue
        b, t, m = _best_two(Ssub_df.iloc[rows][subs].to_numpy(dtype=np.float64))
        ok = (t >= th["min_score_subtype"]) & (m >= th["min_margin_subtype"])
        subtype[rows] = np.where(ok, np.asarray(subs, dtype=object)[b], UNKNOWN)
        conf[rows] *= np.where(ok, 0.5 + 0.5 * np.clip(m / th["margin_full"], 0, 1), 0.5)

    # 4. sub-lineage smoothing: in a cluster whose subtype calls fall in one group (CD8 T, CD4 T)
    #    by a clear majority, a cell of another group (or with an unknown subtype) that detects
    #    none of its own group's genes takes the best subtype of the cluster's group (subtypes
    #    without a group, e.g. NK, are left alone). Dropout of CD4/CD8A/CD8B
    #    transcripts is common (CD8A in ~half of real CD8 T cells); the cluster sees the lineage.
    n_group_moves = 0
    group_of = dict(zip(list(rec.get("sets", [])), list(rec.get("groups", [])), strict=True)) if "groups" in rec else {}
    evidence = adata.obsm.get(f"{subtype_key}_group_evidence")
    if cluster_key is not None and evidence is not None and any(group_of.values()):
        clusters = adata.obs[cluster_key].astype(str).to_numpy()
        for major in majors:
            subs = [s for s in children[major] if group_of.get(s)]
            if len({group_of[s] for s in subs}) < 2:
                continue
            for cl in np.unique(clusters[final == major]):
                rows = np.flatnonzero((final == major) & (clusters == cl))
                own_group = np.array([group_of.get(x, "") for x in subtype[rows]], dtype=object)
                called = own_group != ""
                if called.sum() < 5:
                    continue
                shares = pd.Series(own_group[called]).value_counts(normalize=True)
                top, share = str(shares.index[0]), float(shares.iloc[0])
                if share < th["group_majority"]:
                    continue
                ev_own = np.zeros(rows.size, dtype=bool)
                ev_other = np.zeros(rows.size, dtype=bool)
                for g in {group_of[s] for s in subs}:
                    has = evidence[f"{major}|{g}"].to_numpy()[rows]
                    ev_own |= has & (own_group == g)
                    if g != top:
                        ev_other |= has
                # candidates: cells of another group, and cells without a subtype (not NK & co.)
                candidate = (called & (own_group != top)) | (subtype[rows] == UNKNOWN)
                move = candidate & ~ev_own & ~(~called & ev_other)
                if not move.any():
                    continue
                in_top = [s for s in subs if group_of[s] == top]
                S = Ssub_df.iloc[rows[move]][in_top].to_numpy(dtype=np.float64)
                subtype[rows[move]] = np.asarray(in_top, dtype=object)[S.argmax(axis=1)]
                n_group_moves += int(move.sum())

    adata.obs["cell_type_major_cell"] = pd.Categorical(cell_call, categories=majors + [UNKNOWN])
    adata.obs["cell_type_major"] = pd.Categorical(final, categories=majors + [UNKNOWN])
    adata.obs["cell_type"] = pd.Categorical(subtype, categories=list(Ssub_df.columns) + [UNKNOWN])
    adata.obs["cell_type_confidence"] = conf.astype(np.float32)
    adata.obs["annotation_method"] = pd.Categorical([method] * n)
    adata.uns["annotation_markers"] = {
        "cluster_key": cluster_key if cluster_key is not None else "",
        **{k: float(v) for k, v in th.items() if k != "max_value"},
        "group_moves": n_group_moves,
        "clusters": pd.DataFrame(cluster_rows, columns=["cluster", "n_cells", "called_share", "top_call",
                                                        "top_share_of_called", "label"]),
    }
    return adata


def annotate_by_markers(adata: ad.AnnData, markers: Mapping, *, cluster_key: str | None,
                        layer: str | None = None, min_score: float = DEFAULTS["min_score"],
                        min_margin: float = DEFAULTS["min_margin"], majority: float = DEFAULTS["majority"],
                        absent: str = "error", state_genes: Iterable[str] = (),
                        skip_lineages: Iterable[str] = (), random_state: int = 0,
                        where: str = "annotation markers", **thresholds) -> ad.AnnData:
    """Score both levels of ``markers`` and assign hierarchical labels (in place; returns ``adata``).

    Writes what :func:`score_markers` and :func:`assign_labels` write, and in
    ``uns['annotation_markers']``: ``dropped_sets`` and ``panel`` (:func:`panel_gaps`: which sets
    lost which genes, and which types can no longer be told apart).

    Parameters
    ----------
    adata
        Cells x genes, log-normalised in ``X`` (or ``layer``).
    markers
        The dict of :func:`load_markers`.
    cluster_key
        The Leiden column used for smoothing (None: per-cell labels only).
    layer
        Layer with the log-normalised values; default ``X``.
    absent
        A subtype set with no gene in the data stops the run (``"error"``, the default) or is
        left out (``"drop"``, for a gene panel that lacks it). A lineage with no gene left is an
        error either way unless named in ``skip_lineages``.
    state_genes
        Genes of cell states (``resources/states.yaml``), taken out of every identity set
        (:func:`remove_state_genes`).
    skip_lineages
        Lineages the tissue cannot hold (blood has no epithelium); left out of the annotation.
    min_score, min_margin, majority, thresholds
        Go to :func:`assign_labels`.
    random_state
        Recorded for the run record: the scoring (ulm, with decoupler's fixed tie-breaking) and
        the assignment are deterministic.
    where
        The caller's name, for messages.
    """
    if absent not in ("error", "drop"):
        raise InputError(where, f"absent={absent!r} is not known.", "use 'error' or 'drop'.")
    _thresholds(where, thresholds)
    used, removed = remove_state_genes(markers, state_genes, where=where)
    skip = list(skip_lineages)
    used, dropped = drop_absent_sets(used, adata.var_names, skip_lineages=skip, where=where)
    lost = [d for d in dropped if " > " in d and d.split(" > ")[0] not in skip]
    if absent == "error" and lost:
        sets = marker_sets(markers, "subtype")
        names = [d.split(" > ")[1] for d in lost]
        detail = "; ".join(f"{n}: {', '.join(sets[n]['requires'] or sets[n]['markers'])}" for n in names)
        raise InputError(where, f"marker set(s) with no (required) gene present in the data: {detail}.",
                         "use HGNC symbols matching the data's var_names (not Ensembl ids), keep these genes in "
                         "the cohort object, or set annotation.absent: drop for a gene panel that lacks them "
                         "(the dropped sets are then reported).")
    check_markers_present(used, adata.var_names, where=where)
    for level in ("major", "subtype"):
        score_markers(adata, used, level=level, layer=layer, where=where,
                      max_value=thresholds.get("max_value", DEFAULTS["max_value"]))
    assign_labels(adata, cluster_key=cluster_key, min_score=min_score, min_margin=min_margin, majority=majority,
                  **{k: v for k, v in thresholds.items() if k != "max_value"})
    rec = adata.uns["annotation_markers"]
    rec["random_state"] = int(random_state)
    rec["dropped_sets"] = list(dropped)
    rec["skip_lineages"] = skip
    rec["panel"] = panel_gaps(markers, adata.var_names, used=used, state_removed=removed)
    return adata
