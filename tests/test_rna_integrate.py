"""Cohort building blocks: per-sample HVG statistics reproduce scanpy's batch-aware seurat_v3."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from pinnacle import rna_integrate


def _batches(n_batches=3, n_cells=400, n_genes=600, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.lognormal(-1, 1.5, n_genes)
    blocks, labels = [], []
    for b in range(n_batches):
        mu = base * rng.lognormal(0, 0.3, n_genes)
        # two cell groups with different programmes, so some genes are truly variable
        prog = np.where(rng.random(n_genes) < 0.1, rng.lognormal(1.5, 0.5, n_genes), 1.0)
        group = rng.random(n_cells) < 0.5
        lib = rng.lognormal(0, 0.4, n_cells)[:, None]
        lam = lib * mu[None, :] * np.where(group[:, None], prog[None, :], 1.0)
        counts = rng.poisson(rng.gamma(2.0, lam / 2.0))
        blocks.append(sp.csr_matrix(counts.astype(np.float32)))
        labels += [f"S{b}"] * n_cells
    adata = ad.AnnData(sp.vstack(blocks).tocsr())
    adata.var_names = [f"G{i}" for i in range(n_genes)]
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.obs["sample_id"] = pd.Categorical(labels)
    return adata


def test_per_sample_hvgs_equal_scanpy_batch_key():
    adata = _batches()
    n_top = 100
    expected = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top,
                                           batch_key="sample_id", inplace=False)
    stats = {s: rna_integrate.sample_hvg_stats(adata[adata.obs["sample_id"] == s].copy(), n_top_genes=n_top)
             for s in adata.obs["sample_id"].cat.categories}
    ours = rna_integrate.select_hvgs(stats, n_top_genes=n_top).loc[adata.var_names]
    assert ours["highly_variable"].sum() == n_top
    np.testing.assert_array_equal(ours["highly_variable"].to_numpy(), expected["highly_variable"].to_numpy())
    np.testing.assert_array_equal(ours["highly_variable_nbatches"].to_numpy(),
                                  expected["highly_variable_nbatches"].to_numpy())


def test_build_cohort_streams_and_normalise_equals_scanpy(tmp_path):
    """The preallocated stacking gives what anndata's concat gives; the structure-sharing
    normalisation gives scanpy's normalize_total + log1p, and survives a write and a read."""
    adata = _batches(n_cells=300, n_genes=200)
    parts = [adata[adata.obs["sample_id"] == s].copy() for s in adata.obs["sample_id"].cat.categories]
    parts[1] = parts[1][:, parts[1].var_names[::-1]].copy()  # another gene order in one sample
    genes = list(adata.var_names[50:150])
    cohort = rna_integrate.build_cohort(iter(parts), genes=genes)
    expected = ad.concat([p[:, genes] for p in parts], join="inner", merge="same")
    assert list(cohort.var_names) == genes and list(cohort.obs_names) == list(expected.obs_names)
    assert cohort.X.dtype == np.float32 and cohort.X.format == "csr"
    assert (cohort.X != expected.X).nnz == 0
    assert isinstance(cohort.obs["sample_id"].dtype, pd.CategoricalDtype)

    ref = cohort.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    rna_integrate.normalise(cohort, chunk_size=97)  # chunks that do not divide the cells
    np.testing.assert_allclose(cohort.X.toarray(), ref.X.toarray(), rtol=1e-5, atol=1e-6)
    assert (cohort.layers["counts"] != expected.X).nnz == 0
    assert np.shares_memory(cohort.X.indices, cohort.layers["counts"].indices)  # one structure for both matrices
    cohort.X.sort_indices()
    cohort.X.eliminate_zeros()
    assert (cohort.layers["counts"] != expected.X).nnz == 0  # in-place ops on X leave counts alone

    cohort.obsm["X_pca"] = np.zeros((cohort.n_obs, 2), dtype=np.float32)
    cohort.write_h5ad(tmp_path / "c.h5ad")
    back = rna_integrate.read_cohort(tmp_path / "c.h5ad")
    assert np.shares_memory(back.X.indices, back.layers["counts"].indices)
    np.testing.assert_array_equal(back.X.toarray(), cohort.X.toarray())
    light = rna_integrate.read_cohort(tmp_path / "c.h5ad", matrices=False)
    assert light.X is None and list(light.obsm) == ["X_pca"] and light.obs.equals(back.obs)


