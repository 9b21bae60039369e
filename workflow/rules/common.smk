# Validation, the run's settings, input getters and wildcard constraints; nothing else.
# Every check that spans keys or files is in src/pinnacle/config.py (pinnacle.config.load, one
# test per message in tests/test_config.py). Rules read RUN and CFG (its effective config) and
# never edit `config`.
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from pinnacle import compare as _compare  # noqa: E402
from pinnacle import config as _config  # noqa: E402
from pinnacle.io import cohort_layout as truth_layout  # noqa: E402  (the truth/ folder's file names)

validate(config, schema="../schemas/config.schema.yaml", set_default=True)
RUN = _config.load(config, workflow.basedir)
CFG = RUN.config


wildcard_constraints:
    sample="|".join(map(str, RUN.samples.index)),
    patient="|".join(map(str, RUN.samples["patient_id"].unique())),


# Per-type DE outputs are named by compare.cell_type_file_name (any label -> a safe file name).
CELL_TYPE_FILE_NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"


def get_rna(wildcards):
    return RUN.samples.loc[wildcards.sample, "rna"]


def get_rna_raw(wildcards):
    raw = RUN.samples.loc[wildcards.sample, "rna_raw"]
    return [raw] if raw else []


def qc_mem_mb(wildcards, attempt):
    """qc_sample's memory from its filtered matrix's size on disk (a 5,000-cell simulated sample,
    ~10 MB, peaked at 1.8 GiB; the peak grows with cells), doubled on each retry."""
    path = Path(get_rna(wildcards))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else \
        (path.stat().st_size if path.exists() else 0)
    return int(max(4000, 1500 + 120 * size / 2**20) * attempt)


def get_dna(wildcards):
    return RUN.samples.loc[wildcards.sample, "dna"]


def get_patient_copy_number(wildcards):
    """The per-sample copy-number objects of a patient's scDNA samples."""
    return [f"results/dna/{s}/copy_number.h5ad" for s in RUN.patient_samples(wildcards.patient, "dna")]


def cnv_rna_inputs(wildcards):
    """A patient's QC'd scRNA samples, the cell labels, the gene table and (with scDNA) its clone
    consensus profiles."""
    inputs = {"rna": [f"results/rna/{s}/rna.h5ad" for s in RUN.patient_samples(wildcards.patient, "rna")],
              "labels": "results/cohort/cell_labels.tsv.gz", "genes": CFG["cnv"]["gene_table"]}
    if wildcards.patient in RUN.dna_patients:
        inputs["consensus"] = f"results/cnv/{wildcards.patient}/consensus.tsv"
    return inputs


def compare_labels():
    """The labels the comparisons use: with cnv.infer, the epithelium split by the malignant call."""
    return "results/cohort/cell_labels_cnv.tsv.gz" if CFG["cnv"]["infer"]["enabled"] else \
        "results/cohort/cell_labels.tsv.gz"


def annotation_inputs(wildcards):
    """The cohort, the marker and state files, and the optional CellTypist model, scANVI
    reference and the analyst's corrections."""
    ann = CFG["annotation"]
    inputs = {"h5ad": "results/cohort/integrated.h5ad", "markers": ann["markers"], "states": ann["states"]}
    inputs |= {key: ann[key] for key in ("celltypist_model", "scanvi_reference", "corrections") if ann[key]}
    return inputs


def de_cell_types():
    """The cell types whose DE is tested, one job per design and type: compare.cell_types (or the
    demo's list) when given; else every type in the pseudobulks, known only once the checkpoint
    pseudobulk_cohort has written its sizes table."""
    if CFG["compare"]["cell_types"]:
        return _compare.de_cell_types([], CFG["compare"]["cell_types"])
    sizes = checkpoints.pseudobulk_cohort.get().output.sizes
    observed = pd.read_csv(sizes, sep="\t", dtype=str, keep_default_na=False, usecols=["cell_type"])
    return _compare.de_cell_types(observed["cell_type"])


# What a per-type DE job depends on (params are a rerun trigger: a change elsewhere in compare,
# or another type added to compare.cell_types, must not refit every type).
DE_SETTINGS = {k: CFG["compare"][k] for k in ("covariates", "min_cells", "min_counts", "min_patients", "fdr",
                                              "shrink_lfc")}


def de_listed_cell_type(wildcards):
    """The listed cell type (compare.cell_types) a per-type DE job's file name stands for, as a
    list: empty when the types are not listed (the job finds its type in the pseudobulks)."""
    return [t for t in CFG["compare"]["cell_types"] if _compare.cell_type_file_name(t) == wildcards.cell_type]


