"""Writers of the real file formats the pipeline reads (no analysis here).

The simulator (``pinnacle.simulate``) uses these to write its demo cohort in the same formats a
real trial delivers, so every reader of the pipeline is exercised on the demo exactly as on real
data. Each writer is deterministic: the same input gives byte-identical files (no time stamps in
HDF5 objects or gzip headers, fixed dataset order and chunking).

- :func:`write_10x_h5` - Cell Ranger (v3+) ``filtered/raw_feature_bc_matrix.h5``.
- :func:`write_scdna_wide` - a wide per-bin read-count table (chrom, start, end, one column per cell),
  as cellranger-dna / Ginkgo-style tools export it, gzip-compressed.
- :func:`write_maxquant_protein_groups` - a MaxQuant-style ``proteinGroups.txt``.
- :func:`write_tsv` - any DataFrame as TSV (gzip when the name ends in ``.gz``), deterministic.

No output is left half-written: every writer here writes to a temporary name in the target's
folder and renames it to the target only when the write has finished (:func:`atomic_path`). The
adapters in ``workflow/scripts/`` write their outputs with the same guarantee through
:func:`write_table`, :func:`write_h5ad` and :func:`save_figure`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

__all__ = ["atomic_path", "save_figure", "write_10x_h5", "write_h5ad", "write_maxquant_protein_groups",
           "write_scdna_wide", "write_table", "write_tsv"]

#: temporary files of :func:`atomic_path` start with this (hidden, in the target's folder)
PARTIAL_PREFIX = ".partial."


# --------------------------------------------------------------------------------------------
# whole files or none
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path`` to; renamed to ``path`` when the block ends normally,
    removed when it raises.

    The temporary file sits in the target's folder (so the rename is atomic: same file system)
    and its name ends with the target's name, so writers that go by the extension (pandas'
    compression, matplotlib's format, ``.h5ad``) behave as for the target. A reader, or a rerun,
    therefore sees the whole file or none; a killed process (SIGKILL, out of memory) can leave
    only a hidden ``.partial.*`` file, never a target that looks complete; the next write of the
    same target (the rerun of the killed job) removes what such a writer left, as one job writes
    a target at a time. A target that existed before is left as it was when the write fails.

    Parameters
    ----------
    path
        The file to write; parent folders are created.

    Examples
    --------
    >>> with atomic_path("results/table.tsv.gz") as tmp:  # doctest: +SKIP
    ...     df.to_csv(tmp, sep="\t")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"{re.escape(PARTIAL_PREFIX)}\d+\.[0-9a-f]{{8}}\.{re.escape(path.name)}")
    for old in path.parent.glob(f"{PARTIAL_PREFIX}*"):  # left by a writer of this target killed before
        if stale.fullmatch(old.name):
            _remove(old)
    tmp = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}.{secrets.token_hex(4)}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    """Remove a file, link or folder if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def write_table(df: pd.DataFrame, path: str | os.PathLike, **to_csv) -> None:
    """``df.to_csv(path, **to_csv)``, whole or not at all (:func:`atomic_path`).

    Gzip-compressed (deterministically: no time stamp, no file name) when ``path`` ends in .gz;
    lines end in ``\n``. Every other keyword goes to :meth:`pandas.DataFrame.to_csv`, with its
    defaults (so ``sep`` must be given for TSV).

    Parameters
    ----------
    df
        The table.
    path
        The file to write; parent folders are created.
    **to_csv
        Keywords of :meth:`pandas.DataFrame.to_csv` (not ``compression``).
    """
    to_csv.setdefault("lineterminator", "\n")
    with atomic_path(path) as tmp, _open_text(tmp) as fh:
        df.to_csv(fh, **to_csv)


