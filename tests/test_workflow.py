"""End-to-end: the workflow on a tiny simulated cohort in a temporary directory.

One demo-mode run (the cohort written by the workflow itself), then the same files analysed as
"real data" through the sample sheets, plus lint, dry-run, report, and bad-sheet behaviour.
"""

import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from pinnacle import compare
from pinnacle.config import merge as merge_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.slow




def _config(workdir: Path, *, test_config: str = "config_demo", **override) -> Path:
    """config/config.yaml with a .test/ overlay (the tiny demo, or real-data mode on sheets) and
    top-level overrides, written into the working directory."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = merge_config(cfg, yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))
    if test_config != "config_demo":
        cfg = merge_config(cfg, yaml.safe_load((REPO / ".test" / test_config / "config.yaml").read_text()))
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


def _run_and_kill(workdir: Path, configfile: Path, *args: str, timeout: float = 1200) -> list[str]:
    """Start a run in a process group of its own and SIGKILL the whole group (snakemake and every
    job) once a job has finished and a qc_sample job is half-way (its figure written, its last
    output not yet): an interrupted run whose outputs are partly on disk. Returns the samples
    whose qc_sample was cut short."""
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                       "--configfile", str(configfile), *args]
    log = workdir / "killed_run.log"
    res = workdir / "results"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
                                env=dict(os.environ, PYTHONHASHSEED="0"))
    half: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            half = [p.stem for p in (res / "figures" / "qc").glob("*.png")  # not a writer's .partial.*
                    if not p.name.startswith(".") and not (res / "rna" / p.stem / "prot.h5ad").exists()]
            if half and "Finished jobid" in log.read_text(errors="ignore"):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{log.read_text()[-4000:]}"
    assert half, f"no qc_sample job caught half-way:\n{log.read_text()[-4000:]}"
    return half


def _digests(root: Path, patterns) -> dict[str, str]:
    """sha256 of every file under ``root`` matching one of the glob ``patterns``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in patterns for p in sorted(root.glob(pattern)) if p.is_file()}


def _how_much(a: Path, b: Path) -> str:
    """How two versions of a table differ: lines, and the largest difference of a number."""
    if a.suffix == ".h5ad":
        return "h5ad bytes differ"
    read = (lambda p: gzip.open(p, "rt").read()) if a.suffix == ".gz" else (lambda p: p.read_text())
    la, lb = read(a).splitlines(), read(b).splitlines()
    what = f"{sum(x != y for x, y in zip(la, lb)) + abs(len(la) - len(lb))} of {max(len(la), len(lb))} lines"
    ta, tb = pd.read_csv(a, sep="\t"), pd.read_csv(b, sep="\t")
    if ta.shape == tb.shape and list(ta.columns) == list(tb.columns):
        num = ta.select_dtypes("number").columns.intersection(tb.select_dtypes("number").columns)
        if len(num):
            diff = (ta[num] - tb[num]).abs().max().max()
            what += f", max |difference| {diff:.3g}"
    return what


def _differing_files(clean: Path, other: Path, patterns) -> tuple[int, list[str]]:
    """The files matching ``patterns`` in two working directories: how many, and those missing
    from one or not byte-identical, each with how much they differ."""
    da, db = _digests(clean, patterns), _digests(other, patterns)
    differ = [f"{f}: only in {'the clean run' if f in da else 'the other run'}" for f in sorted(set(da) ^ set(db))]
    differ += [f"{f}: {_how_much(clean / f, other / f)}" for f in sorted(set(da) & set(db)) if da[f] != db[f]]
    return len(set(da) | set(db)), differ


def _differing_arrays(a: ad.AnnData, b: ad.AnnData, obsm=(), obs=()) -> list[str]:
    """The obsm arrays and obs columns that are not identical in two AnnData, with how much."""
    if list(a.obs_names) != list(b.obs_names):
        return ["obs_names"]
    differ = []
    for key in obsm:
        x, y = np.asarray(a.obsm[key]), np.asarray(b.obsm[key])
        if not np.array_equal(x, y, equal_nan=True):
            differ.append(f"obsm[{key}]: max |difference| {np.nanmax(np.abs(x - y)):.3g}")
    for key in obs:
        x, y = a.obs[key].astype(str).to_numpy(), b.obs[key].astype(str).to_numpy()
        if (x != y).any():
            differ.append(f"obs[{key}]: {(x != y).sum()} of {len(x)} cells")
    return differ


