"""Damaged input files: every reader must turn a file it cannot read into InputError(path, ...).

Part 1 makes one real corrupt file per failure class (from valid files written by the helpers of
test_io.py) and checks the message. Part 2 is property-style: for every reader and a valid file
of each input format, a few hundred deterministic random corruptions (truncate, flip bytes, zero
a span, re-compress with the wrong codec, gzip a corrupted payload); each must either raise
InputError naming the file or read without error, never any other exception.

HDF5 inputs are read in a forked child: libhdf5 itself can crash (SIGSEGV) or spin for a long time
on some damaged metadata, which no Python code can catch; such cases are counted, printed (run
with -s to see the counts) and must stay rare (see docs/input_errors.md).
"""

from __future__ import annotations

import bz2
import collections
import faulthandler
import gzip
import io
import json
import lzma
import os
import re
import select
import signal
import zipfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_io import (
    BARCODES,
    COUNTS,
    IDS,
    MAXQUANT,
    long_scdna_text,
    wide_scdna_text,
    write_10x_h5,
    write_10x_mtx,
    write_text,
)

from pinnacle.errors import InputError
from pinnacle.io import read_proteomics, read_rna, read_scdna

# --------------------------------------------------------------------------------------------
# valid inputs, one per format
# --------------------------------------------------------------------------------------------

DIANN = (
    "Protein.Group\tProtein.Ids\tProtein.Names\tGenes\tFirst.Protein.Description\t"
    "D:\\runs\\S1.raw\t/data/S2.mzML\n"
    "P1;P2\tP1;P2\tA_HUMAN\tGA;GB\tdesc\t100.5\t\n"
    "P3\tP3\tC_HUMAN\t\tdesc\t\t7\n"
)
OLINK = (
    "SampleID;Assay;OlinkID;UniProt;NPX;QC_Warning;Panel\n"
    "S1;IL6;OID1;P05231;3,5;Pass;Inflammation\n"
    "S1;CXCL9;OID2;;1,25;Pass;Inflammation\n"
    "S2;IL6;OID1;P05231;4,0;Warning;Inflammation\n"
    "S2;CXCL9;OID2;;NA;Pass;Inflammation\n"
)
MATRIX = "protein,gene,S1,S2\nP1,GA,1.5,2\nP2,GB,,3\nP3,GC,4,5\n"


def _write_h5_gzip(path):
    """A 10x v3 .h5 with gzip-compressed, chunked datasets (as Cell Ranger writes them)."""
    write_10x_h5(path)
    with h5py.File(path, "a") as f:
        for key in ("matrix/data", "matrix/indices", "matrix/indptr"):
            values = f[key][()]
            del f[key]
            f.create_dataset(key, data=values, compression="gzip", chunks=True)
    return path


def _write_rna_h5ad(path):
    a = ad.AnnData(X=sp.csr_matrix(COUNTS[:, :3].astype(np.float32)), obs=pd.DataFrame(index=BARCODES),
                   var=pd.DataFrame({"gene_ids": IDS[:3]}, index=["G1", "G2", "G3"]))
    a.obsm["protein_expression"] = pd.DataFrame(COUNTS[:, 3:], index=BARCODES, columns=["CD3", "CD4"])
    a.write_h5ad(path)
    return path


def _write_scdna_h5ad(path):
    var = pd.DataFrame({"chrom": ["chr1", "chr1", "chr2"], "start": [1, 101, 1], "end": [100, 200, 100]},
                       index=["b1", "b2", "b3"])
    ad.AnnData(X=np.array([[1.0, 2.0, 3.0], [4.0, 0.0, 1.0]]), obs=pd.DataFrame(index=["c1", "c2"]),
               var=var).write_h5ad(path)
    return path


