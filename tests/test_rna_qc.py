"""Per-sample QC metrics and the truth-check arithmetic, on small hand-made data."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pinnacle import rna_qc, sheets, truth_check
from pinnacle.errors import InputError


def _sample(n_cells=50, seed=0):
    rng = np.random.default_rng(seed)
    genes = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB", "HBA1", "CD3E", "MS4A1", "LYZ", "HBEGF"]
    X = rng.poisson(5, size=(n_cells, len(genes))).astype(np.float32)
    X[:10, :2] *= 20  # ten cells with a high mitochondrial share
    a = ad.AnnData(sp.csr_matrix(X))
    a.var_names = genes
    a.obs_names = [f"BC{i:03d}-1" for i in range(n_cells)]
    return a


def test_gene_groups_from_symbols():
    a = rna_qc.flag_gene_groups(_sample())
    assert a.var["mt"].sum() == 2 and a.var["ribo"].sum() == 2
    # HBEGF is not a haemoglobin gene even though it starts with HB.
    assert list(a.var_names[a.var["hb"]]) == ["HBB", "HBA1"]


def test_qc_metrics_values():
    a = rna_qc.qc_metrics(_sample())
    X = a.X.toarray()
    expected_mt = 100 * X[:, :2].sum(1) / X.sum(1)
    np.testing.assert_allclose(a.obs["pct_counts_mt"], expected_mt, rtol=1e-5)
    np.testing.assert_allclose(a.obs["total_counts"], X.sum(1), rtol=1e-6)
    assert (a.obs["pct_counts_mt"].iloc[:10] > a.obs["pct_counts_mt"].iloc[10:].max()).all()


def test_qc_metrics_needs_symbols():
    a = _sample()
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    with pytest.raises(InputError, match="no gene symbol starts with the mitochondrial prefix 'MT-'"):
        rna_qc.qc_metrics(a, where="S1.h5")


def test_label_cells_and_summary():
    a = sheets.label_cells(_sample(), sample_id="S1", patient_id="P1", timepoint="baseline",
                           response="responder")
    assert a.obs_names[0] == "S1:BC000-1" and a.obs["barcode"].iloc[0] == "BC000-1"
    a = rna_qc.qc_metrics(a)
    summary = rna_qc.summarise_sample(a, n_adt=3)
    assert summary.loc[0, "n_cells"] == 50 and summary.loc[0, "sample_id"] == "S1"
    assert summary.loc[0, "n_adt"] == 3
    fig = rna_qc.plot_qc_summary(a.obs)
    assert len(fig.axes) == 3


def test_auroc_and_rows():
    assert truth_check.auroc(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1])) == 1.0
    assert truth_check.auroc(np.array([1, 1, 1, 1]), np.array([0, 0, 1, 1])) == 0.5
    assert truth_check.row("x", 0.5, 0.9)["pass"] is False
    assert truth_check.row("fdr", 0.05, 0.1, direction="<=")["pass"] is True
    assert truth_check.row("nan", float("nan"), 0.1, direction="<=")["pass"] is False


def test_rna_reading_check_catches_missing_cells():
    truth = pd.DataFrame({"cell_id": ["S1:a", "S1:b", "S2:c"], "sample_id": ["S1", "S1", "S2"]})
    cells = pd.DataFrame({"sample_id": ["S1", "S1"]}, index=["S1:a", "S1:b"])
    rows = {r["metric"]: r for r in truth_check.check_rna_reading(cells, truth)}
    assert not rows["rna_cell_ids_match"]["pass"]
    assert not rows["rna_samples_cell_count_match"]["pass"]
