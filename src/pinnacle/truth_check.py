"""The self-check: compare pipeline results on a simulated cohort with its planted truth.

This is the only module that reads a ``truth/`` folder; no analysis module may, or the check
would prove nothing. Each stage contributes a ``check_*`` function that returns rows
``metric, value, threshold, direction, pass, detail``; ``truth_table`` stacks them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

COLUMNS = ["metric", "value", "threshold", "direction", "pass", "detail"]


def row(metric: str, value: float, threshold: float, *, direction: str = ">=",
        detail: str = "") -> dict:
    """One truth-check row; ``direction`` says how value must compare with threshold."""
    if direction not in (">=", "<=", "=="):
        raise ValueError(f"direction must be '>=', '<=' or '==', not {direction!r}")
    value = float(value)
    ok = {">=": value >= threshold, "<=": value <= threshold, "==": np.isclose(value, threshold)}[direction]
    return {"metric": metric, "value": round(value, 4), "threshold": threshold,
            "direction": direction, "pass": bool(ok and np.isfinite(value)), "detail": detail}


def truth_table(rows: Iterable[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U form, ties counted half)."""
    from scipy.stats import rankdata

    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def check_rna_reading(cells: pd.DataFrame, truth_cells: pd.DataFrame) -> list[dict]:
    """Every simulated cell read once, under its own id, in the right sample."""
    ours, theirs = set(cells.index.astype(str)), set(truth_cells["cell_id"].astype(str))
    jaccard = len(ours & theirs) / max(len(ours | theirs), 1)
    per_sample = cells.groupby("sample_id", observed=True).size()
    expected = truth_cells.groupby("sample_id").size()
    same = (per_sample.reindex(expected.index).fillna(-1).astype(int) == expected).mean()
    joined = cells.join(truth_cells.set_index("cell_id")[["sample_id"]], rsuffix="_truth", how="inner")
    right_sample = (joined["sample_id"].astype(str) == joined["sample_id_truth"].astype(str)).mean()
    return [
        row("rna_cell_ids_match", jaccard, 1.0, detail=f"{len(ours)} cells read, {len(theirs)} simulated"),
        row("rna_samples_cell_count_match", same, 1.0, detail=f"{len(expected)} samples"),
        row("rna_cells_in_right_sample", right_sample, 1.0),
    ]


def check_qc_metrics(cells: pd.DataFrame, truth_cells: pd.DataFrame) -> list[dict]:
    """The QC metrics carry the planted low-quality signal (high mitochondrial fraction)."""
    t = truth_cells.set_index("cell_id")
    joined = cells.join(t[["is_low_quality", "is_doublet"]], how="inner")
    singlets = ~joined["is_doublet"].astype(bool)
    auc = auroc(joined.loc[singlets, "pct_counts_mt"], joined.loc[singlets, "is_low_quality"].astype(bool))
    return [row("low_quality_pct_mt_auroc", auc, 0.95,
                detail="AUROC of % mitochondrial for planted low-quality vs good singlets")]


def check_adt(qc_summary: pd.DataFrame, n_tags: int) -> list[dict]:
    """Every sample's antibody tags were read and split from the genes."""
    frac = float((qc_summary["n_adt"] == n_tags).mean())
    return [row("adt_tags_read", frac, 1.0, detail=f"fraction of samples with all {n_tags} tags")]


def check_dna_reading(dna_cells: Iterable[str], truth_dna: pd.DataFrame) -> list[dict]:
    ours, theirs = set(map(str, dna_cells)), set(truth_dna["cell_id"].astype(str))
    jaccard = len(ours & theirs) / max(len(ours | theirs), 1)
    return [row("dna_cell_ids_match", jaccard, 1.0, detail=f"{len(ours)} read, {len(theirs)} simulated")]


