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
    a, summary = rna_qc.run_sample_qc(a, doublets=False)
    assert summary["n_cells_loaded"] == 50 and set(a.obs["sample_id"]) == {"S1"}
    assert summary["n_cells_kept"] == a.obs["keep"].sum()
    fig = rna_qc.plot_qc_summary(a.obs)
    assert len(fig.axes) == 3
    assert len(rna_qc.plot_sample_qc(a).axes) == 5  # 4 panels + colour bar, thresholds from uns


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


# ---- thresholds, doublets and ambient RNA on simulated samples --------------------------------

from pinnacle import io  # noqa: E402


def _obs(log_counts_mean, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"log1p_total_counts": rng.normal(log_counts_mean, 0.4, n),
                         "log1p_n_genes_by_counts": rng.normal(log_counts_mean - 1.2, 0.3, n),
                         "pct_counts_mt": rng.gamma(4, 1.0, n)})


def test_mad_thresholds_follow_a_shifted_sample():
    shallow, deep = rna_qc.qc_thresholds(_obs(7.5)), rna_qc.qc_thresholds(_obs(8.5))
    for metric in ("log1p_total_counts", "log1p_n_genes_by_counts"):
        shift = deep[metric][0] - shallow[metric][0]
        assert 0.8 < shift < 1.2, (metric, shift)  # the whole distribution moved by 1.0
    lo, hi = shallow["log1p_total_counts"]
    assert lo == pytest.approx(7.5 - 5 * 0.4, abs=0.1) and hi == pytest.approx(7.5 + 5 * 0.4, abs=0.1)


def test_mito_floor_and_fixed_thresholds():
    clean = _obs(8.0)
    clean["pct_counts_mt"] = 2.0 + 0.1 * np.random.default_rng(1).standard_normal(len(clean))
    assert rna_qc.qc_thresholds(clean, mito_floor=15)["pct_counts_mt"][1] == 15
    fixed = rna_qc.qc_thresholds(clean, method="fixed", fixed={"min_counts": 500, "max_pct_mt": 20})
    assert fixed["log1p_total_counts"] == (pytest.approx(np.log1p(500)), None)
    assert fixed["pct_counts_mt"] == (None, 20)
    a = ad.AnnData(obs=clean.assign(pct_counts_mt=[25.0] + [2.0] * (len(clean) - 1)))
    rna_qc.apply_thresholds(a, fixed)
    assert not a.obs["qc_pass"].iloc[0] and a.obs["qc_fail_pct_counts_mt"].sum() == 1


def test_expected_doublet_rate_scales_with_cells():
    assert rna_qc.expected_doublet_rate(10_000) == pytest.approx(0.08)
    assert rna_qc.expected_doublet_rate(1_000) == pytest.approx(0.008)


@pytest.fixture(scope="module")
def sim_sample(small_cohort):
    out = small_cohort
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id")
    truth_samples = pd.read_csv(out / "truth" / "samples.tsv", sep="\t", index_col="sample_id")
    sid = "P01_baseline"
    rna, _ = io.split_features(io.read_rna(out / "rna" / sid / "filtered_feature_bc_matrix.h5", sample_id=sid))
    raw, _ = io.split_features(io.read_rna(out / "rna" / sid / "raw_feature_bc_matrix.h5", sample_id=sid))
    rna = rna_qc.qc_metrics(rna)
    return rna, raw, truth.loc[rna.obs_names], truth_samples.loc[sid]


