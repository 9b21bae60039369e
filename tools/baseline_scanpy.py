"""The bare scanpy script the pipeline is benchmarked against (issue 21): what an analyst would
write by hand for the same files, with nothing the pipeline adds (no ambient estimate, figures,
tables, annotation, checks).

Per sample: read the filtered 10x matrix, QC metrics, a 5-MAD filter on log counts and log genes
and a 3-MAD upper filter on the mitochondrial share, Scrublet. Then the cohort: concatenate,
genes in at least 3 cells, seurat_v3 HVGs by sample on the counts, normalise, log1p, PCA,
Harmony by sample, neighbours, UMAP, Leiden at one resolution. Prints one JSON line: wall
seconds and peak RSS (this process).

Usage: ``python tools/baseline_scanpy.py SAMPLES.tsv [--n-top-genes 2000] [--n-pcs 30]``
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc


def _mad_outlier(x: np.ndarray, n: float, *, upper_only: bool = False) -> np.ndarray:
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826
    high = x > med + n * mad
    return high if upper_only else high | (x < med - n * mad)


def run(samples: pd.DataFrame, *, n_top_genes: int = 2000, n_pcs: int = 30, seed: int = 0) -> ad.AnnData:
    """The whole baseline on the sample sheet's filtered matrices; returns the clustered cohort."""
    parts = []
    for row in samples.itertuples():
        a = sc.read_10x_h5(row.rna)
        a.var_names_make_unique()
        a.obs_names = [f"{row.sample_id}:{b}" for b in a.obs_names]
        a.var["mt"] = a.var_names.str.upper().str.startswith("MT-")
        sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], inplace=True, percent_top=None, log1p=True)
        bad = (_mad_outlier(a.obs["log1p_total_counts"].to_numpy(), 5)
               | _mad_outlier(a.obs["log1p_n_genes_by_counts"].to_numpy(), 5)
               | _mad_outlier(a.obs["pct_counts_mt"].to_numpy(), 3, upper_only=True))
        a = a[~bad].copy()
        sc.pp.scrublet(a, random_state=seed)
        a = a[~a.obs["predicted_doublet"].to_numpy()].copy()
        a.obs["sample_id"] = row.sample_id
        parts.append(a)
    adata = ad.concat(parts, join="inner")
    del parts
    sc.pp.filter_genes(adata, min_cells=3)
    sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top_genes, batch_key="sample_id")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=n_pcs, mask_var="highly_variable", random_state=seed)
    sc.external.pp.harmony_integrate(adata, "sample_id", random_state=seed)
    sc.pp.neighbors(adata, use_rep="X_pca_harmony", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    sc.tl.leiden(adata, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    return adata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples")
    parser.add_argument("--n-top-genes", type=int, default=2000)
    parser.add_argument("--n-pcs", type=int, default=30)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    adata = run(pd.read_csv(args.samples, sep="\t"), n_top_genes=args.n_top_genes, n_pcs=args.n_pcs)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"cells": int(adata.n_obs), "seconds": round(wall, 1), "max_rss_mb": round(peak_mb, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
