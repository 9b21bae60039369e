"""Truth checks of the copy-number stage: scDNA clones, integer copy number and diploid cells
against the simulator's planted clones (``truth/clones.tsv``, ``truth/dna_cells.tsv.gz``)."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from ._rna import row

_NOT_CLONES = ("normal", "outlier", "unclustered")


def planted_copy_number(var: pd.DataFrame, labels, clones: pd.DataFrame, *, male: bool) -> np.ndarray:
    """The planted integer copy number of each cell (row) in each bin of ``var`` (columns).

    Parameters
    ----------
    var
        Bins with ``chrom``, ``start``, ``end`` (a bin takes the state at its midpoint).
    labels
        The planted clone of each cell (``"normal"``: diploid).
    clones
        ``truth/clones.tsv`` rows of the patient: ``clone``, ``chrom``, ``start``, ``end``,
        ``copy_number`` per arm-level event.
    male
        chrX has one copy in normal cells of a male patient.
    """
    mid = ((var["start"].to_numpy() + var["end"].to_numpy()) // 2)
    chrom = var["chrom"].astype(str).to_numpy()
    base = np.full(len(var), 2)
    if male:
        base[chrom == "chrX"] = 1
    profiles = {"normal": base}
    for clone, events in clones.groupby("clone"):
        p = base.copy()
        for _, e in events.iterrows():
            p[(chrom == e["chrom"]) & (mid >= e["start"]) & (mid < e["end"])] = e["copy_number"]
        profiles[clone] = p
    return np.vstack([profiles[k] for k in labels]) if len(labels) else np.zeros((0, len(var)), int)


def check_scdna_clones(patients: Mapping[str, ad.AnnData], truth_dna: pd.DataFrame, clones: pd.DataFrame,
                       sex: Mapping[str, str]) -> list[dict]:
    """Issue bars: clone ARI >= 0.9 over every scDNA cell (a cell dropped by QC counts as an
    outlier), integer copy number right in >= 90% of bins of malignant cells, >= 95% of diploid
    cells called diploid.

    Parameters
    ----------
    patients
        Patient id -> the per-patient clone object (``results/cnv/{patient}/clones.h5ad``: obs
        ``clone``, layer ``copy_number``).
    truth_dna
        ``truth/dna_cells.tsv.gz`` (``cell_id``, ``clone``).
    clones
        ``truth/clones.tsv``.
    sex
        Patient id -> ``"male"`` / ``"female"`` (the patient sheet).
    """
    from sklearn.metrics import adjusted_rand_score

    truth = truth_dna.set_index("cell_id")["clone"].astype(str)
    called = pd.concat([a.obs["clone"].astype(str) for a in patients.values()]) if patients else pd.Series(dtype=str)
    called = called.reindex(truth.index).fillna("outlier")
    normal = (truth == "normal").to_numpy()
    accuracies = []
    for pid, a in patients.items():
        planted = truth.reindex(a.obs_names)
        mal = (planted.notna() & (planted != "normal")).to_numpy()
        if not mal.any():
            continue
        T = planted_copy_number(a.var, planted[mal].to_numpy(), clones[clones["patient_id"] == pid],
                                male=sex.get(pid) == "male")
        accuracies.append((np.asarray(a.layers["copy_number"])[mal] == T).mean(axis=1))
    acc = np.concatenate(accuracies) if accuracies else np.array([np.nan])
    n_clones = int(truth[~truth.isin(_NOT_CLONES)].nunique())
    n_called = int(called[~called.isin(_NOT_CLONES)].nunique())
    return [
        row("clone_ari", adjusted_rand_score(truth, called), 0.9,
            detail=f"{len(truth)} scDNA cells; {n_clones} planted clones, {n_called} called (normal and outliers "
                   "as groups; cells failing QC count as outliers)"),
        row("copy_number_accuracy", float(np.nanmean(acc)), 0.9,
            detail=f"share of bins with the planted integer copy number, mean over {int(np.isfinite(acc).sum())} "
                   "malignant cells that passed QC"),
        row("diploid_called_diploid", float((called[normal] == "normal").mean()) if normal.any() else np.nan, 0.95,
            detail=f"{int(normal.sum())} planted diploid scDNA cells"),
    ]
