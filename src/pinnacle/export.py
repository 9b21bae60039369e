"""Outputs other tools open: the cohort as a cellxgene-ready ``.h5ad`` and the run summary table.

The pipeline's own h5ad files are working files (the HVG-only cohort with its neighbour graph,
counts layers, large tables in ``uns``). Other tools (cellxgene, CELLxGENE's schema validator,
a colleague's scanpy session) want one file with every gene, named embeddings and tidy
metadata. :func:`write_cellxgene` writes it chunk by chunk from the on-disk counts, so no
full-gene matrix, dense or sparse, is ever in memory.

- :func:`write_cellxgene` - the cohort: ``X`` log-normalised (float32, sparse) on every gene,
  ``raw.X`` the counts (float32), categorical ``obs``, ``obsm`` embeddings named ``X_*``, small
  ``uns``.
- :func:`cellxgene_obs`, :func:`cellxgene_obsm`, :func:`small_uns` - the metadata rules.
- :func:`run_summary` - samples, cells in and out of QC, cell types, software versions, config
  hash and seed, one table.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError
from pinnacle.writers import atomic_path

__all__ = ["canonical_name", "cellxgene_obs", "cellxgene_obsm", "config_hash", "package_versions", "pinned_packages",
           "run_summary", "small_uns", "write_cellxgene"]

log = logging.getLogger(__name__)

#: ``uns`` entries that describe objects the export leaves out (the neighbour graph in ``obsp``)
DROPPED_UNS = ("neighbors",)
#: largest array (elements) kept in ``uns``; bigger ones are working data, not metadata
MAX_UNS_ELEMENTS = 10_000


# --------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------
def cellxgene_obs(obs: pd.DataFrame) -> pd.DataFrame:
    """The cell table with every text column as a categorical (cellxgene colours and filters by
    categories; object columns are also slow and large in h5ad), categories as text (Leiden's
    integer codes too), unused categories dropped. A text column with a different value in
    every cell (``barcode``: the cell id holds it) is an identifier, not a grouping, and is left
    out.

    Parameters
    ----------
    obs
        The cohort's cell table.
    """
    out = obs.copy()
    for col in list(out.columns):
        values = out[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            cats = values.cat.categories
            if not all(isinstance(c, str) for c in cats):  # numbers, mixed: text categories
                values = values.astype(str).where(values.notna())
                values = values.astype("category")
            out[col] = values.cat.remove_unused_categories()
        elif values.dtype == object or pd.api.types.is_string_dtype(values):
            if len(out) > 1 and values.nunique(dropna=False) == len(out):
                log.info("obs[%r] differs in every cell (an identifier); left out", col)
                out = out.drop(columns=col)
                continue
            out[col] = values.astype(str).where(values.notna()).astype("category")
    out.index = out.index.astype(str)
    return out


def cellxgene_obsm(obsm: Mapping[str, object], n_obs: int) -> dict[str, np.ndarray]:
    """The embeddings: ``obsm`` entries named ``X_*`` (the convention for embeddings, and all
    cellxgene shows) as dense float32 arrays with at least two columns and no missing value.
    Anything else (per-cell score tables such as ``marker_scores_*``) is left out (logged).

    Parameters
    ----------
    obsm
        The cohort's ``obsm``.
    n_obs
        Cells (rows every embedding must have).
    """
    out = {}
    for key, value in obsm.items():
        if not key.startswith("X_"):
            log.info("obsm[%r] is not named as an embedding (X_*); left out", key)
            continue
        if isinstance(value, pd.DataFrame):
            value = value.to_numpy()
        arr = value.toarray() if sp.issparse(value) else np.asarray(value)
        if arr.ndim != 2 or arr.shape[0] != n_obs or arr.shape[1] < 2 or not np.issubdtype(arr.dtype, np.number):
            log.info("obsm[%r] is not an embedding (shape %s); left out", key, arr.shape)
            continue
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            log.info("obsm[%r] has missing values; left out", key)
            continue
        out[re.sub(r"[^A-Za-z0-9_.-]", "_", key)] = arr
    return out


def _small(value, max_elements: int):
    """``value`` as plain h5ad-writable metadata, or None when it is large or not metadata."""
    if isinstance(value, Mapping):
        kept = {str(k): v for k, v in ((k, _small(v, max_elements)) for k, v in value.items()) if v is not None}
        return kept or None
    if isinstance(value, str | bool | int | float | np.generic):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, pd.DataFrame | pd.Series) or sp.issparse(value) or value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        try:
            arr = np.asarray(value)
        except ValueError:
            return None
        if arr.size > max_elements or (arr.dtype == object and not all(isinstance(v, str) for v in arr.ravel())):
            return None
        if arr.dtype.kind not in "biufUSO":
            return None
        return arr.astype(str) if arr.dtype.kind in "USO" else arr
    return None


def small_uns(uns: Mapping, obs: pd.DataFrame | None = None, *,
              max_elements: int = MAX_UNS_ELEMENTS) -> dict:
    """The run's metadata without working data: tables, sparse matrices, arrays over
    ``max_elements`` elements and the neighbour-graph parameters (the graph is not exported) are
    left out; ``{column}_colors`` is kept only when it has one colour per category of ``obs``.

    Parameters
    ----------
    uns
        The cohort's ``uns``.
    obs
        The exported cell table (for the colour lists).
    max_elements
        Largest array kept.
    """
    out = {}
    for key, value in uns.items():
        if key in DROPPED_UNS:
            continue
        if key.endswith("_colors"):
            col = key[: -len("_colors")]
            if obs is None or col not in obs or not isinstance(obs[col].dtype, pd.CategoricalDtype) \
                    or len(value) != len(obs[col].cat.categories):
                continue
        kept = _small(value, max_elements)
        if kept is not None:
            out[str(key)] = kept
    return out


# --------------------------------------------------------------------------------------------
# the cohort file
# --------------------------------------------------------------------------------------------
def _normalise_block(counts: sp.csr_matrix, target_sum: float) -> sp.csr_matrix:
    """log1p of counts per ``target_sum``, row by row (each cell on its own: exact in chunks)."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    out = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float32)
    np.log1p(out.data, out=out.data)
    return out


