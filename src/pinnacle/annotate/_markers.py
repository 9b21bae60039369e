"""The curated marker file: loading, validation, the sets a run can score, cell-state genes
left out of identity, and the table of what a gene panel leaves of each set."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from pinnacle.curated import gene_list as _gene_list
from pinnacle.curated import load_yaml as _load_yaml
from pinnacle.curated import resource_entry as _resource_entry
from pinnacle.errors import InputError

from ._constants import _GROUP_KEYS, _MAJOR_KEYS, _SUBTYPE_KEYS, UNKNOWN

log = logging.getLogger("pinnacle.annotate")

# --------------------------------------------------------------------------------------------
# marker file
# --------------------------------------------------------------------------------------------


def _marker_entry(entry, where: str, allowed: set[str]) -> dict:
    source = _resource_entry(entry, where, allowed, resource="resources/markers.yaml")
    pos = _gene_list(entry.get("markers"), where, "markers", required=True)
    neg = _gene_list(entry.get("negative"), where, "negative", required=False)
    both = sorted(set(pos) & set(neg))
    if both:
        raise InputError(where, f"{', '.join(both)} listed both as marker and as negative.",
                         "keep each gene in one of 'markers' or 'negative'.")
    req = _gene_list(entry.get("requires"), where, "requires", required=False)
    stray = [g for g in req if g not in pos]
    if stray:
        raise InputError(where, f"'requires' lists {', '.join(stray)}, which are not among the set's markers.",
                         "'requires' is a subset of 'markers': add them to 'markers' or remove them.")
    return {"markers": pos, "negative": neg, "requires": req, "source": source}


def load_markers(path) -> dict:
    """Read and validate a hierarchical marker YAML (``resources/markers.yaml`` format).

    Returns ``{major: {"markers", "negative", "source", "subtypes": {subtype: {"markers",
    "negative", "source"}}}}``. A major type without ``subtypes`` gets one subtype of its own name
    and markers. Raises :class:`InputError` naming the file and key for: a missing or unparsable
    file, unknown keys, empty marker lists, a gene listed twice or as both marker and negative, a
    set without source, and subtype names that repeat (within or across major types) or are
    ``unknown``.

    Parameters
    ----------
    path
        The YAML file.
    """
    path = Path(path)
    raw = _load_yaml(path, what="marker file",
                     missing_fix="point the config key 'annotation.markers' at a YAML file such as "
                                 "resources/markers.yaml.",
                     duplicate_fix="set names must be unique and each key given once: rename or merge the "
                                   "duplicated set (or key).")
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
        groups = {}
        groups_raw = entry.get("groups") or {}
        if not isinstance(groups_raw, Mapping):
            raise InputError(where, "'groups' must be a mapping of group name to {markers, source}.",
                             "write 'groups:' followed by indented 'NAME: {markers: [...], source: ...}' entries.")
        for grp, gentry in groups_raw.items():
            gwhere = f"{path}: '{major}' > groups > '{grp}'"
            g = _marker_entry(gentry, gwhere, _GROUP_KEYS)
            groups[str(grp)] = {"markers": g["markers"], "source": g["source"]}
        rec["groups"] = groups
        comps_raw = entry.get("components") or {}
        if not isinstance(comps_raw, Mapping):
            raise InputError(where, "'components' must be a mapping of name to a list of lineage genes.",
                             "write 'components: {T: [CD3D, CD3E], NK: [NKG7, KLRD1]}'.")
        comps = {str(k): _gene_list(v, where, f"components > {k}", required=True) for k, v in comps_raw.items()}
        stray = sorted({g for v in comps.values() for g in v} - set(rec["markers"]))
        unused = [g for g in rec["markers"] if comps and not any(g in v for v in comps.values())]
        if stray or unused:
            raise InputError(where, f"components and markers disagree: {', '.join(stray)} in a component but not in "
                             f"markers; {', '.join(unused)} in markers but in no component.",
                             "list every lineage gene under 'markers' and in at least one component.")
        rec["components"] = comps
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
            group = sentry.get("group") if isinstance(sentry, Mapping) else None
            if group is not None and str(group) not in groups:
                raise InputError(swhere, f"group '{group}' is not one of the lineage's groups "
                                 f"({', '.join(groups) or 'none defined'}).",
                                 f"define it under '{major}: groups:' or fix the name.")
            subs[sub]["group"] = str(group) if group is not None else ""
        rec["subtypes"] = subs
        out[major] = rec
    return out


def marker_sets(markers: Mapping, level: str = "major") -> dict[str, dict]:
    """Flat ``{set name: {"markers", "negative", "source", "parent"}}`` of one level.

    Parameters
    ----------
    markers
        The dict of :func:`load_markers`.
    level
        ``"major"`` or ``"subtype"``.
    """
    _check_level(level)
    sets = {}
    for major, rec in markers.items():
        if level == "major":
            sets[major] = {"markers": list(rec["markers"]), "negative": list(rec.get("negative", [])),
                           "requires": list(rec.get("requires", [])), "source": rec.get("source", ""),
                           "parent": major}
        else:
            for sub, srec in rec["subtypes"].items():
                sets[sub] = {"markers": list(srec["markers"]), "negative": list(srec.get("negative", [])),
                             "requires": list(srec.get("requires", [])), "source": srec.get("source", ""),
                             "parent": major, "group": srec.get("group", "")}
    return sets


def _scoring_sets(markers: Mapping, level: str) -> dict[str, dict]:
    """The sets scored: at the major level a lineage with ``components`` (T and NK within T/NK)
    is scored once per component, named ``lineage|component``; its score is their maximum, so a
    CD4 T cell is not penalised for lacking the NK genes of its lineage."""
    sets = marker_sets(markers, level)
    if level != "major":
        return sets
    out = {}
    for name, rec in sets.items():
        comps = markers[name].get("components") or {}
        if not comps:
            out[name] = rec
        for comp, genes in comps.items():
            out[f"{name}|{comp}"] = {**rec, "markers": list(genes),
                                     "requires": [g for g in rec["requires"] if g in genes]}
    return out


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

    Raises :class:`InputError` when a set has no positive marker among ``var_names`` (naming the
    set, its genes and the fix); logs one warning listing the sets with some genes missing.

    Parameters
    ----------
    markers
        The dict of :func:`load_markers`, or a flat ``{set: {"markers": [...], "negative": [...]}}``.
    var_names
        The data's genes.
    where
        The caller's name, for messages.
    level
        ``"major"`` or ``"subtype"`` only; default both.

    Returns
    -------
    ``{set name: [missing genes]}`` (positive and negative) for sets with some genes missing;
    an empty dict means everything was found.
    """
    missing = _missing_genes(markers, var_names, where=where, level=level)
    if missing:
        log.warning("%s: marker genes absent from the data (scored without them): %s", where,
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items()))
    return missing


