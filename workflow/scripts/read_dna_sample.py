"""Adapter: read one sample's scDNA bin counts into a cells x bins AnnData."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pinnacle import io, sheets, writers  # noqa: E402

meta = snakemake.params.meta
dna = sheets.label_cells(io.read_scdna(snakemake.input.dna, sample_id=meta["sample_id"]), **meta)
writers.write_h5ad(dna, snakemake.output.h5ad, compression="gzip")
print(f"{meta['sample_id']}: {dna.n_obs} cells x {dna.n_vars} bins", file=sys.stderr)