def test_stratified_subsample_keeps_every_batch():
    groups = np.array(["a"] * 9000 + ["b"] * 900 + ["c"] * 3)
    rows = rna_integrate.stratified_subsample(groups, 1000, random_state=1)
    drawn = pd.Series(groups[rows]).value_counts()
    assert abs(len(rows) - 1000) <= 3 and drawn["a"] == 909 and drawn["b"] == 91 and drawn["c"] == 1
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, rna_integrate.stratified_subsample(groups, 1000, random_state=1))
    assert len(rna_integrate.stratified_subsample(groups, 0)) == len(groups)


# ---- on a simulated cohort with strong planted batch effects ---------------------------------

import pytest  # noqa: E402

from pinnacle import truth_check  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """~10,400 QC-passing cells (above the size where pynndescent 0.7 broke sc.pp.neighbors), 4 samples,
    batch effects stronger than the demo's; planted doublets and damaged cells dropped."""
    from cohorts import simulated_cohort_object

    adata, truth = simulated_cohort_object(tmp_path_factory.mktemp("sim"), n_patients=2, cells_per_sample=2900,
                                           n_top_genes=1500, batch_strength=0.4, seed=7)
    rna_integrate.pca(adata, n_comps=30)
    adata.obs["major"] = truth.set_index("cell_id").loc[adata.obs_names, "cell_type_major"].to_numpy()
    return adata, truth


def _mixing_and_purity(adata, truth, key):
    rows = truth_check.check_integration(adata.obs, dict(adata.obsm), truth, method_key=key)
    return {r["metric"]: r for r in rows}


def test_cohort_is_sparse_float32_and_large_enough(cohort):
    adata, _ = cohort
    assert adata.n_obs > 10_000
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert sp.issparse(adata.layers["counts"])


def test_harmony_mixes_batches_and_keeps_types(cohort):
    adata, truth = cohort
    rna_integrate.run_harmony(adata, batch_key="sample_id")
    rows = _mixing_and_purity(adata, truth, "X_harmony")
    # Unintegrated, the samples barely mix; after Harmony iLISI rises by > 0.05 (0-1 scale)
    # while >= 90% of each cell's neighbours keep its planted major type.
    assert rows["integration_ilisi_gain"]["pass"], rows["integration_ilisi_gain"]
    assert rows["integration_major_type_knn_purity"]["pass"], rows["integration_major_type_knn_purity"]


def test_scvi_trains_on_cpu_and_mixes(cohort):
    adata, truth = cohort
    # 40 epochs of 512-cell minibatches: ~900 steps, above the pipeline's min_steps (500)
    adata, model = rna_integrate.run_scvi(adata, batch_key="sample_id", max_epochs=40, batch_size=512, n_threads=2)
    assert adata.obsm["X_scVI"].shape == (adata.n_obs, 30)
    assert adata.uns["scvi"]["device"] == "cpu" and np.isfinite(adata.uns["scvi"]["final_elbo_train"])
    rows = _mixing_and_purity(adata, truth, "X_scVI")
    assert rows["integration_ilisi_gain"]["pass"], rows["integration_ilisi_gain"]
    assert rows["integration_major_type_knn_purity"]["pass"], rows["integration_major_type_knn_purity"]


def test_neighbors_umap_leiden_at_scale(cohort):
    adata, _ = cohort
    rna_integrate.cluster(adata, use_rep="X_pca", resolutions=(0.5,))
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)
    assert adata.obs["leiden_0.5"].nunique() > 5