def _usable(rec: Mapping, names: set[str]) -> bool:
    """A set can be scored when it has a positive marker, and one of its required genes if it
    names any, in the data."""
    return (any(g in names for g in rec["markers"])
            and (not rec.get("requires") or any(g in names for g in rec["requires"])))


def drop_absent_sets(markers: Mapping, var_names: Iterable[str], *,
                     skip_lineages: Iterable[str] = (), where: str = "annotation markers") -> tuple[dict, list[str]]:
    """Copy of ``markers`` without the subtype sets the data cannot score.

    For data that cannot hold some subtypes (a small gene panel lacks the naive-B genes). A
    subtype with no positive marker (or none of its ``requires`` genes) in ``var_names`` is
    dropped; a lineage that loses all its subtypes keeps one named as itself (its cells are then
    labelled with the lineage only). A lineage with no lineage gene left is an error (its cells
    would silently become another type), unless it is named in ``skip_lineages``: then it is
    dropped with its subtypes.

    Parameters
    ----------
    markers
        The dict of :func:`load_markers`.
    var_names
        The data's genes.
    skip_lineages
        Lineages the tissue cannot hold (e.g. epithelium in blood), dropped without error.
    where
        The caller's name, for messages.

    Returns
    -------
    ``(markers, dropped set names)`` (subtypes as ``"lineage > subtype"``); see
    :func:`panel_gaps` for the table.
    """
    names = set(map(str, var_names))
    skip = set(skip_lineages)
    unknown = sorted(skip - set(markers))
    if unknown:
        raise InputError(where, f"skip_lineages names {', '.join(unknown)}, which the marker file lacks.",
                         f"use lineages of the marker file: {', '.join(markers)}.")
    out, dropped = {}, []
    for major, rec in markers.items():
        if major in skip:
            dropped += [major] + [f"{major} > {s}" for s in rec["subtypes"]]
            continue
        if not _usable(rec, names):
            raise InputError(where, f"lineage '{major}' has none of its lineage genes in the data "
                             f"({', '.join(rec['markers'])}); its cells would be called as another type.",
                             "keep these genes in the data (cohort genes, panel), or, if the tissue cannot "
                             "hold this lineage, list it under annotation.skip_lineages.")
        subs = {k: v for k, v in rec["subtypes"].items() if _usable(v, names)}
        dropped += [f"{major} > {k}" for k in rec["subtypes"] if k not in subs]
        if not subs:  # the lineage is still called; its cells' subtype is the lineage itself
            subs = {major: {k: rec.get(k, []) for k in ("markers", "negative", "requires")}
                    | {"source": "lineage only: the data hold no gene of its subtypes"}}
        out[major] = {**rec, "subtypes": subs,
                      "dropped_subtypes": [k for k in rec["subtypes"] if k not in subs]}
    if dropped:
        log.warning("marker sets the data cannot score were dropped: %s", ", ".join(dropped))
    return out, dropped


