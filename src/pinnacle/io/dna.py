"""scDNA bin counts: wide (bins x cells) and long (DLP-style) tables, ``.h5ad``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError
from pinnacle.io._common import _check_file, _check_unique, _prefix_obs, _read_h5ad, _read_table

_CHROM_COLS = ("chrom", "chr", "chromosome")
_BIN_ANNOTATION = {"gc", "gc_content", "abspos", "arm", "bin", "bin_id", "blacklist", "repeat",
                   "mappability", "map", "width", "bin_width"}


_CHROMS = {str(i) for i in range(1, 23)} | {"X", "Y", "M", "MT"}
_CHROM_ORDER = {**{str(i): i for i in range(1, 23)}, "X": 23, "Y": 24, "M": 25}


def _chrom_key(c: str) -> int:
    """Sort key of a normalised chromosome name (chr1..chr22, chrX, chrY, chrM)."""
    return _CHROM_ORDER[c[3:]]


def _chrom_name(value: str) -> str | None:
    """'chr1'..'chr22', 'chrX', 'chrY', 'chrM' for a name with or without 'chr' (any case, MT or M)."""
    core = value[3:] if value.lower().startswith("chr") else value
    core = core.upper()
    if core not in _CHROMS:
        return None
    return "chrM" if core in ("M", "MT") else "chr" + core


def _norm_chrom(values: pd.Series, where: str, col: str, row_label) -> np.ndarray:
    """Normalised chromosome names; InputError naming the first value outside 1-22, X, Y, M/MT."""
    s = pd.Series(values).reset_index(drop=True)
    missing = s.isna().to_numpy()
    if s.dtype.kind == "f":  # bare numbers read with gaps come as floats: 1.0 -> "1"
        v = s.to_numpy()
        whole = np.isfinite(v) & (v == np.round(v)) & (np.abs(v) < 1e9)
        ints = np.where(whole, v, 0).astype(np.int64).astype(str)
        s = pd.Series(np.where(whole, ints, s.astype(str).to_numpy()))
    s = s.astype(str).str.strip().mask(missing, "")
    names = {u: _chrom_name(u) for u in pd.unique(s)}
    out = s.map(names)
    bad = out.isna().to_numpy()
    if bad.any():
        i = int(bad.nonzero()[0][0])
        others = [repr(u) for u, n in names.items() if n is None]
        raise InputError(
            f"{where} [column {col!r}], {row_label(i)}",
            ("missing chromosome name" if s.iat[i] == "" else f"unknown chromosome {s.iat[i]!r}")
            + f" ({int(bad.sum())} row(s) with chromosomes outside 1-22, X, Y, M: "
            + f"{', '.join(others[:5])}{' ...' if len(others) > 5 else ''}).",
            "give bins on the primary chromosomes only (1-22, X, Y and M/MT, with or without 'chr'): "
            "drop unplaced, alt and decoy contigs, and check that this column holds chromosome names "
            "(23/24 for X/Y must be written X/Y).",
        )
    return out.to_numpy(dtype=object).astype(str)


def _check_bin_layout(bins: pd.DataFrame, where: str, row_label) -> None:
    """Bins must have start < end, come in ascending start order within each chromosome, and not
    overlap. ``bins["_row"]`` is each bin's row in the input (for ``row_label``)."""
    chrom = bins["chrom"].to_numpy()
    start = bins["start"].to_numpy()
    end = bins["end"].to_numpy()
    rows = bins["_row"].to_numpy()

    def name(i):
        return f"{chrom[i]}:{start[i]}-{end[i]}"

    bad = np.flatnonzero((start < 0) | (end <= start))
    if bad.size:
        i = bad[0]
        raise InputError(
            f"{where}, {row_label(rows[i])}",
            f"bin {name(i)} has {'a negative start' if start[i] < 0 else 'its end at or before its start'} "
            f"({bad.size} such bin(s)).",
            "give 0 <= start < end for every bin (check that the start and end columns are not swapped).",
        )
    codes = pd.factorize(chrom)[0]
    idx = np.argsort(codes, kind="stable")  # each chromosome's bins, in input order
    same = codes[idx][1:] == codes[idx][:-1]
    prev, nxt = idx[:-1][same], idx[1:][same]
    for test, problem, fix in (
        (start[nxt] < start[prev],
         "bins are not sorted by start within chromosome {c}: {b} comes after {a} ({ra})",
         "sort the table by chromosome and start position (e.g. `sort -k1,1V -k2,2n`, keeping the header "
         "first), or export it sorted."),
        (start[nxt] < end[prev],
         "bins {a} ({ra}) and {b} overlap",
         "give non-overlapping bins, one row per genomic bin (overlapping or sliding windows are not "
         "supported; 1-based inclusive or 0-based half-open coordinates both work)."),
    ):
        hit = np.flatnonzero(test)
        if hit.size:
            k = hit[np.argmin(rows[nxt[hit]])]  # the first offending row of the input
            a, b = prev[k], nxt[k]
            raise InputError(
                f"{where}, {row_label(rows[b])}",
                problem.format(c=chrom[b], a=name(a), b=name(b), ra=row_label(rows[a]))
                + f"; {hit.size} such pair(s) in all.",
                fix,
            )


