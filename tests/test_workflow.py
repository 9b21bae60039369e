"""End-to-end: the workflow on a tiny simulated cohort in a temporary directory.

One demo-mode run (the cohort written by the workflow itself), then the same files analysed as
"real data" through the sample sheets, plus lint, dry-run, report, and bad-sheet behaviour.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from pinnacle import compare

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.slow


def _merge(base: dict, over: dict) -> dict:
    """Nested update, as snakemake merges a --configfile into the default config."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _config(workdir: Path, *, test_config: str = "config_demo", **override) -> Path:
    """config/config.yaml with a .test/ overlay (the tiny demo, or real-data mode on sheets) and
    top-level overrides, written into the working directory."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = _merge(cfg, yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))
    if test_config != "config_demo":
        cfg = _merge(cfg, yaml.safe_load((REPO / ".test" / test_config / "config.yaml").read_text()))
        shutil.copytree(REPO / ".test" / test_config, workdir / test_config, dirs_exist_ok=True)
    for key, value in override.items():
        cfg[key] = value
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                       "--configfile", str(configfile), *args]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    cfg = _config(workdir)
    _run(workdir, cfg, "--cores", "2")
    return workdir, cfg


def test_outputs_exist_and_agree(demo_run):
    workdir, _ = demo_run
    res = workdir / "results"
    qc = pd.read_csv(res / "rna" / "qc_summary.tsv", sep="\t")
    assert len(qc) == 4 and (qc["n_cells_kept"] > 0).all()
    cohort = ad.read_h5ad(res / "cohort" / "rna_counts.h5ad", backed="r")
    assert cohort.n_obs == qc["n_cells_kept"].sum()
    assert {"sample_id", "patient_id", "timepoint", "response", "pct_counts_mt"} <= set(cohort.obs)
    assert cohort.obs_names[0].split(":")[0] in set(qc["sample_id"])
    cells = pd.read_csv(res / "cohort" / "cells.tsv.gz", sep="\t", index_col="cell_id")
    assert list(cells.index) == list(cohort.obs_names)
    # Each patient has one responder status on both samples.
    assert (cells.groupby("patient_id")["response"].nunique() == 1).all()
    prot = ad.read_h5ad(res / "rna" / "P01_baseline" / "prot.h5ad")
    assert prot.n_vars >= 25 and (prot.var["feature_types"] == "Antibody Capture").all()
    assert (res / "figures" / "qc_summary.png").stat().st_size > 10_000
    # scDNA: every cell in the QC table, the passing ones called; clones per patient, joined
    dna_qc = pd.read_csv(res / "dna" / "P01_baseline" / "cell_qc.tsv", sep="\t")
    assert len(dna_qc) == 40 and dna_qc["cnv_qc_pass"].any()
    dna = ad.read_h5ad(res / "dna" / "P01_baseline" / "copy_number.h5ad")
    assert dna.n_obs == dna_qc["cnv_qc_pass"].sum() and {"chrom", "start", "end"} <= set(dna.var)
    assert {"counts", "ratio", "copy_number"} <= set(dna.layers)
    fractions = pd.read_csv(res / "tables" / "clone_fractions.tsv", sep="\t")
    assert set(fractions["patient_id"]) == {"P01", "P02"} and fractions["timepoint"].notna().all()
    assert fractions.loc[fractions["sample_id"] == "P01_baseline", "n_cells"].sum() == dna_qc["cnv_qc_pass"].sum()
    clones = ad.read_h5ad(res / "cnv" / "P01" / "clones.h5ad")
    assert clones.n_obs == sum(pd.read_csv(res / "dna" / s / "cell_qc.tsv", sep="\t")["cnv_qc_pass"].sum()
                               for s in ("P01_baseline", "P01_resection"))
    assert (res / "figures" / "cnv" / "P01_heatmap.png").stat().st_size > 10_000
    # scRNA copy number: every cell called; the comparisons' labels split the epithelium by the call
    calls = pd.read_csv(res / "cohort" / "malignant_calls.tsv.gz", sep="\t", index_col="cell_id")
    assert set(calls.index) == set(cells.index) and set(calls["malignant_call"]) <= {"malignant", "non_malignant",
                                                                                      "uncertain"}
    refined = pd.read_csv(res / "cohort" / "cell_labels_cnv.tsv.gz", sep="\t", index_col="cell_id")
    epi = refined["cell_type_major"] == "malignant/epithelial"
    assert (refined.loc[epi & (refined["malignant_call"] == "malignant"), "cell_type"] == "malignant").all()
    assert (refined.loc[epi & (refined["malignant_call"] == "non_malignant"), "cell_type"] == "epithelial_normal").all()
    assert (res / "figures" / "cnv" / "P01_rna_cnv.png").stat().st_size > 10_000
    # CITE-seq: DSB per sample (the demo has raw matrices), the cohort MuData on the shared tags
    import mudata

    pn = ad.read_h5ad(res / "protein" / "P01_baseline" / "prot_norm.h5ad")
    assert pn.uns["protein_norm"]["method"] == "dsb"
    assert pn.n_obs == int(qc.loc[qc["sample_id"] == "P01_baseline", "n_cells_kept"].iloc[0])
    methods = pd.read_csv(res / "tables" / "protein_normalisation.tsv", sep="\t")
    assert sorted(methods["sample_id"]) == sorted(qc["sample_id"]) and (methods["method"] == "dsb").all()
    tags = pd.read_csv(res / "protein" / "P01_baseline" / "tag_qc.tsv", sep="\t")
    assert len(tags) == prot.n_vars and tags["is_isotype"].sum() == 3 and tags["normalised"].all()
    with mudata.set_options(pull_on_update=False):
        md = mudata.read_h5mu(res / "cohort" / "cohort.h5mu")
    assert set(md.mod) == {"rna", "prot"} and md["prot"].n_obs == md["rna"].n_obs == cohort.n_obs
    assert list(md["prot"].obs_names) == list(md["rna"].obs_names) and md["prot"].n_vars == prot.n_vars
    assert "counts" in md["prot"].layers and "X_umap" in md["prot"].obsm and "cell_type" in md["prot"].obs
    for f in ("protein_lineage_tags.png", "protein_umap.png", "protein/P01_baseline_tag_qc.png"):
        assert (res / "figures" / f).stat().st_size > 10_000
    prot_bulk = ad.read_h5ad(res / "proteomics" / "proteomics.h5ad")
    assert prot_bulk.n_obs == 4 and set(prot_bulk.obs["patient_id"]) == {"P01", "P02"}
    assert (workdir / "logs").is_dir() and any((workdir / "benchmarks").rglob("*.tsv"))
    # QC-passing cells only, integrated and annotated; counts kept, log-normalised X.
    annotated = ad.read_h5ad(res / "cohort" / "annotated.h5ad")
    assert annotated.n_obs == cohort.n_obs and annotated.n_vars < cohort.n_vars
    assert {"X_pca", "X_scVI", "X_harmony", "X_umap"} <= set(annotated.obsm)
    assert {"cell_type", "cell_type_major", "cell_type_confidence", "leiden_1.0"} <= set(annotated.obs)
    assert "counts" in annotated.layers and annotated.X.max() < 20
    metrics = pd.read_csv(res / "tables" / "integration_metrics.tsv", sep="\t")
    assert set(metrics["embedding"]) == {"unintegrated (PCA)", "scVI", "Harmony"}
    counts = pd.read_csv(res / "tables" / "cell_type_counts.tsv", sep="\t", index_col=0)
    assert counts.to_numpy().sum() == annotated.n_obs
    # Comparisons: pseudobulks hold every labelled cell once; with one responder and one
    # non-responder only the all-patient paired design can be tested, and the tables say so.
    pb = ad.read_h5ad(res / "compare" / "pseudobulk.h5ad")
    assert pb.obs["n_cells"].sum() == (annotated.obs["cell_type"] != "unknown").sum()
    comp = pd.read_csv(res / "tables" / "composition_tests.tsv", sep="\t")
    assert comp.loc[comp["design"] == "baseline", "status"].str.startswith("not tested: too few patients").all()
    assert (comp.loc[comp["design"] == "on_treatment", "status"] == "tested").all()
    de = pd.read_csv(res / "tables" / "de" / "on_treatment.tsv", sep="\t")
    assert len(de) > 1000 and (de["formula"] == "~ patient + timepoint").all()
    assert (de["patients"] == "all pairs: 2").all()
    status = pd.read_csv(res / "tables" / "de" / "baseline_status.tsv", sep="\t")
    assert status["status"].str.startswith("not tested").all()
    # One job per design x cell type (the demo's listed types), joined per design: the design's
    # tables are the per-type files' rows, in the listed order, unchanged.
    types = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["demo"]["compare_cell_types"]
    designs = ("baseline", "on_treatment", "on_treatment_non_responder", "on_treatment_responder", "interaction")
    for design in designs:
        parts = [pd.read_csv(res / "compare" / "de" / design / f"{ct}.tsv", sep="\t") for ct in types]
        joined = pd.read_csv(res / "tables" / "de" / f"{design}.tsv", sep="\t")
        stacked = pd.concat(parts, ignore_index=True)
        assert list(joined.columns) == list(stacked.columns), design
        # every per-type column unchanged; padj_design (BH across the design's types) recomputed
        pd.testing.assert_frame_equal(joined.drop(columns="padj_design"), stacked.drop(columns="padj_design"),
                                      check_dtype=False)
        tested = joined["padj"].notna()
        assert joined["padj_design"].notna().tolist() == tested.tolist(), design
        if tested.any():
            np.testing.assert_allclose(joined.loc[tested, "padj_design"], compare.bh(joined.loc[tested, "pvalue"]))
        parts = [pd.read_csv(res / "compare" / "de" / design / f"{ct}.status.tsv", sep="\t") for ct in types]
        assert all(len(part) == 1 for part in parts)
        pd.testing.assert_frame_equal(pd.read_csv(res / "tables" / "de" / f"{design}_status.tsv", sep="\t"),
                                      pd.concat(parts, ignore_index=True), check_dtype=False)
    assert list(pd.read_csv(res / "tables" / "de" / "on_treatment_status.tsv", sep="\t")["cell_type"]) == types
    # The report shows the significant genes only; the full tables stay on disk.
    fdr = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["compare"]["fdr"]
    sig = pd.read_csv(res / "tables" / "de" / "on_treatment_significant.tsv", sep="\t")
    assert len(sig) == (de["padj"] < fdr).sum() and list(sig.columns) == list(de.columns)
    called = de.loc[de["padj"] < fdr, ["cell_type", "gene"]].to_numpy()
    assert set(zip(sig["cell_type"], sig["gene"])) == set(map(tuple, called))
    assert pd.read_csv(res / "tables" / "de" / "baseline_significant.tsv", sep="\t").empty
    prot_tests = pd.read_csv(res / "tables" / "proteomics_tests.tsv", sep="\t")
    prot_sig = pd.read_csv(res / "tables" / "proteomics_significant.tsv", sep="\t")
    assert len(prot_sig) == (prot_tests["padj"] < fdr).sum() and (prot_sig["padj"] < fdr).all()
    sig = pd.read_csv(res / "tables" / "signature_tests.tsv", sep="\t")
    assert {"T_cell_inflamed_GEP", "IFN_gamma_response"} <= set(sig["signature"].dropna())
    assert (res / "figures" / "composition_paired.png").stat().st_size > 10_000


def test_truth_check_all_rows_pass(demo_run):
    workdir, _ = demo_run
    table = pd.read_csv(workdir / "results" / "truth_check.tsv", sep="\t")
    assert len(table) >= 6
    stages = {"clone_ari", "copy_number_accuracy", "diploid_called_diploid", "malignant_accuracy", "malignant_recall",
              "dsb_isotype_centre", "dsb_lineage_auroc_CD3", "dsb_lineage_auroc_CD19", "dsb_lineage_auroc_CD14"}
    assert stages <= set(table["metric"]), stages - set(table["metric"])
    assert table["pass"].all(), table.to_string()


def test_rerun_is_noop_and_dryrun_lint_report(demo_run):
    workdir, cfg = demo_run
    proc = _run(workdir, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    lint = _run(workdir, cfg, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    _run(workdir, cfg, "--report", "results/report.html")
    html = (workdir / "results" / "report.html").read_text(errors="ignore")
    assert len(html) > 50_000
    # The full DE and proteomics tables are not embedded (megabytes per design at trial scale).
    sys.stderr.write(f"\nreport.html: {len(html) / 1e6:.2f} MB\n")
    embedded = set(re.findall(r"filename=([^;\"]+);base64", html))
    for design in ("baseline", "on_treatment"):
        assert {f"{design}_significant.tsv", f"{design}_status.tsv", f"{design}_volcano.png"} <= embedded
        assert f"{design}.tsv" not in embedded
    assert "proteomics_significant.tsv" in embedded and "proteomics_tests.tsv" not in embedded


def test_sheets_run_as_real_data(demo_run, tmp_path):
    """The demo's own files, given through the sheets, go through the non-demo path."""
    workdir, _ = demo_run
    real = tmp_path / "real"
    shutil.copytree(workdir / "demo", real / "demo")
    # .test/config_sheets: the sheets, Harmony as the method (both integration paths run end to
    # end), the expected doublet rate given as a user must. A CellTypist model trained on the
    # demo run's cells (planted labels), given by path.
    from pinnacle import annotate

    demo_cells = ad.read_h5ad(workdir / "results" / "cohort" / "annotated.h5ad")
    truth = pd.read_csv(workdir / "demo" / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id")
    demo_cells.obs["planted"] = truth.loc[demo_cells.obs_names, "cell_type"].to_numpy()
    annotate.train_celltypist_model(demo_cells, label_key="planted", max_iter=100).write(str(real / "model.pkl"))
    annotation = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["annotation"]
    annotation["celltypist_model"] = "model.pkl"
    # The analyst's correction of one cell (ids are the demo run's: same files).
    corrected = demo_cells.obs_names[(demo_cells.obs["cell_type"] == "B_naive").to_numpy()][0]
    (real / "corrections.tsv").write_text(f"cell_id\tcell_type\treason\n{corrected}\tmast\tchecked by hand\n")
    annotation["corrections"] = "corrections.tsv"
    cfg = _config(real, test_config="config_sheets", annotation=annotation)
    _run(real, cfg, "--cores", "2")
    table = pd.read_csv(real / "results" / "truth_check.tsv", sep="\t")
    assert table["pass"].all(), table.to_string()
    # compare.cell_types is empty here: every type found after annotation (read at the checkpoint
    # pseudobulk_cohort) gets its own DE job per design, and a status row.
    sizes = pd.read_csv(real / "results" / "tables" / "pseudobulk_sizes.tsv", sep="\t")
    found = sorted(sizes["cell_type"].unique())
    assert len(found) >= 10
    status = pd.read_csv(real / "results" / "tables" / "de" / "on_treatment_status.tsv", sep="\t")
    assert list(status["cell_type"]) == found and (status["status"] == "tested").any()
    assert sorted(p.stem for p in (real / "results" / "compare" / "de" / "on_treatment").glob("*.status.tsv")) == \
        sorted(f"{t}.status" for t in found)
    labels = pd.read_csv(real / "results" / "cohort" / "cell_labels.tsv.gz", sep="\t", index_col="cell_id")
    assert {"celltypist_label", "cell_type_consensus", "cell_type_agreement"} <= set(labels)
    assert (labels["celltypist_label"] == labels["cell_type"]).mean() > 0.85
    assert labels.loc[corrected, ["cell_type", "cell_type_auto", "annotation_corrected"]].tolist() == \
        ["mast", "B_naive", "checked by hand"]
    assert (labels["annotation_corrected"].fillna("") != "").sum() == 1


def test_bad_sheet_stops_before_any_job(demo_run, tmp_path):
    workdir, _ = demo_run
    bad = tmp_path / "bad"
    (bad / "config").mkdir(parents=True)
    samples = pd.read_csv(workdir / "demo" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    samples.loc[1, "patient_id"] = "P99"
    samples.to_csv(bad / "config" / "samples.tsv", sep="\t", index=False)
    shutil.copy(workdir / "demo" / "patients.tsv", bad / "config" / "patients.tsv")
    cfg = _config(bad, demo={"enabled": False})
    proc = _run(bad, cfg, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "line 3" in proc.stderr and "patient 'P99' is not in the patient sheet" in proc.stderr
    assert not (bad / "results").exists()


def test_bad_corrections_stop_before_any_job(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrections.tsv").write_text("cluster\tcell_type\n3\tCD8_effector\n")
    cfg = _config(bad, annotation={**yaml.safe_load((REPO / "config" / "config.yaml").read_text())["annotation"],
                                   "corrections": "corrections.tsv"})
    proc = _run(bad, cfg, "-n", check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert "corrections.tsv, line 2" in said and "'CD8_effector' is not a cell type" in said
    assert not (bad / "results").exists()


def test_test_sheets_describe_the_tiny_demo():
    """.test/config_sheets lists the tiny demo's own files (.test/config_demo), so real-data mode
    runs on what the demo run wrote."""
    from pinnacle.simulate import cohort_sheets

    cfg = _merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                 yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))["demo"]
    samples, patients = cohort_sheets(cfg["outdir"], n_patients=cfg["n_patients"],
                                      n_responders=cfg["n_responders"], seed=cfg["seed"])
    for name, expected in (("samples.tsv", samples), ("patients.tsv", patients)):
        shipped = pd.read_csv(REPO / ".test" / "config_sheets" / name, sep="\t", dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(shipped, expected.astype(str), check_dtype=False)


def test_shipped_sheets_describe_the_default_demo():
    """config/samples.tsv and patients.tsv are the demo's own sheets: a template that runs."""
    from pinnacle.simulate import cohort_sheets

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["demo"]
    samples, patients = cohort_sheets(cfg["outdir"], n_patients=cfg["n_patients"],
                                      n_responders=cfg["n_responders"], seed=cfg["seed"])
    shipped_s = pd.read_csv(REPO / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    shipped_p = pd.read_csv(REPO / "config" / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(shipped_s, samples.astype(str), check_dtype=False)
    pd.testing.assert_frame_equal(shipped_p, patients.astype(str), check_dtype=False)
