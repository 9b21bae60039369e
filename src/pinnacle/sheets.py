"""Sample and patient sheets: read them and cross-check them before any job runs.

JSON-schema validation (snakemake.utils.validate) checks each row on its own; what a schema
cannot say (ids unique, every patient known and with a response, one sample per patient and
timepoint, files present and plausible: no empty file, no 10x directory without its three files)
is checked here so that a bad sheet stops the run at once, with the file, the line and the fix
in the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from pinnacle.errors import InputError
from pinnacle.io.rna import _MTX_FILES  # the file names a 10x matrix directory may hold

SAMPLE_COLUMNS = ("sample_id", "patient_id", "timepoint", "rna", "rna_raw", "dna")
MODALITY_COLUMNS = ("rna", "rna_raw", "dna")
#: file names an scRNA count file may end with (otherwise it must be a 10x matrix directory)
RNA_FILE_SUFFIXES = (".h5", ".h5ad")
OBS_META = ("sample_id", "patient_id", "timepoint", "response")


def _line(index: int) -> int:
    """Data row ``index`` (0-based) sits on this line of the file (line 1 is the header)."""
    return int(index) + 2


def read_sheet(path: str | Path, *, kind: str, required: Sequence[str]) -> pd.DataFrame:
    """Read a TSV sheet as strings (ids like ``007`` stay ids), stripped, empty cells as ''.

    Parameters
    ----------
    path
        The TSV file (``#`` lines are comments).
    kind
        ``"samples"`` or ``"patients"``: the config key and word used in messages.
    required
        Columns the sheet must have.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"the {kind} sheet does not exist.",
                         f"create it or point the config key '{kind}' at the right file.")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except pd.errors.ParserError as err:
        raise InputError(path, f"cannot be parsed as a tab-separated table ({err}).",
                         "separate columns with tabs, one row per line.") from err
    df.columns = [c.strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip())
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; found {list(df.columns)}.",
                         f"the {kind} sheet needs the columns {list(required)} (tab-separated).")
    if df.empty:
        raise InputError(path, f"the {kind} sheet has no rows.", "add one row per "
                         + ("sample." if kind == "samples" else "patient."))
    return df


def check_patients(patients: pd.DataFrame, *, response_column: str, response_levels: Sequence[str],
                   path: str | Path = "patients.tsv", allow_missing: bool = False) -> pd.DataFrame:
    """Unique patient ids, and a response from the configured levels for each (or a blank, when
    ``allow_missing``: a patient not yet assessed or not evaluable still counts in the designs
    that do not use the response).

    Parameters
    ----------
    patients
        :func:`read_sheet` output.
    response_column
        Column holding the response (``response.column``).
    response_levels
        Allowed responses (``response.levels``).
    path
        The sheet's name, for messages.
    allow_missing
        An empty response cell is allowed (``response.allow_missing``); any other value must still
        be a configured level.

    Returns
    -------
    The sheet indexed by ``patient_id`` (the column kept).
    """
    if response_column not in patients.columns:
        raise InputError(path, f"no column '{response_column}' (config response.column).",
                         "add the response column or set response.column to the column that holds it.")
    dup = patients["patient_id"].duplicated(keep="first")
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}, line {_line(i)}",
                         f"patient_id '{patients['patient_id'].iloc[i]}' appears twice.",
                         "keep one row per patient.")
    for i, (pid, resp) in enumerate(zip(patients["patient_id"], patients[response_column])):
        if resp == "" and allow_missing:
            continue
        if resp == "":
            raise InputError(f"{path}, line {_line(i)}",
                             f"patient '{pid}' has no response in column '{response_column}'.",
                             f"fill it with one of {list(response_levels)}, remove the patient, or set "
                             "response.allow_missing: true to keep patients without a response in the "
                             "designs that do not use it (on_treatment).")
        if resp not in response_levels:
            raise InputError(f"{path}, line {_line(i)}",
                             f"patient '{pid}' has response '{resp}', not one of {list(response_levels)}.",
                             "use a configured level or add it to response.levels in config.yaml.")
    return patients.set_index("patient_id", drop=False)


def _empty_file(path: Path) -> bool:
    return path.stat().st_size == 0