def test_scvi_epoch_heuristic():
    assert rna_integrate.scvi_max_epochs(1_000) == 400
    assert rna_integrate.scvi_max_epochs(100_000) == 80
    assert rna_integrate.scvi_max_epochs(1_000, cap=50) == 50
    # 3,000 cells in minibatches of 1,024 = 3 steps an epoch: 500 steps need 167 epochs.
    assert rna_integrate.scvi_max_epochs(3_000, cap=50, batch_size=1024, min_steps=500) == 167
    assert rna_integrate.scvi_max_epochs(100_000, cap=50, batch_size=1024, min_steps=500) == 50


# ---- real data: three 10x chemistries as batches (Symphony PBMC, published labels) ------------

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "symphony_pbmc_3batch"


def _symphony_counts():
    """Integer counts recovered exactly from the log-normalised matrix (see its PROVENANCE.md)."""
    import scipy.io

    cells = pd.read_csv(SHARED / "cells.tsv.gz", sep="\t")
    genes = pd.read_csv(SHARED / "genes.tsv.gz", sep="\t")["gene"].astype(str)
    lognorm = sp.csr_matrix(scipy.io.mmread(SHARED / "lognorm_genes_x_cells.mtx.gz").T)
    nUMI = cells["nUMI"].to_numpy(dtype=float)
    counts = lognorm.copy()
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    counts.data = np.round(np.expm1(counts.data) * nUMI[rows] / 1e4).astype(np.float32)
    adata = ad.AnnData(counts.astype(np.float32))
    adata.obs_names = cells["cell_id"].astype(str).to_numpy()
    adata.var_names = genes.to_numpy()
    adata.obs["batch"] = cells["donor"].astype(str).to_numpy()
    adata.obs["cell_type_broad"] = cells["cell_type_broad"].astype(str).to_numpy()
    return adata


def _ilisi_within_types(adata, key):
    """iLISI of the three chemistries inside each broad type with >= 20 cells in >= 2 batches."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import pynndescent

    values = {}
    for t, idx in adata.obs.groupby("cell_type_broad", observed=True).indices.items():
        sub = adata.obs.iloc[idx]
        if len(idx) < 40 or (sub["batch"].value_counts() >= 10).sum() < 2:
            continue
        X = np.asarray(adata.obsm[key][idx], dtype=np.float32)
        nn = pynndescent(X, n_neighbors=min(15, len(idx) - 1), random_state=0, n_jobs=1)
        values[t] = float(scib_metrics.ilisi_knn(nn, sub["batch"].to_numpy()))
    return values


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.exists(), reason=f"real data not available: {SHARED}")
def test_symphony_chemistries_mix_after_harmony_and_types_stay_apart():
    adata = _symphony_counts()
    assert np.allclose(adata.X.data, np.round(adata.X.data)) and adata.X.max() >= 1
    stats = {b: rna_integrate.sample_hvg_stats(adata[adata.obs["batch"] == b].copy(), n_top_genes=1000)
             for b in sorted(adata.obs["batch"].unique())}
    hvg = rna_integrate.select_hvgs(stats, n_top_genes=1000)
    adata.var["highly_variable"] = hvg.loc[adata.var_names, "highly_variable"].to_numpy()
    rna_integrate.normalise(adata)
    rna_integrate.pca(adata, n_comps=20)
    rna_integrate.run_harmony(adata, batch_key="batch")
    before, after = _ilisi_within_types(adata, "X_pca"), _ilisi_within_types(adata, "X_harmony")
    print("iLISI within types, PCA:", before, "Harmony:", after)
    labels = adata.obs["cell_type_broad"].to_numpy()
    purity = {k: truth_check.knn_label_purity(adata.obsm[k], labels) for k in ("X_pca", "X_harmony")}
    print("kNN purity of cell_type_broad:", purity)
    # Before: the chemistries separate inside every type; after: they mix in each large type.
    assert np.mean(list(after.values())) > np.mean(list(before.values())) + 0.1
    assert all(after[t] > before[t] for t in ("T", "Mono", "B"))
    # The types stay apart: >= 90% of each cell's neighbours share its published broad type.
    assert purity["X_harmony"] >= 0.9
