# The only place that loads and validates config and sheets; rules stay declarative.
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from pinnacle.errors import InputError  # noqa: E402
from pinnacle import sheets  # noqa: E402
from pinnacle import compare as _compare  # noqa: E402
from pinnacle.simulate import layout as truth_layout  # noqa: E402  (the truth/ folder's file names)

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

DEMO = config["demo"]["enabled"]
if DEMO and config["qc"]["doublets"]["expected_rate"] is None:
    # The demo's loading is known: a ~6,000-cell run subsampled, doublet_rate of its droplets.
    config["qc"]["doublets"]["expected_rate"] = config["demo"]["doublet_rate"]
RESPONSE = config["response"]


def _load_sheets():
    """Sample and patient sheets, validated and cross-checked (demo: built from its settings)."""
    if DEMO:
        from pinnacle.simulate import cohort_sheets

        demo = config["demo"]
        samples, patients = cohort_sheets(
            demo["outdir"], n_patients=demo["n_patients"], n_responders=demo["n_responders"],
            seed=demo["seed"],
        )
        samples = samples.astype(str).replace("nan", "")
        patients = patients.astype(str)
        sample_path, patient_path = "demo cohort samples", "demo cohort patients"
        pending = [p for c in sheets.MODALITY_COLUMNS for p in samples[c] if p]
    else:
        sample_path, patient_path = config["samples"], config["patients"]
        samples = sheets.read_sheet(sample_path, kind="samples", required=("sample_id", "patient_id", "timepoint"))
        patients = sheets.read_sheet(patient_path, kind="patients", required=("patient_id",))
        pending = []
    for i, row in samples.iterrows():
        try:
            validate(row.to_frame().T, schema="../schemas/samples.schema.yaml")
        except Exception as err:
            raise InputError(f"{sample_path}, line {i + 2}", str(err).splitlines()[0],
                             "see config/README.md, section 'Sample sheet'.") from None
    validate(patients, schema="../schemas/patients.schema.yaml")
    patients = sheets.check_patients(patients, response_column=RESPONSE["column"],
                                     response_levels=RESPONSE["levels"], path=patient_path)
    samples = sheets.check_samples(samples, patients, timepoints=config["timepoints"],
                                   pending=pending, path=sample_path)
    return sheets.annotate_samples(samples, patients, response_column=RESPONSE["column"]), patients


samples, patients = _load_sheets()
RNA_SAMPLES = [s for s in samples.index if samples.loc[s, "rna"]]
DNA_SAMPLES = [s for s in samples.index if samples.loc[s, "dna"]]

if DEMO:
    TRUTH = truth_layout.truth_dir(config["demo"]["outdir"])
    PROTEOMICS = {"path": f"{config['demo']['outdir']}/proteomics/proteinGroups.txt",
                  "format": "maxquant", "quantity": "LFQ intensity"}
else:
    TRUTH = config.get("truth", "")
    PROTEOMICS = config["proteomics"]
    if PROTEOMICS["path"] and not Path(PROTEOMICS["path"]).exists():
        raise InputError(f"config.yaml, key proteomics.path",
                         f"the file '{PROTEOMICS['path']}' does not exist.",
                         "correct the path or set it to \"\" when there is no proteomics.")
    if TRUTH and not Path(truth_layout.truth_file(TRUTH, truth_layout.CELLS)).exists():
        raise InputError("config.yaml, key truth", f"'{TRUTH}' is not a simulated cohort's truth folder "
                         f"(no {truth_layout.CELLS} in it).", "point it at <cohort>/truth or set it to \"\".")


def twin_path(sample):
    """The simulator's interferon-off twin of a resection sample (same droplets, no IFN programme)."""
    return truth_layout.twin_path(TRUTH, sample)


# resection samples with an interferon-off twin: the demo when demo.interferon_twin is on, or a
# simulated cohort's truth folder that holds them
if DEMO:
    TWIN_SAMPLES = [s for s in RNA_SAMPLES if config["demo"]["interferon_twin"]
                    and samples.loc[s, "timepoint"] == config["timepoints"][-1]]