def state_genes(states: Mapping) -> set[str]:
    """Every gene of the state programmes (``compare.load_signatures('resources/states.yaml')``):
    the genes :func:`remove_state_genes` keeps out of identity scoring.

    Parameters
    ----------
    states
        ``{state: {"genes": [...]}}``.
    """
    return {str(g) for rec in states.values() for g in rec["genes"]}


def remove_state_genes(markers: Mapping, state_genes: Iterable[str], *,
                       where: str = "annotation markers") -> tuple[dict, pd.DataFrame]:
    """Copy of ``markers`` without the genes of cell states (``resources/states.yaml``).

    A state (interferon response, activation, proliferation, stress) can switch on in any type,
    so its genes must not decide a type: a treatment that raises interferon would otherwise
    relabel cells (IDO1 makes monocytes look like LAMP3+ dendritic cells). Raises
    :class:`InputError` when a set is left without positive markers (or required genes).

    Parameters
    ----------
    markers
        The dict of :func:`load_markers`.
    state_genes
        Genes of the cell states (:func:`state_genes`).
    where
        The caller's name, for messages.

    Returns
    -------
    ``(markers, table of removed genes: set, level, gene, role)``.
    """
    state = set(map(str, state_genes))
    rows = []

    def _clean(rec, name, level):
        new = dict(rec)
        for role in ("markers", "negative", "requires"):
            gone = [g for g in rec.get(role, []) if g in state]
            rows.extend((name, level, g, role) for g in gone)
            new[role] = [g for g in rec.get(role, []) if g not in state]
        if not new["markers"] or (rec.get("requires") and not new["requires"]):
            raise InputError(where, f"marker set '{name}' has only cell-state genes as markers "
                             f"({', '.join(rec['markers'])}); a state (interferon, activation, ...) "
                             "cannot identify a cell type.",
                             "add identity genes that the state does not induce to the set, or remove the set.")
        return new

    out = {}
    for major, rec in markers.items():
        new = _clean(rec, major, "major")
        new["subtypes"] = {k: _clean(v, k, "subtype") for k, v in rec["subtypes"].items()}
        out[major] = new
    table = pd.DataFrame(rows, columns=["set", "level", "gene", "role"])
    if len(table):
        log.warning("%s: cell-state genes not used for identity: %s", where,
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in table.groupby("set")["gene"]))
    return out, table


def panel_gaps(markers: Mapping, var_names: Iterable[str], *, used: Mapping | None = None,
               state_removed: pd.DataFrame | None = None) -> pd.DataFrame:
    """What the data's genes leave of every marker set: one row per set.

    Parameters
    ----------
    markers
        The curated file (:func:`load_markers`).
    var_names
        The data's genes.
    used
        The sets actually scored (after :func:`remove_state_genes` and
        :func:`drop_absent_sets`); default ``markers``.
    state_removed
        The table of :func:`remove_state_genes`.

    Returns
    -------
    Columns ``level``, ``set``, ``lineage``, ``n_markers``, ``n_present``, ``absent_genes``
    (positive and negative), ``state_genes`` (left out as cell-state genes), ``status``
    (``complete``, ``reduced`` or ``dropped``) and ``cannot_tell_from``: sibling subtypes this
    set can no longer be told apart from (it was dropped, so its cells go to a sibling; or its
    remaining positive markers are the same genes as a sibling's).
    """
    names = set(map(str, var_names))
    used = markers if used is None else used
    removed = state_removed if state_removed is not None else pd.DataFrame(columns=["set", "gene"])
    by_set = removed.groupby("set")["gene"].agg(lambda g: ", ".join(g)).to_dict() if len(removed) else {}
    rows = []
    for major, rec in markers.items():
        entries = [("major", major, rec, major in used)]
        kept = used.get(major, {}).get("subtypes", {})
        entries += [("subtype", k, v, k in kept) for k, v in rec["subtypes"].items()]
        for level, name, r, is_used in entries:
            genes = r["markers"] + r.get("negative", [])
            absent = [g for g in genes if g not in names]
            n_present = sum(g in names for g in r["markers"])
            status = "dropped" if not is_used else ("complete" if not absent and name not in by_set else "reduced")
            cannot = ""
            if level == "subtype" and len(rec["subtypes"]) > 1:
                if not is_used:
                    cannot = ", ".join(kept) if kept else ""
                else:
                    own = {g for g in kept[name]["markers"] if g in names}
                    twins = [k for k, v in kept.items()
                             if k != name and {g for g in v["markers"] if g in names} == own]
                    cannot = ", ".join(twins)
            rows.append((level, name, major, len(r["markers"]), n_present, ", ".join(absent),
                         by_set.get(name, ""), status, cannot))
    return pd.DataFrame(rows, columns=["level", "set", "lineage", "n_markers", "n_present", "absent_genes",
                                       "state_genes", "status", "cannot_tell_from"])
