"""Readers for the files a trial site sends: per-sample scRNA (+ CITE-seq) counts, per-sample scDNA
bin counts and one cohort-wide proteomics table, each checked and returned as AnnData.

Counts come from Cell Ranger (10x HDF5 or mtx directory) or an ``.h5ad``; scDNA from wide
(bins x cells) or long (DLP-style) tables or an ``.h5ad``; proteomics from MaxQuant, DIA-NN,
Olink or a plain matrix. The 10x HDF5/mtx readers are written here with h5py/scipy (rather than
``scanpy.read_10x_*``) so every malformed file gets a message naming the file, the key and the
fix. The scDNA table readers and the MaxQuant ``proteinGroups.txt`` (flag filtering, quantity
column prefixes, R ``make.names`` variants), DIA-NN ``pg_matrix`` and Olink NPX parsers are
hand-written because no maintained Python library reads these formats into AnnData.
Bad input raises :class:`pinnacle.errors.InputError`.
"""

from __future__ import annotations

import gzip
import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from pinnacle.errors import InputError

__all__ = [
    "detect_rna_format",
    "read_rna",
    "split_features",
    "read_scdna",
    "read_proteomics",
    "PROTEOMICS_FORMATS",
]

GEX = "Gene Expression"
ADT = "Antibody Capture"
PROTEOMICS_FORMATS = ("maxquant", "diann", "olink", "matrix")
_NA_STRINGS = {"", "na", "nan", "n/a", "null", "none", "-nan", "#n/a"}


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(
            path,
            f"{what} not found.",
            "check the path in config/samples.tsv (or config.yaml) and that the file was copied.",
        )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: Path):
    return gzip.open(path, "rt") if _is_gzip(path) else open(path)


def _sniff_sep(path: Path) -> str:
    """Separator of a delimited text file, from its first non-empty line: tab, ';' or ','."""
    with _open_text(path) as fh:
        header = ""
        for line in fh:
            if line.strip():
                header = line
                break
    if "\t" in header:
        return "\t"
    if header.count(";") > header.count(","):
        return ";"
    return ","


def _read_table(path: Path, *, as_str: bool) -> pd.DataFrame:
    """Read a (possibly gzipped) delimited table; ``as_str`` keeps every cell as text."""
    sep = _sniff_sep(path)
    kwargs: dict = dict(sep=sep, compression="gzip" if _is_gzip(path) else None)
    if as_str:
        kwargs.update(dtype=str, keep_default_na=False)
    else:
        kwargs.update(low_memory=False)
    try:
        df = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise InputError(path, "the file is empty.", "give a table with a header line and data rows.") from None
    except pd.errors.ParserError as e:
        raise InputError(
            path,
            f"cannot be parsed as a {sep!r}-separated table ({e}).",
            "check that every row has as many fields as the header.",
        ) from None
    if not isinstance(df.index, pd.RangeIndex):  # pandas silently turns surplus fields into an index
        raise InputError(
            path,
            f"cannot be parsed as a {sep!r}-separated table (data rows have more fields than the header).",
            "check that every row has as many fields as the header.",
        )
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _strings_to_float(values: pd.Series, where: str, *, decimal_comma: bool = False) -> np.ndarray:
    """Text column -> float64, NA spellings and empty cells -> NaN; other text -> InputError."""
    s = values.astype(str).str.strip()
    if decimal_comma:
        s = s.str.replace(",", ".", regex=False)
    s = s.mask(s.str.lower().isin(_NA_STRINGS))
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        first = bad.to_numpy().nonzero()[0][0]
        raise InputError(
            where,
            f"{int(bad.sum())} non-numeric value(s), first {s.iloc[first]!r} at data row {first + 1}.",
            "this column must hold numbers (empty or NA for missing); check the export settings.",
        )
    return num.to_numpy(dtype=np.float64)