def _find_col(columns, names) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _data_row(i: int) -> str:
    return f"data row {i + 1}"


def _var_row(i: int) -> str:
    return f"var row {i + 1}"


def _bin_frame(df: pd.DataFrame, where: str, chrom_col: str, start_col: str, end_col: str,
               gc_col: str | None, row_label=_data_row) -> pd.DataFrame:
    out = pd.DataFrame({"chrom": _norm_chrom(df[chrom_col], where, chrom_col, row_label)})
    for new, col in (("start", start_col), ("end", end_col)):
        v = pd.to_numeric(df[col], errors="coerce")
        if v.isna().any() or (v != np.round(v)).any() or (v.abs() > 2**53).any():
            raise InputError(
                f"{where} [column {col!r}]",
                "bin positions must be whole numbers.",
                "give integer start/end positions for every bin.",
            )
        out[new] = v.to_numpy().astype(np.int64)
    if gc_col is not None:
        out["gc"] = pd.to_numeric(df[gc_col], errors="coerce").to_numpy(dtype=np.float64)
    out["_row"] = np.arange(len(out))
    return out


def read_scdna(path, *, sample_id: str | None = None) -> ad.AnnData:
    """Read one sample's single-cell DNA bin counts: cells x genomic bins.

    Accepted: a wide table (``chrom``/``chr``, ``start``, ``end``, optional ``gc``, then one column
    per cell), a long table (``cell_id``, ``chr``/``chrom``, ``start``, ``end``, ``reads``, optional
    ``gc``), tab/comma separated, optionally gzipped, or an ``.h5ad`` with ``var`` chrom/start/end.

    Chromosome names may be written with or without ``chr`` (``1``, ``Chr1``, ``chrX``, ``MT``) and
    are normalised to chr1..chr22, chrX, chrY, chrM. Bins must come in ascending start order within
    each chromosome (chromosomes in any order), must not overlap, and must lie on those
    chromosomes; anything else raises InputError naming the value and the row.

    Parameters
    ----------
    path
        The table or ``.h5ad`` (above).
    sample_id
        When given, cells are named ``"{sample_id}:{cell}"`` and ``obs`` gets ``barcode`` (the
        input's cell id) and ``sample_id`` columns.

    Returns
    -------
    Cells x bins, ``X`` float32 numpy array, ``var`` index ``"chrom:start-end"`` with
    columns chrom, start, end (and gc), bins sorted chr1..chr22, chrX, chrY, chrM then by start.
    Values may be non-integer (e.g. ratios): ``uns["scdna"]["integer_counts"]`` records which;
    ``uns["scdna"]["format"]`` is ``"wide"``, ``"long"`` or ``"h5ad"``.
    """
    path = Path(path)
    _check_file(path, "scDNA bin count input")
    where = str(path)
    row_label = _data_row
    if path.name.lower().endswith(".h5ad"):
        row_label = _var_row
        X, cells, bins, fmt = _read_scdna_h5ad(path)
    else:
        df = _read_table(path, as_str=False)
        if df.shape[0] == 0:
            raise InputError(where, "the table has a header but no rows.",
                             "give one row per bin (wide) or per cell x bin (long).")
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
    _check_bin_layout(bins, where, row_label)
    _check_unique(cells, where, "cell ids", "each cell must have one column (wide) or one set of rows (long).")

    order = sorted(range(len(bins)), key=lambda i: (_chrom_key(bins["chrom"].iat[i]), bins["start"].iat[i]))
    bins = bins.iloc[order].drop(columns="_row").reset_index(drop=True)
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
    bins = b[first].reset_index(drop=True)  # "_row" keeps each bin's first row in the table
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
    a = _read_h5ad(path)
    cols = _require(a.var.columns, f"{where} [var]", {"chrom": _CHROM_COLS, "start": ("start",), "end": ("end",)},
                    "h5ad")
    gc_col = _find_col(a.var.columns, ("gc", "gc_content"))
    bins = _bin_frame(a.var, f"{where} [var]", cols["chrom"], cols["start"], cols["end"], gc_col, _var_row)
    if a.X is None:
        raise InputError(where, "has no X.", "store the bin counts (cells x bins) in X.")
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    if X.dtype.kind not in "biuf":
        raise InputError(where, f"X holds {X.dtype} values, not numbers.", "store the bin counts (cells x bins) in X.")
    X = X.astype(np.float64)
    if not np.isfinite(X).all() or (X < 0).any():
        bad = int(np.argmax((~np.isfinite(X) | (X < 0)).any(axis=1)))
        _check_scdna_values(X[bad], where, a.obs_names[bad])
    return X, a.obs_names.to_numpy(dtype=str), bins, "h5ad"