def check_proteomics_reading(protein_groups: Iterable[str], n_samples: int,
                             truth_proteins: pd.DataFrame, n_truth_samples: int) -> list[dict]:
    """Decoys, contaminants and only-by-site groups removed; every real protein kept."""
    ours = set(map(str, protein_groups))
    theirs = set(truth_proteins["protein_id"].astype(str))
    jaccard = len(ours & theirs) / max(len(ours | theirs), 1)
    return [row("proteomics_groups_match", jaccard, 1.0,
                detail=f"{len(ours)} groups kept, {len(theirs)} simulated proteins"),
            row("proteomics_samples_read", n_samples / max(n_truth_samples, 1), 1.0,
                direction="==", detail=f"{n_samples} of {n_truth_samples}")]


def _join(cells: pd.DataFrame, truth_cells: pd.DataFrame) -> pd.DataFrame:
    t = truth_cells.set_index("cell_id")[["is_low_quality", "is_doublet", "cell_type"]]
    j = cells.join(t, how="inner")
    j["is_low_quality"] = j["is_low_quality"].astype(bool)
    j["is_doublet"] = j["is_doublet"].astype(bool)
    return j


def check_qc_filtering(cells: pd.DataFrame, truth_cells: pd.DataFrame) -> list[dict]:
    """Planted low-quality cells fall outside the thresholds; what the thresholds remove is
    planted low-quality cells or doublets (a doublet above the UMI limit is a right call)."""
    j = _join(cells, truth_cells)
    failed = ~j["qc_pass"].astype(bool)
    lq = j["is_low_quality"]
    recall = (failed & lq).sum() / max(lq.sum(), 1)
    precision = (failed & (lq | j["is_doublet"])).sum() / max(failed.sum(), 1)
    return [row("low_quality_recall", recall, 0.9, detail=f"{int(lq.sum())} planted low-quality cells"),
            row("low_quality_precision", precision, 0.85,
                detail=f"{int(failed.sum())} cells removed by thresholds")]


def check_doublets(cells: pd.DataFrame, truth_cells: pd.DataFrame, *, min_recall: float = 0.4,
                   min_precision: float = 0.5) -> list[dict]:
    """Planted heterotypic doublets removed (by Scrublet or the UMI limit); Scrublet's calls are
    mostly true doublets; the cells kept are clean singlets.

    Bars: Scrublet's published accuracy on real data with known doublets is modest (area under
    the precision-recall curve ~0.3-0.5 in benchmarks), so removing at least 40% of doublets with
    at least half of the calls right is what a careful analyst accepts from it; what matters
    downstream is that >= 95% of the kept cells are clean singlets.
    """
    j = _join(cells, truth_cells)
    dbl = j["is_doublet"]
    removed = ~j["keep"].astype(bool)
    flagged = j["predicted_doublet"].astype(bool)
    recall = (removed & dbl).sum() / max(dbl.sum(), 1)
    precision = (flagged & dbl).sum() / max(flagged.sum(), 1)
    kept = j["keep"].astype(bool)
    clean = (~j.loc[kept, "is_doublet"] & ~j.loc[kept, "is_low_quality"]).mean()
    return [row("doublet_recall", recall, min_recall, detail=f"{int(dbl.sum())} planted doublets"),
            row("doublet_precision", precision, min_precision, detail=f"{int(flagged.sum())} flagged by Scrublet"),
            row("kept_cells_clean_fraction", clean, 0.95, detail=f"{int(kept.sum())} cells kept")]


def check_ambient(qc_summary: pd.DataFrame, truth_samples: pd.DataFrame) -> list[dict]:
    """The contamination estimated from empty droplets tracks the planted ambient fraction."""
    j = qc_summary.set_index("sample_id")[["ambient_contamination"]].join(
        truth_samples.set_index("sample_id")[["ambient_fraction"]], how="inner").dropna()
    if j.empty:
        return []
    err = (j["ambient_contamination"] - j["ambient_fraction"]).abs().mean()
    return [row("ambient_contamination_mae", err, 0.02, direction="<=",
                detail=f"mean absolute error over {len(j)} samples (planted 0.02-0.10)")]


