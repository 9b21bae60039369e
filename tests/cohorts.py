"""Cohorts for tests: the simulator's analysis-ready cohort object (from pinnacle.truth_check, which
tools/scvi_benchmark.py uses too) and the pipeline's clustering for real-data tests."""

from __future__ import annotations

import anndata as ad

from pinnacle import rna_integrate
from pinnacle.truth_check import simulated_cohort_object

__all__ = ["cluster_like_pipeline", "simulated_cohort_object"]


def cluster_like_pipeline(adata: ad.AnnData, *, batch_key: str | None, n_top_genes: int, n_comps: int,
                          resolution: float = 1.0) -> ad.AnnData:
    """Normalise, HVGs, PCA, Harmony over ``batch_key`` (None: none), neighbours and Leiden
    (``obs['leiden']``), as the integration stage does without scVI; for real-data tests."""
    import scanpy as sc

    rna_integrate.normalise(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor="seurat")
    rna_integrate.pca(adata, n_comps=n_comps, random_state=0)
    rep = "X_pca"
    if batch_key is not None:
        rna_integrate.run_harmony(adata, batch_key=batch_key, random_state=0)
        rep = "X_harmony"
    sc.pp.neighbors(adata, use_rep=rep, random_state=0)
    sc.tl.leiden(adata, resolution=resolution, key_added="leiden", flavor="igraph", n_iterations=2,
                 directed=False, random_state=0)
    return adata