# name -> (reader, file name, writer(path) -> path, is HDF5)
FORMATS = {
    "rna_10x_h5": (read_rna, "filtered_feature_bc_matrix.h5", write_10x_h5, True),
    "rna_10x_h5_gzip": (read_rna, "filtered_feature_bc_matrix.h5", _write_h5_gzip, True),
    "rna_h5ad": (read_rna, "s.h5ad", _write_rna_h5ad, True),
    "rna_mtx_gz": (read_rna, "filtered_feature_bc_matrix", lambda p: write_10x_mtx(p), False),
    "rna_mtx_plain": (read_rna, "filtered_feature_bc_matrix", lambda p: write_10x_mtx(p, gz=False), False),
    "scdna_wide_tsv": (read_scdna, "bins.tsv", lambda p: write_text(p, wide_scdna_text()), False),
    "scdna_wide_csv_gz": (read_scdna, "bins.csv.gz", lambda p: write_text(p, wide_scdna_text(","), gz=True), False),
    "scdna_long_tsv": (read_scdna, "long.tsv", lambda p: write_text(p, long_scdna_text()), False),
    "scdna_h5ad": (read_scdna, "bins.h5ad", _write_scdna_h5ad, True),
    "maxquant": (lambda p: read_proteomics(p, format="maxquant"), "proteinGroups.txt",
                 lambda p: write_text(p, MAXQUANT), False),
    "maxquant_gz": (lambda p: read_proteomics(p, format="maxquant"), "proteinGroups.txt.gz",
                    lambda p: write_text(p, MAXQUANT, gz=True), False),
    "diann": (lambda p: read_proteomics(p, format="diann"), "report.pg_matrix.tsv",
              lambda p: write_text(p, DIANN), False),
    "olink": (lambda p: read_proteomics(p, format="olink"), "npx.csv", lambda p: write_text(p, OLINK), False),
    "matrix": (lambda p: read_proteomics(p, format="matrix"), "m.csv", lambda p: write_text(p, MATRIX), False),
}
# corruptions per format: HDF5 inputs are read in a child process and are slower; the module runs
# in ~15 s on 2 busy cores (1,900 corruptions; 3,800 were run once with the same outcome: InputError or a
# clean read, never another exception)
N_TEXT, N_HDF5 = 150, 100


# --------------------------------------------------------------------------------------------
# part 1: one real damaged file per failure class
# --------------------------------------------------------------------------------------------


def _maxquant(path):
    return read_proteomics(path, format="maxquant")


def _gz(data) -> bytes:
    return gzip.compress(data.encode() if isinstance(data, str) else data, mtime=0)


