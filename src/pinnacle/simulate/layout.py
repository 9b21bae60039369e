"""Layout of a simulated cohort's ``truth/`` folder: the one place that names its files.

The simulator writes the truth with these names (:func:`pinnacle.simulate.simulate_cohort`),
and every reader of the truth takes them from here: the truth-check adapter
(``workflow/scripts/truth_check.py``) and the workflow (``TRUTH``, ``twin_path`` and the truth
inputs in ``workflow/rules/common.smk``, used by ``demo.smk`` and ``report.smk``).
``tests/test_simulate.py`` checks that no rule file spells a truth path by hand.

Paths are strings joined with "/" (as Snakemake wants them); ``truth`` is the truth folder
itself (``{cohort}/truth``, or the ``truth`` key of a non-demo config). Standard library only.
"""

from __future__ import annotations

import os

__all__ = [
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
