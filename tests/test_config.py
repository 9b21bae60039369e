"""The shipped config validates, and every schema key is documented in config/README.md."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        nested = sub.get("properties")
        # Leaf keys, and nested objects whose children are documented one by one.
        if nested and any("properties" in v or "description" in v for v in nested.values()):
            out += _keys(sub, prefix=f"{name}.")
        else:
            out.append(name)
    return out


def test_shipped_config_validates():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, schema=str(SCHEMA))


def test_every_config_key_is_documented():
    readme = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = [k for k in _keys(schema) if f"`{k}`" not in readme and f"`{k}." not in readme]
    assert not missing, f"undocumented config keys: {missing}"


def test_every_config_key_has_a_description():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, path=""):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}{key}", sub
            yield from walk(sub, f"{path}{key}.")

    undocumented = [p for p, sub in walk(schema) if "description" not in sub
                    and not p.startswith(("qc.n_mads.", "integration.scvi.", "qc.fixed."))]
    assert not undocumented, undocumented


@pytest.mark.parametrize("key, value, message", [
    ("seed", -1, "minimum"),
    ("integration", {"method": "magic"}, "magic"),
    ("qc", {"mito_prefix": "MT-", "ribo_prefixes": ["RPL"], "hb_regex": "^HB", "thresholds": "median"}, "median"),
])
def test_bad_config_is_rejected_with_the_key(key, value, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config[key] = value
    with pytest.raises(Exception, match=message):
        validate(config, schema=str(SCHEMA))


def test_every_rule_a_profile_names_exists():
    """set-resources of a profile keyed by a rule name that does not exist is silently ignored
    (scVI never reached the GPU partition when the slurm profile named 'integrate_scvi')."""
    import re

    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), flags=re.M))
    for profile in (REPO / "profiles").glob("*/config.yaml"):
        named = set((yaml.safe_load(profile.read_text()) or {}).get("set-resources", {}) or {})
        assert named <= rules, (profile, sorted(named - rules))
    # the GPU rule of the integration stage declares a gpu resource for the cluster profile
    assert "gpu=" in (REPO / "workflow" / "rules" / "rna_integrate.smk").read_text()


# --------------------------------------------------------------------------------------------
# pinnacle.config.load: every cross-key check, one test per message
# --------------------------------------------------------------------------------------------

def _config(**overrides) -> dict:
    """The shipped config after schema validation (defaults set), with section overrides."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for dotted, value in overrides.items():
        node = config
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    validate(config, schema=str(SCHEMA), set_default=True)
    return config


def _real_data(tmp_path, *, samples: str | None = None, patients: str | None = None, **overrides) -> dict:
    """A real-data config on two tiny sheets whose files exist (one byte: nothing is read)."""
    for s in ("A_base", "A_res"):
        (tmp_path / f"{s}.h5").write_bytes(b"x")
    (tmp_path / "samples.tsv").write_text(samples or (
        "sample_id\tpatient_id\ttimepoint\trna\n"
        f"A_base\tA\tbaseline\t{tmp_path}/A_base.h5\nA_res\tA\tresection\t{tmp_path}/A_res.h5\n"))
    (tmp_path / "patients.tsv").write_text(patients or "patient_id\tresponse\tage\nA\tresponder\t60\n")
    return _config(demo__enabled=False, samples=str(tmp_path / "samples.tsv"),
                   patients=str(tmp_path / "patients.tsv"), **overrides)