def de_cell_type_parts(wildcards):
    """One design's per-type DE tables and status rows, in the order of de_cell_types()."""
    names = _compare.cell_type_file_names(de_cell_types()).values()
    return {"tables": [f"results/compare/de/{wildcards.design}/{n}.tsv" for n in names],
            "status": [f"results/compare/de/{wildcards.design}/{n}.status.tsv" for n in names]}


def de_camera_parts(wildcards=None):
    """Every design's per-type camera tables (designs in order, types as de_cell_types())."""
    names = _compare.cell_type_file_names(de_cell_types()).values()
    return [f"results/compare/de/{design}/{n}.camera.tsv" for design in RUN.designs for n in names]


def protein_outputs():
    """The protein stage's targets: per-sample tag tables and figures, the cohort's protein
    modality, its table and figures, and the cohort MuData (totalVI's results inside when on)."""
    out = expand(["results/protein/{sample}/tag_qc.tsv", "results/figures/protein/{sample}_tag_qc.png"],
                 sample=RUN.rna_samples)
    out += ["results/tables/protein_normalisation.tsv", "results/figures/protein_lineage_tags.png",
            "results/figures/protein_umap.png", "results/cohort/cohort.h5mu"]
    return out if RUN.rna_samples else []


def get_final_output():
    out = ["results/cohort/rna_counts.h5ad", "results/rna/qc_summary.tsv",
           "results/figures/qc_summary.png", "results/cohort/integrated.h5ad",
           "results/figures/umap_integration.png", "results/cohort/annotated.h5ad",
           "results/tables/integration_metrics.tsv"]
    if RUN.dna_samples:
        out += ["results/tables/clone_fractions.tsv", "results/figures/clone_fractions.png"]
    if CFG["cnv"]["infer"]["enabled"]:
        out += ["results/tables/malignant_calls.tsv"]
    if RUN.proteomics["path"]:
        out += ["results/proteomics/proteomics.h5ad", "results/tables/proteomics_tests.tsv"]
    out.append("results/tables/protein_evidence.tsv")
    out += protein_outputs()
    out += ["results/tables/composition_tests.tsv", "results/tables/signature_tests.tsv",
            "results/tables/signature_enrichment.tsv"]
    out += expand("results/tables/de/{design}.tsv", design=RUN.designs)
    out += ["results/cohort/cellxgene.h5ad", "results/tables/run_summary.tsv"]
    if RUN.truth:
        out.append("results/truth_check.tsv")
    return out


def truth_check_inputs(wildcards):
    """Every file the truth check reads: the pipeline's results and the truth tables it checks
    them against (declared, so a changed truth reruns the check)."""
    truth = lambda name: truth_layout.truth_file(RUN.truth, name)  # noqa: E731
    inputs = {
        "cells": expand("results/rna/{sample}/cells.tsv.gz", sample=RUN.rna_samples),
        "cohort_cells": "results/cohort/cells.tsv.gz",
        "qc_summary": "results/rna/qc_summary.tsv",
        "integrated": "results/cohort/integrated.h5ad",
        "labels": "results/cohort/cell_labels.tsv.gz",
        "dna_qc": expand("results/dna/{sample}/cell_qc.tsv", sample=RUN.dna_samples),
        "clones": expand("results/cnv/{patient}/clones.h5ad", patient=RUN.dna_patients),
        "composition": "results/tables/composition_tests.tsv",
        "protein_evidence": "results/cohort/protein_evidence.tsv.gz",
        "protein_norm": expand("results/protein/{sample}/prot_norm.h5ad", sample=RUN.rna_samples),
        "de": expand("results/tables/de/{design}.tsv", design=RUN.designs),
        "enrichment": "results/tables/signature_enrichment.tsv",
        "truth_cells": truth(truth_layout.CELLS),
        "truth_samples": truth(truth_layout.SAMPLES),
        "truth_params": truth(truth_layout.PARAMS),
        "truth_effects": truth(truth_layout.EFFECTS),
    }
    if RUN.dna_samples:
        inputs["truth_dna_cells"] = truth(truth_layout.DNA_CELLS)
        inputs["truth_clones"] = truth(truth_layout.CLONES)
        inputs["clone_shares"] = "results/tables/clone_dynamics_shares.tsv"
    if CFG["cnv"]["infer"]["enabled"]:
        inputs["malignant_calls"] = "results/cohort/malignant_calls.tsv.gz"
    if RUN.twin_samples:
        inputs["label_stability"] = "results/truth/label_stability.tsv"
    if RUN.proteomics["path"]:
        inputs["proteomics"] = "results/proteomics/proteomics.h5ad"
        inputs["proteomics_tests"] = "results/tables/proteomics_tests.tsv"
        inputs["truth_proteins"] = truth(truth_layout.PROTEINS)
    return inputs