def _bin_names(adata: ad.AnnData) -> pd.Index:
    """``chrom:start-end`` of each bin, from ``var`` columns when present, else ``var_names``."""
    if all(c in adata.var.columns for c in ("chrom", "start", "end")):
        v = adata.var
        return pd.Index((v["chrom"].astype(str) + ":" + v["start"].astype(np.int64).astype(str) + "-"
                         + v["end"].astype(np.int64).astype(str)).to_numpy())
    return pd.Index(adata.var_names.astype(str))


def check_same_bins(adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData], *,
                    where: str = "scDNA samples") -> pd.Index:
    """The scDNA samples (of one patient) share one set of bins, in one order.

    Copy-number profiles and clones are compared bin by bin across a patient's samples, so a
    sample binned differently (another bin size, another reference, a filtered bin list) cannot
    be joined to the others.

    Parameters
    ----------
    adatas
        Sample id -> cells x bins AnnData (:func:`read_scdna` output), or a sequence of them
        (named by ``obs['sample_id']`` when present, else by position).
    where
        What the samples are (e.g. ``"patient P01, scDNA"``), for the message.

    Returns
    -------
    The shared bins (``chrom:start-end``).

    Raises
    ------
    InputError
        Naming the first two samples whose bins differ and the first differing bin.
    """
    if not isinstance(adatas, Mapping):
        named = {}
        for i, a in enumerate(adatas):
            sid = a.obs["sample_id"].iloc[0] if "sample_id" in a.obs and a.n_obs else f"sample {i + 1}"
            named[str(sid)] = a
        adatas = named
    if not adatas:
        return pd.Index([])
    items = [(str(k), _bin_names(a)) for k, a in adatas.items()]
    first, ref = items[0]
    for name, bins in items[1:]:
        if bins.equals(ref):
            continue
        n = min(len(ref), len(bins))
        diff = np.flatnonzero(ref[:n].to_numpy() != bins[:n].to_numpy())
        i = int(diff[0]) if diff.size else n
        a_bin = ref[i] if i < len(ref) else "none (it ends there)"
        b_bin = bins[i] if i < len(bins) else "none (it ends there)"
        raise InputError(
            where,
            f"samples '{first}' and '{name}' have different bins ({len(ref)} vs {len(bins)}): bin {i + 1} "
            f"is {a_bin} in '{first}' but {b_bin} in '{name}'.",
            "count the scDNA reads of every sample of a patient in the same bins (same bin size, reference "
            "genome and bin filter), e.g. re-run the binning of the odd sample with the others' bin file.",
        )
    return ref
