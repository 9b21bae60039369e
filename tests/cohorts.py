"""Analysis-ready cohorts from the simulator, for tests and tools/scvi_benchmark.py only.

It reads a simulated cohort's ``truth/`` folder (to drop the planted doublets and
damaged cells, standing in for the QC stage), so it lives with the tests, outside the package.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd

from pinnacle import io, rna_integrate
from pinnacle.simulate import simulate_cohort


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
    truth = pd.read_csv(outdir / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id")
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