def knn_label_purity(embedding: np.ndarray, labels: np.ndarray, *, k: int = 15) -> float:
    """Mean fraction of each cell's k nearest neighbours that share its label."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    idx = nn.kneighbors(embedding, return_distance=False)[:, 1:]
    labels = np.asarray(labels)
    return float((labels[idx] == labels[:, None]).mean())


def check_integration(obs: pd.DataFrame, obsm: dict[str, np.ndarray], truth_cells: pd.DataFrame, *,
                      method_key: str, batch_key: str = "sample_id") -> list[dict]:
    """Batch mixing improves over the unintegrated PCA while planted cell types stay apart.

    Mixing is iLISI (scib-metrics, 0-1) on the non-malignant cells (malignant cells are
    patient-specific and should not mix); separation is the kNN purity of the planted major
    type and the label silhouette in the integrated embedding.
    """
    import jax

    jax.config.update("jax_enable_x64", False)
    import scib_metrics
    from scib_metrics.nearest_neighbors import pynndescent

    t = truth_cells.set_index("cell_id").loc[obs.index]
    major = t["cell_type_major"].astype(str).to_numpy()
    normal = major != "malignant/epithelial"
    batches = obs[batch_key].astype(str).to_numpy()
    ilisi = {}
    for name, key in (("pca", "X_pca"), ("integrated", method_key)):
        X = np.asarray(obsm[key], dtype=np.float32)[normal]
        ilisi[name] = float(scib_metrics.ilisi_knn(pynndescent(X, n_neighbors=30, random_state=0), batches[normal]))
    X = np.asarray(obsm[method_key], dtype=np.float32)
    purity = knn_label_purity(X, major)
    sil = float(scib_metrics.silhouette_label(X, major))
    return [row("integration_ilisi_gain", ilisi["integrated"] - ilisi["pca"], 0.05,
                detail=f"iLISI {ilisi['pca']:.3f} (PCA) -> {ilisi['integrated']:.3f} ({method_key}), non-malignant cells"),
            row("integration_major_type_knn_purity", purity, 0.9,
                detail="fraction of 15 nearest neighbours with the same planted major type"),
            row("integration_major_type_silhouette", sil, 0.5, detail="scib label silhouette (0-1)")]


def check_annotation(labels: pd.DataFrame, truth_cells: pd.DataFrame) -> list[dict]:
    """Planted cell types recovered: overall accuracy at both levels, and the worst major type's
    recall (issue bar: a major type below 0.9 recall is a failure). ``unknown`` counts as wrong."""
    t = truth_cells.set_index("cell_id")
    j = labels.join(t[["cell_type", "cell_type_major"]], rsuffix="_truth", how="inner")
    j = j[~j["cell_type_truth"].isin(["doublet"])]
    major_ok = j["cell_type_major"].astype(str) == j["cell_type_major_truth"].astype(str)
    sub_ok = j["cell_type"].astype(str) == j["cell_type_truth"].astype(str)
    recall = major_ok.groupby(j["cell_type_major_truth"]).agg(["mean", "size"])
    recall = recall[recall["size"] >= 30]["mean"]  # recall of a handful of cells is noise
    sub_recall = sub_ok.groupby(j["cell_type_truth"]).agg(["mean", "size"])
    sub_recall = sub_recall[sub_recall["size"] >= 30]["mean"]
    return [row("cell_type_major_accuracy", major_ok.mean(), 0.95, detail=f"{len(j)} planted singlets kept"),
            row("cell_type_major_min_recall", recall.min(), 0.9,
                detail=f"lowest (types with >= 30 cells): {recall.idxmin()}"),
            row("cell_type_accuracy", sub_ok.mean(), 0.85, detail="23 planted subtypes"),
            row("cell_type_min_recall", sub_recall.min(), 0.7,
                detail=f"lowest (types with >= 30 cells): {sub_recall.idxmin()}")]
