"""Adapter: stack the per-sample pseudobulks (samples x cell types rows, all genes)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

pb = compare.concat_pseudobulks([ad.read_h5ad(p) for p in snakemake.input])
writers.write_h5ad(pb, snakemake.output.h5ad, compression="gzip")
writers.write_table(pb.obs, snakemake.output.sizes, sep="\t", index=False)
print(pb, file=sys.stderr)
