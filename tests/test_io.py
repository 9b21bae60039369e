"""Tests of the input readers (pinnacle.io): hand-made fixtures, malformed files, real data."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from pinnacle.errors import InputError
from pinnacle.io import (
    detect_rna_format,
    read_proteomics,
    read_rna,
    read_scdna,
    split_features,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# --------------------------------------------------------------------------------------------
# fixture writers
# --------------------------------------------------------------------------------------------

# 4 cells x 5 features: 3 genes (one name repeated) + 2 antibody tags
COUNTS = np.array(
    [[0, 3, 1, 7, 0],
     [2, 0, 0, 0, 12],
     [0, 0, 5, 1, 1],
     [1, 1, 0, 0, 0]],
    dtype=np.int32,
)
BARCODES = ["AAAC-1", "AAAG-1", "CCCT-1", "GGGA-1"]
IDS = ["ENSG01", "ENSG02", "ENSG03", "CD3", "CD4"]
NAMES = ["CD3E", "MS4A1", "MS4A1", "CD3_TotalSeqB", "CD4_TotalSeqB"]
TYPES = ["Gene Expression"] * 3 + ["Antibody Capture"] * 2


def write_10x_h5(path, counts=COUNTS, barcodes=BARCODES, ids=IDS, names=NAMES, types=TYPES, drop=()):
    """Cell Ranger v3 layout: matrix stored features x barcodes in CSC (indptr over barcodes)."""
    m = sp.csr_matrix(counts)  # cells x features CSR == features x cells CSC
    n_cells, n_feat = counts.shape
    items = {
        "matrix/barcodes": np.array(barcodes, dtype="S"),
        "matrix/data": m.data,
        "matrix/indices": m.indices.astype(np.int64),
        "matrix/indptr": m.indptr.astype(np.int64),
        "matrix/shape": np.array([n_feat, n_cells], dtype=np.int32),
        "matrix/features/id": np.array(ids, dtype="S"),
        "matrix/features/name": np.array(names, dtype="S"),
        "matrix/features/feature_type": np.array(types, dtype="S"),
        "matrix/features/genome": np.array(["GRCh38"] * n_feat, dtype="S"),
        "matrix/features/_all_tag_keys": np.array([b"genome"]),
    }
    with h5py.File(path, "w") as f:
        for key, value in items.items():
            if key not in drop:
                f.create_dataset(key, data=value)
    return path


def write_10x_mtx(directory, counts=COUNTS, gz=True, legacy=False, drop=()):
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    mtx = directory / f"matrix.mtx{suffix}"
    with opener(mtx, "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(counts.T))  # file is features x barcodes
    if legacy:
        with opener(directory / f"genes.tsv{suffix}", "wt") as fh:
            fh.writelines(f"{i}\t{n}\n" for i, n in zip(IDS[:3], NAMES[:3]))
    else:
        with opener(directory / f"features.tsv{suffix}", "wt") as fh:
            fh.writelines(f"{i}\t{n}\t{t}\n" for i, n, t in zip(IDS, NAMES, TYPES))
    with opener(directory / f"barcodes.tsv{suffix}", "wt") as fh:
        fh.writelines(f"{b}\n" for b in BARCODES)
    for name in drop:
        (directory / f"{name}{suffix}").unlink()
    return directory


def write_text(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def wide_scdna_text(sep="\t"):
    rows = [
        ["chrom", "start", "end", "gc", "cellA", "cellB"],
        ["chr2", "1", "100", "0.40", "5", "6"],
        ["chrX", "1", "100", "0.41", "7", "0"],
        ["chr10", "1", "100", "0.42", "3", "2"],
        ["chr1", "1", "100", "0.44", "4", "8"],
        ["chr1", "101", "200", "0.43", "1", "9"],
    ]
    return "".join(sep.join(r) + "\n" for r in rows)


def long_scdna_text(drop_last=False, extra=None, reads=None):
    wide = pd.read_csv(io.StringIO(wide_scdna_text()), sep="\t")
    long = wide.melt(id_vars=["chrom", "start", "end", "gc"], var_name="cell_id", value_name="reads")
    long = long.rename(columns={"chrom": "chr"})[["cell_id", "chr", "start", "end", "reads", "gc"]]
    if reads is not None:
        long.loc[reads[0], "reads"] = reads[1]
    if drop_last:
        long = long.iloc[:-1]
    if extra is not None:
        long = pd.concat([long, long.iloc[[extra]]])
    return long.to_csv(sep="\t", index=False)


MAXQUANT = (
    "Protein IDs\tMajority protein IDs\tGene names\tIntensity\tIntensity S1\tIntensity S2\t"
    "LFQ intensity S1\tLFQ intensity S2\tiBAQ S1\tiBAQ S2\tOnly identified by site\tReverse\t"
    "Potential contaminant\tiBAQ peptides\n"
    "P1;P1-2\tP1\tGENE1;GENE1B\t30\t10\t20\t11\t0\t1\t2\t\t\t\t3\n"
    "P2\tP2\t\t30\t15\t15\t16\t17\t3\t4\t\t\t\t3\n"
    "REV__P3\tREV__P3\tGENE3\t2\t1\t1\t1\t1\t1\t1\t\t+\t\t3\n"
    "CON__P4\tCON__P4\tGENE4\t2\t1\t1\t1\t1\t1\t1\t\t\t+\t3\n"
    "P5\tP5\tGENE5\t2\t1\t1\t1\t1\t1\t1\t+\t+\t\t3\n"
)


# --------------------------------------------------------------------------------------------
# scRNA
# --------------------------------------------------------------------------------------------


def _check_fixture_rna(a, sample_id="S1"):
    assert a.shape == (4, 5)
    assert sp.isspmatrix_csr(a.X) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), COUNTS)
    assert list(a.obs_names) == [f"{sample_id}:{b}" for b in BARCODES]
    assert list(a.obs["barcode"]) == BARCODES and set(a.obs["sample_id"]) == {sample_id}
    assert list(a.var_names) == ["CD3E", "MS4A1", "MS4A1-1", "CD3_TotalSeqB", "CD4_TotalSeqB"]
    assert list(a.var["gene_ids"]) == IDS and list(a.var["feature_types"]) == TYPES


def test_read_10x_h5_roundtrip_and_split(tmp_path):
    a = read_rna(write_10x_h5(tmp_path / "s.h5"), sample_id="S1")
    _check_fixture_rna(a)
    rna, prot = split_features(a)
    assert list(rna.var_names) == ["CD3E", "MS4A1", "MS4A1-1"]
    assert list(prot.var_names) == ["CD3_TotalSeqB", "CD4_TotalSeqB"]
    assert (rna.obs_names == a.obs_names).all() and (prot.obs_names == a.obs_names).all()
    np.testing.assert_array_equal(prot.X.toarray(), COUNTS[:, 3:])


def test_read_10x_h5_without_sample_id_keeps_barcodes(tmp_path):
    a = read_rna(write_10x_h5(tmp_path / "s.h5"))
    assert list(a.obs_names) == BARCODES and a.obs.shape[1] == 0


def test_read_10x_mtx_gz_matches_h5(tmp_path):
    a = read_rna(write_10x_mtx(tmp_path / "filtered_feature_bc_matrix"), sample_id="S1")
    _check_fixture_rna(a)
    # pointing at the matrix file itself also works
    b = read_rna(tmp_path / "filtered_feature_bc_matrix" / "matrix.mtx.gz", sample_id="S1")
    assert (a.X != b.X).nnz == 0


def test_read_10x_mtx_legacy_genes_tsv(tmp_path):
    d = write_10x_mtx(tmp_path / "m", counts=COUNTS[:, :3], gz=False, legacy=True)
    a = read_rna(d)
    assert a.shape == (4, 3) and set(a.var["feature_types"]) == {"Gene Expression"}
    rna, prot = split_features(a)
    assert prot is None and rna.shape == (4, 3)


@pytest.mark.parametrize(
    "name, expected",
    [("x.h5", "10x_h5"), ("x.h5ad", "h5ad"), ("dir", "10x_mtx"), ("matrix.mtx.gz", "10x_mtx")],
)
def test_detect_rna_format(tmp_path, name, expected):
    p = tmp_path / name
    p.mkdir() if name == "dir" else p.write_bytes(b"")
    assert detect_rna_format(p) == expected


def test_read_h5ad_prefers_counts_layer_and_appends_protein(tmp_path):
    counts = sp.csr_matrix(COUNTS[:, :3].astype(np.float32))
    a = ad.AnnData(X=counts.multiply(0.5).tocsr(), obs=pd.DataFrame(index=BARCODES),
                   var=pd.DataFrame(index=["G1", "G2", "G3"]))
    a.layers["counts"] = counts
    a.obsm["protein_expression"] = pd.DataFrame(COUNTS[:, 3:], index=BARCODES, columns=["CD3", "CD4"])
    a.write_h5ad(tmp_path / "s.h5ad")
    r = read_rna(tmp_path / "s.h5ad", sample_id="S1")
    np.testing.assert_array_equal(r.X.toarray(), COUNTS)
    assert list(r.var["feature_types"]) == TYPES and sp.isspmatrix_csr(r.X)
    assert list(r.var["gene_ids"]) == ["G1", "G2", "G3", "CD3", "CD4"]


def test_rna_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nope\.h5: scRNA count input not found.*Fix: check the path"):
        read_rna(tmp_path / "nope.h5")


def test_rna_unknown_format(tmp_path):
    with pytest.raises(InputError, match=r"x\.loom: unknown scRNA count format.*Fix: point to"):
        read_rna(write_text(tmp_path / "x.loom", "hi"))


def test_h5_not_hdf5(tmp_path):
    with pytest.raises(InputError, match=r"x\.h5: is not a readable HDF5 file"):
        read_rna(write_text(tmp_path / "x.h5", "plain text"))


def test_h5_missing_matrix_group(tmp_path):
    with h5py.File(tmp_path / "v2.h5", "w") as f:
        f.create_dataset("GRCh38/barcodes", data=np.array([b"A"]))
    with pytest.raises(InputError, match=r"v2\.h5: has no 'matrix' group \(top-level keys: \['GRCh38'\]\).*Cell Ranger 3"):
        read_rna(tmp_path / "v2.h5")


def test_h5_missing_dataset(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5", drop=("matrix/features/name",))
    with pytest.raises(InputError, match=r"s\.h5: lacks the dataset '/matrix/features/name'"):
        read_rna(p)


def test_h5_inconsistent_shape(tmp_path):
    p = write_10x_h5(tmp_path / "s.h5", barcodes=BARCODES[:3])
    with pytest.raises(InputError, match=r"inconsistent matrix: shape 5 x 4, 3 barcodes.*corrupt"):
        read_rna(p)


def test_mtx_dir_missing_file(tmp_path):
    d = write_10x_mtx(tmp_path / "m", drop=("barcodes.tsv",))
    with pytest.raises(InputError, match=r"m: the 10x matrix directory has no barcodes\.tsv\.gz / barcodes\.tsv file"):
        read_rna(d)


def test_mtx_not_matrix_market(tmp_path):
    d = write_10x_mtx(tmp_path / "m", gz=False)
    (d / "matrix.mtx").write_text("not a matrix\n")
    with pytest.raises(InputError, match=r"matrix\.mtx: is not a Matrix Market file"):
        read_rna(d)


def test_mtx_files_disagree(tmp_path):
    d = write_10x_mtx(tmp_path / "m", counts=COUNTS[:3])
    with pytest.raises(InputError, match=r"matrix\.mtx\.gz is 5 features x 3 barcodes but .* 4 barcodes.*same Cell Ranger run"):
        read_rna(d)


def test_rna_non_integer_counts(tmp_path):
    p = write_10x_h5(tmp_path / "norm.h5", counts=COUNTS * 0.5)
    with pytest.raises(InputError, match=r"norm\.h5: 8 of 10 stored values are not integer counts.*not normalised"):
        read_rna(p)


def test_rna_negative_counts(tmp_path):
    p = write_10x_h5(tmp_path / "neg.h5", counts=-COUNTS)
    with pytest.raises(InputError, match=r"neg\.h5: 10 stored values are negative.*raw UMI counts"):
        read_rna(p)


def test_rna_zero_cells(tmp_path):
    p = write_10x_h5(tmp_path / "empty.h5", counts=np.zeros((0, 5), dtype=np.int32), barcodes=[])
    with pytest.raises(InputError, match=r"empty\.h5: the count matrix has 0 cells and 5 features"):
        read_rna(p)


def test_rna_duplicated_barcodes(tmp_path):
    p = write_10x_h5(tmp_path / "dup.h5", barcodes=["A-1", "B-1", "A-1", "C-1"])
    with pytest.raises(InputError, match=r"dup\.h5: 1 duplicated cell barcodes, e\.g\. 'A-1'"):
        read_rna(p)


@pytest.mark.parametrize("fmt", ["h5", "mtx"])
def test_rna_antibody_tags_only(tmp_path, fmt):
    if fmt == "h5":
        p = write_10x_h5(tmp_path / "adt.h5", counts=COUNTS[:, 3:], ids=IDS[3:], names=NAMES[3:], types=TYPES[3:])
    else:
        p = write_10x_mtx(tmp_path / "adt", counts=COUNTS[:, 3:])
        with gzip.open(p / "features.tsv.gz", "wt") as fh:
            fh.writelines(f"{i}\t{n}\t{t}\n" for i, n, t in zip(IDS[3:], NAMES[3:], TYPES[3:]))
    with pytest.raises(InputError, match=r"adt(\.h5)?: no 'Gene Expression' features; found only: Antibody Capture "
                                         r"\(2 features\)\. Fix: give the sample's gene-expression count matrix"):
        read_rna(p)


def test_rna_directory_named_h5(tmp_path):
    (tmp_path / "s.h5").mkdir()
    with pytest.raises(InputError, match=r"s\.h5: is a directory, but its name says it is an HDF5 file"):
        read_rna(tmp_path / "s.h5")


def _h5ad_with_protein(path, protein, uns_names=None):
    a = ad.AnnData(X=sp.csr_matrix(COUNTS[:, :3].astype(np.float32)), obs=pd.DataFrame(index=BARCODES))
    a.obsm["protein_expression"] = protein
    if uns_names is not None:
        a.uns["protein_names"] = np.array(uns_names)
    a.write_h5ad(path)
    return path


def test_h5ad_protein_without_names(tmp_path):
    p = _h5ad_with_protein(tmp_path / "p.h5ad", COUNTS[:, 3:])
    with pytest.raises(InputError, match=r"p\.h5ad \[obsm\['protein_expression'\]\]: antibody counts have no names"):
        read_rna(p)


def test_h5ad_protein_name_count_mismatch(tmp_path):
    p = _h5ad_with_protein(tmp_path / "p.h5ad", COUNTS[:, 3:], uns_names=["CD3"])
    with pytest.raises(InputError, match=r"\[uns\['protein_names'\]\]: 1 names for 2 antibody columns"):
        read_rna(p)


def test_h5ad_without_counts(tmp_path):
    ad.AnnData(obs=pd.DataFrame(index=BARCODES), var=pd.DataFrame(index=["G1"])).write_h5ad(tmp_path / "e.h5ad")
    with pytest.raises(InputError, match=r"e\.h5ad: has neither layers\['counts'\] nor X"):
        read_rna(tmp_path / "e.h5ad")


@pytest.mark.parametrize("reader", [read_rna, read_scdna])
def test_h5ad_unreadable(tmp_path, reader):
    with pytest.raises(InputError, match=r"bad\.h5ad: cannot be read as an \.h5ad file"):
        reader(write_text(tmp_path / "bad.h5ad", "nope"))


# --------------------------------------------------------------------------------------------
# scDNA
# --------------------------------------------------------------------------------------------

SORTED_BINS = ["chr1:1-100", "chr1:101-200", "chr2:1-100", "chr10:1-100", "chrX:1-100"]
SORTED_X = np.array([[4, 1, 5, 3, 7], [8, 9, 6, 2, 0]], dtype=np.float32)


def _check_fixture_scdna(a, fmt, prefix=""):
    assert list(a.var_names) == SORTED_BINS
    assert list(a.obs_names) == [f"{prefix}cellA", f"{prefix}cellB"]
    assert isinstance(a.X, np.ndarray) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X, SORTED_X)
    assert list(a.var["chrom"]) == ["chr1", "chr1", "chr2", "chr10", "chrX"]
    assert a.var["start"].dtype.kind == "i" and list(a.var["end"]) == [100, 200, 100, 100, 100]
    np.testing.assert_allclose(a.var["gc"], [0.44, 0.43, 0.40, 0.42, 0.41])
    assert a.uns["scdna"] == {"format": fmt, "integer_counts": True}


def test_scdna_wide_tsv_sorted(tmp_path):
    a = read_scdna(write_text(tmp_path / "bins.tsv", wide_scdna_text()), sample_id="P1")
    _check_fixture_scdna(a, "wide", prefix="P1:")
    assert set(a.obs["sample_id"]) == {"P1"}


def test_scdna_wide_csv_gz_with_chr_column_and_bare_chroms(tmp_path):
    text = wide_scdna_text(sep=",").replace("chrom,", "chr,").replace("\nchr", "\n")
    a = read_scdna(write_text(tmp_path / "bins.csv.gz", text, gz=True))
    _check_fixture_scdna(a, "wide")


def test_scdna_long_table(tmp_path):
    a = read_scdna(write_text(tmp_path / "long.tsv", long_scdna_text()))
    _check_fixture_scdna(a, "long")


def test_scdna_h5ad(tmp_path):
    var = pd.DataFrame({"chr": ["chr2", "chr1"], "start": [1, 1], "end": [100, 100]}, index=["b1", "b2"])
    ad.AnnData(X=np.array([[1.0, 2.0]]), obs=pd.DataFrame(index=["c1"]), var=var).write_h5ad(tmp_path / "d.h5ad")
    a = read_scdna(tmp_path / "d.h5ad")
    assert list(a.var_names) == ["chr1:1-100", "chr2:1-100"] and a.X.tolist() == [[2.0, 1.0]]
    assert a.uns["scdna"]["format"] == "h5ad"


def test_scdna_ratios_allowed(tmp_path):
    a = read_scdna(write_text(tmp_path / "r.tsv", "chrom\tstart\tend\tc1\nchr1\t1\t10\t0.5\nchr1\t10\t20\t1.5\n"))
    assert a.uns["scdna"]["integer_counts"] is False
    np.testing.assert_allclose(a.X, [[0.5, 1.5]])


def test_scdna_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"x\.tsv: scDNA bin count input not found"):
        read_scdna(tmp_path / "x.tsv")


def test_scdna_missing_columns(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tbegin\tend\tc1\nchr1\t1\t10\t3\n")
    with pytest.raises(InputError, match=r"b\.tsv: missing required column\(s\) start for a wide scDNA table"):
        read_scdna(p)


def test_scdna_non_numeric_counts(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tc1\tc2\nchr1\t1\t10\t3\tx\n")
    with pytest.raises(InputError, match=r"b\.tsv \[cell 'c2'\]: 1 read counts are missing or non-numeric"):
        read_scdna(p)


def test_scdna_negative_counts(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tc1\tc2\nchr1\t1\t10\t-3\t1\n")
    with pytest.raises(InputError, match=r"b\.tsv \[cell 'c1'\]: 1 read counts are negative.*not log ratios"):
        read_scdna(p)


def test_scdna_long_negative_names_cell(tmp_path):
    p = write_text(tmp_path / "l.tsv", long_scdna_text(reads=(7, -1)))
    with pytest.raises(InputError, match=r"\[cell 'cellB'\]: 1 read counts are negative"):
        read_scdna(p)


def test_scdna_bad_positions(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tc1\nchr1\t1.5\t10\t3\n")
    with pytest.raises(InputError, match=r"b\.tsv \[column 'start'\]: bin positions must be whole numbers"):
        read_scdna(p)


def test_scdna_duplicate_bins(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tc1\nchr1\t1\t10\t3\n1\t1\t10\t4\n")
    with pytest.raises(InputError, match=r"b\.tsv: 1 duplicated bins \(chrom, start, end\), e\.g\. 'chr1:1-10'"):
        read_scdna(p)


def test_scdna_long_cell_missing_bins(tmp_path):
    p = write_text(tmp_path / "l.tsv", long_scdna_text(drop_last=True))
    with pytest.raises(InputError, match=r"l\.tsv: cell 'cellB' has 4 of the 5 bins.*reads = 0"):
        read_scdna(p)


def test_scdna_long_duplicated_rows(tmp_path):
    p = write_text(tmp_path / "l.tsv", long_scdna_text(extra=0))
    with pytest.raises(InputError, match=r"l\.tsv: 1 duplicated cell x bin rows, e\.g\. cell 'cellA' bin chr2:1-100"):
        read_scdna(p)


def test_scdna_header_only(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tc1\n")
    with pytest.raises(InputError, match=r"b\.tsv: the table has a header but no rows"):
        read_scdna(p)


def test_scdna_empty_file(tmp_path):
    with pytest.raises(InputError, match=r"b\.tsv: the file is empty"):
        read_scdna(write_text(tmp_path / "b.tsv", ""))


def test_scdna_no_cells(tmp_path):
    p = write_text(tmp_path / "b.tsv", "chrom\tstart\tend\tgc\nchr1\t1\t10\t0.4\n")
    with pytest.raises(InputError, match=r"b\.tsv: 0 cells x 1 bins"):
        read_scdna(p)


def test_scdna_long_without_reads_column(tmp_path):
    p = write_text(tmp_path / "l.tsv", "cell_id\tchr\tstart\tend\tread_count\nc1\tchr1\t1\t10\t3\n")
    with pytest.raises(InputError, match=r"l\.tsv: missing required column\(s\) reads/counts for a long scDNA table"):
        read_scdna(p)


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_scdna_duplicate_cells(tmp_path):
    var = pd.DataFrame({"chrom": ["chr1"], "start": [1], "end": [10]}, index=["b1"])
    d = ad.AnnData(X=np.ones((2, 1)), obs=pd.DataFrame(index=["c1", "c2"]), var=var)
    d.obs_names = ["c1", "c1"]
    d.write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(InputError, match=r"d\.h5ad: 1 duplicated cell ids, e\.g\. 'c1'"):
        read_scdna(tmp_path / "d.h5ad")


def test_scdna_h5ad_missing_var_columns(tmp_path):
    ad.AnnData(X=np.ones((1, 2)), var=pd.DataFrame({"chrom": ["chr1", "chr1"]}, index=["a", "b"])).write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(InputError, match=r"d\.h5ad \[var\]: missing required column\(s\) start, end"):
        read_scdna(tmp_path / "d.h5ad")


def test_scdna_chromosome_names_normalised(tmp_path):
    text = ("chrom\tstart\tend\tc1\nChr1\t0\t10\t1\n1\t10\t20\t2\nchrx\t0\t10\t3\nMT\t0\t10\t4\n"
            "chrM\t10\t20\t5\nY\t0\t10\t6\n")
    a = read_scdna(write_text(tmp_path / "b.tsv", text))
    assert list(a.var_names) == ["chr1:0-10", "chr1:10-20", "chrX:0-10", "chrY:0-10", "chrM:0-10", "chrM:10-20"]
    np.testing.assert_array_equal(a.X, [[1, 2, 3, 6, 4, 5]])


@pytest.mark.parametrize("name, shown", [("23", "'23'"), ("chrUn_KI270302v1", "'chrUn_KI270302v1'"),
                                         ("chr1_KI270706v1_random", "'chr1_KI270706v1_random'"), ("", "")])
def test_scdna_unknown_chromosome(tmp_path, name, shown):
    text = f"chrom\tstart\tend\tc1\nchr1\t0\t10\t1\nchrX\t0\t10\t2\n{name}\t0\t10\t3\n"
    problem = f"unknown chromosome {re.escape(shown)}" if name else "missing chromosome name"
    with pytest.raises(InputError, match=rf"b\.tsv \[column 'chrom'\], data row 3: {problem} \(1 row\(s\) with "
                                         r"chromosomes outside 1-22, X, Y, M.*Fix: give bins on the primary"):
        read_scdna(write_text(tmp_path / "b.tsv", text))


def test_scdna_numeric_chromosome_column(tmp_path):
    text = "chrom,start,end,c1\n1,0,10,1\n2,0,10,2\n23,0,10,3\n"
    with pytest.raises(InputError, match=r"\[column 'chrom'\], data row 3: unknown chromosome '23'"):
        read_scdna(write_text(tmp_path / "b.csv", text))


def test_scdna_overlapping_bins(tmp_path):
    text = "chrom\tstart\tend\tc1\nchr1\t0\t100\t1\nchr1\t50\t150\t2\nchr2\t0\t100\t3\n"
    with pytest.raises(InputError, match=r"b\.tsv, data row 2: bins chr1:0-100 \(data row 1\) and chr1:50-150 "
                                         r"overlap; 1 such pair\(s\) in all\. Fix: give non-overlapping bins"):
        read_scdna(write_text(tmp_path / "b.tsv", text))


def test_scdna_bins_sharing_a_start(tmp_path):
    text = "chrom\tstart\tend\tc1\nchr1\t0\t100\t1\nchr1\t0\t200\t2\n"
    with pytest.raises(InputError, match=r"data row 2: bins chr1:0-100 \(data row 1\) and chr1:0-200 overlap"):
        read_scdna(write_text(tmp_path / "b.tsv", text))


def test_scdna_unsorted_bins(tmp_path):
    text = "chrom\tstart\tend\tc1\nchr1\t100\t200\t1\nchr2\t0\t100\t2\nchr1\t0\t100\t3\n"
    with pytest.raises(InputError, match=r"b\.tsv, data row 3: bins are not sorted by start within chromosome chr1: "
                                         r"chr1:0-100 comes after chr1:100-200 \(data row 1\).*Fix: sort the table"):
        read_scdna(write_text(tmp_path / "b.tsv", text))


def test_scdna_long_unsorted_bins(tmp_path):
    text = "cell_id\tchr\tstart\tend\treads\nc1\t1\t10\t20\t1\nc1\t1\t0\t10\t2\nc2\t1\t10\t20\t1\nc2\t1\t0\t10\t2\n"
    with pytest.raises(InputError, match=r"l\.tsv, data row 2: bins are not sorted by start within chromosome chr1"):
        read_scdna(write_text(tmp_path / "l.tsv", text))


@pytest.mark.parametrize("start, end, problem", [(10, 10, "its end at or before its start"),
                                                 (20, 10, "its end at or before its start"),
                                                 (-5, 10, "a negative start")])
def test_scdna_bin_bounds(tmp_path, start, end, problem):
    text = f"chrom\tstart\tend\tc1\nchr1\t{start}\t{end}\t1\n"
    with pytest.raises(InputError, match=rf"b\.tsv, data row 1: bin chr1:{start}-{end} has {problem}"):
        read_scdna(write_text(tmp_path / "b.tsv", text))


def test_scdna_h5ad_unknown_chromosome_and_overlap(tmp_path):
    var = pd.DataFrame({"chrom": ["1", "23"], "start": [1, 1], "end": [100, 100]}, index=["b1", "b2"])
    ad.AnnData(X=np.ones((1, 2)), var=var).write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(InputError, match=r"d\.h5ad \[var\] \[column 'chrom'\], var row 2: unknown chromosome '23'"):
        read_scdna(tmp_path / "d.h5ad")
    var = pd.DataFrame({"chrom": ["1", "1"], "start": [1, 50], "end": [100, 150]}, index=["b1", "b2"])
    ad.AnnData(X=np.ones((1, 2)), var=var).write_h5ad(tmp_path / "d.h5ad")
    with pytest.raises(InputError, match=r"d\.h5ad, var row 2: bins chr1:1-100 \(var row 1\) and chr1:50-150 overlap"):
        read_scdna(tmp_path / "d.h5ad")


@pytest.mark.parametrize("rows", ["chr1,1,10,3,4,5\n", "chr1,1,10,3\nchr1,10,20,3,4\n"])
def test_scdna_ragged_table(tmp_path, rows):
    p = write_text(tmp_path / "b.csv", "chrom,start,end,c1\n" + rows)
    with pytest.raises(InputError, match=r"b\.csv: cannot be parsed as a ','-separated table"):
        read_scdna(p)


# --------------------------------------------------------------------------------------------
# proteomics
# --------------------------------------------------------------------------------------------


def test_maxquant_lfq_filters_flags_and_zeros(tmp_path):
    a = read_proteomics(write_text(tmp_path / "proteinGroups.txt", MAXQUANT), format="maxquant")
    assert list(a.obs_names) == ["S1", "S2"] and list(a.var_names) == ["P1", "P2"]
    assert a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X, np.array([[11, 16], [np.nan, 17]], dtype=np.float32))
    assert list(a.var["gene"]) == ["GENE1", ""] and list(a.var["protein_id"]) == ["P1", "P2"]
    u = a.uns["proteomics"]
    assert u["format"] == "maxquant" and u["quantity"] == "LFQ intensity" and u["scale"] == "linear"
    assert u["n_input_rows"] == 5
    assert u["n_removed"] == {"reverse": 2, "contaminant": 1, "only_by_site": 1}
    a.write_h5ad(tmp_path / "p.h5ad")  # uns must be writable


@pytest.mark.parametrize("quantity, first", [("Intensity", 10.0), ("iBAQ", 1.0)])
def test_maxquant_other_quantities(tmp_path, quantity, first):
    a = read_proteomics(write_text(tmp_path / "pg.txt.gz", MAXQUANT, gz=True), format="maxquant", quantity=quantity)
    assert a.shape == (2, 2) and a.X[0, 0] == first  # "Intensity" must not pick "LFQ intensity"


def test_maxquant_r_make_names_and_old_contaminant_column(tmp_path):
    text = (MAXQUANT.replace("LFQ intensity ", "LFQ.intensity.").replace("Majority protein IDs", "Majority.protein.IDs")
            .replace("Only identified by site", "Only.identified.by.site").replace("Potential contaminant", "Contaminant"))
    a = read_proteomics(write_text(tmp_path / "pg.tsv", text), format="maxquant")
    assert list(a.obs_names) == ["S1", "S2"] and a.shape == (2, 2)
    assert a.uns["proteomics"]["n_removed"]["contaminant"] == 1


def test_diann_pg_matrix(tmp_path):
    text = (
        "Protein.Group\tProtein.Ids\tProtein.Names\tGenes\tFirst.Protein.Description\t"
        "D:\\runs\\S1.raw\t/data/S2.mzML\n"
        "P1;P2\tP1;P2\tA_HUMAN\tGA;GB\tdesc\t100.5\t\n"
        "P3\tP3\tC_HUMAN\t\tdesc\t\t7\n"
    )
    a = read_proteomics(write_text(tmp_path / "r.pg_matrix.tsv", text), format="diann")
    assert list(a.obs_names) == ["S1", "S2"] and list(a.var_names) == ["P1;P2", "P3"]
    assert list(a.var["gene"]) == ["GA", ""]
    np.testing.assert_array_equal(a.X, np.array([[100.5, np.nan], [np.nan, 7]], dtype=np.float32))
    assert a.uns["proteomics"]["scale"] == "linear"


def test_olink_semicolon_decimal_comma_and_qc_warning(tmp_path):
    text = (
        "SampleID;Assay;OlinkID;UniProt;NPX;QC_Warning;Panel\n"
        "S1;IL6;OID1;P05231;3,5;Pass;Inflammation\n"
        "S1;CXCL9;OID2;;1,25;Pass;Inflammation\n"
        "S2;IL6;OID1;P05231;4,0;Warning;Inflammation\n"
        "S2;CXCL9;OID2;;NA;Pass;Inflammation\n"
    )
    a = read_proteomics(write_text(tmp_path / "npx.csv", text), format="olink")
    assert list(a.obs_names) == ["S1", "S2"] and list(a.var_names) == ["IL6", "CXCL9"]
    assert list(a.var["protein_id"]) == ["P05231", "OID2"] and list(a.var["gene"]) == ["IL6", "CXCL9"]
    np.testing.assert_array_equal(a.X, np.array([[3.5, 1.25], [np.nan, np.nan]], dtype=np.float32))
    assert a.uns["proteomics"]["scale"] == "log2" and a.uns["proteomics"]["n_qc_warning"] == 1


def test_plain_matrix_with_gene_and_log2(tmp_path):
    text = "protein,gene,S1,S2\nP1,GA,1.5,2\nP2,GB,,3\n"
    a = read_proteomics(write_text(tmp_path / "m.csv", text), format="matrix", scale="log2")
    assert list(a.obs_names) == ["S1", "S2"] and list(a.var["gene"]) == ["GA", "GB"]
    np.testing.assert_array_equal(a.X, np.array([[1.5, np.nan], [2, 3]], dtype=np.float32))
    assert a.uns["proteomics"]["scale"] == "log2"


def test_proteomics_unknown_format(tmp_path):
    with pytest.raises(InputError, match=r"unknown proteomics format 'spectronaut'.*maxquant, diann, olink, matrix"):
        read_proteomics(tmp_path / "x.tsv", format="spectronaut")


def test_proteomics_unknown_scale(tmp_path):
    with pytest.raises(InputError, match=r"unknown scale 'ln'"):
        read_proteomics(tmp_path / "x.tsv", format="matrix", scale="ln")


def test_proteomics_scale_only_for_matrix(tmp_path):
    with pytest.raises(InputError, match=r"scale='log2' only applies to format 'matrix'"):
        read_proteomics(tmp_path / "x.tsv", format="maxquant", scale="log2")


def test_proteomics_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"pg\.txt: proteomics table not found"):
        read_proteomics(tmp_path / "pg.txt", format="maxquant")


def test_proteomics_header_only(tmp_path):
    with pytest.raises(InputError, match=r"pg\.txt: the table has a header but no rows"):
        read_proteomics(write_text(tmp_path / "pg.txt", MAXQUANT.splitlines()[0] + "\n"), format="maxquant")


def test_maxquant_no_quantity_columns(tmp_path):
    text = MAXQUANT.replace("LFQ intensity ", "LFQ_int ")
    with pytest.raises(InputError, match=r"no 'LFQ intensity <sample>' columns \(quantity kinds found: Intensity, iBAQ\)"):
        read_proteomics(write_text(tmp_path / "pg.txt", text), format="maxquant")


def test_maxquant_missing_id_column(tmp_path):
    text = MAXQUANT.replace("Protein IDs\tMajority protein IDs", "Proteins\tMajority")
    with pytest.raises(InputError, match=r"pg\.txt: has neither a 'Majority protein IDs' nor a 'Protein IDs' column"):
        read_proteomics(write_text(tmp_path / "pg.txt", text), format="maxquant")


def test_maxquant_non_numeric_quantity(tmp_path):
    text = MAXQUANT.replace("\t11\t0\t", "\t11\tn.d.\t")
    with pytest.raises(InputError, match=r"pg\.txt \[column 'LFQ intensity S2'\]: 1 non-numeric value\(s\), first 'n\.d\.'"):
        read_proteomics(write_text(tmp_path / "pg.txt", text), format="maxquant")


def test_diann_without_protein_group(tmp_path):
    with pytest.raises(InputError, match=r"r\.tsv: has no 'Protein\.Group' column.*pg_matrix"):
        read_proteomics(write_text(tmp_path / "r.tsv", "Run\tPrecursor.Id\nS1\tAAA\n"), format="diann")


def test_diann_duplicate_sample_names(tmp_path):
    text = "Protein.Group\tGenes\t/a/S1.raw\t/b/S1.d\nP1\tG\t1\t2\n"
    with pytest.raises(InputError, match=r"1 duplicated sample names after removing folders.*'S1'"):
        read_proteomics(write_text(tmp_path / "r.tsv", text), format="diann")


def test_olink_missing_columns(tmp_path):
    with pytest.raises(InputError, match=r"npx\.csv: missing Olink column\(s\) NPX"):
        read_proteomics(write_text(tmp_path / "npx.csv", "SampleID,Assay,Value\nS1,IL6,2\n"), format="olink")


def test_olink_duplicate_pair(tmp_path):
    text = "SampleID,Assay,NPX\nS1,IL6,2\nS1,IL6,3\n"
    with pytest.raises(InputError, match=r"npx\.csv, data row 2: SampleID 'S1' x Assay 'IL6' appears more than once"):
        read_proteomics(write_text(tmp_path / "npx.csv", text), format="olink")


def test_matrix_duplicate_protein_ids(tmp_path):
    with pytest.raises(InputError, match=r"m\.csv \[column 'protein'\]: 1 duplicated protein ids, e\.g\. 'P1'"):
        read_proteomics(write_text(tmp_path / "m.csv", "protein,S1\nP1,1\nP1,2\n"), format="matrix")


def test_matrix_without_sample_columns(tmp_path):
    with pytest.raises(InputError, match=r"m\.csv: has no sample columns after the protein id column"):
        read_proteomics(write_text(tmp_path / "m.csv", "protein,gene\nP1,G\n"), format="matrix")


# --------------------------------------------------------------------------------------------
# real data (../shared/data; skipped when absent)
# --------------------------------------------------------------------------------------------


def _real(rel: str) -> Path:
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.mark.realdata
def test_real_pbmc_citeseq_h5ad():
    a = read_rna(_real("pbmc_citeseq_10x_subsets/pbmc_10k_protein_v3.h5ad"), sample_id="pbmc10k")
    assert a.shape == (200, 16727 + 14) and sp.isspmatrix_csr(a.X)
    assert a.obs_names[0] == "pbmc10k:AAACCCAAGATTGTGA-1"
    rna, prot = split_features(a)
    assert rna.shape == (200, 16727) and prot.shape == (200, 14)
    assert "CD3_TotalSeqB" in prot.var_names and rna.X.max() == 3117


@pytest.mark.realdata
def test_real_maxquant_alphapeptstats():
    a = read_proteomics(_real("alphapeptstats_format_fixtures/maxquant_proteinGroups.txt.gz"), format="maxquant")
    assert a.shape == (10, 773)
    assert list(a.obs_names) == ["AC381", "AC384", "AC386_b", "AC392", "AC399",
                                 "UT805", "UT812_b", "UT815", "UT821", "UT822"]
    u = a.uns["proteomics"]
    assert u["n_input_rows"] == 882
    assert u["n_removed"] == {"reverse": 12, "contaminant": 31, "only_by_site": 72}
    assert not (a.X == 0).any() and np.isnan(a.X).any(axis=1).all()  # LFQ zeros -> NaN
    assert (a.var["gene"] == "").all()  # the file has no Gene names column
    assert a.var["protein_id"].str.contains(r"sp\|").any()


@pytest.mark.realdata
def test_real_diann_pg_matrix():
    a = read_proteomics(_real("alphapeptstats_format_fixtures/diann_report_final.pg_matrix.tsv"), format="diann")
    assert a.shape == (20, 10) and list(a.obs_names) == [f"S{i}" for i in range(1, 21)]
    n_values = (~np.isnan(a.X)).sum(axis=1)
    assert n_values.min() >= 1 and n_values.max() <= 5  # 1-5 quantified values per sample
    assert a.var["gene"].iloc[0] == "HDLBP"


@pytest.mark.realdata
def test_real_dep_ubilength():
    a = read_proteomics(_real("dep_ubilength_maxquant/proteinGroups_UbiLength.tsv.gz"), format="maxquant")
    design = pd.read_csv(_real("dep_ubilength_maxquant/experimental_design.tsv"), sep="\t")
    assert sorted(a.obs_names) == sorted(design["label"])
    u = a.uns["proteomics"]
    assert u["n_input_rows"] == 3006
    assert u["n_removed"] == {"reverse": 31, "contaminant": 34, "only_by_site": 40}
    assert a.shape == (12, 2907)  # rows carrying none of the three flags
    ctrl = a.obs_names.str.startswith("Ctrl")
    ubi46 = a.obs_names.str.match(r"Ubi[46]_")
    for gene in ("IKBKG", "RNF31", "TNIP1", "TNIP2"):  # LFQ 0 in all Ctrl, quantified in all Ubi4/6
        x = a[:, (a.var["gene"] == gene).to_numpy()].X[:, 0]
        assert np.isnan(x[ctrl]).all() and (x[ubi46] > 3e7).all(), gene
    usp15 = a[:, (a.var["gene"] == "USP15").to_numpy()].X[:, 0]
    assert not np.isnan(usp15).any() and 2 < usp15[ubi46].mean() / usp15[ctrl].mean() < 3


@pytest.mark.realdata
def test_real_copykit_segment_ratios():
    a = read_scdna(_real("copykit_bl1_scdna/segment_ratios_bins_x_cells.tsv.gz"), sample_id="BL1")
    assert a.shape == (1502, 11268)
    assert a.uns["scdna"]["integer_counts"] is False
    assert a.obs_names[0].startswith("BL1:PMTC6Liver")
    assert list(pd.unique(a.var["chrom"]))[-1] == "chrX" and len(pd.unique(a.var["chrom"])) == 23
    np.testing.assert_allclose(a.X.mean(axis=1), 1.0, atol=0.1)  # ratios: each cell's mean ~1
    assert 0.08 < a.X.min() and a.X.max() < 4.5


# --------------------------------------------------------------------------------------------
# scDNA samples of one patient share their bins
# --------------------------------------------------------------------------------------------
def test_check_same_bins_passes_same_bins_and_names_the_first_difference(tmp_path):
    from pinnacle.io import check_same_bins

    a = read_scdna(write_text(tmp_path / "a.tsv", wide_scdna_text()), sample_id="P1_base")
    b = read_scdna(write_text(tmp_path / "b.tsv.gz", wide_scdna_text(), gz=True), sample_id="P1_res")
    bins = check_same_bins({"P1_base": a, "P1_res": b}, where="patient P1, scDNA")
    assert list(bins) == list(a.var_names)
    # a sample binned differently: chr1's second bin ends elsewhere
    c = read_scdna(write_text(tmp_path / "c.tsv", wide_scdna_text().replace("101\t200", "101\t250")),
                   sample_id="P1_res")
    with pytest.raises(InputError, match=r"^patient P1, scDNA: samples 'P1_base' and 'P1_res' have different bins "
                       r"\(5 vs 5\): bin 2 is chr1:101-200 in 'P1_base' but chr1:101-250 in 'P1_res'\. Fix: count"):
        check_same_bins({"P1_base": a, "P1_res": c}, where="patient P1, scDNA")
    # one bin fewer; samples named from obs['sample_id'] when given as a list
    from pinnacle import sheets

    a = sheets.label_cells(a, sample_id="P1_base", patient_id="P1", timepoint="baseline", response="r")
    d = sheets.label_cells(b[:, :-1].copy(), sample_id="P1_res", patient_id="P1", timepoint="resection",
                           response="r")
    with pytest.raises(InputError, match=r"samples 'P1_base' and 'P1_res' have different bins \(5 vs 4\): bin 5 "
                       r"is chrX:1-100 in 'P1_base' but none \(it ends there\) in 'P1_res'"):
        check_same_bins([a, d])


# --------------------------------------------------------------------------------------------
# outputs are whole or absent (pinnacle.writers.atomic_path)
# --------------------------------------------------------------------------------------------
def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    from pinnacle.writers import atomic_path

    target = tmp_path / "out" / "table.tsv.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("table.tsv.gz") and tmp != target
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and _leftovers(target.parent) == ["table.tsv.gz"]
    # a failed rewrite leaves the previous file as it was, and no temporary file
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-way")
    assert target.read_bytes() == b"whole" and _leftovers(target.parent) == ["table.tsv.gz"]


class _Boom:
    """Stands in for a DataFrame / AnnData / figure whose writer dies after writing part of the file."""

    def to_csv(self, fh, **kwargs):
        fh.write("cell_id\tvalue\n" * 1000)
        raise MemoryError("half-way")

    def write_h5ad(self, path, **kwargs):
        with h5py.File(path, "w") as f:
            f.create_dataset("X", data=np.zeros(100))
        raise OSError("disk full")

    def savefig(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise ValueError("bad figure")


@pytest.mark.parametrize("name, call", [
    ("cells.tsv.gz", lambda w, obj, p: w.write_table(obj, p, sep="\t")),
    ("qc.tsv", lambda w, obj, p: w.write_tsv(obj, p)),
    ("rna.h5ad", lambda w, obj, p: w.write_h5ad(obj, p, compression="gzip")),
    ("qc.png", lambda w, obj, p: w.save_figure(obj, p, dpi=110)),
])
def test_a_writer_that_fails_mid_way_leaves_no_file(tmp_path, name, call):
    from pinnacle import writers

    with pytest.raises((MemoryError, OSError, ValueError)):
        call(writers, _Boom(), tmp_path / "results" / name)
    assert _leftovers(tmp_path / "results") == []


def test_writers_write_whole_files_under_the_target_name(tmp_path):
    from pinnacle import writers

    df = pd.DataFrame({"a": [1.5, 2.0]}, index=pd.Index(["x", "y"], name="cell_id"))
    writers.write_table(df, tmp_path / "t.tsv.gz", sep="\t")
    with gzip.open(tmp_path / "t.tsv.gz", "rt") as fh:
        assert fh.read() == "cell_id\ta\nx\t1.5\ny\t2.0\n"
    a = ad.AnnData(np.ones((2, 3), dtype=np.float32))
    writers.write_h5ad(a, tmp_path / "a.h5ad", compression="gzip")
    assert ad.read_h5ad(tmp_path / "a.h5ad").shape == (2, 3)
    h5 = ad.AnnData(sp.csr_matrix(COUNTS.astype(np.float32)),
                    var=pd.DataFrame({"gene_ids": IDS, "feature_types": TYPES}, index=[f"f{i}" for i in range(5)]))
    h5.obs_names = BARCODES
    writers.write_10x_h5(h5, tmp_path / "m.h5")
    assert read_rna(tmp_path / "m.h5").shape == (4, 5)
    assert _leftovers(tmp_path) == ["a.h5ad", "m.h5", "t.tsv.gz"]


def test_merge_samples_on_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    from pinnacle import rna_integrate

    a = ad.AnnData(np.ones((2, 3), dtype=np.float32))
    a.obs_names = ["S1:A", "S1:B"]
    a.write_h5ad(tmp_path / "s1.h5ad")

    def dies(in_files, out_file, **kwargs):
        Path(out_file).write_bytes(b"half")
        raise MemoryError("killed")

    monkeypatch.setattr(rna_integrate._cohort, "concat_on_disk", dies)
    (tmp_path / "cohort").mkdir()
    with pytest.raises(MemoryError):
        rna_integrate.merge_samples_on_disk([tmp_path / "s1.h5ad"], tmp_path / "cohort" / "merged.h5ad")
    assert _leftovers(tmp_path / "cohort") == []


def test_atomic_write_removes_a_killed_writers_partial_of_the_same_target(tmp_path):
    """A writer killed mid-way (SIGKILL) leaves a hidden .partial.* file; the rerun's write of the
    same target removes it, and leaves another target's alone."""
    from pinnacle import writers

    mine = tmp_path / f"{writers.PARTIAL_PREFIX}12345.0badc0de.table.tsv"
    other = tmp_path / f"{writers.PARTIAL_PREFIX}12345.0badc0de.other.tsv"
    mine.write_text("half")
    other.write_text("half")
    writers.write_table(pd.DataFrame({"a": [1]}), tmp_path / "table.tsv", sep="\t", index=False)
    assert (tmp_path / "table.tsv").read_text() == "a\n1\n"
    assert not mine.exists() and other.exists()
