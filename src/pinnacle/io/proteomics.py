"""Cohort proteomics tables: MaxQuant proteinGroups.txt, DIA-NN pg_matrix, Olink NPX, plain matrix."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.errors import InputError
from pinnacle.io._common import (
    _check_file,
    _check_unique,
    _read_table,
    _strings_to_float,
)

PROTEOMICS_FORMATS = ("maxquant", "diann", "olink", "matrix")


def _norm_name(s: str) -> str:
    """Column-name key that equates MaxQuant names and their R make.names() spelling."""
    return re.sub(r"[^0-9a-z]+", ".", str(s).lower()).strip(".")


def _col(df: pd.DataFrame, *names: str) -> str | None:
    keys = {_norm_name(c): c for c in df.columns}
    for n in names:
        if _norm_name(n) in keys:
            return keys[_norm_name(n)]
    return None


def _first_symbol(s: pd.Series) -> np.ndarray:
    return s.fillna("").astype(str).str.split(";").str[0].str.strip().to_numpy()


def _quantity_columns(columns, quantity: str) -> dict[str, str]:
    """{sample: column} for columns '<quantity> <sample>' (or the make.names form with dots)."""
    parts = [re.escape(p) for p in re.split(r"[^0-9A-Za-z]+", quantity.strip()) if p]
    rx = re.compile(r"^" + r"[^0-9A-Za-z]+".join(parts) + r"[ .](.+)$", re.IGNORECASE)
    out = {}
    for c in columns:
        m = rx.match(str(c))
        if m and m.group(1).strip().lower() != "peptides":  # MaxQuant's "iBAQ peptides" is no sample
            out[m.group(1).strip()] = c
    return out


_MAXQUANT_KINDS = ("LFQ intensity", "Intensity", "iBAQ", "Reporter intensity corrected", "Reporter intensity")


def _proteomics_adata(values: np.ndarray, samples, protein_id, gene, var_index, uns: dict) -> ad.AnnData:
    var = pd.DataFrame({"protein_id": np.asarray(protein_id, dtype=str), "gene": np.asarray(gene, dtype=str)},
                       index=pd.Index(np.asarray(var_index, dtype=str)))
    var.index = ad.utils.make_index_unique(var.index)
    a = ad.AnnData(X=np.ascontiguousarray(values, dtype=np.float32),
                   obs=pd.DataFrame(index=pd.Index(np.asarray(samples, dtype=str))), var=var)
    a.uns["proteomics"] = uns
    return a


def read_proteomics(path, *, format: str, quantity: str | None = None, scale: str = "linear") -> ad.AnnData:
    """Read a cohort proteomics table as samples x protein groups.

    ``format`` is one of ``"maxquant"`` (proteinGroups.txt; ``quantity`` "LFQ intensity"
    (default), "Intensity" or "iBAQ"; rows flagged Reverse / Potential contaminant / Only
    identified by site are dropped, 0 -> NaN), ``"diann"`` (pg_matrix.tsv), ``"olink"`` (NPX long
    table; QC_Warning rows -> NaN; log2 scale) or ``"matrix"`` (first column protein id, optional
    ``gene`` column, other columns samples; ``scale`` "linear" or "log2").

    Parameters
    ----------
    path
        The exported table (tab-, semicolon- or comma-separated, optionally gzipped).
    format
        ``"maxquant"``, ``"diann"``, ``"olink"`` or ``"matrix"`` (above).
    quantity
        For ``"maxquant"``, the kind of intensity columns read (None: "LFQ intensity"); for the
        other formats only recorded in ``uns`` (None: "pg_matrix", "NPX", "value").
    scale
        Scale of a ``"matrix"``'s values, ``"linear"`` or ``"log2"``; the other formats fix their
        scale and take only the default.

    Returns
    -------
    Samples x protein groups: ``X`` is dense float32 with NaN for missing; ``var`` has ``protein_id``
    and ``gene``; ``uns["proteomics"]`` records format, quantity, scale, n_input_rows and n_removed
    (rows carrying each flag; a row may carry several).
    """
    path = Path(path)
    if format not in PROTEOMICS_FORMATS:
        raise InputError(
            path, f"unknown proteomics format {format!r}.",
            f"set the format to one of: {', '.join(PROTEOMICS_FORMATS)}.",
        )
    if scale not in ("linear", "log2"):
        raise InputError(path, f"unknown scale {scale!r}.", "set scale to 'linear' or 'log2'.")
    if scale != "linear" and format != "matrix":
        raise InputError(path, f"scale={scale!r} only applies to format 'matrix'.",
                         f"drop the scale setting: the {format} scale is fixed by the format.")
    _check_file(path, "proteomics table")
    df = _read_table(path, as_str=True)
    if df.shape[0] == 0:
        raise InputError(path, "the table has a header but no rows.", "give the full export.")
    reader = {"maxquant": _read_maxquant, "diann": _read_diann, "olink": _read_olink, "matrix": _read_matrix}[format]
    return reader(df, str(path), quantity=quantity, scale=scale)


def _no_flags() -> dict[str, int]:
    return {"reverse": 0, "contaminant": 0, "only_by_site": 0}


def _read_maxquant(df: pd.DataFrame, where: str, *, quantity: str | None, scale: str) -> ad.AnnData:
    quantity = quantity or "LFQ intensity"
    qcols = _quantity_columns(df.columns, quantity)
    if not qcols:
        kinds = [k for k in _MAXQUANT_KINDS if _quantity_columns(df.columns, k)]
        raise InputError(
            where,
            f"no '{quantity} <sample>' columns (quantity kinds found: {', '.join(kinds) or 'none'}).",
            "set the proteomics quantity to one of the kinds found, or re-export from MaxQuant with "
            "that quantification (e.g. LFQ enabled).",
        )
    id_col = _col(df, "Majority protein IDs", "Protein IDs")
    if id_col is None:
        raise InputError(
            where, "has neither a 'Majority protein IDs' nor a 'Protein IDs' column.",
            "give MaxQuant's proteinGroups.txt unchanged (txt/ output folder).",
        )
    n_input = int(df.shape[0])
    keep = np.ones(n_input, dtype=bool)
    removed = _no_flags()
    for key, names in (("reverse", ("Reverse",)), ("contaminant", ("Potential contaminant", "Contaminant")),
                       ("only_by_site", ("Only identified by site",))):
        c = _col(df, *names)
        if c is not None:
            flag = (df[c].astype(str).str.strip() == "+").to_numpy()
            removed[key] = int(flag.sum())
            keep &= ~flag
    df = df.loc[keep]
    values = np.column_stack(
        [_strings_to_float(df[c], f"{where} [column {c!r}]") for c in qcols.values()]
    ) if len(df) else np.zeros((0, len(qcols)))
    values[values == 0] = np.nan
    gene_col = _col(df, "Gene names")
    gene = _first_symbol(df[gene_col]) if gene_col is not None else np.full(len(df), "")
    pid = df[id_col].astype(str).to_numpy()
    uns = {"format": "maxquant", "quantity": quantity, "scale": "linear", "n_input_rows": n_input,
           "n_removed": removed}
    return _proteomics_adata(values.T, list(qcols), pid, gene, pid, uns)


_DIANN_ANNOT = ("Protein.Group", "Protein.Ids", "Protein.Names", "Genes", "First.Protein.Description",
                "N.Sequences", "N.Proteotypic.Sequences")
_RAW_EXT = (".raw", ".d", ".mzml", ".mzxml", ".wiff", ".wiff2", ".dia")


def _run_name(col: str) -> str:
    base = re.split(r"[\\/]", str(col).rstrip("\\/"))[-1]
    for ext in _RAW_EXT:
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def _read_diann(df: pd.DataFrame, where: str, *, quantity: str | None, scale: str) -> ad.AnnData:
    if "Protein.Group" not in df.columns:
        raise InputError(where, "has no 'Protein.Group' column; it is not a DIA-NN pg_matrix.",
                         "give DIA-NN's *.pg_matrix.tsv (not the long report.tsv).")
    sample_cols = [c for c in df.columns if c not in _DIANN_ANNOT]
    samples = [_run_name(c) for c in sample_cols]
    _check_unique(samples, where, "sample names after removing folders and raw-file extensions",
                  "rename the raw files so every run has a distinct name.")
    values = np.column_stack([_strings_to_float(df[c], f"{where} [column {c!r}]") for c in sample_cols])
    gene = _first_symbol(df["Genes"]) if "Genes" in df.columns else np.full(len(df), "")
    pid = df["Protein.Group"].astype(str).to_numpy()
    uns = {"format": "diann", "quantity": quantity or "pg_matrix", "scale": "linear",
           "n_input_rows": int(df.shape[0]), "n_removed": _no_flags()}
    return _proteomics_adata(values.T, samples, pid, gene, pid, uns)


def _read_olink(df: pd.DataFrame, where: str, *, quantity: str | None, scale: str) -> ad.AnnData:
    missing = [c for c in ("SampleID", "Assay", "NPX") if c not in df.columns]
    if missing:
        raise InputError(where, f"missing Olink column(s) {', '.join(missing)}.",
                         "give the Olink NPX long export (SampleID, Assay, OlinkID, UniProt, NPX, QC_Warning).")
    npx = df["NPX"].astype(str)
    decimal_comma = bool(npx.str.contains(",", regex=False).any() and not npx.str.contains(".", regex=False).any())
    values = _strings_to_float(df["NPX"], f"{where} [column 'NPX']", decimal_comma=decimal_comma)
    n_warn = 0
    if "QC_Warning" in df.columns:
        warn = df["QC_Warning"].astype(str).str.strip().str.upper().isin(["WARNING", "WARN"]).to_numpy()
        n_warn = int(warn.sum())
        values[warn] = np.nan
    pair = df[["SampleID", "Assay"]].astype(str)
    dup = pair.duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{where}, data row {i + 1}",
            f"SampleID {pair['SampleID'].iat[i]!r} x Assay {pair['Assay'].iat[i]!r} appears more than once "
            f"({int(dup.sum())} duplicated pairs).",
            "give one NPX value per sample and assay (rename repeated samples, or keep one panel's copy "
            "of an assay measured on several panels).",
        )
    samples = pd.unique(pair["SampleID"])
    assays = pd.unique(pair["Assay"])
    X = np.full((len(samples), len(assays)), np.nan)
    X[pd.Index(samples).get_indexer(pair["SampleID"]), pd.Index(assays).get_indexer(pair["Assay"])] = values
    first = df.loc[~pair["Assay"].duplicated().to_numpy()]  # one row per assay, in `assays` order
    pid = np.full(len(assays), "", dtype=object)
    for c in ("OlinkID", "UniProt"):  # UniProt wins where present
        if c in df.columns:
            v = first[c].astype(str).str.strip().to_numpy()
            pid = np.where(v != "", v, pid)
    uns = {"format": "olink", "quantity": quantity or "NPX", "scale": "log2", "n_input_rows": int(df.shape[0]),
           "n_removed": _no_flags(), "n_qc_warning": n_warn}
    return _proteomics_adata(X, samples, pid, assays, assays, uns)


def _read_matrix(df: pd.DataFrame, where: str, *, quantity: str | None, scale: str) -> ad.AnnData:
    id_col = df.columns[0]
    gene_col = next((c for c in df.columns[1:] if c.lower() == "gene"), None)
    sample_cols = [c for c in df.columns[1:] if c != gene_col]
    if not sample_cols:
        raise InputError(where, "has no sample columns after the protein id column.",
                         "give protein ids in the first column and one numeric column per sample.")
    pid = df[id_col].astype(str).str.strip()
    _check_unique(pid, f"{where} [column {id_col!r}]", "protein ids",
                  "give one row per protein (aggregate or rename repeated ids).")
    values = np.column_stack([_strings_to_float(df[c], f"{where} [column {c!r}]") for c in sample_cols])
    gene = df[gene_col].astype(str).str.strip().to_numpy() if gene_col else np.full(len(df), "")
    uns = {"format": "matrix", "quantity": quantity or "value", "scale": scale,
           "n_input_rows": int(df.shape[0]), "n_removed": _no_flags()}
    return _proteomics_adata(values.T, sample_cols, pid.to_numpy(), gene, pid.to_numpy(), uns)
