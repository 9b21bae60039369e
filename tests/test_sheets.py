"""Sample/patient sheet cross-checks: each bad sheet stops with a message naming line and fix."""

from pathlib import Path

import pandas as pd
import pytest

from pinnacle import sheets
from pinnacle.errors import InputError

LEVELS = ["non_responder", "responder"]
TIMEPOINTS = ["baseline", "resection"]


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.h5").write_bytes(b"x")
    (tmp_path / "b.h5").write_bytes(b"x")
    return tmp_path


def _patients():
    return pd.DataFrame({"patient_id": ["P1", "P2"], "response": ["responder", "non_responder"]})


def _samples(**override):
    rows = [
        {"sample_id": "S1", "patient_id": "P1", "timepoint": "baseline", "rna": "a.h5", "rna_raw": "", "dna": ""},
        {"sample_id": "S2", "patient_id": "P1", "timepoint": "resection", "rna": "b.h5", "rna_raw": "", "dna": ""},
    ]
    for key, value in override.items():
        rows[1][key] = value
    return pd.DataFrame(rows)


def _check(samples, files, patients=None):
    p = sheets.check_patients(patients if patients is not None else _patients(),
                              response_column="response", response_levels=LEVELS)
    return sheets.check_samples(samples, p, timepoints=TIMEPOINTS, base_dir=files)


def test_good_sheets_pass_and_get_response(files):
    out = _check(_samples(), files)
    ann = sheets.annotate_samples(out, _patients().set_index("patient_id", drop=False),
                                  response_column="response")
    assert list(ann.index) == ["S1", "S2"]
    assert set(ann["response"]) == {"responder"}


def test_ids_stay_strings(tmp_path):
    path = _write(tmp_path / "p.tsv", [{"patient_id": "007", "response": "responder"}])
    df = sheets.read_sheet(path, kind="patients", required=("patient_id",))
    assert df["patient_id"].iloc[0] == "007"


def test_missing_sheet(tmp_path):
    with pytest.raises(InputError, match="sheet does not exist"):
        sheets.read_sheet(tmp_path / "nope.tsv", kind="samples", required=("sample_id",))


def test_missing_column(tmp_path):
    path = _write(tmp_path / "s.tsv", [{"sample_id": "S1", "patient": "P1"}])
    with pytest.raises(InputError, match=r"missing column\(s\) \['patient_id'"):
        sheets.read_sheet(path, kind="samples", required=("sample_id", "patient_id"))