# What the demo run and the sheets run (.test/config_sheets) compute from the same files with
# the same settings (the sheets give the demo's doublet rate), in tables, h5ad and figures:
# per-sample QC, HVG statistics and the cohort's genes and cells, CITE-seq DSB per sample, scDNA
# copy number per sample, clones per patient and the cohort's clone tables, and bulk proteomics
# read in. The rest differs by design: Harmony clusters, a CellTypist model and a correction
# label, one design.
SHARED_OUTPUTS = (
    "results/rna/*/cells.tsv.gz", "results/rna/*/qc.tsv", "results/rna/*/rna.h5ad", "results/rna/*/prot.h5ad",
    "results/rna/*/hvg_stats.tsv", "results/rna/qc_summary.tsv",
    "results/cohort/hvg.tsv", "results/cohort/rna.h5ad", "results/cohort/cells.tsv.gz",
    "results/cohort/rna_counts.h5ad",
    "results/protein/*/tag_qc.tsv", "results/protein/*/prot_norm.h5ad",
    "results/dna/*/cell_qc.tsv", "results/dna/*/copy_number.h5ad",
    "results/cnv/*/clones.h5ad", "results/cnv/*/consensus.tsv", "results/cnv/*/tree.tsv",
    "results/cnv/*/clone_fractions.tsv", "results/cnv/*/status.tsv",
    "results/tables/cnv_cell_qc.tsv", "results/tables/clone_fractions.tsv", "results/tables/clone_trees.tsv",
    "results/tables/cnv_clone_status.tsv", "results/tables/clone_dynamics_shares.tsv",
    "results/proteomics/proteomics.h5ad",
    "results/figures/qc/*.png", "results/figures/qc_summary.png", "results/figures/protein/*_tag_qc.png",
    "results/figures/cnv/*_heatmap.png", "results/figures/cnv/*_consensus.png", "results/figures/clone_fractions.png",
)


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
    """The demo's own files, given through the sheets, go through the non-demo path. The run is
    killed (SIGKILL to its process group) mid-way and resumed with --rerun-incomplete (issue 19
    item 4), and what it shares with the clean demo run is identical (items 4 and 5)."""
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
    # Killed once a job has finished and a qc_sample job has written part of its outputs; the
    # killed run's lock is lifted and the resumed run reruns the incomplete jobs (--rerun-incomplete
    # is also in profiles/default) and finishes.
    started = time.perf_counter()
    half = _run_and_kill(real, cfg, "--cores", "2")
    killed_at = time.perf_counter() - started
    assert not (real / "results" / "truth_check.tsv").exists()
    _run(real, cfg, "--unlock")
    resumed = time.perf_counter()
    _run(real, cfg, "--cores", "2", "--rerun-incomplete")
    timings = {"killed after": killed_at, "unlock": resumed - started - killed_at,
               "resume": time.perf_counter() - resumed}
    # no temporary file of a killed writer is left (pinnacle.writers.atomic_path)
    assert not sorted((real / "results").rglob(".partial.*")), sorted((real / "results").rglob(".partial.*"))
    # The resumed run's tables equal the clean demo run's wherever the two configurations agree,
    # to the byte; and the stages both run on the same cells (PCA, Harmony, the unintegrated
    # UMAP) give the same embeddings in the two runs' integrate jobs.
    compared = time.perf_counter()
    n_files, differ = _differing_files(workdir, real, SHARED_OUTPUTS)
    assert n_files >= 70 and not differ, "\n".join(differ)
    demo_int = ad.read_h5ad(workdir / "results" / "cohort" / "integrated.h5ad", backed="r")
    real_int = ad.read_h5ad(real / "results" / "cohort" / "integrated.h5ad", backed="r")
    differ = _differing_arrays(demo_int, real_int, obsm=("X_pca", "X_harmony", "X_umap_pca"), obs=("sample_id",))
    assert not differ, differ
    timings["comparison"] = time.perf_counter() - compared
    sys.stderr.write(f"\nkilled with {', '.join(half)} half-way; {n_files} files identical to the clean run; "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + "\n")
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


