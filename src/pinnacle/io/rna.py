"""scRNA (+ CITE-seq) counts: Cell Ranger 10x HDF5 and mtx directories, ``.h5ad``."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from pinnacle.errors import InputError
from pinnacle.io._common import (
    _H5_ERRORS,
    _RECOPY,
    _check_exists,
    _check_unique,
    _h5_read,
    _h5_strings,
    _open_h5,
    _prefix_obs,
    _read_csv,
    _read_h5ad,
    _text_stream,
)

GEX = "Gene Expression"
ADT = "Antibody Capture"

_MTX_FILES = {
    "matrix": ("matrix.mtx.gz", "matrix.mtx"),
    "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
    "barcodes": ("barcodes.tsv.gz", "barcodes.tsv"),
}


def detect_rna_format(path) -> str:
    """Format of a scRNA count input: ``"10x_h5"``, ``"10x_mtx"`` (a directory, or its
    ``matrix.mtx[.gz]``) or ``"h5ad"``. Raises InputError for a missing path or another format.

    Parameters
    ----------
    path
        The input: a file, or a 10x mtx directory.
    """
    path = Path(path)
    _check_exists(path, "scRNA count input")
    name = path.name.lower()
    if path.is_dir() and name.endswith((".h5", ".h5ad")):
        raise InputError(
            path,
            "is a directory, but its name says it is an HDF5 file (.h5 / .h5ad).",
            "give the path of the file itself, or of a 10x mtx directory named e.g. filtered_feature_bc_matrix/.",
        )
    if path.is_dir() or path.name in _MTX_FILES["matrix"]:
        return "10x_mtx"
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    raise InputError(
        path,
        "unknown scRNA count format (expected a 10x .h5 file, a 10x mtx directory or an .h5ad).",
        "point to Cell Ranger's filtered_feature_bc_matrix.h5 or filtered_feature_bc_matrix/ "
        "directory, or to an .h5ad with raw counts.",
    )


def read_rna(path, *, sample_id: str | None = None) -> ad.AnnData:
    """Read one sample's UMI counts (genes and, if present, antibody tags).

    Parameters
    ----------
    path
        Cell Ranger v3+ ``.h5``, a 10x mtx directory (``matrix.mtx[.gz]``,
        ``features.tsv[.gz]`` or legacy ``genes.tsv``, ``barcodes.tsv[.gz]``) or an ``.h5ad``
        (counts from ``layers["counts"]`` if present else ``X``; ``obsm["protein_expression"]``
        is appended as Antibody Capture features).
    sample_id
        When given, cells are named ``"{sample_id}:{barcode}"`` and ``obs`` gets ``barcode`` and
        ``sample_id`` columns.

    Returns
    -------
    Cells x features; ``X`` is CSR float32 holding integer counts; ``var`` has ``gene_ids`` and
    ``feature_types`` and unique names; ``obs`` carries no other input metadata (QC recomputes
    it). Never densifies a sparse input.
    """
    path = Path(path)
    fmt = detect_rna_format(path)
    if fmt == "10x_h5":
        X, barcodes, var = _read_10x_h5(path)
    elif fmt == "10x_mtx":
        if path.is_file():
            path = path.parent
        X, barcodes, var = _read_10x_mtx(path)
    else:
        X, barcodes, var = _read_rna_h5ad(path)

    where = str(path)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(
            where,
            f"the count matrix has {X.shape[0]} cells and {X.shape[1]} features.",
            "give the filtered_feature_bc_matrix of a sample that yielded cells.",
        )
    types = pd.unique(var["feature_types"].astype(str))
    if GEX not in types:
        raise InputError(
            where,
            f"no {GEX!r} features; found only: {', '.join(sorted(types))} ({X.shape[1]} features).",
            "give the sample's gene-expression count matrix (for CITE-seq, the Cell Ranger matrix that "
            "holds both the genes and the antibody tags), not a matrix of antibody tags or other "
            "feature-barcode libraries alone.",
        )
    _check_counts(X.data, where)
    _check_unique(
        barcodes, where, "cell barcodes",
        "each barcode must appear once per sample; if samples were merged, give each sample its own file.",
    )
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    var.index = ad.utils.make_index_unique(var.index.astype(str))  # == var_names_make_unique()
    return ad.AnnData(X=X, obs=_prefix_obs(barcodes, sample_id), var=var)


def _check_counts(data: np.ndarray, where: str) -> None:
    """Stored values of a sparse count matrix must be finite, non-negative integers."""
    if data.dtype.kind not in "biuf":
        raise InputError(
            where,
            f"stored values have type {data.dtype}, not numbers.",
            "give raw UMI counts (Cell Ranger filtered_feature_bc_matrix, or layers['counts'] of an .h5ad).",
        )
    if data.size == 0:
        return
    if data.dtype.kind == "f":
        nonint = ~np.isfinite(data) | (data != np.round(data))
        n_bad = int(nonint.sum())
        if n_bad:
            example = data[nonint][0]
            raise InputError(
                where,
                f"{n_bad} of {data.size} stored values are not integer counts (e.g. {example:g}).",
                "give raw UMI counts (Cell Ranger filtered_feature_bc_matrix, or layers['counts'] "
                "of an .h5ad), not normalised or log-transformed data.",
            )
    n_neg = int((data < 0).sum())
    if n_neg:
        raise InputError(
            where,
            f"{n_neg} stored values are negative; UMI counts cannot be.",
            "give raw UMI counts, not scaled, centred or background-corrected values.",
        )


def _read_10x_h5(path: Path):
    where = str(path)
    fix = "re-copy the Cell Ranger .h5 output."
    layout = "the file is truncated or not written by Cell Ranger; re-copy or regenerate it."
    with _open_h5(path, "is not a readable HDF5 file", fix) as f:
        try:
            has_matrix = "matrix" in f
            top = sorted(f.keys()) if not has_matrix else []
        except _H5_ERRORS as e:
            raise InputError(where, f"is a damaged HDF5 file ({type(e).__name__}: {e}).", _RECOPY) from e
        if not has_matrix:
            raise InputError(
                where,
                f"has no 'matrix' group (top-level keys: {top}); it is not a Cell Ranger "
                "v3+ feature-barcode matrix.",
                "give filtered_feature_bc_matrix.h5 from Cell Ranger 3 or later (or convert an older "
                "file to .h5ad).",
            )

        def get(key):
            full = f"matrix/{key}"
            return _h5_read(f, full, where, (f"lacks the dataset '/{full}' of the 10x v3 HDF5 layout.", layout))

        data = get("data")
        indices = get("indices")
        indptr = get("indptr")
        shape = get("shape")
        barcodes = _h5_strings(get("barcodes"), where, "matrix/barcodes")
        ids = _h5_strings(get("features/id"), where, "matrix/features/id")
        names = _h5_strings(get("features/name"), where, "matrix/features/name")
        ftypes = _h5_strings(get("features/feature_type"), where, "matrix/features/feature_type")
        try:
            flex = "matrix/features/gene_id" in f
        except _H5_ERRORS as e:
            raise InputError(where, f"is a damaged HDF5 file ({type(e).__name__}: {e}).", _RECOPY) from e
        if flex:  # probe-based (Flex) matrix: id is the probe
            ids = _h5_strings(get("features/gene_id"), where, "matrix/features/gene_id")
    for key, arr, kinds in (("data", data, "biuf"), ("indices", indices, "iu"), ("indptr", indptr, "iu"),
                            ("shape", shape, "iu")):
        if arr.ndim != 1 or arr.dtype.kind not in kinds:
            raise InputError(
                where,
                f"HDF5 dataset '/matrix/{key}' is {arr.ndim}-dimensional {arr.dtype}, not a 1-d array of "
                f"{'numbers' if key == 'data' else 'integers'}.",
                "the file is corrupt or not written by Cell Ranger; re-copy or regenerate it.",
            )
    if len(shape) != 2 or shape.min() < 0:
        raise InputError(where, f"HDF5 dataset '/matrix/shape' is {shape.tolist()}, not two sizes.",
                         "the file is corrupt; re-copy or regenerate it with Cell Ranger.")
    n_feat, n_bc = int(shape[0]), int(shape[1])
    if (
        len(barcodes) != n_bc or len(ids) != n_feat or len(names) != n_feat or len(ftypes) != n_feat
        or len(indptr) != n_bc + 1 or len(indices) != len(data)
        or (len(indices) and (int(indices.max()) >= n_feat or int(indices.min()) < 0))
    ):
        raise InputError(
            where,
            f"inconsistent matrix: shape {n_feat} x {n_bc}, {len(barcodes)} barcodes, "
            f"{len(ids)} features, {len(indptr)} indptr entries.",
            "the file is corrupt; re-copy or regenerate it with Cell Ranger.",
        )
    falls = bool((np.diff(indptr) < 0).any())
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(data) or falls:
        raise InputError(
            where,
            f"inconsistent matrix: '/matrix/indptr' must rise from 0 to the {len(data)} stored values "
            f"(it runs {int(indptr[0])} .. {int(indptr[-1])}{', not monotonically' if falls else ''}).",
            "the file is corrupt; re-copy or regenerate it with Cell Ranger.",
        )
    # features x barcodes in CSC == barcodes x features in CSR, same arrays
    X = sp.csr_matrix((data, indices, indptr), shape=(n_bc, n_feat))
    var = pd.DataFrame({"gene_ids": ids, "feature_types": ftypes}, index=pd.Index(names))
    return X, barcodes, var


def _find_mtx_file(directory: Path, key: str) -> Path:
    for name in _MTX_FILES[key]:
        p = directory / name
        if p.exists():
            if p.is_dir():
                raise InputError(p, "is a directory, not a file.",
                                 "copy the Cell Ranger filtered_feature_bc_matrix/ directory again.")
            return p
    raise InputError(
        directory,
        f"the 10x matrix directory has no {' / '.join(_MTX_FILES[key][:2])} file.",
        "copy the complete Cell Ranger filtered_feature_bc_matrix/ directory "
        "(matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz).",
    )


def _mtx_header(mtx: Path) -> tuple[str, int, int, int]:
    """(layout, rows, columns, entries) from a Matrix Market header; InputError if it has none."""
    fix = "re-copy the Cell Ranger output."
    with _text_stream(mtx) as fh:
        banner = fh.readline()
        size = fh.readline()
        while size.startswith("%") or (size and not size.strip()):  # comment and blank lines
            size = fh.readline()
    parts = banner.split()
    if len(parts) != 5 or parts[0].lower() != "%%matrixmarket" or parts[1].lower() != "matrix" \
            or parts[2].lower() not in ("coordinate", "array"):
        raise InputError(mtx, f"is not a Matrix Market file (first line {banner[:80]!r}).", fix)
    dims = size.split()
    layout = parts[2].lower()
    n_dims = 3 if layout == "coordinate" else 2
    if len(dims) != n_dims or not all(d.isdigit() for d in dims):
        raise InputError(mtx, f"is not a Matrix Market file (size line {size[:80]!r}).", fix)
    rows, cols = int(dims[0]), int(dims[1])
    nnz = int(dims[2]) if layout == "coordinate" else rows * cols
    if nnz > rows * cols:
        raise InputError(mtx, f"is not a Matrix Market file: {nnz} entries declared for a {rows} x {cols} matrix.",
                         fix)
    return layout, rows, cols, nnz


def _read_10x_mtx(directory: Path):
    mtx = _find_mtx_file(directory, "matrix")
    feat = _find_mtx_file(directory, "features")
    bcs = _find_mtx_file(directory, "barcodes")
    features = _read_csv(feat, sep="\t", header=None, dtype=str, keep_default_na=False)
    barcodes = _read_csv(bcs, sep="\t", header=None, dtype=str, keep_default_na=False)[0].to_numpy()
    _, n_rows, n_cols, nnz = _mtx_header(mtx)
    if features.shape[0] != n_rows or len(barcodes) != n_cols:
        raise InputError(
            directory,
            f"{mtx.name} is {n_rows} features x {n_cols} barcodes but {feat.name} lists "
            f"{features.shape[0]} features and {bcs.name} {len(barcodes)} barcodes.",
            "the three files must come from the same Cell Ranger run; re-copy the directory.",
        )
    with _text_stream(mtx, binary=True) as fh:
        try:
            M = scipy.io.mmread(fh)
        except (ValueError, OverflowError, IndexError, RuntimeError) as e:
            raise InputError(mtx, f"is not a Matrix Market file ({e}).", "re-copy the Cell Ranger output.") from e
        except MemoryError as e:
            raise InputError(
                mtx, f"needs more memory than is available to read its {nnz:,} entries.",
                "re-copy the file if it is damaged; otherwise give the rule more memory (mem_mb).",
            ) from e
    if M.shape != (n_rows, n_cols):  # the size line was checked; this is a parser surprise
        raise InputError(mtx, f"is not a Matrix Market file (read {M.shape}, header says {(n_rows, n_cols)}).",
                         "re-copy the Cell Ranger output.")
    M = sp.csr_matrix(M.T)  # file is features x barcodes
    names = features[1] if features.shape[1] > 1 else features[0]
    ftypes = features[2] if features.shape[1] > 2 else pd.Series(GEX, index=features.index)
    var = pd.DataFrame(
        {"gene_ids": features[0].to_numpy(), "feature_types": ftypes.to_numpy()},
        index=pd.Index(names.to_numpy()),
    )
    return M, barcodes, var


def _read_rna_h5ad(path: Path):
    where = str(path)
    a = _read_h5ad(path)
    X = a.layers.get("counts", a.X)
    if X is None:
        raise InputError(where, "has neither layers['counts'] nor X.", "store raw counts in X or layers['counts'].")
    if not sp.issparse(X) and np.asarray(X).dtype.kind not in "biuf":
        raise InputError(where, f"the counts have type {np.asarray(X).dtype}, not numbers.",
                         "store raw UMI counts in X or layers['counts'].")
    X = sp.csr_matrix(X)
    var = pd.DataFrame(
        {
            "gene_ids": a.var["gene_ids"].astype(str).to_numpy() if "gene_ids" in a.var else a.var_names.to_numpy(),
            "feature_types": a.var["feature_types"].astype(str).to_numpy() if "feature_types" in a.var else GEX,
        },
        index=pd.Index(a.var_names.to_numpy(dtype=str)),
    )
    if "protein_expression" in a.obsm:
        P = a.obsm["protein_expression"]
        if isinstance(P, pd.DataFrame):
            pnames = P.columns.astype(str).to_numpy()
            P = P.to_numpy()
        elif "protein_names" in a.uns:
            pnames = np.asarray(a.uns["protein_names"]).astype(str)
        else:
            raise InputError(
                f"{where} [obsm['protein_expression']]",
                "antibody counts have no names.",
                "store them as a DataFrame with named columns or put the names in uns['protein_names'].",
            )
        if len(pnames) != P.shape[1]:
            raise InputError(
                f"{where} [uns['protein_names']]",
                f"{len(pnames)} names for {P.shape[1]} antibody columns.",
                "give one name per column of obsm['protein_expression'].",
            )
        if not sp.issparse(P) and np.asarray(P).dtype.kind not in "biuf":
            raise InputError(
                f"{where} [obsm['protein_expression']]",
                f"antibody counts have type {np.asarray(P).dtype}, not numbers.",
                "store the antibody counts as numbers (a DataFrame of integer counts, one column per tag).",
            )
        X = sp.hstack([X, sp.csr_matrix(P)], format="csr")
        var = pd.concat(
            [var, pd.DataFrame({"gene_ids": pnames, "feature_types": ADT}, index=pd.Index(pnames))]
        )
    return X, a.obs_names.to_numpy(dtype=str), var


def split_features(adata: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData | None]:
    """Split into (gene-expression features, antibody-capture features), same cells.

    Features of types other than "Antibody Capture" stay in the first part; the second is None
    when there are no antibody features.

    Parameters
    ----------
    adata
        Cells x features with ``var['feature_types']`` (:func:`read_rna`); without that column
        every feature counts as gene expression.
    """
    if "feature_types" not in adata.var:
        return adata.copy(), None
    is_adt = (adata.var["feature_types"].astype(str) == ADT).to_numpy()
    if not is_adt.any():
        return adata.copy(), None
    return adata[:, ~is_adt].copy(), adata[:, is_adt].copy()

