"""Adapter: stack the per-sample pseudobulks (samples x cell types rows, all genes)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import compare  # noqa: E402

pb = compare.concat_pseudobulks([ad.read_h5ad(p) for p in snakemake.input])
pb.write_h5ad(snakemake.output.h5ad, compression="gzip")
pb.obs.to_csv(snakemake.output.sizes, sep="\t", index=False)
print(pb, file=sys.stderr)