def check_input_path(full: Path, *, column: str, value: str, where: str) -> None:
    """What can be seen of an existing sample-sheet file without reading it.

    ``rna`` / ``rna_raw``: a non-empty ``.h5`` / ``.h5ad`` file, or a 10x matrix directory (or its
    ``matrix.mtx[.gz]``) holding non-empty ``matrix.mtx[.gz]``, ``features.tsv[.gz]`` (or legacy
    ``genes.tsv[.gz]``) and ``barcodes.tsv[.gz]``. ``dna``: a non-empty file.

    Parameters
    ----------
    full
        The path, resolved against the run directory; it exists.
    column
        The sheet column (``rna``, ``rna_raw``, ``dna``).
    value
        The path as written in the sheet, for the message.
    where
        The sheet line and sample, for the message.
    """
    where = f"{where}, column {column}"
    recopy = ("copy it again (an interrupted or failed copy leaves it empty), or leave the cell empty "
              "if the modality was not assayed.")
    if column == "dna":
        if full.is_dir():
            raise InputError(where, f"'{value}' is a directory, not an scDNA bin-count file.",
                             "give the bin-count table (.tsv / .csv, optionally .gz) or .h5ad of the sample.")
        if _empty_file(full):
            raise InputError(where, f"the scDNA file '{value}' is empty (0 bytes).", recopy)
        return
    kind = "filtered" if column == "rna" else "raw"
    if full.is_file() and full.name in _MTX_FILES["matrix"]:
        full = full.parent  # a matrix.mtx[.gz] stands for its directory
    if full.is_dir():
        missing, empty = [], []
        for key, names in _MTX_FILES.items():
            found = next((full / n for n in names if (full / n).is_file()), None)
            if found is None:
                missing.append(" or ".join(names[:2]) if key != "features" else "features.tsv[.gz] or genes.tsv[.gz]")
            elif _empty_file(found):
                empty.append(found.name)
        if missing:
            content = "is empty" if not any(full.iterdir()) else f"has no {'; no '.join(missing)}"
            raise InputError(where, f"the directory '{value}' {content}, so it is not a 10x matrix directory.",
                             f"give Cell Ranger's {kind}_feature_bc_matrix.h5, or the complete {kind}_feature_bc_"
                             "matrix/ directory (matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz).")
        if empty:
            raise InputError(where, f"the 10x matrix directory '{value}' holds empty file(s) {empty} (0 bytes).",
                             f"copy the {kind}_feature_bc_matrix/ directory again (an interrupted copy leaves "
                             "empty files).")
        return
    if not full.name.lower().endswith(RNA_FILE_SUFFIXES):
        raise InputError(where, f"'{value}' is neither a 10x .h5, an .h5ad nor a 10x matrix directory.",
                         f"give Cell Ranger's {kind}_feature_bc_matrix.h5 or {kind}_feature_bc_matrix/ "
                         "directory, or an .h5ad with raw counts.")
    if _empty_file(full):
        raise InputError(where, f"the scRNA file '{value}' is empty (0 bytes).", recopy)