else:
    TWIN_SAMPLES = [s for s in RNA_SAMPLES if TRUTH and Path(twin_path(s)).exists()]


def resource_path(path):
    """A config path to a curated resource: as given if it exists where snakemake runs, else
    inside the pipeline's own folder (resources/ ships with the workflow)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    shipped = Path(workflow.basedir) / p
    if shipped.exists():
        return str(shipped)
    raise InputError(f"config.yaml, path '{path}'", "the file exists neither in the run directory nor in "
                     f"the pipeline folder ({workflow.basedir}).", "correct the path.")


config["annotation"]["markers"] = resource_path(config["annotation"]["markers"])
config["annotation"]["protein_markers"] = resource_path(config["annotation"]["protein_markers"])
config["annotation"]["states"] = resource_path(config["annotation"]["states"])
for _key in ("celltypist_model", "scanvi_reference"):
    if config["annotation"][_key] and not Path(config["annotation"][_key]).exists():
        raise InputError(f"config.yaml, key annotation.{_key}", f"'{config['annotation'][_key]}' does not exist.",
                         "give the path of the file you trained or received, or \"\" to switch the method off.")


if config["annotation"]["corrections"]:
    # checked now, before any job: format, one of cluster/cell_id per row, labels of the marker file
    from pinnacle.annotate import load_corrections, load_markers  # noqa: E402

    load_corrections(config["annotation"]["corrections"], load_markers(config["annotation"]["markers"]))


def annotation_inputs(wildcards):
    """The cohort, the marker file, and the optional CellTypist model / scANVI reference and
    the analyst's corrections."""
    inputs = {"h5ad": "results/cohort/integrated.h5ad", "markers": config["annotation"]["markers"],
              "states": config["annotation"]["states"]}
    for key in ("celltypist_model", "scanvi_reference", "corrections"):
        if config["annotation"][key]:
            inputs[key] = config["annotation"][key]
    return inputs

# Curated gene sets whose genes the cohort object always keeps (markers, signatures).
GENE_RESOURCES = [str(p) for p in (Path(workflow.basedir) / "resources").glob("*.yaml")]

COMPARE = config["compare"]
if DEMO and not COMPARE["cell_types"]:
    COMPARE["cell_types"] = config["demo"]["compare_cell_types"]
COMPARE["signatures"] = resource_path(COMPARE["signatures"])
for _res in (COMPARE["signatures"], config["annotation"]["states"]):
    if _res not in GENE_RESOURCES:
        GENE_RESOURCES.append(_res)
DESIGNS = _compare.design_names(COMPARE["designs"], RESPONSE["levels"])
for _d in DESIGNS:
    if _d.startswith("on_treatment_") and _d[len("on_treatment_"):] not in RESPONSE["levels"]:
        raise InputError("config.yaml, key compare.designs", f"'{_d}' names no response level.",
                         f"use on_treatment_by_response or on_treatment_<one of {RESPONSE['levels']}>.")
_missing_cov = [c for c in COMPARE["covariates"] if c not in samples.columns]
if _missing_cov:
    raise InputError("config.yaml, key compare.covariates", f"{_missing_cov} are not columns of the patient sheet.",
                     f"use columns of {patients.columns.tolist()} or remove them.")


# Per-type DE outputs are named by compare.cell_type_file_name (any label -> a safe file name).
CELL_TYPE_FILE_NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"


def de_cell_types():
    """The cell types whose DE is tested, one job per design and type: compare.cell_types (or the
    demo's list) when given; else every type in the pseudobulks, known only once the checkpoint
    pseudobulk_cohort has written its sizes table."""
    if COMPARE["cell_types"]:
        return _compare.de_cell_types([], COMPARE["cell_types"])
    sizes = checkpoints.pseudobulk_cohort.get().output.sizes
    observed = pd.read_csv(sizes, sep="\t", dtype=str, keep_default_na=False, usecols=["cell_type"])
    return _compare.de_cell_types(observed["cell_type"])


