"""A simulated cohort's contract: the names of its ``truth/`` files and its sample sheets.

Kept apart from the simulator so that the run (``pinnacle.config`` in demo mode) and the truth
check read a simulated cohort without importing the code that simulates one: the simulator
writes what this module names, everyone else reads it from here.

The simulator writes the truth with these names (:func:`pinnacle.simulate.simulate_cohort`),
and every reader of the truth takes them from here: the truth-check adapter
(``workflow/scripts/truth_check.py``) and the workflow (``TRUTH``, ``twin_path`` and the truth
inputs in ``workflow/rules/common.smk``, used by ``demo.smk`` and ``report.smk``).
``tests/test_simulate.py`` checks that no rule file spells a truth path by hand.

Paths are strings joined with "/" (as Snakemake wants them); ``truth`` is the truth folder
itself (``{cohort}/truth``, or the ``truth`` key of a non-demo config).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

__all__ = [
    "TIMEPOINTS",
    "cohort_sheets",
    "patient_ids",
    "CELLS",
    "CLONES",
    "CLONE_FRACTIONS",
    "COMPOSITION",
    "DNA_CELLS",
    "EFFECTS",
    "GENES",
    "INTERFERON_OFF",
    "PARAMS",
    "PROTEINS",
    "PROTEIN_ROWS",
    "SAMPLES",
    "TRUTH_DIR",
    "TRUTH_FILES",
    "TWIN_MATRIX",
    "truth_dir",
    "truth_file",
    "twin_path",
]

#: the truth folder inside a cohort's output folder
TRUTH_DIR = "truth"
#: one row per cell-containing droplet: type, doublet / low-quality flags, clone, states, ...
CELLS = "cells.tsv.gz"
#: one row per sample: ambient and malignant fractions, shifts, state levels, twin written
SAMPLES = "samples.tsv"
#: expected and drawn cell-type fractions per sample
COMPOSITION = "composition.tsv"
#: expected clone fractions per sample, with the scRNA and scDNA cells of each clone
CLONE_FRACTIONS = "clone_fractions.tsv"
#: every planted effect and listed null, with its contrast and log2 fold change
EFFECTS = "effects.tsv"
#: arm-level copy-number events of every clone
CLONES = "clones.tsv"
#: one row per scDNA cell: its clone ("normal" for diploid cells) and depth
DNA_CELLS = "dna_cells.tsv.gz"
#: the real (target) proteins a correct reader of proteinGroups.txt keeps
PROTEINS = "proteins.tsv"
#: every row of proteinGroups.txt with its kind (target, reverse, contaminant, only_by_site)
PROTEIN_ROWS = "protein_rows.tsv"
#: every gene of the gene table: dispersion, marker / state flags, expected detection, in_matrix
GENES = "genes.tsv"
#: the simulator's arguments, constants and input checksums
PARAMS = "params.json"
#: folder (inside the truth folder) of the interferon-off twins, one sub-folder per sample
INTERFERON_OFF = "interferon_off"
#: file name of a twin's matrix (Cell Ranger filtered-matrix layout)
TWIN_MATRIX = "filtered_feature_bc_matrix.h5"
#: the table files directly in the truth folder
TRUTH_FILES = (CELLS, SAMPLES, COMPOSITION, CLONE_FRACTIONS, EFFECTS, CLONES, DNA_CELLS, PROTEINS,
               PROTEIN_ROWS, GENES, PARAMS)


def _str(path: str | os.PathLike) -> str:
    return os.fspath(path) if isinstance(path, os.PathLike) else str(path)


def truth_dir(outdir: str | os.PathLike) -> str:
    """The truth folder of the cohort written to ``outdir``: ``{outdir}/truth``.

    Parameters
    ----------
    outdir
        The simulator's output folder.
    """
    return f"{_str(outdir)}/{TRUTH_DIR}"


def truth_file(truth: str | os.PathLike, name: str) -> str:
    """``{truth}/{name}`` for one of :data:`TRUTH_FILES` (``name``: e.g. :data:`CELLS`).

    Parameters
    ----------
    truth
        The truth folder (:func:`truth_dir`).
    name
        A file name of :data:`TRUTH_FILES`; any other is a ``ValueError``.
    """
    if name not in TRUTH_FILES:
        raise ValueError(f"{name!r} is not a file of the truth folder; known: {', '.join(TRUTH_FILES)}")
    return f"{_str(truth)}/{name}"


def twin_path(truth: str | os.PathLike, sample: str) -> str:
    """The interferon-off twin of a resection sample (same droplets, interferon state at 0):
    ``{truth}/interferon_off/{sample}/filtered_feature_bc_matrix.h5``.

    Parameters
    ----------
    truth
        The truth folder (:func:`truth_dir`).
    sample
        The resection sample's id.
    """
    return f"{_str(truth)}/{INTERFERON_OFF}/{sample}/{TWIN_MATRIX}"


#: the two samples of each patient
TIMEPOINTS = ("baseline", "resection")


def _check(cond: bool, where: str, problem: str, fix: str) -> None:
    if not cond:
        raise InputError(where, problem, fix)


def patient_ids(n: int) -> list[str]:
    """``P01`` .. ``Pnn`` (zero-padded to the width of ``n``, at least two digits).

    Parameters
    ----------
    n
        Patients.
    """
    width = max(2, len(str(n)))
    return [f"P{i + 1:0{width}d}" for i in range(n)]


def cohort_sheets(outdir: str | os.PathLike, *, n_patients: int = 6,
                  n_responders: int | None = None, seed: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample and patient sheets of the simulated cohort (pure: nothing is read or written).

    Patients ``P01``.. ``Pnn``; the first ``n_responders`` (default ``n_patients // 2``) are
    responders. Samples ``{patient}_baseline`` and ``{patient}_resection``. Paths are strings
    joined to ``outdir`` as given: ``{outdir}/rna/{sample}/filtered_feature_bc_matrix.h5``,
    ``.../raw_feature_bc_matrix.h5`` and ``{outdir}/dna/{sample}.bins.tsv.gz``.

    Parameters
    ----------
    outdir
        The folder the cohort is (to be) written to.
    n_patients
        Patients (>= 2), two samples each.
    n_responders
        Responders among them (1 .. n_patients - 1).
    seed
        Seed of the patients' age and sex.

    Returns
    -------
    ``(samples, patients)``: samples has sample_id, patient_id, timepoint, rna, rna_raw, dna;
    patients has patient_id, response ("responder"/"non_responder"), age, sex
    ("male"/"female"; NPC is ~3:1 male).
    """
    where = "simulate.cohort_sheets"
    _check(isinstance(n_patients, (int, np.integer)) and n_patients >= 2, where,
           f"n_patients={n_patients!r} is too small.", "Give at least 2 patients (one per response group).")
    if n_responders is None:
        n_responders = n_patients // 2
    _check(isinstance(n_responders, (int, np.integer)) and 1 <= n_responders <= n_patients - 1,
           where, f"n_responders={n_responders!r} must be between 1 and n_patients - 1 "
                  f"({n_patients - 1}).", "Leave both groups at least one patient.")
    out = str(outdir).rstrip("/") or "."
    pids = patient_ids(n_patients)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0]))  # as the simulator's
    patients = pd.DataFrame({
        "patient_id": pids,
        "response": ["responder" if i < n_responders else "non_responder" for i in range(n_patients)],
        "age": rng.integers(35, 71, size=n_patients),
        "sex": np.where(rng.random(n_patients) < 0.75, "male", "female"),
    })
    rows = []
    for pid in pids:
        for tp in TIMEPOINTS:
            s = f"{pid}_{tp}"
            rows.append({"sample_id": s, "patient_id": pid, "timepoint": tp,
                         "rna": f"{out}/rna/{s}/filtered_feature_bc_matrix.h5",
                         "rna_raw": f"{out}/rna/{s}/raw_feature_bc_matrix.h5",
                         "dna": f"{out}/dna/{s}.bins.tsv.gz"})
    return pd.DataFrame(rows), patients
