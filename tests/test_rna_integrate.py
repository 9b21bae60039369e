"""Cohort building blocks: per-sample HVG statistics reproduce scanpy's batch-aware seurat_v3."""

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
