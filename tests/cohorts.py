"""Analysis-ready cohorts from the simulator, for tests and tools/scvi_benchmark.py only.

It reads a simulated cohort's ``truth/`` folder (to drop the planted doublets and
damaged cells, standing in for the QC stage), so it lives with the tests, outside the package.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd

from pinnacle import io, rna_integrate
from pinnacle.simulate import layout, simulate_cohort


def simulated_cohort_object(outdir: str | Path, *, n_patients: int = 2, cells_per_sample: int = 1000,
                            n_top_genes: int = 2000, batch_strength: float = 0.3,
                            seed: int = 0) -> tuple[ad.AnnData, pd.DataFrame]:
    """Simulate a cohort into ``outdir`` and build its cohort object as the pipeline does
    (per-sample Seurat v3 statistics, HVGs, cohort on the HVGs, log-normalised, counts kept),
    with the planted doublets and low-quality cells removed. Returns it and the truth cell table."""
    outdir = Path(outdir)
    simulate_cohort(outdir, n_patients=n_patients, n_responders=max(1, n_patients // 2),
                    cells_per_sample=cells_per_sample, dna_cells_per_sample=20,
                    batch_strength=batch_strength, seed=seed)
    truth = pd.read_csv(layout.truth_file(layout.truth_dir(outdir), layout.CELLS), sep="\t", index_col="cell_id")
    samples = pd.read_csv(outdir / "samples.tsv", sep="\t")
    parts, stats = [], {}
    for row in samples.itertuples():
        rna, _ = io.split_features(io.read_rna(row.rna, sample_id=row.sample_id))
        rna.obs["sample_id"] = row.sample_id
        t = truth.loc[rna.obs_names]
        rna = rna[~(t["is_doublet"] | t["is_low_quality"]).to_numpy()].copy()
        stats[row.sample_id] = rna_integrate.sample_hvg_stats(rna, n_top_genes=n_top_genes)
        parts.append(rna)
    hvg = rna_integrate.select_hvgs(stats, n_top_genes=n_top_genes)
    adata = rna_integrate.build_cohort(iter(parts), genes=list(hvg.index[hvg["highly_variable"]]))
    adata.var["highly_variable"] = True
    rna_integrate.normalise(adata)
    return adata, truth.reset_index()


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
