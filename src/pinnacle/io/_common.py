"""Helpers the readers share: file checks, gzip-aware text, delimited tables, text to numbers,
and the translation of every failure to open, decompress, decode or parse a file into an
:class:`InputError` that names the file, what is wrong and the fix (``docs/input_errors.md``).

Text inputs are opened with :func:`_text_stream`: it refuses a file whose first bytes say it is
not text (zip, bzip2, xz, HDF5, UTF-16 ...), decompresses gzip, decodes strict UTF-8 and stops at
a NUL byte; any failure while the caller parses the stream is diagnosed by :func:`_scan_text`
(truncated or corrupt gzip, the first byte that is not UTF-8, the first NUL) and re-raised as
InputError. HDF5 inputs are opened with :func:`_open_h5` (empty, not HDF5, truncated, damaged)
and read with :func:`_h5_read`, which names the dataset that cannot be read.
"""

from __future__ import annotations

import codecs
import gzip
import io
import re
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from pinnacle.errors import InputError

_NA_STRINGS = {"", "na", "nan", "n/a", "null", "none", "-nan", "#n/a"}

_RECOPY = "copy the file again from its source and compare its size or checksum with the original."


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(
            path,
            f"{what} not found.",
            "check the path in config/samples.tsv (or config.yaml) and that the file was copied.",
        )


def _check_file(path: Path, what: str) -> None:
    """``path`` exists and is a file, not a directory."""
    _check_exists(path, what)
    if path.is_dir():
        raise InputError(
            path,
            f"{what} is a directory, not a file.",
            "give the path of the file itself (check the path in config/samples.tsv or config.yaml).",
        )


def _os_error(path: Path, err: OSError) -> InputError:
    if isinstance(err, IsADirectoryError):
        return InputError(path, "is a directory, not a file.", "give the path of the file itself.")
    return InputError(
        path,
        f"cannot be read ({err.strerror or err}).",
        "check that the file is readable by this user and its disk works; " + _RECOPY,
    )


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as err:
        raise _os_error(path, err) from err


def _is_gzip(path: Path) -> bool:
    return _head(path, 2) == b"\x1f\x8b"


