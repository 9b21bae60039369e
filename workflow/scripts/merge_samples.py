"""Adapter: concatenate the per-sample count files on disk into the cohort AnnData."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pinnacle import rna_integrate, writers  # noqa: E402

obs = rna_integrate.merge_samples_on_disk(list(snakemake.input.rna), snakemake.output.h5ad)
writers.write_table(obs, snakemake.output.cells, sep="\t", index_label="cell_id")
print(f"merged {len(snakemake.input.rna)} samples, {len(obs)} cells", file=sys.stderr)
