"""Adapter: the cohort as a cellxgene-ready h5ad, every gene, written in chunks from disk."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

import logging  # noqa: E402

from pinnacle import export  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO)
record = export.write_cellxgene(snakemake.input.annotated, snakemake.input.counts, snakemake.output.h5ad,
                                chunk_size=snakemake.params.chunk_size, title=snakemake.params.title)
print(f"cellxgene export: {record}", file=sys.stderr)
