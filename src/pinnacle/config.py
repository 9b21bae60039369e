"""One run's settings: the validated config, the sheets and every check that spans keys or files.

``common.smk`` validates the config against its schema and calls :func:`load`, which returns a
frozen :class:`Run`; the rules read ``RUN`` and never edit ``config``. Everything that can stop a
run for a bad setting is here, before any job: sample/patient sheets (schema per row, then
:mod:`pinnacle.sheets`), paths of curated resources and models, the analyst's corrections,
designs, covariates, cluster resolution. Each check raises :class:`InputError` naming the key,
the value and the fix; ``tests/test_config.py`` holds one test per message.

The config given to :func:`load` is not modified: the effective settings (demo defaults, resource
paths resolved against the pipeline folder) are a deep copy in ``Run.config``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pinnacle import sheets
from pinnacle.errors import InputError
from pinnacle.io.cohort_layout import CELLS, cohort_sheets, truth_dir, twin_path

__all__ = ["Run", "load", "merge", "resource_path", "RESOURCE_KEYS"]

#: config keys that name a curated resource shipped in ``resources/`` (resolved by resource_path)
RESOURCE_KEYS = (("annotation", "markers"), ("annotation", "protein_markers"), ("annotation", "states"),
                 ("compare", "signatures"), ("cnv", "bin_reference"), ("cnv", "gene_table"))
#: config keys that name an optional file the analyst provides ("" = off)
OPTIONAL_FILE_KEYS = (("annotation", "celltypist_model"), ("annotation", "scanvi_reference"))


@dataclass(frozen=True)
class Run:
    """What the rules need, computed once: read it, never edit it.

    Attributes
    ----------
    config
        The effective config: a deep copy of the validated one with demo defaults and resolved
        resource paths.
    basedir
        The pipeline folder.
    demo
        The run simulates its own cohort.
    samples, patients
        The checked sheets; ``samples`` is indexed by sample id and carries the patient's
        response.
    truth
        The simulated cohort's truth folder ("" for real data).
    proteomics
        The ``proteomics`` config section.
    designs
        Names of the comparison designs configured (``compare.designs``, expanded per response level).
    gene_resources
        Curated YAML files whose genes the cohort object always keeps.
    rna_samples, dna_samples
        Samples with an scRNA / scDNA file.
    dna_patients, rna_patients
        Patients with at least one scDNA / scRNA sample (clones and malignant calls are per patient).
    twin_samples
        Samples with an interferon-off twin in the truth folder.
    """

    config: Mapping
    basedir: Path
    demo: bool
    samples: pd.DataFrame
    patients: pd.DataFrame
    truth: str
    proteomics: Mapping
    designs: tuple[str, ...]
    gene_resources: tuple[str, ...]
    rna_samples: tuple[str, ...] = field(default=())
    dna_samples: tuple[str, ...] = field(default=())
    dna_patients: tuple[str, ...] = field(default=())
    rna_patients: tuple[str, ...] = field(default=())
    twin_samples: tuple[str, ...] = field(default=())

    def twin_path(self, sample: str) -> str:
        """The simulator's interferon-off twin of a resection sample.

        Parameters
        ----------
        sample
            The resection sample's id.
        """
        return twin_path(self.truth, sample)

    def sample_meta(self, sample: str) -> dict:
        """Per-sample metadata for adapters (never read config inside a script).

        Parameters
        ----------
        sample
            A sample id of :attr:`samples`.
        """
        row = self.samples.loc[sample]
        return {"sample_id": sample, "patient_id": row["patient_id"], "timepoint": row["timepoint"],
                "response": row["response"]}

    def patient_samples(self, patient: str, modality: str) -> list[str]:
        """The samples of a patient with a file of one modality, in sheet order.

        Parameters
        ----------
        patient
            A patient id of :attr:`rna_patients` / :attr:`dna_patients`.
        modality
            ``"rna"`` or ``"dna"``.
        """
        samples = {"rna": self.rna_samples, "dna": self.dna_samples}[modality]
        return [s for s in samples if self.samples.loc[s, "patient_id"] == patient]

    def compare_meta(self) -> list[dict]:
        """Sample -> patient, timepoint, response and covariates, for the comparison adapters."""
        cols = ["patient_id", "timepoint", "response", *self.config["compare"]["covariates"]]
        return self.samples[cols].rename_axis("sample_id").reset_index().astype(str).to_dict("records")


def resource_path(path: str, basedir: str | Path, *, key: str) -> str:
    """A config path to a curated resource: as given if it exists where snakemake runs, else
    inside the pipeline's own folder (``resources/`` ships with the workflow).

    Parameters
    ----------
    path
        The value of the config key.
    basedir
        The pipeline folder (``workflow.basedir``).
    key
        The config key, named in the error.
    """
    p = Path(path)
    if p.is_absolute() or p.exists():
        if not p.is_file():
            raise InputError(f"config.yaml, key {key}", f"'{path}' is not a file.", "give the path of the file.")
        return str(p)
    shipped = Path(basedir) / p
    if shipped.is_file():
        return str(shipped)
    raise InputError(f"config.yaml, key {key}", f"'{path}' exists neither in the run directory nor in the "
                     f"pipeline folder ({basedir}).", "correct the path.")


def _schema_validator(path: Path):
    import jsonschema

    schema = yaml.safe_load(path.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _validate_rows(df: pd.DataFrame, schema: Path, where: str, section: str) -> None:
    validator = _schema_validator(schema)
    for i, rec in enumerate(df.to_dict("records")):
        err = next(iter(sorted(validator.iter_errors(rec), key=lambda e: list(e.path))), None)
        if err is not None:
            col = ".".join(map(str, err.path)) or "row"
            raise InputError(f"{where}, line {i + 2}, column {col}", err.message,
                             f"see config/README.md, section '{section}'.")


def merge(base: Mapping, over: Mapping) -> dict:
    """``over`` laid on ``base`` key by key at every depth, as Snakemake merges a
    ``--configfile`` into the default config (tests and tools build run configs with it).

    Parameters
    ----------
    base
        The default config (``config/config.yaml``).
    over
        The overlay; its values win, nested mappings are merged.
    """
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def _demo_sheets(cfg: Mapping) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    demo = cfg["demo"]
    samples, patients = cohort_sheets(demo["outdir"], n_patients=demo["n_patients"],
                                      n_responders=demo["n_responders"], seed=demo["seed"])
    samples = samples.astype(str).replace("nan", "")
    patients = patients.astype(str)
    pending = [p for c in sheets.MODALITY_COLUMNS for p in samples[c] if p]
    return samples, patients, pending


def _load_sheets(cfg: Mapping, schemas: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample and patient sheets, validated and cross-checked (demo: built from its settings)."""
    if cfg["demo"]["enabled"]:
        samples, patients, pending = _demo_sheets(cfg)
        sample_path, patient_path = "demo cohort samples", "demo cohort patients"
    else:
        sample_path, patient_path = cfg["samples"], cfg["patients"]
        samples = sheets.read_sheet(sample_path, kind="samples", required=("sample_id", "patient_id", "timepoint"))
        patients = sheets.read_sheet(patient_path, kind="patients", required=("patient_id",))
        pending = []
    _validate_rows(samples, schemas / "samples.schema.yaml", str(sample_path), "Sample sheet")
    _validate_rows(patients, schemas / "patients.schema.yaml", str(patient_path), "Patient sheet")
    response = cfg["response"]
    patients = sheets.check_patients(patients, response_column=response["column"],
                                     response_levels=response["levels"], path=patient_path,
                                     allow_missing=response["allow_missing"])
    samples = sheets.check_samples(samples, patients, timepoints=cfg["timepoints"], pending=pending,
                                   path=sample_path)
    return sheets.annotate_samples(samples, patients, response_column=response["column"]), patients