def _append(f: h5py.File, key: str, block: sp.csr_matrix, first: bool, index_dtype) -> None:
    """Write the first block of a CSR matrix under ``key`` (chunked, resizable) or append one."""
    block = sp.csr_matrix(block, dtype=np.float32)
    block.indices = block.indices.astype(index_dtype)
    block.indptr = block.indptr.astype(index_dtype)
    if first:
        del f[key]
        ad.io.write_elem(f, key, block, dataset_kwargs={"compression": "gzip"})
    else:
        ad.io.sparse_dataset(f[key]).append(block)


def write_cellxgene(annotated: str | os.PathLike, counts: str | os.PathLike, out: str | os.PathLike, *,
                    chunk_size: int = 10_000, target_sum: float = 1e4, title: str = "",
                    default_embedding: str = "X_umap") -> dict:
    """Write the cohort for cellxgene and other tools, ``chunk_size`` cells at a time.

    Cells and their metadata come from the annotated cohort (the cells that passed QC, with
    labels, embeddings, clusters); expression from the cohort's counts on every gene
    (``rna_counts.h5ad``, read from disk in row chunks): ``raw.X`` the counts and ``X`` their
    log1p per ``target_sum``, both sparse float32, ``var`` indexed by gene symbol (with
    ``gene_ids``, e.g. Ensembl ids, when the counts have them; ``highly_variable`` marks the
    genes the integration used). Written to a temporary name and renamed at the end. Returns
    a short record of what was written.

    Parameters
    ----------
    annotated
        The annotated cohort (``results/cohort/annotated.h5ad``).
    counts
        The cohort's counts on every gene (``results/cohort/rna_counts.h5ad``).
    out
        The file to write.
    chunk_size
        Cells read, normalised and written at a time (memory: this many cells x all genes,
        sparse).
    target_sum
        Counts per cell after normalisation, before log1p.
    title
        ``uns['title']`` (cellxgene shows it); empty: none.
    default_embedding
        ``uns['default_embedding']`` when that embedding is exported.
    """
    cohort = ad.read_h5ad(annotated, backed="r")
    try:
        obs = cellxgene_obs(cohort.obs)
        obsm = cellxgene_obsm(dict(cohort.obsm), cohort.n_obs)
        uns = small_uns(dict(cohort.uns), obs)
        hvg = cohort.var_names[cohort.var["highly_variable"].to_numpy(dtype=bool)] \
            if "highly_variable" in cohort.var else cohort.var_names
    finally:
        cohort.file.close()
    source = ad.read_h5ad(counts, backed="r")
    try:
        rows = source.obs_names.get_indexer(obs.index)
        if (rows < 0).any():
            missing = obs.index[rows < 0]
            raise InputError(str(counts), f"{len(missing)} annotated cells have no counts (first: {missing[0]}).",
                             "rebuild the cohort: rerun rules merge_samples and annotate_cells.")
        var = pd.DataFrame(index=pd.Index(source.var_names.astype(str), name=None))
        for col in ("gene_ids", "feature_types"):
            if col in source.var:
                var[col] = source.var[col].astype(str).to_numpy()
        if "feature_types" in var:
            var["feature_types"] = var["feature_types"].astype("category")
        for col in source.var.columns:  # gene flags (mt, ribo, hb)
            if source.var[col].dtype == bool:
                var[col] = source.var[col].to_numpy()
        var["highly_variable"] = var.index.isin(hvg)
        with h5py.File(counts, "r") as f:
            total_nnz = int(f["X"]["indptr"][-1]) if isinstance(f["X"], h5py.Group) else source.n_obs * source.n_vars
        index_dtype = np.int64 if max(total_nnz, source.n_vars) > np.iinfo(np.int32).max else np.int32
        if title:
            uns["title"] = title
        if default_embedding in obsm:
            uns["default_embedding"] = default_embedding
        empty = sp.csr_matrix((len(obs), len(var)), dtype=np.float32)
        shell = ad.AnnData(X=empty, obs=obs, var=var, obsm=obsm, uns=uns)
        shell.raw = ad.AnnData(X=empty, obs=obs[[]], var=var)
        out = Path(out)
        with atomic_path(out) as tmp:
            shell.write_h5ad(tmp)
            del shell, empty
            with h5py.File(tmp, "r+") as f:
                for start in range(0, len(rows), chunk_size):
                    part = rows[start:start + chunk_size]
                    order = np.argsort(part, kind="stable")
                    block = sp.csr_matrix(source.X[part[order]], dtype=np.float32)[np.argsort(order, kind="stable")]
                    _append(f, "raw/X", block, start == 0, index_dtype)
                    _append(f, "X", _normalise_block(block, target_sum), start == 0, index_dtype)
                    log.info("cellxgene export: %d of %d cells written", min(start + chunk_size, len(rows)),
                             len(rows))
    finally:
        source.file.close()
    return {"n_obs": len(obs), "n_vars": len(var), "obsm": sorted(obsm), "uns": sorted(uns),
            "categorical_obs": [c for c in obs if isinstance(obs[c].dtype, pd.CategoricalDtype)]}