def test_sample_qc_recovers_planted_low_quality_and_doublets(sim_sample):
    rna, _, truth, _ = sim_sample
    adata, summary = rna_qc.run_sample_qc(rna.copy(), doublet_rate=0.05)
    lq, dbl = truth["is_low_quality"].to_numpy(), truth["is_doublet"].to_numpy()
    failed = ~adata.obs["qc_pass"].to_numpy()
    # A careful analyst removes (nearly) every damaged cell and few healthy ones.
    assert (failed & lq).sum() / lq.sum() >= 0.9
    assert (failed & (lq | dbl)).sum() / failed.sum() >= 0.85
    # Scrublet's published accuracy is modest (AUPRC ~0.3-0.5): ask for 40% recall, 50% precision.
    flagged = adata.obs["predicted_doublet"].to_numpy()
    assert (~adata.obs["keep"].to_numpy() & dbl).sum() / dbl.sum() >= 0.4
    assert (flagged & dbl).sum() / flagged.sum() >= 0.5
    assert summary["n_cells_kept"] == adata.obs["keep"].sum()
    assert summary["removed_thresholds"] + summary["removed_doublets"] + summary["n_cells_kept"] == rna.n_obs


def test_doublet_scores_rank_planted_doublets(sim_sample):
    rna, _, truth, _ = sim_sample
    good = ~truth["is_low_quality"].to_numpy()
    sub = rna[good].copy()
    rna_qc.call_doublets(sub, expected_rate=0.05)
    assert truth_check.auroc(sub.obs["doublet_score"], truth["is_doublet"].to_numpy()[good]) > 0.85
    # The expected fraction is flagged, less the cells tied at the cut (scores are neighbour fractions).
    assert 0.5 * 0.05 * sub.n_obs <= sub.obs["predicted_doublet"].sum() <= 0.05 * sub.n_obs + 1


def test_ambient_estimate_matches_planted_contamination(sim_sample):
    rna, raw, truth, planted = sim_sample
    kept = rna[~(truth["is_low_quality"] | truth["is_doublet"]).to_numpy()].copy()
    ambient = rna_qc.ambient_profile(raw, rna.obs_names)
    assert ambient.attrs["n_droplets"] > 500 and ambient.sum() == pytest.approx(1.0)
    rna_qc.quick_clusters(kept)
    est = rna_qc.estimate_contamination(kept, ambient, groupby="qc_cluster")
    # Planted 2-10%; the estimate leans high where partly expressed genes pass as absent, hence
    # genes 20-fold below their top cluster only (demo: mean error 0.005): within 1.5 points.
    assert est["contamination"] == pytest.approx(planted["ambient_fraction"], abs=0.015)


def test_ambient_needs_empty_droplets(sim_sample):
    rna, _, _, _ = sim_sample
    with pytest.raises(InputError, match="empty droplets"):
        rna_qc.ambient_profile(rna, rna.obs_names, where="filtered.h5")


def test_raw_matrix_must_hold_the_filtered_barcodes():
    cells = [f"S1:BC{i:03d}-1" for i in range(100)]
    raw = cells[1:] + [f"S1:EMPTY{i}-1" for i in range(500)]
    assert rna_qc.check_raw_matches_filtered(raw, cells) == pytest.approx(0.99)  # the default share passes
    with pytest.raises(InputError, match=r"^raw.h5 \(rna_raw\) and filtered.h5 \(rna\): the raw matrix holds only "
                       r"98 of the filtered matrix's 100 barcodes \(98.00%; need 99.00%\), so it is not this "
                       r"sample's raw matrix. Fix: give the raw_feature_bc_matrix of the same sample"):
        rna_qc.check_raw_matches_filtered(raw[1:], cells, raw_where="raw.h5", filtered_where="filtered.h5")
    assert rna_qc.check_raw_matches_filtered(raw[1:], cells, min_shared=0.9) == pytest.approx(0.98)


