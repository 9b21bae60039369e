"""Collect Snakemake ``benchmark:`` files into one table of time and peak memory per job, and
build analysis-ready simulated cohorts for benchmarks (``tools/``) and tests.

Usage: ``python -m pinnacle.benchmarks benchmarks/ results/benchmarks.tsv`` (``make bench``).
Speed and memory are measured here, from real runs, never in timed unit tests.
"""

from __future__ import annotations

import sys
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
    from pinnacle.simulate import layout, simulate_cohort

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


def collect(root: str | Path) -> pd.DataFrame:
    """One row per benchmark file: job (path below ``root``), seconds, peak RSS in MB.

    Parameters
    ----------
    root
        The ``benchmarks/`` folder of a run (searched recursively for ``*.tsv``).

    Returns
    -------
    ``job``, ``seconds``, ``max_rss_mb``, ``cpu_time``, slowest job first.
    """
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        df = pd.read_csv(path, sep="\t")
        if df.empty or "s" not in df:
            continue
        rec = df.iloc[-1]
        rows.append({"job": path.relative_to(root).with_suffix("").as_posix(), "seconds": float(rec["s"]),
                     "max_rss_mb": float(rec.get("max_rss", float("nan"))),
                     "cpu_time": float(rec.get("cpu_time", float("nan")))})
    table = pd.DataFrame(rows, columns=["job", "seconds", "max_rss_mb", "cpu_time"])
    return table.sort_values("seconds", ascending=False, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: write :func:`collect`'s table and print the slowest jobs.

    Parameters
    ----------
    argv
        ``[BENCHMARK_DIR, OUT.tsv]``; default ``sys.argv[1:]``.

    Returns
    -------
    The exit status (2 on a usage error).
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m pinnacle.benchmarks BENCHMARK_DIR OUT.tsv", file=sys.stderr)
        return 2
    table = collect(argv[0])
    Path(argv[1]).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(argv[1], sep="\t", index=False)
    print(table.head(20).to_string(index=False))
    print(f"total job seconds: {table['seconds'].sum():.0f}; peak RSS: {table['max_rss_mb'].max():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