def test_neighbours_umap_and_leiden_reproduce(demo_run):
    """Issue 19 item 5 where one run cannot show it: the demo run's integrated embedding (scVI),
    clustered again in this process with the run's seed, gives the integrate job's neighbour
    graph, UMAP and Leiden clusters exactly (scVI itself: docs/reliability.md)."""
    from pinnacle import rna_integrate as ri

    workdir, cfg = demo_run
    settings = yaml.safe_load(cfg.read_text())
    job = ad.read_h5ad(workdir / "results" / "cohort" / "integrated.h5ad", backed="r")
    started = time.perf_counter()
    rep = job.uns["integration"]["embedding"]
    again = ad.AnnData(obs=pd.DataFrame(index=job.obs_names.copy()), obsm={rep: np.asarray(job.obsm[rep])})
    resolutions = settings["integration"]["leiden_resolutions"]
    ri.cluster(again, use_rep=rep, resolutions=resolutions, n_neighbors=settings["integration"]["n_neighbors"],
               random_state=settings["seed"])
    differ = _differing_arrays(job, again, obsm=("X_umap",), obs=[f"leiden_{r}" for r in resolutions])
    graph = abs(job.obsp["connectivities"] - again.obsp["connectivities"])
    if graph.nnz:
        differ.append(f"obsp[connectivities]: {graph.nnz} entries, max |difference| {graph.max():.3g}")
    assert not differ, differ
    sys.stderr.write(f"\n{rep} clustered again: identical, {time.perf_counter() - started:.0f} s\n")


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
    from pinnacle.io.cohort_layout import cohort_sheets

    cfg = merge_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                 yaml.safe_load((REPO / ".test" / "config_demo" / "config.yaml").read_text()))["demo"]
    samples, patients = cohort_sheets(cfg["outdir"], n_patients=cfg["n_patients"],
                                      n_responders=cfg["n_responders"], seed=cfg["seed"])
    for name, expected in (("samples.tsv", samples), ("patients.tsv", patients)):
        shipped = pd.read_csv(REPO / ".test" / "config_sheets" / name, sep="\t", dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(shipped, expected.astype(str), check_dtype=False)


def test_shipped_sheets_describe_the_default_demo():
    """config/samples.tsv and patients.tsv are the demo's own sheets: a template that runs."""
    from pinnacle.io.cohort_layout import cohort_sheets

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["demo"]
    samples, patients = cohort_sheets(cfg["outdir"], n_patients=cfg["n_patients"],
                                      n_responders=cfg["n_responders"], seed=cfg["seed"])
    shipped_s = pd.read_csv(REPO / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    shipped_p = pd.read_csv(REPO / "config" / "patients.tsv", sep="\t", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(shipped_s, samples.astype(str), check_dtype=False)
    pd.testing.assert_frame_equal(shipped_p, patients.astype(str), check_dtype=False)


def test_report_has_one_captioned_entry_per_declared_result(demo_run):
    """Every `report(...)` output the rules declare and the run made is one entry of the HTML
    report, with its caption rendered (what a reader sees under the figure or table)."""
    import json

    workdir, cfg = demo_run
    html_path = workdir / "results" / "report.html"
    if not html_path.exists():
        _run(workdir, cfg, "--report", "results/report.html")
    html = html_path.read_text(errors="ignore")
    entries = json.loads(re.search(r"var results = (\{.*?\});\s*</script>", html, re.S).group(1))
    declared = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for path, caption in re.findall(r'report\(\s*"([^"]+)"\s*,\s*caption="([^"]+)"', smk.read_text()):
            assert (smk.parent / caption).resolve().is_file(), f"{smk.name}: caption {caption} is missing"
            declared[path] = re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$")
    assert len(declared) >= 40, sorted(declared)
    made = {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if p.is_file()}
    expected = {f for f in made for pattern in declared.values() if pattern.match(f)}
    assert "results/tables/run_summary.tsv" in expected and "results/figures/umap_cell_types.png" in expected
    assert set(entries) == expected, (f"declared and made, not in the report: {sorted(expected - set(entries))}; "
                                      f"in the report, not declared: {sorted(set(entries) - expected)}")
    uncaptioned = [path for path, entry in entries.items()
                   if len(re.sub(r"<[^>]+>|\s+", " ", entry.get("caption") or "").strip()) < 40]
    assert not uncaptioned, f"entries without a caption: {uncaptioned}"
    for path, entry in entries.items():
        assert entry["labels"], f"{path}: no labels (the report's table of results shows none)"