def _zip_of(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("table.tsv", data)
    return buf.getvalue()


def _raises(reader, path, pattern):
    """reader(path) raises InputError whose message starts with the path and matches pattern."""
    with pytest.raises(InputError) as info:
        reader(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert re.search(pattern, msg), msg
    return msg


# a text input as each reader meets it: (reader, file name, valid text)
TEXT_INPUTS = {
    "scdna": (read_scdna, "bins.tsv.gz", wide_scdna_text()),
    "maxquant": (_maxquant, "proteinGroups.txt.gz", MAXQUANT),
    "diann": (lambda p: read_proteomics(p, format="diann"), "r.pg_matrix.tsv.gz", DIANN),
    "olink": (lambda p: read_proteomics(p, format="olink"), "npx.csv.gz", OLINK),
}


@pytest.mark.parametrize("inp", sorted(TEXT_INPUTS))
def test_truncated_gz(tmp_path, inp):
    reader, name, text = TEXT_INPUTS[inp]
    p = tmp_path / name
    p.write_bytes(_gz(text * 50)[:-40])  # cut inside the deflate stream
    _raises(reader, p, r"truncated gzip stream: the compressed data ends early \(after [\d,]+ bytes of text\)"
                       r".*Fix: the file was cut short.*gzip -t")


@pytest.mark.parametrize("inp", sorted(TEXT_INPUTS))
@pytest.mark.parametrize("codec, desc", [("zip", "a zip archive"), ("bzip2", "bzip2-compressed data"),
                                         ("xz", "xz-compressed data")])
def test_other_codec_named_gz(tmp_path, inp, codec, desc):
    reader, name, text = TEXT_INPUTS[inp]
    p = tmp_path / name
    p.write_bytes({"zip": _zip_of, "bzip2": bz2.compress, "xz": lzma.compress}[codec](text.encode()))
    _raises(reader, p, rf"is not a gzip file although its name ends in \.gz: it holds {re.escape(desc)}.*Fix: "
                       rf"(unzip|decompress)")


def test_bzip2_without_gz_name(tmp_path):
    p = tmp_path / "bins.tsv"
    p.write_bytes(bz2.compress(wide_scdna_text().encode()))
    _raises(read_scdna, p, r"is not a text table: it holds bzip2-compressed data.*Fix: decompress it \(bunzip2\)")


@pytest.mark.parametrize("inp", sorted(TEXT_INPUTS))
def test_gzip_of_binary_junk(tmp_path, inp):
    reader, name, _ = TEXT_INPUTS[inp]
    p = tmp_path / name
    p.write_bytes(_gz(np.random.default_rng(0).bytes(5000)))
    _raises(reader, p, r"not UTF-8 text at byte \d+ \(0x[0-9A-F]{2}\), line \d+ of the decompressed text; "
                       r"it looks like binary data")


@pytest.mark.parametrize("inp", sorted(TEXT_INPUTS))
def test_corrupt_gzip_crc(tmp_path, inp):
    reader, name, text = TEXT_INPUTS[inp]
    data = bytearray(_gz(text))
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    p = tmp_path / name
    p.write_bytes(bytes(data))
    _raises(reader, p, r"corrupt gzip data \(CRC check failed")


@pytest.mark.parametrize("inp", ["scdna", "maxquant"])
def test_plain_table_cut_mid_line(tmp_path, inp):
    reader, name, text = TEXT_INPUTS[inp]
    p = tmp_path / name.removesuffix(".gz")
    p.write_text(text[: text.rindex("\t") - 1])  # cut inside the last line
    _raises(reader, p, r"the last line has \d+ of the table's \d+ fields and no line end: the file was cut short")


def test_last_line_without_line_end_reads(tmp_path):
    p = write_text(tmp_path / "m.csv", MATRIX.rstrip("\n"))
    assert read_proteomics(p, format="matrix").shape == (2, 3)


def test_gzip_twice(tmp_path):
    p = tmp_path / "bins.tsv.gz"
    p.write_bytes(_gz(_gz(wide_scdna_text())))
    _raises(read_scdna, p, r"is gzip-compressed twice, not text.*Fix: decompress it once more")


@pytest.mark.parametrize("gz", [False, True])
def test_latin1_in_utf8_table(tmp_path, gz):
    text = MAXQUANT.replace("GENE5", "GÉNE5")
    data = text.encode("latin-1")
    p = tmp_path / ("proteinGroups.txt.gz" if gz else "proteinGroups.txt")
    p.write_bytes(_gz(data) if gz else data)
    at = data.index(b"\xc9")
    line = data[:at].count(b"\n") + 1
    msg = _raises(_maxquant, p, rf"not UTF-8 text at byte {at:,} \(0xC9\), line {line}"
                               rf"{' of the decompressed text' if gz else ''}; in Latin-1/Windows-1252 that byte is 'É'"
                               r".*Fix: re-save it as UTF-8 \(`iconv -f latin1")
    assert "binary" not in msg


def test_latin1_in_scdna_cell_name(tmp_path):
    p = tmp_path / "bins.tsv"
    data = wide_scdna_text().replace("cellB", "cellß").encode("latin-1")
    p.write_bytes(data)
    at = data.index("ß".encode("latin-1"))
    _raises(read_scdna, p, rf"not UTF-8 text at byte {at} \(0xDF\), line 1;")


def test_nul_bytes_in_table(tmp_path):
    data = bytearray(MAXQUANT.encode())
    data[300:340] = bytes(40)  # a zero-filled block
    p = tmp_path / "proteinGroups.txt"
    p.write_bytes(bytes(data))
    _raises(_maxquant, p, r"contains a NUL \(zero\) byte at byte 300 \(line \d+\); text tables never do")


def test_utf16_table(tmp_path):
    p = tmp_path / "npx.csv"
    p.write_bytes(OLINK.encode("utf-16"))
    _raises(TEXT_INPUTS["olink"][0], p, r"is UTF-16 text; text inputs must be UTF-8.*Fix: re-save it as UTF-8")


def test_utf8_bom_is_fine(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"\xef\xbb\xbf" + MATRIX.encode())
    a = read_proteomics(p, format="matrix")
    assert list(a.obs_names) == ["S1", "S2"] and a.shape == (2, 3)


def test_xlsx_given_as_table(tmp_path):
    p = tmp_path / "proteinGroups.xlsx"
    p.write_bytes(_zip_of(MAXQUANT.encode()))
    _raises(_maxquant, p, r"is not a text table: it holds a zip archive \(or an Excel \.xlsx workbook\)"
                         r".*save a workbook's sheet as tab-separated text")


def test_hdf5_given_as_table(tmp_path):
    p = write_10x_h5(tmp_path / "bins.tsv")
    _raises(read_scdna, p, r"is not a text table: it holds an HDF5 file.*must be named \.h5ad")


# --- scRNA: 10x mtx directory


@pytest.mark.parametrize("member", ["matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"])
def test_mtx_member_truncated(tmp_path, member):
    d = write_10x_mtx(tmp_path / "m")
    full = (d / member).read_bytes()
    (d / member).write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=rf"m/{re.escape(member)}: truncated gzip stream"):
        read_rna(d)


@pytest.mark.parametrize("member", ["matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"])
def test_mtx_member_zip_named_gz(tmp_path, member):
    d = write_10x_mtx(tmp_path / "m")
    (d / member).write_bytes(_zip_of(gzip.decompress((d / member).read_bytes())))
    with pytest.raises(InputError, match=rf"{re.escape(member)}: is not a gzip file although its name ends in \.gz: "
                                         r"it holds a zip archive"):
        read_rna(d)


def test_mtx_features_latin1(tmp_path):
    d = write_10x_mtx(tmp_path / "m", gz=False)
    (d / "features.tsv").write_bytes((d / "features.tsv").read_bytes().replace(b"MS4A1", b"MS4\xc41"))
    with pytest.raises(InputError, match=r"features\.tsv: not UTF-8 text at byte \d+ \(0xC4\), line 2;"):
        read_rna(d)


def test_mtx_binary_junk_gz(tmp_path):
    d = write_10x_mtx(tmp_path / "m")
    (d / "barcodes.tsv.gz").write_bytes(_gz(np.random.default_rng(1).bytes(3000)))
    with pytest.raises(InputError, match=r"barcodes\.tsv\.gz: not UTF-8 text at byte \d+.*binary data"):
        read_rna(d)


def test_mtx_size_line_garbage(tmp_path):
    d = write_10x_mtx(tmp_path / "m", gz=False)
    lines = (d / "matrix.mtx").read_text().splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if not line.startswith("%"))
    lines[i] = "5 4 x10\n"
    (d / "matrix.mtx").write_text("".join(lines))
    with pytest.raises(InputError, match=r"matrix\.mtx: is not a Matrix Market file \(size line '5 4 x10\\n'\)"):
        read_rna(d)


