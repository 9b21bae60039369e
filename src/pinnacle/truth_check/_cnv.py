"""Truth checks of the copy-number stage: scDNA clones, integer copy number and diploid cells
against the simulator's planted clones (``truth/clones.tsv``, ``truth/dna_cells.tsv.gz``)."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.cnv.clones import _NOT_CLONES

from ._rna import row


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


def check_clone_dynamics(shares: pd.DataFrame, clone_labels: pd.Series,
                         truth_dna: pd.DataFrame, effects: pd.DataFrame, *, levels, timepoints) -> list[dict]:
    """The planted shrinking of the dominant clone in responders: the pipeline's dominant clone
    is mostly the planted one, and its share falls in responders (mean paired change <= -0.1;
    planted: its odds fall by 2^1.5). Whether the test stays quiet for the non-responders'
    unchanged clones is not a single-cohort question (one draw calls at the nominal rate); it is
    checked over 300 null cohorts in tests/test_cnv.py.

    Parameters
    ----------
    shares
        ``results/tables/clone_dynamics_shares.tsv``.
    clone_labels
        Every scDNA cell's called clone (the ``clone`` obs of the per-patient objects).
    truth_dna
        ``truth/dna_cells.tsv.gz``.
    effects
        ``truth/effects.tsv`` (rows of kind ``clone``: the planted dominant clone per patient).
    levels
        Response levels, reference first.
    timepoints
        Timepoints in order.
    """
    planted = effects[effects["kind"] == "clone"]
    if planted.empty or shares.empty:
        return []
    truth = truth_dna.set_index("cell_id")["clone"].astype(str)
    labels = clone_labels.astype(str)
    dominant = shares.drop_duplicates("patient_id").set_index("patient_id")["dominant_clone"]
    match = []
    for pid, called in dominant.items():
        cells = labels.index[labels == called]
        planted_dom = planted.loc[planted["feature"].str.startswith(f"{pid}_"), "feature"]
        if len(cells) and len(planted_dom):
            match.append(truth.reindex(cells).value_counts().idxmax() == planted_dom.iat[0])
    wide = shares.dropna(subset=["share"]).pivot_table(index=["patient_id", "response"], columns="timepoint",
                                                       values="share").reset_index()
    # 0.66, not higher: baseline samples hold 7-50 tumour cells, and a planted dominant clone of
    # 45% next to one of 35% is not the larger in a sample of 20 cells about a quarter of the time
    rows = [row("clone_dominant_is_planted", float(np.mean(match)) if match else np.nan, 0.66,
                detail=f"{int(np.sum(match))} of {len(match)} patients: the dominant clone called is mostly the "
                       "planted dominant clone's cells")]
    if set(timepoints[:2]) <= set(wide.columns):
        change = wide[timepoints[1]] - wide[timepoints[0]]
        resp = change[wide["response"] == levels[1]].dropna()
    else:
        resp = pd.Series(dtype=float)
    if len(resp):  # a cohort without a responder pair (too few tumour cells) has nothing to check
        rows.append(row("clone_dominant_share_change_responders", float(resp.mean()) if len(resp) else np.nan,
                        -0.1, direction="<=",
                        detail=f"mean paired change of the dominant clone's tumour share over {len(resp)} responders "
                               f"({', '.join(f'{v:+.2f}' for v in resp)})"))
    return rows


def check_malignant_calls(calls: pd.DataFrame, truth_cells: pd.DataFrame) -> list[dict]:
    """Issue bars on the scRNA malignant call: accuracy >= 0.9 among planted epithelial singlets
    (malignant and, when planted, normal epithelium), recall of planted malignant cells >= 0.85,
    and non-epithelial singlets almost never called malignant (<= 1%).

    Parameters
    ----------
    calls
        ``results/cohort/malignant_calls.tsv.gz`` indexed by cell (``malignant_call``).
    truth_cells
        ``truth/cells.tsv.gz``.
    """
    t = truth_cells.set_index("cell_id")
    t = t[~t["is_doublet"].astype(bool)]
    j = calls[["malignant_call"]].join(t[["cell_type", "cell_type_major"]], how="inner")
    if j.empty:
        return []
    planted = (j["cell_type"] == "malignant").to_numpy()
    called = (j["malignant_call"] == "malignant").to_numpy()
    epi = (j["cell_type_major"] == "malignant/epithelial").to_numpy()
    n_normal = int((epi & ~planted).sum())
    rows = [row("malignant_accuracy", float((called[epi] == planted[epi]).mean()) if epi.any() else np.nan, 0.9,
                detail=f"{int(epi.sum())} planted epithelial singlets ({n_normal} normal epithelium); uncertain "
                       f"counts as not malignant; {int((j['malignant_call'][epi] == 'uncertain').sum())} uncertain"),
            row("malignant_recall", float(called[planted].mean()) if planted.any() else np.nan, 0.85,
                detail=f"{int(planted.sum())} planted malignant singlets")]
    if (~epi).any():
        rows.append(row("malignant_calls_outside_epithelium", float(called[~epi].mean()), 0.01, direction="<=",
                        detail=f"{int(called[~epi].sum())} of {int((~epi).sum())} non-epithelial singlets called "
                               "malignant"))
    return rows


def check_rna_clones(calls: pd.DataFrame, truth_cells: pd.DataFrame, clone_labels: pd.Series,
                     truth_dna: pd.DataFrame) -> list[dict]:
    """Issue bar: scRNA malignant cells assigned to the right scDNA clone in >= 80% of assigned
    cells, with the assignment rate stated. A called clone stands for the planted clone most of
    its scDNA cells come from.

    Parameters
    ----------
    calls
        ``results/cohort/malignant_calls.tsv.gz`` indexed by cell (``clone``).
    truth_cells
        ``truth/cells.tsv.gz`` (planted ``clone`` of each scRNA cell).
    clone_labels
        Every scDNA cell's called clone.
    truth_dna
        ``truth/dna_cells.tsv.gz``.
    """
    planted_dna = truth_dna.set_index("cell_id")["clone"].astype(str)
    labels = clone_labels.astype(str)
    tumour = ~labels.isin(_NOT_CLONES)
    if not tumour.any():
        return []
    match = pd.crosstab(labels[tumour], planted_dna.reindex(labels.index[tumour])).idxmax(axis=1)
    c = calls["clone"].fillna("").astype(str)
    c = c[c != ""]
    t = truth_cells.set_index("cell_id")["clone"].fillna("").astype(str).reindex(c.index)
    assigned = ~c.isin(["unassigned"]) & t.ne("")
    if not assigned.any():
        return [row("rna_clone_assignment_rate", 0.0, 0.5, detail=f"{len(c)} malignant scRNA cells, none assigned")]
    right = c[assigned].map(match) == t[assigned]
    return [row("rna_clone_accuracy", float(right.mean()), 0.8,
                detail=f"{int(assigned.sum())} assigned of {len(c)} malignant scRNA cells "
                       f"(assignment rate {assigned.mean():.2f})"),
            row("rna_clone_assignment_rate", float(assigned.mean()), 0.5,
                detail="share of called-malignant scRNA cells (of patients with scDNA clones) given a clone")]
