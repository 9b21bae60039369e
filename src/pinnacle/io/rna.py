"""scRNA (+ CITE-seq) counts: Cell Ranger 10x HDF5 and mtx directories, ``.h5ad``."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from pinnacle.errors import InputError
from pinnacle.io._common import _check_exists, _check_unique, _is_gzip, _prefix_obs

GEX = "Gene Expression"
ADT = "Antibody Capture"

_MTX_FILES = {
    "matrix": ("matrix.mtx.gz", "matrix.mtx"),
    "features": ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"),
    "barcodes": ("barcodes.tsv.gz", "barcodes.tsv"),
}


def detect_rna_format(path) -> str:
    """Format of a scRNA count input: ``"10x_h5"``, ``"10x_mtx"`` (a directory, or its
    ``matrix.mtx[.gz]``) or ``"h5ad"``. Raises InputError for a missing path or another format."""
    path = Path(path)
    _check_exists(path, "scRNA count input")
    if path.is_dir() or path.name in _MTX_FILES["matrix"]:
        return "10x_mtx"
    name = path.name.lower()
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
    import h5py

    where = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(where, f"is not a readable HDF5 file ({e}).", "re-copy the Cell Ranger .h5 output.") from None
    with f:
        if "matrix" not in f:
            raise InputError(
                where,
                f"has no 'matrix' group (top-level keys: {sorted(f.keys())}); it is not a Cell Ranger "
                "v3+ feature-barcode matrix.",
                "give filtered_feature_bc_matrix.h5 from Cell Ranger 3 or later (or convert an older "
                "file to .h5ad).",
            )

        def get(key):
            full = f"matrix/{key}"
            if full not in f:
                raise InputError(
                    where,
                    f"lacks the dataset '/{full}' of the 10x v3 HDF5 layout.",
                    "the file is truncated or not written by Cell Ranger; re-copy or regenerate it.",
                )
            return f[full][()]

        data = get("data")
        indices = get("indices")
        indptr = get("indptr")
        shape = get("shape")
        barcodes = get("barcodes").astype(str)
        ids = get("features/id").astype(str)
        names = get("features/name").astype(str)
        ftypes = get("features/feature_type").astype(str)
        if "matrix/features/gene_id" in f:  # probe-based (Flex) matrix: id is the probe
            ids = f["matrix/features/gene_id"][()].astype(str)
    n_feat, n_bc = int(shape[0]), int(shape[1])
    if (
        len(barcodes) != n_bc or len(ids) != n_feat or len(indptr) != n_bc + 1
        or len(indices) != len(data) or (len(indices) and int(indices.max()) >= n_feat)
    ):
        raise InputError(
            where,
            f"inconsistent matrix: shape {n_feat} x {n_bc}, {len(barcodes)} barcodes, "
            f"{len(ids)} features, {len(indptr)} indptr entries.",
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
            return p
    raise InputError(
        directory,
        f"the 10x matrix directory has no {' / '.join(_MTX_FILES[key][:2])} file.",
        "copy the complete Cell Ranger filtered_feature_bc_matrix/ directory "
        "(matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz).",
    )


def _read_10x_mtx(directory: Path):
    mtx = _find_mtx_file(directory, "matrix")
    feat = _find_mtx_file(directory, "features")
    bcs = _find_mtx_file(directory, "barcodes")
    try:
        M = scipy.io.mmread(mtx)
    except (ValueError, OSError) as e:
        raise InputError(mtx, f"is not a Matrix Market file ({e}).", "re-copy the Cell Ranger output.") from None
    M = sp.csr_matrix(M.T)  # file is features x barcodes
    features = pd.read_csv(feat, sep="\t", header=None, dtype=str, keep_default_na=False,
                           compression="gzip" if _is_gzip(feat) else None)
    barcodes = pd.read_csv(bcs, sep="\t", header=None, dtype=str, keep_default_na=False,
                           compression="gzip" if _is_gzip(bcs) else None)[0].to_numpy()
    if features.shape[0] != M.shape[1] or len(barcodes) != M.shape[0]:
        raise InputError(
            directory,
            f"{mtx.name} is {M.shape[1]} features x {M.shape[0]} barcodes but {feat.name} lists "
            f"{features.shape[0]} features and {bcs.name} {len(barcodes)} barcodes.",
            "the three files must come from the same Cell Ranger run; re-copy the directory.",
        )
    names = features[1] if features.shape[1] > 1 else features[0]
    ftypes = features[2] if features.shape[1] > 2 else pd.Series(GEX, index=features.index)
    var = pd.DataFrame(
        {"gene_ids": features[0].to_numpy(), "feature_types": ftypes.to_numpy()},
        index=pd.Index(names.to_numpy()),
    )
    return M, barcodes, var


def _read_rna_h5ad(path: Path):
    where = str(path)
    try:
        with warnings.catch_warnings():  # files from older anndata versions read fine
            warnings.simplefilter("ignore", ad.OldFormatWarning)
            a = ad.read_h5ad(path)
    except Exception as e:  # noqa: BLE001 - any h5py/anndata failure means an unreadable file
        raise InputError(where, f"cannot be read as an .h5ad file ({e}).", "re-write it with anndata.") from None
    X = a.layers.get("counts", a.X)
    if X is None:
        raise InputError(where, "has neither layers['counts'] nor X.", "store raw counts in X or layers['counts'].")
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
        X = sp.hstack([X, sp.csr_matrix(P)], format="csr")
        var = pd.concat(
            [var, pd.DataFrame({"gene_ids": pnames, "feature_types": ADT}, index=pd.Index(pnames))]
        )
    return X, a.obs_names.to_numpy(dtype=str), var


def split_features(adata: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData | None]:
    """Split into (gene-expression features, antibody-capture features), same cells.

    Features of types other than "Antibody Capture" stay in the first part; the second is None
    when there are no antibody features.
    """
    if "feature_types" not in adata.var:
        return adata.copy(), None
    is_adt = (adata.var["feature_types"].astype(str) == ADT).to_numpy()
    if not is_adt.any():
        return adata.copy(), None
    return adata[:, ~is_adt].copy(), adata[:, is_adt].copy()