def test_load_demo_config_gives_a_frozen_run_and_leaves_config_alone():
    import copy
    import dataclasses

    from pinnacle.config import load

    config = _config()
    before = copy.deepcopy(config)
    run = load(config, REPO)
    assert config == before  # the snakemake config object is never edited
    assert run.demo and run.truth == "demo/truth"
    assert len(run.rna_samples) == 2 * config["demo"]["n_patients"]
    # twins: the resection samples, when demo.interferon_twin is on
    assert set(run.twin_samples) == {s for s in run.rna_samples if s.endswith("resection")}
    assert run.twin_path("P01_resection") == "demo/truth/interferon_off/P01_resection/filtered_feature_bc_matrix.h5"
    assert run.config["qc"]["doublets"]["expected_rate"] == config["demo"]["doublet_rate"]
    assert run.config["compare"]["cell_types"] == config["demo"]["compare_cell_types"]
    assert Path(run.config["annotation"]["markers"]).is_file()
    assert run.config["annotation"]["states"] in run.gene_resources
    assert {"on_treatment_responder", "on_treatment_non_responder", "interaction"} <= set(run.designs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.truth = "elsewhere"


def test_load_real_data_sheets(tmp_path):
    from pinnacle.config import load

    run = load(_real_data(tmp_path), REPO)
    assert not run.demo and run.truth == "" and run.twin_samples == ()
    assert run.rna_samples == ("A_base", "A_res") and run.dna_samples == () and run.dna_patients == ()
    assert run.rna_patients == ("A",) and run.patient_samples("A", "rna") == ["A_base", "A_res"]
    assert run.patient_samples("A", "dna") == []
    assert run.sample_meta("A_res") == {"sample_id": "A_res", "patient_id": "A", "timepoint": "resection",
                                        "response": "responder"}
    assert run.compare_meta()[0]["sample_id"] == "A_base"


@pytest.mark.parametrize("overrides, where, message", [
    ({"proteomics": {"path": "nowhere/proteinGroups.txt", "format": "maxquant", "quantity": "LFQ intensity"}},
     "proteomics.path", "does not exist"),
    ({"truth": "."}, "key truth", "not a simulated cohort's truth folder"),
    ({"annotation__markers": "resources/no_such_markers.yaml"}, "annotation.markers", "exists neither"),
    ({"compare__signatures": "resources"}, "compare.signatures", "is not a file"),
    ({"annotation__celltypist_model": "models/missing.pkl"}, "annotation.celltypist_model", "does not exist"),
    ({"annotation__scanvi_reference": "ref/missing.h5ad"}, "annotation.scanvi_reference", "does not exist"),
    ({"annotation__cluster_resolution": 2.0}, "annotation.cluster_resolution", "not one of integration.leiden"),
    ({"compare__designs": ["on_treatment_partial"]}, "compare.designs", "names no response level"),
    ({"compare__covariates": {"smoking": "categorical"}}, "compare.covariates", "not columns of the patient sheet"),
    ({"cnv__ploidy_range": [4.0, 2.0]}, "cnv.ploidy_range", "empty or reversed"),
    ({"cnv__gc_range": [0.5, 0.5]}, "cnv.gc_range", "empty or reversed"),
    ({"cnv__bin_reference": "resources/no_bins.tsv.gz"}, "cnv.bin_reference", "exists neither"),
])
def test_load_rejects_each_bad_setting_with_its_key(tmp_path, overrides, where, message):
    from pinnacle.config import load
    from pinnacle.errors import InputError

    with pytest.raises(InputError, match=message) as err:
        load(_real_data(tmp_path, **overrides), REPO)
    assert where in str(err.value) and "Fix:" in str(err.value)


def test_load_rejects_a_bad_sample_row_with_its_line(tmp_path):
    from pinnacle.config import load
    from pinnacle.errors import InputError

    sheet = "sample_id\tpatient_id\ttimepoint\trna\nA base\tA\tbaseline\tx.h5\n"
    with pytest.raises(InputError, match=r"samples.tsv, line 2, column sample_id.*does not match") as err:
        load(_real_data(tmp_path, samples=sheet), REPO)
    assert "Sample sheet" in str(err.value)


def test_load_rejects_an_empty_input_file_before_any_job(tmp_path):
    """A 0-byte file (an interrupted copy) or an empty 10x directory stops the run at parse time."""
    from pinnacle.config import load
    from pinnacle.errors import InputError

    config = _real_data(tmp_path)
    (tmp_path / "A_res.h5").write_bytes(b"")
    with pytest.raises(InputError, match=r"samples.tsv, line 3 \(sample 'A_res'\), column rna: the scRNA file "
                       r"'.*A_res.h5' is empty \(0 bytes\)") as err:
        load(config, REPO)
    assert "Fix: copy it again" in str(err.value)
    (tmp_path / "A_res.h5").unlink()
    (tmp_path / "A_res.h5").mkdir()
    with pytest.raises(InputError, match=r"line 3 .*column rna: the directory '.*A_res.h5' is empty, so it is "
                       r"not a 10x matrix directory"):
        load(config, REPO)


def test_raw_min_shared_barcodes_has_a_default_and_a_range():
    assert _config()["qc"]["raw_min_shared_barcodes"] == 0.99
    with pytest.raises(Exception, match=r"1.5 is greater than the maximum of 1"):
        _config(qc__raw_min_shared_barcodes=1.5)


def test_load_checks_corrections_before_any_job(tmp_path):
    from pinnacle.config import load
    from pinnacle.errors import InputError

    bad = tmp_path / "corrections.tsv"
    bad.write_text("cluster\tcell_type\treason\n3\tnot_a_type\tlooks odd\n")
    with pytest.raises(InputError, match="not_a_type"):
        load(_real_data(tmp_path, annotation__corrections=str(bad)), REPO)


@pytest.mark.parametrize("overrides, message", [
    ({"protein__empty_adt_range": [1000, 30]}, r"protein.empty_adt_range: the range \[1000, 30\] is reversed"),
    ({"protein__empty_rna_range": [300, 0]}, r"protein.empty_rna_range: the range \[300, 0\] is reversed"),
    ({"protein__isotype_pattern": "igg(1"}, r"protein.isotype_pattern: 'igg\(1' is not a regular expression"),
    ({"protein__normalisation": "dsb"}, r"protein.normalisation: dsb needs empty droplets, but samples A_base, "
                                        r"A_res have no rna_raw"),
])
def test_load_rejects_bad_protein_settings(tmp_path, overrides, message):
    from pinnacle.config import load
    from pinnacle.errors import InputError

    with pytest.raises(InputError, match=message) as err:
        load(_real_data(tmp_path, **overrides), REPO)
    assert "Fix:" in str(err.value)


def test_protein_defaults_and_schema():
    protein = _config()["protein"]
    assert protein["normalisation"] == "auto" and protein["totalvi"] is False
    from pinnacle.protein import ISOTYPE_PATTERN

    assert protein["isotype_pattern"] == ISOTYPE_PATTERN
    with pytest.raises(Exception, match="'seurat' is not one of"):
        _config(protein__normalisation="seurat")


@pytest.mark.parametrize("age, kind, message", [
    ("", "numeric", r"no value for patients \['A'\]"),
    ("sixty", "numeric", r"values \['sixty'\] are not numbers"),
    ("", "categorical", r"no value for patients \['A'\]"),
])
def test_covariates_are_typed_and_complete_before_any_job(tmp_path, age, kind, message):
    """Issue 16 item 6: one blank in a numeric covariate used to turn it into dummy variables."""
    from pinnacle.config import load
    from pinnacle.errors import InputError

    sheet = f"patient_id\tresponse\tage\nA\tresponder\t{age}\n"
    with pytest.raises(InputError, match=message) as err:
        load(_real_data(tmp_path, patients=sheet, compare__covariates={"age": kind}), REPO)
    assert "column age" in str(err.value) and "Fix:" in str(err.value)
    run = load(_real_data(tmp_path, compare__covariates={"age": "numeric"}), REPO)
    assert run.compare_meta()[0]["age"] == "60"
