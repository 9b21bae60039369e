"""The analyst's label corrections."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._constants import UNKNOWN

log = logging.getLogger("pinnacle.annotate")

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

    Parameters
    ----------
    path
        The corrections file (``annotation.corrections``).
    markers
        The dict of :func:`load_markers`: the allowed cell types.

    Returns
    -------
    One row per correction (``cluster``, ``cell_id``, ``cell_type``, ``reason``) with
    ``cell_type_major`` added.
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
    usual cause).

    Parameters
    ----------
    adata
        The annotated cohort; changed in place.
    corrections
        :func:`load_corrections` output.
    cluster_key
        obs column of the clusters the ``cluster`` ids refer to.
    where
        The corrections' name (config key), for messages.
    """
    if cluster_key not in adata.obs:
        raise InputError(where, f"obs['{cluster_key}'] (clusters) is missing.", "cluster first.")
    clusters = adata.obs[cluster_key].astype(str)
    missing_cl = sorted(set(corrections.loc[corrections["cluster"] != "", "cluster"]) - set(clusters))
    missing_id = sorted(set(corrections.loc[corrections["cell_id"] != "", "cell_id"]) - set(adata.obs_names))
    if missing_cl or missing_id:
        what = (f"clusters {missing_cl} are not clusters of {cluster_key}" if missing_cl else "") + \
               ("; " if missing_cl and missing_id else "") + \
               (f"cells {missing_id[:5]}{' ...' if len(missing_id) > 5 else ''} are not in the cohort"
                if missing_id else "")
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