# What a per-type DE job depends on (params are a rerun trigger: a change elsewhere in compare,
# or another type added to compare.cell_types, must not refit every type).
DE_SETTINGS = {k: COMPARE[k] for k in ("covariates", "min_cells", "min_counts", "min_patients", "fdr", "shrink_lfc")}


def de_listed_cell_type(wildcards):
    """The listed cell type (compare.cell_types) a per-type DE job's file name stands for, as a
    list: empty when the types are not listed (the job finds its type in the pseudobulks)."""
    return [t for t in COMPARE["cell_types"] if _compare.cell_type_file_name(t) == wildcards.cell_type]


def de_cell_type_parts(wildcards):
    """One design's per-type DE tables and status rows, in the order of de_cell_types()."""
    names = _compare.cell_type_file_names(de_cell_types()).values()
    return {"tables": [f"results/compare/de/{wildcards.design}/{n}.tsv" for n in names],
            "status": [f"results/compare/de/{wildcards.design}/{n}.status.tsv" for n in names]}


def compare_meta():
    """Sample -> patient, timepoint, response and covariates, for the comparison adapters."""
    cols = ["patient_id", "timepoint", "response", *COMPARE["covariates"]]
    return samples[cols].rename_axis("sample_id").reset_index().astype(str).to_dict("records")


wildcard_constraints:
    sample="|".join(map(str, samples.index)),


def sample_meta(sample):
    """Per-sample metadata handed to adapters via params (never read config inside a script)."""
    row = samples.loc[sample]
    return {"sample_id": sample, "patient_id": row["patient_id"], "timepoint": row["timepoint"],
            "response": row["response"]}


def get_rna(wildcards):
    return samples.loc[wildcards.sample, "rna"]


def get_rna_raw(wildcards):
    raw = samples.loc[wildcards.sample, "rna_raw"]
    return [raw] if raw else []


def get_dna(wildcards):
    return samples.loc[wildcards.sample, "dna"]


def get_final_output():
    out = ["results/cohort/rna_counts.h5ad", "results/rna/qc_summary.tsv",
           "results/figures/qc_summary.png", "results/cohort/integrated.h5ad",
           "results/figures/umap_integration.png", "results/cohort/annotated.h5ad",
           "results/tables/integration_metrics.tsv"]
    out += expand("results/dna/{sample}/bins.h5ad", sample=DNA_SAMPLES)
    if PROTEOMICS["path"]:
        out += ["results/proteomics/proteomics.h5ad", "results/tables/proteomics_tests.tsv"]
    out.append("results/tables/protein_evidence.tsv")
    out += ["results/tables/composition_tests.tsv", "results/tables/signature_tests.tsv",
            "results/tables/signature_enrichment.tsv"]
    out += expand("results/tables/de/{design}.tsv", design=DESIGNS)
    if TRUTH:
        out.append("results/truth_check.tsv")
    return out


def truth_check_inputs(wildcards):
    inputs = {
        "cells": expand("results/rna/{sample}/cells.tsv.gz", sample=RNA_SAMPLES),
        "cohort_cells": "results/cohort/cells.tsv.gz",
        "qc_summary": "results/rna/qc_summary.tsv",
        "integrated": "results/cohort/integrated.h5ad",
        "labels": "results/cohort/cell_labels.tsv.gz",
        "truth_cells": truth_layout.truth_file(TRUTH, truth_layout.CELLS),
        "dna": expand("results/dna/{sample}/bins.h5ad", sample=DNA_SAMPLES),
        "composition": "results/tables/composition_tests.tsv",
        "protein_evidence": "results/cohort/protein_evidence.tsv.gz",
        "de": expand("results/tables/de/{design}.tsv", design=DESIGNS),
        "enrichment": "results/tables/signature_enrichment.tsv",
    }
    if TWIN_SAMPLES:
        inputs["label_stability"] = "results/truth/label_stability.tsv"
    if PROTEOMICS["path"]:
        inputs["proteomics"] = "results/proteomics/proteomics.h5ad"
        inputs["proteomics_tests"] = "results/tables/proteomics_tests.tsv"
    return inputs