@pytest.mark.parametrize("member", ["matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"])
def test_mtx_member_empty(tmp_path, member):
    d = write_10x_mtx(tmp_path / "m")
    (d / member).write_bytes(b"")
    with pytest.raises(InputError, match=rf"{re.escape(member)}: (the file is empty|is not a Matrix Market file)"):
        read_rna(d)


def test_mtx_member_is_directory(tmp_path):
    d = write_10x_mtx(tmp_path / "m")
    (d / "barcodes.tsv.gz").unlink()
    (d / "barcodes.tsv.gz").mkdir()
    with pytest.raises(InputError, match=r"barcodes\.tsv\.gz: is a directory, not a file"):
        read_rna(d)


# --- scRNA: HDF5


def test_truncated_10x_h5(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5")
    size = p.stat().st_size
    p.write_bytes(p.read_bytes()[: size // 2])
    _raises(read_rna, p, rf"is not a readable HDF5 file: it is truncated \({size // 2:,} of its {size:,} bytes are "
                         r"there\).*Fix: re-copy")


@pytest.mark.parametrize("reader, name, writer", [(read_rna, "s.h5ad", _write_rna_h5ad),
                                                  (read_scdna, "d.h5ad", _write_scdna_h5ad)])
def test_truncated_h5ad(tmp_path, reader, name, writer):
    p = writer(tmp_path / name)
    p.write_bytes(p.read_bytes()[:3000])
    _raises(reader, p, r"cannot be read as an \.h5ad file: it is truncated \(3,000 of its [\d,]+ bytes are there\)")


@pytest.mark.parametrize("key", ["data", "indices", "indptr", "shape", "barcodes", "features/id",
                                 "features/feature_type"])
def test_10x_h5_missing_key(tmp_path, key):
    p = write_10x_h5(tmp_path / "s.h5", drop=(f"matrix/{key}",))
    _raises(read_rna, p, rf"lacks the dataset '/matrix/{re.escape(key)}' of the 10x v3 HDF5 layout")


def test_10x_h5_key_is_a_group(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5", drop=("matrix/data",))
    with h5py.File(p, "a") as f:
        f.create_group("matrix/data")
    _raises(read_rna, p, r"HDF5 key '/matrix/data' is a Group, not a dataset")


def test_10x_h5_damaged_chunk(tmp_path):
    p = _write_h5_gzip(tmp_path / "s.h5")
    with h5py.File(p, "r") as f:
        offset = f["matrix/data"].id.get_chunk_info(0).byte_offset
    data = bytearray(p.read_bytes())
    data[offset: offset + 8] = bytes(8)  # zero the start of the compressed chunk
    p.write_bytes(bytes(data))
    _raises(read_rna, p, r"HDF5 key '/matrix/data' cannot be read \(OSError: .*filter.*\); the file is damaged")


def test_10x_h5_indptr_not_monotonic(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5")
    with h5py.File(p, "a") as f:
        indptr = f["matrix/indptr"][()]
        indptr[1], indptr[2] = indptr[2], indptr[1]
        f["matrix/indptr"][...] = indptr
    _raises(read_rna, p, r"inconsistent matrix: '/matrix/indptr' must rise from 0 to the 10 stored values.*"
                         r"not monotonically")


def test_10x_h5_float_indices(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5")
    with h5py.File(p, "a") as f:
        v = f["matrix/indices"][()]
        del f["matrix/indices"]
        f["matrix/indices"] = v.astype(float)
    _raises(read_rna, p, r"HDF5 dataset '/matrix/indices' is 1-dimensional float64, not a 1-d array of integers")


def test_10x_h5_non_utf8_barcode(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5", barcodes=[b"AAAC-1", b"AA\xffG-1", b"CCCT-1", b"GGGA-1"])
    _raises(read_rna, p, r"HDF5 dataset '/matrix/barcodes' holds text that is not UTF-8 \(entry 2")


def test_h5ad_without_anndata_layout(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5ad")
    _raises(read_rna, p, r"cannot be read as an \.h5ad file: an HDF5 file without AnnData's 'obs' and 'var' "
                         r"\(top-level keys: \['matrix'\]\).*named \.h5")


def test_h5ad_missing_element(tmp_path):
    p = _write_scdna_h5ad(tmp_path / "d.h5ad")
    with h5py.File(p, "a") as f:
        del f["var/start"]
    _raises(read_scdna, p, r"cannot be read as an \.h5ad file \(KeyError: .*'start' doesn't exist.*\); the file is "
                           r"damaged or was not written by anndata")


def test_gzipped_h5(tmp_path):
    p = tmp_path / "s.h5"
    p.write_bytes(_gz(write_10x_h5(tmp_path / "v.h5").read_bytes()))
    _raises(read_rna, p, r"is not a readable HDF5 file: it is not an HDF5 file but gzip-compressed data.*"
                         r"decompress it first \(gunzip\)")


# --- empty files and directories, every reader


EMPTY_OR_DIR = {
    "10x_h5": (read_rna, "s.h5", r"is not a readable HDF5 file: the file is empty \(0 bytes\)"),
    "h5ad": (read_rna, "s.h5ad", r"cannot be read as an \.h5ad file: the file is empty \(0 bytes\)"),
    "scdna_tsv": (read_scdna, "bins.tsv", r"the file is empty"),
    "scdna_gz": (read_scdna, "bins.tsv.gz", r"the file is empty"),
    "scdna_h5ad": (read_scdna, "bins.h5ad", r"cannot be read as an \.h5ad file: the file is empty"),
    "maxquant": (_maxquant, "proteinGroups.txt", r"the file is empty"),
    "olink": (TEXT_INPUTS["olink"][0], "npx.csv", r"the file is empty"),
}


@pytest.mark.parametrize("case", sorted(EMPTY_OR_DIR))
def test_empty_file(tmp_path, case):
    reader, name, pattern = EMPTY_OR_DIR[case]
    p = tmp_path / name
    p.write_bytes(b"")
    _raises(reader, p, pattern)


def test_gzip_of_nothing(tmp_path):
    p = tmp_path / "bins.tsv.gz"
    p.write_bytes(_gz(b""))
    _raises(read_scdna, p, r"the file is empty")


@pytest.mark.parametrize("case", sorted(EMPTY_OR_DIR))
def test_directory_instead_of_file(tmp_path, case):
    reader, name, _ = EMPTY_OR_DIR[case]
    p = tmp_path / name
    p.mkdir()
    _raises(reader, p, r"is a directory")


# --- realistic files from the simulator


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from pinnacle.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("cohort")
    simulate_cohort(root, n_patients=2, cells_per_sample=100, dna_cells_per_sample=20, seed=0)
    return root


def test_simulated_inputs_damaged(cohort, tmp_path):
    h5 = cohort / "rna" / "P01_baseline" / "filtered_feature_bc_matrix.h5"
    bins = cohort / "dna" / "P01_baseline.bins.tsv.gz"
    pg = cohort / "proteomics" / "proteinGroups.txt"
    assert read_rna(h5).shape[0] == 100 and read_scdna(bins).shape[0] == 20  # the valid files read

    cut = tmp_path / "cut.h5"
    cut.write_bytes(h5.read_bytes()[: h5.stat().st_size - 1000])
    _raises(read_rna, cut, r"is not a readable HDF5 file: it is truncated")
    cut = tmp_path / "cut.bins.tsv.gz"
    cut.write_bytes(bins.read_bytes()[:20_000])
    _raises(read_scdna, cut, r"truncated gzip stream: the compressed data ends early \(after [\d,]+ bytes of text\)")
    latin = tmp_path / "proteinGroups.txt"
    latin.write_bytes(pg.read_bytes().replace(b"Intensity ", b"Intensit\xe9 ", 1))
    _raises(_maxquant, latin, r"not UTF-8 text at byte [\d,]+ \(0xE9\), line 1; in Latin-1/Windows-1252 that byte is "
                              r"'é'")


# --------------------------------------------------------------------------------------------
# part 2: random corruptions of a valid file of each format
# --------------------------------------------------------------------------------------------


def _truncate(rng, b: bytes) -> bytes:
    return b[: int(rng.integers(0, max(len(b), 1)))]


def _flip(rng, b: bytes) -> bytes:
    out = bytearray(b)
    for pos in rng.integers(0, len(out), int(rng.integers(1, 9))):
        out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def _zeros(rng, b: bytes) -> bytes:
    out = bytearray(b)
    start = int(rng.integers(0, len(out)))
    n = int(rng.integers(1, max(2, min(len(out) // 4, 4096))))
    out[start: start + n] = bytes(len(out[start: start + n]))
    return bytes(out)


def _zip(b: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("table.tsv", b)
    return buf.getvalue()


_CODECS = {"bzip2": bz2.compress, "xz": lzma.compress, "zip": _zip, "gzip": lambda b: gzip.compress(b, mtime=0)}


def _payload(b: bytes) -> bytes:
    return gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b


def corrupt(rng: np.random.Generator, b: bytes) -> tuple[str, bytes]:
    """One random corruption of the file bytes ``b``: (description, new bytes)."""
    op = ("truncate", "flip", "zeros", "wrong_codec", "gzip_corrupted")[int(rng.integers(0, 5))]
    if op == "truncate":
        return op, _truncate(rng, b)
    if op == "flip":
        return op, _flip(rng, b)
    if op == "zeros":
        return op, _zeros(rng, b)
    payload = _payload(b)
    if op == "wrong_codec":  # the payload in another container than its name says
        wrong = [c for c in _CODECS if c != ("gzip" if b[:2] == b"\x1f\x8b" else "")]
        codec = wrong[int(rng.integers(0, len(wrong)))]
        if codec == "gzip":  # a plain file gzipped: fine for the readers; gzip it twice instead
            return "wrong_codec:gzip2x", gzip.compress(gzip.compress(payload, mtime=0), mtime=0)
        return f"wrong_codec:{codec}", _CODECS[codec](payload)
    inner = (_truncate, _flip, _zeros)[int(rng.integers(0, 3))]
    return f"gzip_corrupted:{inner.__name__[1:]}", gzip.compress(inner(rng, payload), mtime=0)


# --------------------------------------------------------------------------------------------
# running a reader on a damaged file
# --------------------------------------------------------------------------------------------


def _outcome(reader, path: Path) -> tuple[str, str]:
    try:
        reader(path)
    except InputError as err:
        return "InputError", str(err)
    except Exception as err:  # noqa: BLE001 - this is what the test looks for
        return f"other:{type(err).__name__}", str(err)[:300]
    return "ok", ""


class _Child:
    """A forked child that runs ``_outcome(reader, path)`` for each path it is sent, so that a
    crash or hang of libhdf5 on a damaged file cannot take pytest with it; it is replaced when
    it dies or gives no answer within ``timeout`` seconds."""

    def __init__(self, reader, timeout: float = 3.0):
        self.reader, self.timeout = reader, timeout
        self._start()

    def _start(self):
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: answer one JSON line per path, never return into pytest
            try:
                faulthandler.disable()  # a crash is reported by the parent, not as a traceback
                os.close(req_w)
                os.close(res_r)
                with os.fdopen(req_r) as requests, os.fdopen(res_w, "w") as answers:
                    for line in requests:
                        answers.write(json.dumps(_outcome(self.reader, Path(line.rstrip("\n")))) + "\n")
                        answers.flush()
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(res_w)
        self.pid, self.requests, self.answers = pid, os.fdopen(req_w, "w"), os.fdopen(res_r)

    def run(self, path: Path) -> tuple[str, str]:
        self.requests.write(f"{path}\n")
        self.requests.flush()
        ready, _, _ = select.select([self.answers], [], [], self.timeout)
        line = self.answers.readline() if ready else ""
        if line:
            kind, msg = json.loads(line)
            return kind, msg
        if not ready:
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        kind = f"timeout>{self.timeout:g}s" if not ready else f"crash:{signal.Signals(os.WTERMSIG(status)).name}"
        self._close()
        self._start()
        return kind, ""

    def _close(self):
        for fh in (self.requests, self.answers):
            try:
                fh.close()
            except OSError:
                pass

    def stop(self):
        self._close()  # the child's loop ends at EOF
        os.waitpid(self.pid, 0)


def _corrupted_copies(fmt: str, tmp: Path, n: int):
    """Yield (description, path of the damaged input) ``n`` times for format ``fmt``."""
    _, name, writer, _ = FORMATS[fmt]
    valid = writer(tmp / "valid" / name)
    rng = np.random.default_rng([19, sorted(FORMATS).index(fmt)])
    files = sorted(p.name for p in valid.iterdir()) if valid.is_dir() else [None]
    work = tmp / "work"
    for i in range(n):
        target = files[int(rng.integers(0, len(files)))]
        src = valid / target if target else valid
        what, data = corrupt(rng, src.read_bytes())
        case = work / str(i)
        case.mkdir(parents=True)
        if target:  # a 10x mtx directory: damage one of its three files
            out = case / name
            out.mkdir()
            for f in files:
                (out / f).write_bytes(data if f == target else (valid / f).read_bytes())
            what = f"{target}:{what}"
        else:
            out = case / name
            out.write_bytes(data)
        yield what, out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_random_corruptions_raise_input_error_or_read(fmt, tmp_path):
    reader, _, _, is_hdf5 = FORMATS[fmt]
    (tmp_path / "valid").mkdir()
    child = _Child(reader) if is_hdf5 else None
    n = N_HDF5 if is_hdf5 else N_TEXT
    counts = collections.Counter()
    failures = []
    try:
        for what, path in _corrupted_copies(fmt, tmp_path, n):
            kind, msg = child.run(path) if child else _outcome(reader, path)
            counts[kind] += 1
            if kind.startswith("other") or (kind == "InputError" and str(path) not in msg):
                failures.append(f"{what}: {kind}: {msg}")
    finally:
        if child:
            child.stop()
    print(f"\n{fmt}: {n} corruptions: {dict(sorted(counts.items()))}")
    assert not failures, (f"{len(failures)} corruption(s) gave no InputError naming the file:\n"
                          + "\n".join(failures[:20]))
    lost = sum(v for k, v in counts.items() if k.startswith(("crash", "timeout")))
    assert lost <= 0.02 * n, f"libhdf5 crashed or hung on {lost} of {n} corruptions"