# --------------------------------------------------------------------------------------------
# what a file holds, from its first bytes
# --------------------------------------------------------------------------------------------

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SIGNATURES = (  # (leading bytes, kind, description)
    (b"\x1f\x8b", "gzip", "gzip-compressed data"),
    (b"PK\x03\x04", "zip", "a zip archive (or an Excel .xlsx workbook)"),
    (b"PK\x05\x06", "zip", "an empty zip archive"),
    (b"\xfd7zXZ\x00", "xz", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd-compressed data"),
    (_HDF5_MAGIC, "hdf5", "an HDF5 file (such as a 10x .h5 or an .h5ad)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole", "an old Excel .xls workbook (or another MS Office file)"),
    (b"%PDF", "pdf", "a PDF document"),
    (b"\xff\xfe", "utf16", "UTF-16 text"),
    (b"\xfe\xff", "utf16", "UTF-16 text"),
)
_KIND_FIX = {
    "gzip": "decompress it once more (it is gzip inside gzip), or give the original file.",
    "bzip2": "decompress it (bunzip2), or re-compress it with gzip.",
    "xz": "decompress it (unxz), or re-compress it with gzip.",
    "zstd": "decompress it (zstd -d), or re-compress it with gzip.",
    "zip": "unzip it and give the file inside (plain or gzipped); save a workbook's sheet as "
           "tab-separated text.",
    "ole": "save the sheet as tab-separated text (or 'CSV UTF-8').",
    "pdf": "give the data file, not a document.",
    "hdf5": "give the text table this input expects; an AnnData file must be named .h5ad.",
    "utf16": "re-save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f UTF-16 -t UTF-8 IN > OUT`).",
}


def _sniff_kind(head: bytes) -> tuple[str, str] | None:
    """(kind, description) of a file from its first bytes; None for anything else (text)."""
    if re.match(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", head):
        return "bzip2", "bzip2-compressed data"
    for magic, kind, desc in _SIGNATURES:
        if head.startswith(magic):
            return kind, desc
    return None


def _text_codec(path: Path) -> str | None:
    """"gzip" or None (plain) for a text input; InputError when the file is something else."""
    kind = _sniff_kind(_head(path))
    gz_name = path.name.lower().endswith(".gz")
    if kind is None:
        return None
    if kind[0] == "gzip":
        try:
            with gzip.open(path, "rb") as fh:
                inner = _sniff_kind(fh.read(16))
        except (EOFError, OSError, zlib.error) as err:
            raise (_scan_text(path) or _text_fallback(path, err)) from err
        if inner is not None:
            what = "gzip-compressed twice" if inner[0] == "gzip" else f"gzip-compressed {inner[1]}"
            raise InputError(path, f"is {what}, not {'UTF-8 ' if inner[0] == 'utf16' else ''}text.",
                             _KIND_FIX[inner[0]])
        return "gzip"
    if kind[0] == "utf16":
        problem = "is UTF-16 text; text inputs must be UTF-8 (or plain ASCII)."
    elif gz_name:
        problem = f"is not a gzip file although its name ends in .gz: it holds {kind[1]}."
    else:
        problem = f"is not a text table: it holds {kind[1]}."
    raise InputError(path, problem, _KIND_FIX[kind[0]])


# --------------------------------------------------------------------------------------------
# text streams
# --------------------------------------------------------------------------------------------


class _NulByte(Exception):
    """A NUL byte in a text input (raised inside the stream, translated by _text_errors)."""

    def __init__(self, offset: int):
        super().__init__(f"NUL byte at byte {offset}")
        self.offset = offset


class _NoNul(io.RawIOBase):
    """Binary stream that passes ``raw`` on and stops at the first NUL byte (text never has one).
    With ``sep`` it also counts the separators and quotes on the last line it has passed on, and
    ``ends_line`` says whether the bytes so far end with a line end (see _check_last_line)."""

    def __init__(self, raw, sep: bytes | None = None):
        self._raw = raw
        self._offset = 0
        self._sep = sep
        self.last_line_seps = 0
        self.last_line_quoted = False
        self.last_line_blank = True
        self.ends_line = True

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._raw.read(len(buf))
        nul = data.find(b"\0")
        if nul >= 0:
            raise _NulByte(self._offset + nul)
        n = len(data)
        buf[:n] = data
        self._offset += n
        if n and self._sep:
            nl = data.rfind(b"\n")
            rest = data[nl + 1:]
            if nl >= 0:
                self.last_line_seps, self.last_line_quoted, self.last_line_blank = 0, False, True
            self.last_line_seps += rest.count(self._sep)
            self.last_line_quoted |= b'"' in rest
            self.last_line_blank &= not rest.strip()
            self.ends_line = data[-1:] in (b"\n", b"\r")
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


@contextmanager
def _text_errors(path: Path):
    """Re-raise a failure to decompress, decode or read ``path`` (inside the block) as InputError."""
    try:
        yield
    except (UnicodeDecodeError, _NulByte, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise (_scan_text(path) or _text_fallback(path, err)) from err
    except OSError as err:
        raise _os_error(path, err) from err


@contextmanager
def _text_stream(path: Path, *, binary: bool = False, sep: str | None = None):
    """Open a plain or gzipped text input: a str stream (UTF-8, BOM dropped, newlines untouched)
    or, with ``binary``, a bytes stream; failures inside the block become InputError. With
    ``sep``, ``stream.buffer.raw`` tracks the last line (see _NoNul)."""
    codec = _text_codec(path)
    try:
        raw = gzip.open(path, "rb") if codec == "gzip" else open(path, "rb")
    except OSError as err:
        raise _os_error(path, err) from err
    stream = io.BufferedReader(_NoNul(raw, sep.encode() if sep else None), buffer_size=1 << 16)
    if not binary:
        stream = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    with _text_errors(path), stream:
        yield stream


def _text_fallback(path: Path, err: BaseException) -> InputError:
    return InputError(path, f"cannot be read as text ({type(err).__name__}: {err}).", _RECOPY)


def _scan_text(path: Path) -> InputError | None:
    """Read the whole file as a text input and describe its first fault: a truncated or corrupt
    gzip stream, a byte that is not UTF-8, a NUL byte. None when there is none."""
    try:
        gz = _is_gzip(path)
    except InputError as err:
        return err
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, line, sample = 0, 1, b""
    of_what = " of the decompressed text" if gz else ""
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            while True:
                chunk = fh.read1(1 << 16)  # read1: a truncated gzip stream fails after what it holds
                if len(sample) < 4096:
                    sample += chunk[: 4096 - len(sample)]
                pending = len(decoder.getstate()[0])
                bad = None
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    bad = offset - pending + e.start
                nul = chunk.find(b"\0")
                nul = offset + nul if nul >= 0 else None
                if bad is not None or nul is not None:
                    at = min(x for x in (bad, nul) if x is not None)
                    line_at = line + chunk[: max(at - offset, 0)].count(b"\n")
                    if nul is not None and nul == at:
                        return InputError(
                            path,
                            f"contains a NUL (zero) byte at byte {at:,} (line {line_at}){of_what}; text tables "
                            "never do, so the file is damaged (e.g. a zero-filled block from an interrupted "
                            "copy) or is not text.",
                            _RECOPY,
                        )
                    return _not_utf8(path, chunk, at, at - offset, line_at, of_what, sample)
                if not chunk:
                    return None
                offset += len(chunk)
                line += chunk.count(b"\n")
    except EOFError:
        return InputError(
            path,
            f"truncated gzip stream: the compressed data ends early (after {offset:,} bytes of text).",
            "the file was cut short (an interrupted copy or download); " + _RECOPY + " `gzip -t FILE` checks a copy.",
        )
    except (zlib.error, gzip.BadGzipFile) as err:
        return InputError(
            path,
            f"corrupt gzip data ({err}) after {offset:,} bytes of text.",
            "the file was damaged in transfer or on disk; " + _RECOPY + " `gzip -t FILE` checks a copy.",
        )
    except OSError as err:
        return _os_error(path, err)


def _not_utf8(path: Path, chunk: bytes, at: int, i: int, line: int, of_what: str, sample: bytes) -> InputError:
    byte = chunk[i] if 0 <= i < len(chunk) else None
    shown = f" (0x{byte:02X})" if byte is not None else ""
    problem = f"not UTF-8 text at byte {at:,}{shown}, line {line}{of_what}"
    text = sample.decode("utf-8", errors="replace")
    odd = sum(ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\r\n\f\v") for ch in text)
    if text and odd > 0.1 * len(text):
        return InputError(
            path,
            problem + "; it looks like binary data, not a text table.",
            "give the text export this input expects; the file may be damaged or of another format: " + _RECOPY,
        )
    if byte is not None and byte >= 0x80:
        problem += f"; in Latin-1/Windows-1252 that byte is {bytes([byte]).decode('cp1252', errors='replace')!r}, " \
                   "so the file is probably in a legacy encoding"
    return InputError(
        path,
        problem + ".",
        "re-save it as UTF-8 (`iconv -f latin1 -t utf-8 IN > OUT`, or Excel 'CSV UTF-8').",
    )


def _sniff_sep(path: Path) -> str:
    """Separator of a delimited text file, from its first non-empty line: tab, ';' or ','."""
    header = ""
    with _text_stream(path) as fh:
        for line in fh:
            if line.strip():
                header = line
                break
    if "\t" in header:
        return "\t"
    if header.count(";") > header.count(","):
        return ";"
    return ","


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of a plain or gzipped text file; every failure is an InputError."""
    sep = kwargs.get("sep", ",")
    with _text_stream(path, sep=sep) as fh:
        try:
            df = pd.read_csv(fh, **kwargs)
            _check_last_line(path, fh.buffer.raw, sep, df.shape[1])
            return df
        except pd.errors.EmptyDataError as err:
            raise InputError(path, "the file is empty.", "give a table with a header line and data rows.") from err
        except pd.errors.ParserError as err:
            raise InputError(
                path,
                f"cannot be parsed as a {sep!r}-separated table ({err}).",
                "check that every row has as many fields as the header.",
            ) from err


def _check_last_line(path: Path, raw: _NoNul, sep: str, n_fields: int) -> None:
    """A file whose last line has no line end and fewer fields than the table was cut short."""
    if raw.ends_line or raw.last_line_quoted or raw.last_line_blank:
        return
    fields = raw.last_line_seps + 1
    if fields < n_fields:
        raise InputError(
            path,
            f"the last line has {fields} of the table's {n_fields} fields and no line end: the file was cut "
            "short (truncated).",
            "the copy is incomplete; " + _RECOPY,
        )


def _read_table(path: Path, *, as_str: bool) -> pd.DataFrame:
    """Read a (possibly gzipped) delimited table; ``as_str`` keeps every cell as text."""
    sep = _sniff_sep(path)
    kwargs: dict = {"sep": sep}
    if as_str:
        kwargs.update(dtype=str, keep_default_na=False)
    else:
        kwargs.update(low_memory=False)
    df = _read_csv(path, **kwargs)
    if not isinstance(df.index, pd.RangeIndex):  # pandas silently turns surplus fields into an index
        raise InputError(
            path,
            f"cannot be parsed as a {sep!r}-separated table (data rows have more fields than the header).",
            "check that every row has as many fields as the header.",
        )
    df.columns = [str(c).strip() for c in df.columns]
    return df


# --------------------------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------------------------

# what h5py raises for a damaged object: OSError/RuntimeError from the HDF5 library, KeyError for
# an unreadable link, TypeError/ValueError for an object of the wrong kind or a bad datatype,
# UnicodeDecodeError for names that are not text
_H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError, UnicodeDecodeError)


def _h5_open_problem(path: Path, err: Exception) -> tuple[str, str]:
    """Why h5py could not open ``path``, in words, and a hint to add to the fix ("" or a sentence)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
            signed = head.startswith(_HDF5_MAGIC)
            for offset in (512, 1024, 2048, 4096, 8192):  # HDF5 allows a user block before the signature
                if signed or offset >= size:
                    break
                fh.seek(offset)
                signed = fh.read(8) == _HDF5_MAGIC
    except OSError as os_err:
        return f"it cannot be read ({os_err.strerror or os_err})", ""
    if size == 0:
        return "the file is empty (0 bytes)", ""
    if not signed:
        kind = _sniff_kind(head)
        if kind is not None:
            tool = {"gzip": "gunzip", "bzip2": "bunzip2", "xz": "unxz", "zstd": "zstd -d", "zip": "unzip"}
            hint = f" If it is a compressed copy, decompress it first ({tool[kind[0]]})." if kind[0] in tool else ""
            return f"it is not an HDF5 file but {kind[1]}", hint
        if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
            return f"it is not an HDF5 file (it starts with text: {head.decode('ascii')!r})", ""
        return "it is not an HDF5 file (no HDF5 signature at its start)", ""
    m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(err))
    if m:
        return f"it is truncated ({int(m.group(1)):,} of its {int(m.group(2)):,} bytes are there)", ""
    return f"it is a damaged HDF5 file ({err})", ""


def _open_h5(path: Path, problem: str, fix: str) -> h5py.File:
    """h5py.File(path, "r"); a failure is InputError(path, f"{problem}: {why}.", fix)."""
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as err:
        why, hint = _h5_open_problem(path, err)
        raise InputError(path, f"{problem}: {why}.", fix + hint) from err


def _h5_damaged(where: str, key: str, err: BaseException) -> InputError:
    if isinstance(err, MemoryError):
        return InputError(
            where,
            f"HDF5 dataset '/{key}' needs more memory than is available: the file is damaged (a corrupt "
            "size field) or too large for this machine.",
            _RECOPY + " If it is intact, give the rule more memory (mem_mb).",
        )
    return InputError(where, f"HDF5 key '/{key}' cannot be read ({type(err).__name__}: {err}); the file is damaged.",
                      _RECOPY)


def _h5_read(f: h5py.File, key: str, where: str, missing: tuple[str, str]) -> np.ndarray:
    """The array stored at ``key``; ``missing`` is (problem, fix) for a file without it."""
    try:
        if key not in f:
            raise InputError(where, *missing)
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise InputError(where, f"HDF5 key '/{key}' is a {type(ds).__name__}, not a dataset.", missing[1])
        size = Path(f.filename).stat().st_size
        if ds.chunks is None and ds.nbytes > size:
            raise InputError(
                where,
                f"HDF5 dataset '/{key}' declares {ds.nbytes:,} bytes, more than the whole file "
                f"({size:,} bytes); the file is damaged.",
                _RECOPY,
            )
        return ds[()]
    except InputError:
        raise
    except (MemoryError, *_H5_ERRORS) as err:
        raise _h5_damaged(where, key, err) from err


def _h5_strings(values: np.ndarray, where: str, key: str) -> np.ndarray:
    """Text stored in an HDF5 dataset (fixed-length bytes, variable-length, numbers) as str."""
    try:
        return values.astype(str)  # ASCII bytes, the usual case
    except UnicodeDecodeError:
        pass
    out = []
    for i, v in enumerate(np.ravel(values)):
        try:
            out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
        except UnicodeDecodeError as err:
            raise InputError(
                where, f"HDF5 dataset '/{key}' holds text that is not UTF-8 (entry {i + 1}: {v[:40]!r}); "
                "the file is damaged.", _RECOPY,
            ) from err
    return np.asarray(out, dtype=str)


def _read_h5ad(path: Path) -> ad.AnnData:
    """``ad.read_h5ad`` with every failure as InputError(path, "cannot be read as an .h5ad file: ...")."""
    where = str(path)
    problem = "cannot be read as an .h5ad file"
    fix = "re-write it with anndata (adata.write_h5ad), or " + _RECOPY
    with _open_h5(path, problem, fix) as f:
        try:
            keys = sorted(f.keys())
        except _H5_ERRORS as err:
            raise InputError(where, f"{problem}: it is a damaged HDF5 file ({err}).", fix) from err
    if "obs" not in keys or "var" not in keys:
        raise InputError(
            where,
            f"{problem}: an HDF5 file without AnnData's 'obs' and 'var' (top-level keys: {keys}).",
            "give an AnnData file written by anndata; a Cell Ranger matrix must be named .h5.",
        )
    try:
        with warnings.catch_warnings():  # files from older anndata versions read fine
            warnings.simplefilter("ignore", ad.OldFormatWarning)
            return ad.read_h5ad(path)
    except MemoryError as err:
        raise InputError(
            where,
            f"{problem}: it needs more memory than is available; the file is damaged (a corrupt size field) "
            "or too large for this machine.",
            _RECOPY + " If it is intact, give the rule more memory (mem_mb).",
        ) from err
    except Exception as err:  # noqa: BLE001 - anndata/h5py raise many types for a damaged file; all re-raised
        raise InputError(
            where, f"{problem} ({type(err).__name__}: {err}); the file is damaged or was not written by anndata.", fix,
        ) from err


# --------------------------------------------------------------------------------------------
# values and names
# --------------------------------------------------------------------------------------------


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