def _prefix_obs(names: pd.Index | np.ndarray, sample_id: str | None) -> pd.DataFrame:
    names = pd.Index(np.asarray(names, dtype=str))
    if sample_id is None:
        return pd.DataFrame(index=names)
    return pd.DataFrame(
        {"barcode": names.to_numpy(), "sample_id": str(sample_id)},
        index=pd.Index([f"{sample_id}:{b}" for b in names]),
    )


def _check_unique(names: pd.Index | np.ndarray, where: str, what: str, fix: str) -> None:
    idx = pd.Index(names)
    if not idx.is_unique:
        dups = idx[idx.duplicated()].unique()
        raise InputError(where, f"{len(dups)} duplicated {what}, e.g. {str(dups[0])!r}.", fix)


# --------------------------------------------------------------------------------------------
# scRNA (+ CITE-seq)
# --------------------------------------------------------------------------------------------

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
    X = a.layers["counts"] if "counts" in a.layers else a.X
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


# --------------------------------------------------------------------------------------------
# scDNA
# --------------------------------------------------------------------------------------------

_CHROM_COLS = ("chrom", "chr", "chromosome")
_BIN_ANNOTATION = {"gc", "gc_content", "abspos", "arm", "bin", "bin_id", "blacklist", "repeat",
                   "mappability", "map", "width", "bin_width"}


def _chrom_key(c: str) -> tuple[int, str]:
    s = c[3:] if c.lower().startswith("chr") else c
    if s.isdigit():
        return (int(s), "")
    order = {"X": 23, "Y": 24, "M": 25, "MT": 25}
    return (order.get(s.upper(), 100), s)


def _norm_chrom(values) -> np.ndarray:
    s = pd.Series(values).astype(str).str.strip()
    return np.where(s.str.lower().str.startswith("chr"), s, "chr" + s)


def _find_col(columns, names) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _bin_frame(df: pd.DataFrame, where: str, chrom_col: str, start_col: str, end_col: str,
               gc_col: str | None) -> pd.DataFrame:
    out = pd.DataFrame({"chrom": _norm_chrom(df[chrom_col].to_numpy())})
    for new, col in (("start", start_col), ("end", end_col)):
        v = pd.to_numeric(df[col], errors="coerce")
        if v.isna().any() or (v != np.round(v)).any():
            raise InputError(
                f"{where} [column {col!r}]",
                "bin positions must be whole numbers.",
                "give integer start/end positions for every bin.",
            )
        out[new] = v.to_numpy().astype(np.int64)
    if gc_col is not None:
        out["gc"] = pd.to_numeric(df[gc_col], errors="coerce").to_numpy(dtype=np.float64)
    return out