def check_samples(samples: pd.DataFrame, patients: pd.DataFrame, *, timepoints: Sequence[str],
                  base_dir: str | Path = ".", pending: Iterable[str | Path] = (),
                  path: str | Path = "samples.tsv") -> pd.DataFrame:
    """Cross-check the sample sheet against the patients and the disk.

    Every file must exist and pass :func:`check_input_path` (no empty file, no incomplete 10x
    directory). ``pending`` lists files that a rule of this run will write (the demo cohort), so
    they need not exist yet. Paths are resolved against ``base_dir`` (the working directory of the run).

    Parameters
    ----------
    samples
        :func:`read_sheet` output.
    patients
        :func:`check_patients` output.
    timepoints
        Allowed timepoints (``timepoints``).
    base_dir
        Directory that relative paths start from.
    pending
        Files a rule of this run writes.
    path
        The sheet's name, for messages.

    Returns
    -------
    The sheet indexed by ``sample_id`` (the column kept), every modality column present.
    """
    samples = samples.copy()
    for col in MODALITY_COLUMNS:
        if col not in samples.columns:
            samples[col] = ""
    base_dir = Path(base_dir)
    pending = {Path(p).as_posix() for p in pending}
    known = set(patients["patient_id"])

    dup = samples["sample_id"].duplicated(keep="first")
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}, line {_line(i)}",
                         f"sample_id '{samples['sample_id'].iloc[i]}' appears twice.",
                         "give every sample a unique id.")
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(samples.itertuples(index=False)):
        where = f"{path}, line {_line(i)} (sample '{row.sample_id}')"
        if row.patient_id not in known:
            raise InputError(where, f"patient '{row.patient_id}' is not in the patient sheet.",
                             "add the patient to patients.tsv or correct the patient_id.")
        if row.timepoint not in timepoints:
            raise InputError(where, f"timepoint '{row.timepoint}' is not one of {list(timepoints)}.",
                             "use a configured timepoint or add it to 'timepoints' in config.yaml.")
        key = (row.patient_id, row.timepoint)
        if key in seen:
            raise InputError(where, f"patient '{row.patient_id}' already has a '{row.timepoint}' "
                             f"sample on line {_line(seen[key])}.",
                             "keep one sample per patient and timepoint (merge re-runs of one "
                             "specimen before the pipeline, or give the second a new timepoint).")
        seen[key] = i
        if not row.rna and not row.dna:
            raise InputError(where, "has neither an 'rna' nor a 'dna' file.",
                             "give at least one modality, or remove the row.")
        if row.rna_raw and not row.rna:
            raise InputError(where, "has 'rna_raw' but no 'rna' (filtered) matrix.",
                             "give the filtered matrix in 'rna' as well.")
    # Files last: a sheet with a wrong patient id should say so before listing missing files.
    for i, row in enumerate(samples.itertuples(index=False)):
        where = f"{path}, line {_line(i)} (sample '{row.sample_id}')"
        for col in MODALITY_COLUMNS:
            value = getattr(row, col)
            if not value:
                continue
            p = Path(value)
            full = p if p.is_absolute() else base_dir / p
            if p.as_posix() in pending:
                continue
            if not full.exists():
                raise InputError(where, f"the '{col}' file '{value}' does not exist "
                                 f"(looked in {full.resolve().parent}).",
                                 "correct the path (relative paths start at the directory snakemake "
                                 "runs in) or leave the cell empty if the modality was not assayed.")
            check_input_path(full, column=col, value=value, where=where)
    return samples.set_index("sample_id", drop=False)


def annotate_samples(samples: pd.DataFrame, patients: pd.DataFrame, *,
                     response_column: str) -> pd.DataFrame:
    """Samples with the patient's response (as column ``response``) and free covariates.

    Parameters
    ----------
    samples
        :func:`check_samples` output.
    patients
        :func:`check_patients` output.
    response_column
        The patients' response column, renamed ``response``.
    """
    covariates = patients.drop(columns=["patient_id"]).rename(columns={response_column: "response"})
    out = samples.join(covariates, on="patient_id", rsuffix="_patient")
    return out


def label_cells(adata: ad.AnnData, *, sample_id: str, patient_id: str, timepoint: str,
                response: str) -> ad.AnnData:
    """Cell ids ``{sample_id}:{barcode}`` and the sample's metadata as categorical obs columns.

    Parameters
    ----------
    adata
        One sample; a view is copied first, otherwise changed in place.
    sample_id, patient_id, timepoint, response
        The sample's metadata from the sheets.
    """
    adata = adata.copy() if adata.is_view else adata
    barcodes = adata.obs["barcode"] if "barcode" in adata.obs else adata.obs_names.to_series()
    barcodes = barcodes.astype(str).str.split(":").str[-1]
    adata.obs["barcode"] = barcodes.to_numpy()
    adata.obs_names = [f"{sample_id}:{b}" for b in barcodes]
    for key, value in zip(OBS_META, (sample_id, patient_id, timepoint, response)):
        adata.obs[key] = pd.Categorical([value] * adata.n_obs)
    return adata


def attach_sample_meta(adata: ad.AnnData, samples: pd.DataFrame, *, where: str) -> ad.AnnData:
    """Join sample-sheet metadata onto a samples x features AnnData (bulk proteomics).

    Every sample of the data must be in the sheet: a column named after no known sample is
    usually a typo or a renamed raw file, and silently dropping it would lose a patient.

    Parameters
    ----------
    adata
        Samples x features, ``obs_names`` = sample ids; changed in place.
    samples
        The annotated sample sheet (:func:`annotate_samples`).
    where
        The data's name (file), for the error message.
    """
    known = samples.set_index("sample_id")
    unknown = [s for s in adata.obs_names if s not in known.index]
    if unknown:
        raise InputError(where, f"sample(s) {unknown[:5]} are not in the sample sheet "
                         f"({len(unknown)} in all).",
                         "name the proteomics samples (columns) exactly as the sheet's sample_id.")
    for col in OBS_META[1:]:
        adata.obs[col] = pd.Categorical(known.loc[adata.obs_names, col].astype(str).to_numpy())
    adata.obs["sample_id"] = pd.Categorical(adata.obs_names.astype(str))
    return adata
