"""Adapter: Seurat v3 variance statistics of one sample's QC-passing cells."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import rna_integrate, writers  # noqa: E402

stats = rna_integrate.sample_hvg_stats(ad.read_h5ad(snakemake.input.rna),
                                       n_top_genes=snakemake.params.n_top_genes)
writers.write_table(stats, snakemake.output.stats, sep="\t")
print(f"loess span used: {stats.attrs['span']}", file=sys.stderr)