def _apply_demo_defaults(cfg: dict) -> None:
    if not cfg["demo"]["enabled"]:
        return
    if cfg["qc"]["doublets"]["expected_rate"] is None:
        # the demo's loading is known: a ~6,000-cell run subsampled, doublet_rate of its droplets
        cfg["qc"]["doublets"]["expected_rate"] = cfg["demo"]["doublet_rate"]
    if not cfg["compare"]["cell_types"]:
        cfg["compare"]["cell_types"] = list(cfg["demo"]["compare_cell_types"])
    outdir = cfg["demo"]["outdir"]
    cfg["truth"] = truth_dir(outdir)
    cfg["proteomics"] = {"path": f"{outdir}/proteomics/proteinGroups.txt", "format": "maxquant",
                         "quantity": "LFQ intensity"}


def _check_inputs(cfg: Mapping) -> None:
    """Proteomics table and truth folder of a real-data run exist."""
    if cfg["demo"]["enabled"]:
        return
    path = cfg["proteomics"]["path"]
    if path and not Path(path).is_file():
        raise InputError("config.yaml, key proteomics.path", f"the file '{path}' does not exist.",
                         "correct the path or set it to \"\" when there is no proteomics.")
    truth = cfg.get("truth", "")
    if truth and not Path(truth, CELLS).is_file():
        raise InputError("config.yaml, key truth", f"'{truth}' is not a simulated cohort's truth folder "
                         f"(no {CELLS} in it).", "point it at <cohort>/truth or set it to \"\".")