def test_ambient_estimate_refuses_another_samples_raw_matrix(sim_sample):
    rna, raw, _, _ = sim_sample
    kept = rna[:300].copy()
    # another run's raw matrix: most of this sample's cell barcodes are not in it
    other = raw[~raw.obs_names.isin(rna.obs_names[: rna.n_obs // 2])].copy()
    with pytest.raises(InputError, match=r"P01/raw_feature_bc_matrix.h5 \(rna_raw\) and "
                       r"P01/filtered_feature_bc_matrix.h5 \(rna\): the raw matrix holds only "
                       rf"{rna.n_obs - rna.n_obs // 2} of the filtered matrix's {rna.n_obs} barcodes"):
        rna_qc.estimate_ambient(kept, other, cell_barcodes=rna.obs_names, where="P01/raw_feature_bc_matrix.h5",
                                filtered_where="P01/filtered_feature_bc_matrix.h5")
    assert "qc_cluster" not in kept.obs  # stopped before any estimate
    # lowering the share lets it through (the key qc.raw_min_shared_barcodes)
    fields, _ = rna_qc.estimate_ambient(kept, other, cell_barcodes=rna.obs_names, min_shared_barcodes=0.4)
    assert fields["empty_droplets"] > 0


# ---- samples without mitochondrial genes (qc.require_mito) ------------------------------------

def _drop_mito(a):
    return a[:, ~a.var_names.str.upper().str.startswith("MT-")].copy()


def test_no_mito_genes_is_an_error_that_names_the_key(sim_sample):
    rna = _drop_mito(sim_sample[0])
    with pytest.raises(InputError, match=r"qc\.require_mito: false") as err:
        rna_qc.qc_metrics(rna, where="S1.h5")
    assert "S1.h5" in str(err.value) and "'MT-'" in str(err.value)


def test_no_mito_genes_skips_the_mito_filter_with_a_reason(sim_sample):
    rna, _, truth, _ = sim_sample
    a = _drop_mito(rna)
    # Plant 20 near-empty cells (~30 UMIs each): the count/gene filters must still catch them.
    rng = np.random.default_rng(3)
    X = a.X.tolil()
    small = rng.choice(a.n_obs, 20, replace=False)
    for i in small:
        row = X[i].toarray().ravel()
        X[i] = rng.binomial(row.astype(int), 30 / row.sum()).astype(np.float32)
    a.X = sp.csr_matrix(X)
    a = rna_qc.qc_metrics(a, require_mito=False)
    reason = a.uns["mito_filter"]
    assert reason == "skipped: no gene with prefix 'MT-' in the matrix (qc.require_mito: false)"
    assert a.obs["pct_counts_mt"].isna().all()  # not a fake 0
    assert a.obs["pct_counts_ribo"].notna().all()
    for method in ("mad", "fixed"):
        b, summary = rna_qc.run_sample_qc(a.copy(), method=method, fixed={"min_counts": 500, "max_pct_mt": 5},
                                          doublet_rate=0.05)
        assert summary["mito_filter"] == reason and b.uns["mito_filter"] == reason
        assert set(b.uns["qc_thresholds"]) == {"log1p_total_counts", "log1p_n_genes_by_counts"}
        assert "qc_fail_pct_counts_mt" not in b.obs
        assert np.isnan(summary["pct_counts_mt_high"]) and np.isnan(summary["removed_pct_counts_mt"])
        # Counts and genes are still thresholded, doublets still called, and the books balance.
        assert not b.obs["qc_pass"].iloc[small].any(), method
        assert summary["removed_log1p_total_counts"] >= 20
        assert summary["flagged_doublets"] > 0 and b.obs["doublet_score"].notna().sum() == b.obs["qc_pass"].sum()
        assert summary["removed_thresholds"] + summary["removed_doublets"] + summary["n_cells_kept"] == a.n_obs
        # max_pct_mt: 5 would remove most cells if a NaN counted as a value; nothing else is lost.
        assert summary["n_cells_kept"] >= 0.8 * a.n_obs
    # The figures say why instead of drawing an empty mitochondrial panel.
    fig = rna_qc.plot_sample_qc(b)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("skipped" in t for t in texts) and len(fig.axes) == 4  # no colour bar for NaN
    table = pd.DataFrame([{"sample_id": "S1", "mito_filter": reason, "n_cells_kept": 1,
                           "removed_thresholds": 0, "removed_doublets": 0}])
    obs = b.obs.assign(sample_id="S1", patient_id="P1", timepoint="baseline")
    fig = rna_qc.plot_qc_summary(obs, table=table)
    assert any("MT filter skipped" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_use_mito_with_no_mito_values_is_refused():
    obs = _obs(8.0).assign(pct_counts_mt=np.nan)
    with pytest.raises(ValueError, match="use_mito=False"):
        rna_qc.qc_thresholds(obs)
    assert "pct_counts_mt" not in rna_qc.qc_thresholds(obs, use_mito=False)


def test_a_sample_with_mito_genes_records_applied():
    a = rna_qc.qc_metrics(_sample(), require_mito=False)
    assert a.uns["mito_filter"] == "applied" and a.obs["pct_counts_mt"].notna().all()
    _, summary = rna_qc.run_sample_qc(a, doublets=False)
    assert summary["mito_filter"] == "applied" and summary["removed_pct_counts_mt"] >= 0


# ---- real cells: Kang et al. IFN-beta PBMC, donor 101 (1,267 genes, no MT genes) --------------

from pathlib import Path  # noqa: E402

KANG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kang_ifnb_pbmc_donor101"


def _kang_samples():
    import scipy.io

    X = sp.csr_matrix(scipy.io.mmread(KANG / "counts_genes_x_cells.mtx.gz").T)  # cells x genes
    genes = pd.read_csv(KANG / "genes.tsv.gz", sep="\t")
    cells = pd.read_csv(KANG / "cells.tsv.gz", sep="\t")
    out = {}
    for sid in ("ctrl101", "stim101"):
        m = (cells["sample_id"] == sid).to_numpy()
        a = ad.AnnData(X[m].astype(np.float32), obs=pd.DataFrame(index=cells.loc[m, "barcode"].astype(str)),
                       var=pd.DataFrame(index=genes["gene"].astype(str)))
        out[sid] = a
    return out


@pytest.mark.skipif(not KANG.is_dir(), reason="../shared/data/kang_ifnb_pbmc_donor101 not present")
def test_kang_qc_runs_without_mito_genes_and_keeps_the_authors_cells():
    samples = _kang_samples()
    assert sum(a.n_obs for a in samples.values()) == 954
    for sid, a in samples.items():
        with pytest.raises(InputError, match=r"qc\.require_mito: false"):
            rna_qc.qc_metrics(a.copy(), where=sid)
        a = rna_qc.qc_metrics(a, require_mito=False, where=sid)
        a, summary = rna_qc.run_sample_qc(a)  # pipeline defaults: MAD thresholds, Scrublet
        assert summary["mito_filter"].startswith("skipped: no gene with prefix 'MT-'")
        assert a.obs["pct_counts_mt"].isna().all()
        kept = summary["n_cells_kept"] / summary["n_cells_loaded"]
        print(f"{sid}: {summary['n_cells_kept']} of {summary['n_cells_loaded']} cells kept ({kept:.1%}); "
              f"removed by thresholds {summary['removed_thresholds']}, doublets {summary['removed_doublets']}")
        # The authors already QC-filtered these cells: nearly all should pass.
        assert kept >= 0.9, (sid, summary)


def test_require_mito_in_the_config_schema():
    import copy

    import yaml
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parents[1]
    schema = str(repo / "workflow" / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    assert config["qc"]["require_mito"] is True  # shipped default: keep the clear error
    ok = copy.deepcopy(config)
    ok["qc"]["require_mito"] = False
    validate(ok, schema=schema)
    missing = copy.deepcopy(config)
    del missing["qc"]["require_mito"]
    validate(missing, schema=schema)
    assert missing["qc"]["require_mito"] is True  # the schema default fills it in
    bad = copy.deepcopy(config)
    bad["qc"]["require_mito"] = "no"
    with pytest.raises(Exception, match=r"require_mito|boolean"):
        validate(bad, schema=schema)