# --------------------------------------------------------------------------------------------
# run summary
# --------------------------------------------------------------------------------------------
def config_hash(config: Mapping) -> str:
    """SHA-256 of the config as sorted JSON: two runs with the same hash had the same settings.

    Parameters
    ----------
    config
        The run's config (as given, with the schema's defaults).
    """
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def pinned_packages(path: str | os.PathLike) -> dict[str, str]:
    """``{package: version}`` of the ``name==version`` lines of a pip requirements file, names
    in :func:`canonical_name` form (comments, options and unpinned lines skipped).

    Parameters
    ----------
    path
        The requirements or lock file (``envs/requirements.txt``, ``envs/lock.txt``).
    """
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if m:
            pins[canonical_name(m.group(1))] = m.group(3)
    return pins


def canonical_name(name: str) -> str:
    """A package name as pip compares them (PEP 503: ``PyYAML`` = ``pyyaml``, ``a_b`` = ``a-b``).

    Parameters
    ----------
    name
        A distribution name.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when missing), by the environment
    the job runs in (the venv, or the rule's conda environment).

    Parameters
    ----------
    names
        Package names.
    """
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_summary(qc: pd.DataFrame, cell_types: pd.Series, *, config_sha256: str, seed: int,
                pinned: Mapping[str, str], versions: Mapping[str, str] | None = None,
                python: str | None = None) -> pd.DataFrame:
    """One table of what the run was: its settings (seed, config hash, Python), its samples
    with cells before and after QC, its cell types with their cells, and the versions of the
    pinned packages (installed, and the pin when they differ).

    Columns ``section``, ``name``, ``value``, ``note``; sections ``run``, ``sample``,
    ``cell type``, ``software``.

    Parameters
    ----------
    qc
        The per-sample QC summary (``results/rna/qc_summary.tsv``: ``sample_id``,
        ``n_cells_loaded``, ``n_cells_kept``).
    cell_types
        Each annotated cell's type.
    config_sha256
        The run's config hash (:func:`config_hash`).
    seed
        The run's seed.
    pinned
        ``{package: pinned version}`` (:func:`pinned_packages`).
    versions
        Installed versions; default :func:`package_versions` of ``pinned``.
    python
        Python version; default this interpreter's.
    """
    versions = dict(versions) if versions is not None else package_versions(pinned)
    python = python or platform.python_version()
    loaded, kept = int(qc["n_cells_loaded"].sum()), int(qc["n_cells_kept"].sum())
    counts = cell_types.astype(str).value_counts()
    rows: list[tuple[str, str, object, str]] = [
        ("run", "samples", len(qc), ""),
        ("run", "patients", qc["patient_id"].nunique() if "patient_id" in qc else "", ""),
        ("run", "cells before QC", loaded, "cell-containing droplets loaded"),
        ("run", "cells after QC", kept, f"{kept / loaded:.1%} kept" if loaded else ""),
        ("run", "cells annotated", int(counts.sum()), ""),
        ("run", "cell types", len(counts), "including 'unknown'" if "unknown" in counts.index else ""),
        ("run", "seed", seed, ""),
        ("run", "config sha256", config_sha256, "same hash = same settings"),
        ("run", "python", python, ""),
        ("run", "pinnacle-sc", package_versions(["pinnacle-sc"])["pinnacle-sc"], ""),
    ]
    for r in qc.itertuples(index=False):
        n_in, n_out = int(r.n_cells_loaded), int(r.n_cells_kept)
        rows.append(("sample", str(r.sample_id), n_out,
                     f"{n_out} of {n_in} cells kept ({n_out / n_in:.1%})" if n_in else "no cells loaded"))
    rows += [("cell type", str(t), int(n), f"{n / counts.sum():.1%} of cells") for t, n in counts.items()]
    for name in sorted(pinned, key=str.lower):
        have = versions.get(name, "not installed")
        # a local build label (torch 2.13.0+cpu) is the pinned release
        same = have.split("+", 1)[0] == pinned[name].split("+", 1)[0]
        rows.append(("software", name, have, "" if same else f"pinned {pinned[name]}"))
    return pd.DataFrame(rows, columns=["section", "name", "value", "note"])