def test_empty_sheet(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("sample_id\tpatient_id\n")
    with pytest.raises(InputError, match="has no rows"):
        sheets.read_sheet(path, kind="samples", required=("sample_id",))


def test_duplicate_sample(files):
    with pytest.raises(InputError, match=r"line 3.*sample_id 'S1' appears twice"):
        _check(_samples(sample_id="S1"), files)


def test_unknown_patient(files):
    with pytest.raises(InputError, match=r"line 3 \(sample 'S2'\).*patient 'P9' is not in the patient sheet"):
        _check(_samples(patient_id="P9"), files)


def test_patient_without_response(files):
    patients = _patients()
    patients.loc[1, "response"] = ""
    with pytest.raises(InputError, match=r"line 3.*patient 'P2' has no response"):
        _check(_samples(), files, patients)


def test_patient_with_unknown_response(files):
    patients = _patients()
    patients.loc[0, "response"] = "CR"
    with pytest.raises(InputError, match=r"response 'CR', not one of"):
        _check(_samples(), files, patients)


def test_duplicate_patient(files):
    patients = pd.concat([_patients(), _patients().iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match=r"line 4.*patient_id 'P1' appears twice"):
        _check(_samples(), files, patients)


def test_missing_response_column(files):
    with pytest.raises(InputError, match="no column 'response'"):
        _check(_samples(), files, _patients().rename(columns={"response": "outcome"}))


def test_timepoint_not_configured(files):
    with pytest.raises(InputError, match=r"timepoint 'week6' is not one of \['baseline', 'resection'\]"):
        _check(_samples(timepoint="week6"), files)


def test_two_samples_at_one_timepoint(files):
    with pytest.raises(InputError, match=r"patient 'P1' already has a 'baseline' sample on line 2"):
        _check(_samples(timepoint="baseline"), files)


def test_missing_file(files):
    with pytest.raises(InputError, match=r"the 'rna' file 'missing.h5' does not exist"):
        _check(_samples(rna="missing.h5"), files)


def test_pending_file_is_allowed(files):
    p = sheets.check_patients(_patients(), response_column="response", response_levels=LEVELS)
    sheets.check_samples(_samples(rna="demo/x.h5"), p, timepoints=TIMEPOINTS, base_dir=files,
                         pending=["demo/x.h5"])


def test_no_modality(files):
    with pytest.raises(InputError, match="has neither an 'rna' nor a 'dna' file"):
        _check(_samples(rna=""), files)


def test_raw_without_filtered(files):
    with pytest.raises(InputError, match="has 'rna_raw' but no 'rna'"):
        _check(_samples(rna="", rna_raw="b.h5", dna="a.h5"), files)


# ---- files that exist but cannot hold what the column asks for (checked before any job) -----

def _mtx_dir(path: Path, files=("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"), empty=()) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"" if name in empty else b"x")
    return path


def test_ten_x_directories_and_files_pass(files):
    _mtx_dir(files / "filtered")
    _mtx_dir(files / "legacy", files=("matrix.mtx", "genes.tsv", "barcodes.tsv"))
    (files / "d.tsv.gz").write_bytes(b"x")
    (files / "c.h5ad").write_bytes(b"x")
    _check(_samples(rna="filtered", rna_raw="legacy/matrix.mtx", dna="d.tsv.gz"), files)
    _check(_samples(rna="c.h5ad", rna_raw="a.h5"), files)


@pytest.mark.parametrize("column", ["rna", "rna_raw"])
def test_empty_rna_file(files, column):
    (files / "empty.h5").write_bytes(b"")
    with pytest.raises(InputError, match=rf"line 3 \(sample 'S2'\), column {column}: the scRNA file "
                       r"'empty.h5' is empty \(0 bytes\).* Fix: copy it again") as err:
        _check(_samples(**{column: "empty.h5"}), files)
    assert "samples.tsv" in str(err.value)


def test_empty_dna_file(files):
    (files / "bins.tsv.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"line 3 \(sample 'S2'\), column dna: the scDNA file 'bins.tsv.gz' "
                       r"is empty \(0 bytes\)"):
        _check(_samples(dna="bins.tsv.gz"), files)


def test_dna_directory(files):
    (files / "dna_dir").mkdir()
    with pytest.raises(InputError, match=r"column dna: 'dna_dir' is a directory, not an scDNA bin-count file"):
        _check(_samples(dna="dna_dir"), files)


@pytest.mark.parametrize("column", ["rna", "rna_raw"])
def test_empty_rna_directory(files, column):
    (files / "outs").mkdir()
    with pytest.raises(InputError, match=rf"line 3 \(sample 'S2'\), column {column}: the directory 'outs' is "
                       r"empty, so it is not a 10x matrix directory.* Fix: give Cell Ranger's"):
        _check(_samples(**{column: "outs"}), files)


def test_rna_directory_without_barcodes(files):
    _mtx_dir(files / "outs", files=("matrix.mtx.gz", "features.tsv.gz"))
    with pytest.raises(InputError, match=r"column rna: the directory 'outs' has no barcodes.tsv.gz or "
                       r"barcodes.tsv, so it is not a 10x matrix directory"):
        _check(_samples(rna="outs"), files)


def test_rna_directory_with_an_empty_file(files):
    _mtx_dir(files / "outs", empty=("matrix.mtx.gz",))
    with pytest.raises(InputError, match=r"column rna: the 10x matrix directory 'outs' holds empty file\(s\) "
                       r"\['matrix.mtx.gz'\] \(0 bytes\)"):
        _check(_samples(rna="outs"), files)


def test_rna_file_of_another_kind(files):
    (files / "counts.csv").write_bytes(b"x")
    with pytest.raises(InputError, match=r"column rna: 'counts.csv' is neither a 10x .h5, an .h5ad nor a 10x "
                       r"matrix directory"):
        _check(_samples(rna="counts.csv"), files)


def test_attach_sample_meta_rejects_unknown_sample():
    import anndata as ad
    import numpy as np

    adata = ad.AnnData(np.ones((2, 3), dtype=np.float32))
    adata.obs_names = ["S1", "S7"]
    meta = pd.DataFrame({"sample_id": ["S1"], "patient_id": ["P1"], "timepoint": ["baseline"],
                         "response": ["responder"]})
    with pytest.raises(InputError, match=r"sample\(s\) \['S7'\] are not in the sample sheet"):
        sheets.attach_sample_meta(adata, meta, where="proteinGroups.txt")
