"""Adapter: one sample's counts summed per cell type (all genes)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

adata = ad.read_h5ad(snakemake.input.rna)
sample = snakemake.wildcards.sample
key = snakemake.params.label_key
chunks = pd.read_csv(snakemake.input.labels, sep="\t", index_col="cell_id", usecols=lambda c: c in
                     ("cell_id", "sample_id", key), chunksize=200_000)
labels = pd.concat(c[c["sample_id"].astype(str) == sample] for c in chunks)
if key not in labels:
    raise ValueError(f"compare.label_key '{key}' is not a column of {snakemake.input.labels}.")
pb = compare.pseudobulk_sample(adata, labels, label_key=key)
writers.write_h5ad(pb, snakemake.output[0], compression="gzip")
print(pb.obs.to_string(), file=sys.stderr)
