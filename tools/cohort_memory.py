"""Peak memory of the cohort object at trial scale, without simulating a million cells.

``build_cohort`` + ``normalise`` + ``pca`` (what the ``build_cohort`` rule does) on synthetic
per-sample count matrices streamed one sample at a time, as the rule reads them: ``--cells``
cells in 20 samples, ``--genes`` cohort genes (HVGs plus marker and signature genes), ``--nnz``
detected cohort genes per cell (real 10x data: ~300-600 of ~2,500 cohort genes). Prints the
peak RSS after each step. The full pipeline at 1M cells does not fit a session on two cores;
this isolates the one job whose memory grows with the whole cohort.

Usage: ``python tools/cohort_memory.py --cells 1000000 --nnz 500``
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import anndata as ad
import numpy as np
import scipy.sparse as sp

from pinnacle import rna_integrate as ri


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def samples(n_cells: int, n_genes: int, nnz: int, n_samples: int = 20, seed: int = 0):
    """Per-sample AnnData objects with ``nnz`` counts per cell on evenly spread genes."""
    rng = np.random.default_rng(seed)
    per = n_cells // n_samples
    genes = [f"G{j}" for j in range(n_genes)]
    cols = np.linspace(0, n_genes - 1, nnz).astype(np.int32)
    for s in range(n_samples):
        X = sp.csr_matrix((rng.integers(1, 20, size=per * nnz).astype(np.float32), np.tile(cols, per),
                           np.arange(0, per * nnz + 1, nnz, dtype=np.int64)), shape=(per, n_genes))
        a = ad.AnnData(X)
        a.obs_names = [f"S{s}:{i}" for i in range(per)]
        a.var_names = genes
        a.obs["sample_id"] = f"S{s}"
        yield a


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2500)
    parser.add_argument("--nnz", type=int, default=500)
    parser.add_argument("--hvgs", type=int, default=2000)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cohort = ri.build_cohort(samples(args.cells, args.genes, args.nnz), genes=[f"G{j}" for j in range(args.genes)])
    print(f"build_cohort: {cohort.n_obs:,} cells, {cohort.X.nnz:,} non-zeros; peak {_peak_mb():,.0f} MB", flush=True)
    ri.normalise(cohort)
    print(f"normalise: peak {_peak_mb():,.0f} MB", flush=True)
    cohort.var["highly_variable"] = np.arange(cohort.n_vars) < args.hvgs
    ri.pca(cohort, n_comps=30)
    print(f"pca: peak {_peak_mb():,.0f} MB; {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