def _resolve_resources(cfg: dict, basedir: Path) -> None:
    for section, key in RESOURCE_KEYS:
        cfg[section][key] = resource_path(cfg[section][key], basedir, key=f"{section}.{key}")
    for section, key in OPTIONAL_FILE_KEYS:
        value = cfg[section][key]
        if value and not Path(value).exists():
            raise InputError(f"config.yaml, key {section}.{key}", f"'{value}' does not exist.",
                             "give the path of the file you trained or received, or \"\" to switch the method off.")


def _check_annotation(cfg: Mapping) -> None:
    """The annotation's clusters exist, and the analyst's corrections name known labels."""
    ann, resolutions = cfg["annotation"], cfg["integration"]["leiden_resolutions"]
    if not any(float(r) == float(ann["cluster_resolution"]) for r in resolutions):
        raise InputError("config.yaml, key annotation.cluster_resolution",
                         f"{ann['cluster_resolution']} is not one of integration.leiden_resolutions {resolutions}.",
                         "use one of those resolutions or add it to integration.leiden_resolutions.")
    if ann["corrections"]:
        from pinnacle.annotate import load_corrections, load_markers

        load_corrections(ann["corrections"], load_markers(ann["markers"]))


def _check_cnv(cfg: Mapping) -> None:
    for key in ("gc_range", "ploidy_range"):
        lo, hi = cfg["cnv"][key]
        if not lo < hi:
            raise InputError(f"config.yaml, key cnv.{key}", f"the range [{lo}, {hi}] is empty or reversed.",
                             "give [low, high] with low < high.")


def _check_protein(cfg: Mapping, samples: pd.DataFrame) -> None:
    """CITE-seq settings: empty-droplet windows, the isotype pattern, DSB's raw matrices."""
    import re

    prot = cfg["protein"]
    for key in ("empty_adt_range", "empty_rna_range"):
        rng = prot[key]
        if rng is not None and not rng[0] <= rng[1]:
            raise InputError(f"config.yaml, key protein.{key}", f"the range {list(rng)} is reversed.",
                             "give [low, high] with low <= high (total counts of a droplet).")
    try:
        re.compile(prot["isotype_pattern"])
    except re.error as e:
        raise InputError("config.yaml, key protein.isotype_pattern",
                         f"'{prot['isotype_pattern']}' is not a regular expression ({e}).",
                         "give a Python regular expression, e.g. \"isotype|control|igg\\d\".") from None
    if prot["normalisation"] == "dsb":
        no_raw = [str(s) for s in samples.index if samples.loc[s, "rna"] and not samples.loc[s, "rna_raw"]]
        if no_raw:
            raise InputError("config.yaml, key protein.normalisation",
                             f"dsb needs empty droplets, but samples {', '.join(no_raw)} have no rna_raw.",
                             "give their raw_feature_bc_matrix in the sample sheet's rna_raw column, or use "
                             "normalisation: auto (CLR for those samples).")