def read_scdna(path, *, sample_id: str | None = None) -> ad.AnnData:
    """Read one sample's single-cell DNA bin counts: cells x genomic bins.

    Accepted: a wide table (``chrom``/``chr``, ``start``, ``end``, optional ``gc``, then one column
    per cell), a long table (``cell_id``, ``chr``/``chrom``, ``start``, ``end``, ``reads``, optional
    ``gc``), tab/comma separated, optionally gzipped, or an ``.h5ad`` with ``var`` chrom/start/end.

    Returns cells x bins, ``X`` float32 numpy array, ``var`` index ``"chrom:start-end"`` with
    columns chrom, start, end (and gc), bins sorted chr1..chr22, chrX, chrY then by start. Values
    may be non-integer (e.g. ratios): ``uns["scdna"]["integer_counts"]`` records which.
    """
    path = Path(path)
    _check_exists(path, "scDNA bin count input")
    where = str(path)
    if path.name.lower().endswith(".h5ad"):
        X, cells, bins, fmt = _read_scdna_h5ad(path)
    else:
        df = _read_table(path, as_str=False)
        if df.shape[0] == 0:
            raise InputError(where, "the table has a header but no rows.", "give one row per bin (wide) or per cell x bin (long).")
        cell_col = _find_col(df.columns, ("cell_id", "cell"))
        if cell_col is not None:  # long (DLP-style) table: one row per cell x bin
            reads_col = _require(df.columns, where, {"reads": ("reads", "counts")}, "long")["reads"]
            X, cells, bins = _scdna_long(df, where, cell_col, reads_col)
            fmt = "long"
        else:
            X, cells, bins = _scdna_wide(df, where)
            fmt = "wide"

    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(where, f"{X.shape[0]} cells x {X.shape[1]} bins.", "give at least one cell and one bin.")
    bins = bins.reset_index(drop=True)
    bin_ids = bins["chrom"] + ":" + bins["start"].astype(str) + "-" + bins["end"].astype(str)
    _check_unique(bin_ids, where, "bins (chrom, start, end)", "each bin must appear once; remove repeated rows.")
    _check_unique(cells, where, "cell ids", "each cell must have one column (wide) or one set of rows (long).")

    order = sorted(range(len(bins)), key=lambda i: (_chrom_key(bins["chrom"].iat[i]), bins["start"].iat[i]))
    bins = bins.iloc[order].reset_index(drop=True)
    X = np.ascontiguousarray(X[:, order], dtype=np.float32)
    bins.index = pd.Index((bins["chrom"] + ":" + bins["start"].astype(str) + "-" + bins["end"].astype(str)).to_numpy())
    integer = bool(np.all(X == np.round(X)))
    adata = ad.AnnData(X=X, obs=_prefix_obs(cells, sample_id), var=bins)
    adata.uns["scdna"] = {"format": fmt, "integer_counts": integer}
    return adata


def _check_scdna_values(values: np.ndarray, where: str, col: str) -> None:
    if not np.isfinite(values).all():
        raise InputError(
            f"{where} [cell {col!r}]",
            f"{int((~np.isfinite(values)).sum())} read counts are missing or non-numeric.",
            "every cell needs a number (0 for no reads) in every bin.",
        )
    if (values < 0).any():
        raise InputError(
            f"{where} [cell {col!r}]",
            f"{int((values < 0).sum())} read counts are negative.",
            "give read counts (or non-negative ratios), not log ratios or centred values.",
        )


def _require(df_cols, where: str, required: dict[str, tuple[str, ...]], layout: str) -> dict[str, str]:
    found, missing = {}, []
    for key, alts in required.items():
        col = _find_col(df_cols, alts)
        if col is None:
            missing.append("/".join(alts))
        else:
            found[key] = col
    if missing:
        raise InputError(
            where,
            f"missing required column(s) {', '.join(missing)} for a {layout} scDNA table "
            f"(found: {', '.join(map(str, list(df_cols)[:8]))}{' ...' if len(df_cols) > 8 else ''}).",
            "wide: chrom, start, end, then one column per cell; long: cell_id, chr, start, end, reads.",
        )
    return found


def _scdna_wide(df: pd.DataFrame, where: str):
    cols = _require(df.columns, where, {"chrom": _CHROM_COLS, "start": ("start",), "end": ("end",)}, "wide")
    gc_col = _find_col(df.columns, ("gc", "gc_content"))
    bins = _bin_frame(df, where, cols["chrom"], cols["start"], cols["end"], gc_col)
    skip = set(cols.values()) | {c for c in df.columns if str(c).lower() in _BIN_ANNOTATION}
    cells = [c for c in df.columns if c not in skip]
    X = np.empty((len(cells), len(df)), dtype=np.float32)
    for i, c in enumerate(cells):
        col = df[c]
        if col.dtype.kind not in "iuf":
            col = pd.to_numeric(col, errors="coerce")
        v = col.to_numpy(dtype=np.float64)
        _check_scdna_values(v, where, c)
        X[i] = v
    return X, np.asarray(cells, dtype=str), bins