def write_h5ad(adata, path: str | os.PathLike, **kwargs) -> None:
    """``adata.write_h5ad(path, **kwargs)``, whole or not at all (:func:`atomic_path`).

    Parameters
    ----------
    adata
        The AnnData.
    path
        The ``.h5ad`` file to write.
    **kwargs
        Keywords of :meth:`anndata.AnnData.write_h5ad` (``compression="gzip"``, ...).
    """
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **kwargs)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)``, whole or not at all (:func:`atomic_path`); the format
    comes from the extension of ``path``.

    Parameters
    ----------
    fig
        A matplotlib figure.
    path
        The image to write.
    **kwargs
        Keywords of :meth:`matplotlib.figure.Figure.savefig` (``dpi``, ``bbox_inches``, ...).
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _open_text(path: str | os.PathLike):
    """Open ``path`` for writing text; gzip (with mtime 0 and no file name) when it ends in .gz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix != ".gz":
        with open(path, "w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            with io.TextIOWrapper(gz, encoding="utf-8", newline="") as text:
                yield text


def write_tsv(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False,
              float_format: str | None = "%.6g") -> None:
    """Write ``df`` as tab-separated text; gzip-compressed (deterministically) if ``path`` ends in .gz.
    Whole or not at all (:func:`atomic_path`).

    Parameters
    ----------
    df
        The table.
    path
        The file to write; parent folders are created.
    index
        Write the index as the first column.
    float_format
        ``printf`` format of floats (None: pandas' full precision).
    """
    write_table(df, path, sep="\t", index=index, float_format=float_format)


def _bytes(values) -> np.ndarray:
    """Fixed-length byte strings, as Cell Ranger stores them."""
    arr = np.asarray([str(v).encode("utf-8") for v in values], dtype=object)
    width = max((len(v) for v in arr), default=1) or 1
    return arr.astype(f"S{width}")


def _dataset(group: h5py.Group, name: str, data: np.ndarray, *, compress: bool = True) -> None:
    data = np.asarray(data)
    kwargs = dict(track_times=False)
    if compress and data.size > 0 and data.dtype.kind in "iuf":
        kwargs.update(compression="gzip", compression_opts=4, shuffle=True,
                      chunks=(min(data.shape[0], 1 << 18),) if data.ndim == 1 else True)
    group.create_dataset(name, data=data, **kwargs)


# --------------------------------------------------------------------------------------------
# 10x h5
# --------------------------------------------------------------------------------------------
def write_10x_h5(adata, path: str | os.PathLike, *, genome: str = "GRCh38") -> None:
    """Write ``adata`` (cells x features, integer counts) as a Cell Ranger v3 feature-barcode h5.

    Layout (as Cell Ranger >= 3 writes it, and as ``scanpy.read_10x_h5`` reads it)::

        /matrix/barcodes                 S   (n_barcodes,)
        /matrix/data                     int32 (nnz,)
        /matrix/indices                  int64 (nnz,)   feature index of each value
        /matrix/indptr                   int64 (n_barcodes + 1,)
        /matrix/shape                    int32 [n_features, n_barcodes]
        /matrix/features/id, name, feature_type, genome, _all_tag_keys = [b"genome"]

    The matrix is features x barcodes in CSC, which holds the same three arrays as the
    cells x features CSR matrix of ``adata``. ``adata.var`` must have ``gene_ids`` and
    ``feature_types`` ("Gene Expression", "Antibody Capture", ...); ``var_names`` are the feature
    names, ``obs_names`` the barcodes. Features that are not "Gene Expression" get an empty
    genome, as in Cell Ranger's files.

    Parameters
    ----------
    adata
        Cells x features, integer counts, with ``var['gene_ids']`` and ``var['feature_types']``.
    path
        The h5 file to write.
    genome
        Genome name of the "Gene Expression" features.
    """
    where = f"write_10x_h5({path})"
    for col in ("gene_ids", "feature_types"):
        if col not in adata.var.columns:
            raise InputError(where, f"adata.var has no '{col}' column.",
                             "Add var['gene_ids'] (feature ids) and var['feature_types'] "
                             "('Gene Expression' / 'Antibody Capture').")
    X = adata.X
    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    if X.nnz and not np.all(np.mod(X.data, 1) == 0):
        raise InputError(where, "the matrix holds non-integer values.",
                         "Pass raw integer UMI counts, not normalised values.")
    if X.nnz and X.data.min() < 0:
        raise InputError(where, "the matrix holds negative values.", "Pass raw UMI counts.")
    X = X.copy()
    X.sum_duplicates()
    X.sort_indices()
    n_cells, n_features = X.shape
    ftypes = adata.var["feature_types"].astype(str).to_numpy()
    genomes = np.where(ftypes == "Gene Expression", genome, "")

    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = np.int64(2)
        m = f.create_group("matrix", track_order=False)
        _dataset(m, "barcodes", _bytes(adata.obs_names), compress=False)
        _dataset(m, "data", X.data.astype(np.int32))
        _dataset(m, "indices", X.indices.astype(np.int64))
        _dataset(m, "indptr", X.indptr.astype(np.int64))
        _dataset(m, "shape", np.array([n_features, n_cells], dtype=np.int32), compress=False)
        feats = m.create_group("features", track_order=False)
        _dataset(feats, "_all_tag_keys", np.array([b"genome"]), compress=False)
        _dataset(feats, "feature_type", _bytes(ftypes), compress=False)
        _dataset(feats, "genome", _bytes(genomes), compress=False)
        _dataset(feats, "id", _bytes(adata.var["gene_ids"].astype(str)), compress=False)
        _dataset(feats, "name", _bytes(adata.var_names), compress=False)


# --------------------------------------------------------------------------------------------
# scDNA wide bin table
# --------------------------------------------------------------------------------------------
def write_scdna_wide(adata, path: str | os.PathLike) -> None:
    """Write a cells x bins AnnData of integer read counts as a wide bins x cells TSV.

    Columns: ``chrom``, ``start``, ``end`` (from ``adata.var``), then one column per cell
    (``adata.obs_names``); one row per bin. Gzip-compressed when ``path`` ends in .gz.

    Parameters
    ----------
    adata
        Cells x bins, integer read counts, with ``var`` columns ``chrom``, ``start``, ``end``.
    path
        The file to write.
    """
    where = f"write_scdna_wide({path})"
    missing = [c for c in ("chrom", "start", "end") if c not in adata.var.columns]
    if missing:
        raise InputError(where, f"adata.var lacks {missing}.",
                         "Give the bins as adata.var with chrom, start, end columns.")
    X = adata.X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    if X.size and not np.all(np.mod(X, 1) == 0):
        raise InputError(where, "read counts must be integers.", "Pass raw read counts per bin.")
    table = pd.DataFrame(X.T.astype(np.int64), columns=[str(c) for c in adata.obs_names])
    table.insert(0, "end", adata.var["end"].astype(np.int64).to_numpy())
    table.insert(0, "start", adata.var["start"].astype(np.int64).to_numpy())
    table.insert(0, "chrom", adata.var["chrom"].astype(str).to_numpy())
    write_tsv(table, path, float_format=None)


# --------------------------------------------------------------------------------------------
# MaxQuant proteinGroups.txt
# --------------------------------------------------------------------------------------------
def write_maxquant_protein_groups(intensities: pd.DataFrame, annotation: pd.DataFrame,
                                  path: str | os.PathLike, *,
                                  lfq_intensities: pd.DataFrame | None = None,
                                  msms_counts: pd.DataFrame | None = None) -> None:
    """Write a MaxQuant-style ``proteinGroups.txt``.

    Columns written: "Protein IDs", "Majority protein IDs", "Protein names", "Gene names",
    "Peptides", "Intensity", then per sample "Intensity <s>", "LFQ intensity <s>",
    "MS/MS count <s>", then "Only identified by site", "Reverse", "Potential contaminant", "id".
    Flags are "+" or empty; missing values are 0; reverse hits get ids starting "REV__" and
    contaminants "CON__" (added when absent).

    Parameters
    ----------
    intensities
        Proteins x samples raw intensities (index = protein ids; 0 or NaN = missing).
    annotation
        One row per protein (same order, or indexed by the same ids) with columns
        ``protein_id``, ``gene``, ``protein_name``, ``reverse``, ``contaminant``,
        ``only_by_site`` (bools) and optionally ``peptides`` (int).
    path
        The file to write (gzip when it ends in .gz).
    lfq_intensities
        Per-sample LFQ intensities; default ``intensities``.
    msms_counts
        Per-sample MS/MS counts; default derived from the intensity.
    """
    where = f"write_maxquant_protein_groups({path})"
    need = ["protein_id", "gene", "protein_name", "reverse", "contaminant", "only_by_site"]
    missing = [c for c in need if c not in annotation.columns]
    if missing:
        raise InputError(where, f"annotation lacks columns {missing}.",
                         f"Give annotation columns {need}.")
    if len(annotation) != len(intensities):
        raise InputError(where, f"annotation has {len(annotation)} rows but intensities "
                                f"{len(intensities)}.", "Give one annotation row per protein.")
    samples = [str(s) for s in intensities.columns]
    inten = np.nan_to_num(intensities.to_numpy(dtype=float), nan=0.0)
    inten = np.clip(np.rint(inten), 0, None).astype(np.int64)
    if lfq_intensities is None:
        lfq = inten.copy()
    else:
        lfq = np.clip(np.rint(np.nan_to_num(lfq_intensities.to_numpy(dtype=float), nan=0.0)),
                      0, None).astype(np.int64)
        lfq[inten == 0] = 0
    if msms_counts is None:
        with np.errstate(divide="ignore"):
            msms = np.where(inten > 0, np.maximum(1, np.rint(np.log2(np.maximum(inten, 1)) - 20)), 0)
        msms = msms.astype(np.int64)
    else:
        msms = np.nan_to_num(msms_counts.to_numpy(dtype=float), nan=0.0).astype(np.int64)
        msms[inten == 0] = 0

    ann = annotation.reset_index(drop=True)
    rev = ann["reverse"].astype(bool).to_numpy()
    con = ann["contaminant"].astype(bool).to_numpy()
    site = ann["only_by_site"].astype(bool).to_numpy()
    ids = []
    for pid, r, c in zip(ann["protein_id"].astype(str), rev, con):
        if r and not pid.startswith("REV__"):
            pid = "REV__" + pid
        elif c and not r and not pid.startswith("CON__"):
            pid = "CON__" + pid
        ids.append(pid)
    if "peptides" in ann.columns:
        peptides = ann["peptides"].fillna(1).astype(np.int64).to_numpy()
    else:
        peptides = np.ones(len(ann), dtype=np.int64)

    cols: dict[str, object] = {
        "Protein IDs": ids,
        "Majority protein IDs": ids,
        "Protein names": ann["protein_name"].fillna("").astype(str).to_numpy(),
        "Gene names": ann["gene"].fillna("").astype(str).to_numpy(),
        "Peptides": peptides,
        "Intensity": inten.sum(axis=1),
    }
    for j, s in enumerate(samples):
        cols[f"Intensity {s}"] = inten[:, j]
        cols[f"LFQ intensity {s}"] = lfq[:, j]
        cols[f"MS/MS count {s}"] = msms[:, j]
    flag = lambda b: np.where(b, "+", "")  # noqa: E731
    cols["Only identified by site"] = flag(site)
    cols["Reverse"] = flag(rev)
    cols["Potential contaminant"] = flag(con)
    cols["id"] = np.arange(len(ann), dtype=np.int64)
    write_tsv(pd.DataFrame(cols), path, float_format=None)