def _check_compare(cfg: Mapping, samples: pd.DataFrame, patients: pd.DataFrame) -> tuple[str, ...]:
    from pinnacle.compare import design_names

    levels = cfg["response"]["levels"]
    designs = design_names(cfg["compare"]["designs"], levels)
    for d in designs:
        if d.startswith("on_treatment_") and d[len("on_treatment_"):] not in levels:
            raise InputError("config.yaml, key compare.designs", f"'{d}' names no response level.",
                             f"use on_treatment_by_response or on_treatment_<one of {levels}>.")
    missing = [c for c in cfg["compare"]["covariates"] if c not in samples.columns]
    if missing:
        raise InputError("config.yaml, key compare.covariates", f"{missing} are not columns of the patient sheet.",
                         f"use columns of {patients.columns.tolist()} or remove them.")
    from pinnacle.compare import covariate_columns

    covariate_columns(samples, cfg["compare"]["covariates"])  # blanks, non-numbers: an error naming the patients
    return tuple(designs)


def load(config: Mapping, basedir: str | Path) -> Run:
    """Check a schema-validated config and its sheets, and return the run's settings.

    Parameters
    ----------
    config
        The config after ``snakemake.utils.validate(..., set_default=True)``; not modified.
    basedir
        The pipeline folder (holds ``resources/`` and ``workflow/schemas/``).

    Raises
    ------
    InputError
        For any setting, sheet row or file that would make a job fail or mislead; the message
        names the key or file, what is wrong and the fix.
    """
    basedir = Path(basedir)
    cfg = copy.deepcopy(dict(config))
    cfg.setdefault("truth", "")
    _apply_demo_defaults(cfg)
    _check_inputs(cfg)
    _resolve_resources(cfg, basedir)
    _check_annotation(cfg)
    _check_cnv(cfg)
    samples, patients = _load_sheets(cfg, basedir / "workflow" / "schemas")
    designs = _check_compare(cfg, samples, patients)
    _check_protein(cfg, samples)

    rna = tuple(s for s in samples.index if samples.loc[s, "rna"])
    dna = tuple(s for s in samples.index if samples.loc[s, "dna"])
    dna_patients = tuple(dict.fromkeys(samples.loc[list(dna), "patient_id"].astype(str)))
    rna_patients = tuple(dict.fromkeys(samples.loc[list(rna), "patient_id"].astype(str)))
    truth = cfg["truth"]
    last = cfg["timepoints"][-1]
    if cfg["demo"]["enabled"]:
        # resection samples get an interferon-off twin when demo.interferon_twin is on
        twins = tuple(s for s in rna if cfg["demo"]["interferon_twin"] and samples.loc[s, "timepoint"] == last)
    else:
        # a simulated cohort's truth folder may hold them
        twins = tuple(s for s in rna if truth and Path(twin_path(truth, s)).exists())
    # curated gene sets whose genes the cohort object always keeps (markers, signatures, states)
    resources = [str(p) for p in sorted((basedir / "resources").glob("*.yaml"))]
    for res in (cfg["compare"]["signatures"], cfg["annotation"]["states"]):
        if res not in resources:
            resources.append(res)
    return Run(config=cfg, basedir=basedir, demo=bool(cfg["demo"]["enabled"]), samples=samples,
               patients=patients, truth=truth, proteomics=cfg["proteomics"], designs=designs,
               gene_resources=tuple(resources), rna_samples=rna, dna_samples=dna, dna_patients=dna_patients,
               rna_patients=rna_patients,
               twin_samples=twins)