def _scdna_long(df: pd.DataFrame, where: str, cell_col: str, reads_col: str):
    cols = _require(df.columns, where, {"chrom": _CHROM_COLS, "start": ("start",), "end": ("end",)}, "long")
    gc_col = _find_col(df.columns, ("gc", "gc_content"))
    b = _bin_frame(df, where, cols["chrom"], cols["start"], cols["end"], gc_col)
    reads = pd.to_numeric(df[reads_col], errors="coerce").to_numpy(dtype=np.float64)
    cell = df[cell_col].astype(str).to_numpy()
    bad = ~np.isfinite(reads) | (reads < 0)
    if bad.any():
        c = cell[int(bad.nonzero()[0][0])]
        _check_scdna_values(reads[cell == c], where, c)
    key = pd.Series(b["chrom"] + ":" + b["start"].astype(str) + "-" + b["end"].astype(str))
    dup = pd.DataFrame({"c": cell, "k": key}).duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(
            where,
            f"{int(dup.sum())} duplicated cell x bin rows, e.g. cell {cell[i]!r} bin {key.iat[i]}.",
            "each cell must have exactly one row per bin.",
        )
    cells, ci = np.unique(cell, return_inverse=True)
    first = ~key.duplicated().to_numpy()
    bins = b[first].reset_index(drop=True)
    bin_index = pd.Index(key[first])
    bi = bin_index.get_indexer(key)
    counts = np.bincount(ci, minlength=len(cells))
    if (counts != len(bins)).any():
        worst = cells[int(np.argmin(counts))]
        raise InputError(
            where,
            f"cell {worst!r} has {counts.min()} of the {len(bins)} bins "
            f"({int((counts != len(bins)).sum())} cell(s) incomplete).",
            "give every cell a row for every bin (reads = 0 where none).",
        )
    X = np.zeros((len(cells), len(bins)), dtype=np.float32)
    X[ci, bi] = reads
    if gc_col is not None:
        bins["gc"] = b["gc"].to_numpy()[first]
    return X, cells, bins


def _read_scdna_h5ad(path: Path):
    where = str(path)
    try:
        a = ad.read_h5ad(path)
    except Exception as e:  # noqa: BLE001
        raise InputError(where, f"cannot be read as an .h5ad file ({e}).", "re-write it with anndata.") from None
    cols = _require(a.var.columns, f"{where} [var]", {"chrom": _CHROM_COLS, "start": ("start",), "end": ("end",)}, "h5ad")
    gc_col = _find_col(a.var.columns, ("gc", "gc_content"))
    bins = _bin_frame(a.var, where, cols["chrom"], cols["start"], cols["end"], gc_col)
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    X = X.astype(np.float64)
    if not np.isfinite(X).all() or (X < 0).any():
        bad = int(np.argmax((~np.isfinite(X) | (X < 0)).any(axis=1)))
        _check_scdna_values(X[bad], where, a.obs_names[bad])
    return X, a.obs_names.to_numpy(dtype=str), bins, "h5ad"


# --------------------------------------------------------------------------------------------
# proteomics
# --------------------------------------------------------------------------------------------


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

    ``X`` is dense float32 with NaN for missing; ``var`` has ``protein_id`` and ``gene``;
    ``uns["proteomics"]`` records format, quantity, scale, n_input_rows and n_removed (rows
    carrying each flag; a row may carry several).
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
    _check_exists(path, "proteomics table")
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
    uns = dict(format="maxquant", quantity=quantity, scale="linear", n_input_rows=n_input, n_removed=removed)
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
    uns = dict(format="diann", quantity=quantity or "pg_matrix", scale="linear",
               n_input_rows=int(df.shape[0]), n_removed=_no_flags())
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
    uns = dict(format="olink", quantity=quantity or "NPX", scale="log2", n_input_rows=int(df.shape[0]),
               n_removed=_no_flags(), n_qc_warning=n_warn)
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
    uns = dict(format="matrix", quantity=quantity or "value", scale=scale,
               n_input_rows=int(df.shape[0]), n_removed=_no_flags())
    return _proteomics_adata(values.T, sample_cols, pid.to_numpy(), gene, pid.to_numpy(), uns)
