"""Helpers the readers share: file checks, gzip-aware text, delimited tables, text to numbers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

_NA_STRINGS = {"", "na", "nan", "n/a", "null", "none", "-nan", "#n/a"}


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
    kwargs: dict = {"sep": sep, "compression": "gzip" if _is_gzip(path) else None}
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

