"""Analysis-ready simulated cohorts (the simulator's cohort with its planted truth) for tests and
benchmarks: here, with the truth check, because only this package may import the simulator and
read a truth folder."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd


def simulated_cohort_object(outdir: str | Path, *, n_patients: int = 2, cells_per_sample: int = 1000,
                            n_top_genes: int = 2000, batch_strength: float = 0.3,
                            seed: int = 0) -> tuple[ad.AnnData, pd.DataFrame]:
    """Simulate a cohort and build its cohort object as the pipeline does.

    Per-sample Seurat v3 statistics, HVGs, the cohort on the HVGs, log-normalised with the
    counts kept; the planted doublets and low-quality cells removed.

    Parameters
    ----------
    outdir
        Folder the cohort is written to.
    n_patients, cells_per_sample, batch_strength, seed
        Passed to :func:`pinnacle.simulate.simulate_cohort` (half the patients respond).
    n_top_genes
        Highly variable genes of the cohort object.

    Returns
    -------
    The cohort object and the truth cell table (``cell_id`` a column).
    """
    from pinnacle import io, rna_integrate
    from pinnacle.io import cohort_layout as layout
    from pinnacle.simulate import simulate_cohort

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
