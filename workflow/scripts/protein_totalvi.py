"""Adapter: totalVI on the cohort's RNA HVG counts and tag counts (GPU when visible)."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # line by line: `tail -f` shows progress

import logging  # noqa: E402

import anndata as ad  # noqa: E402
import torch  # noqa: E402

from pinnacle import protein, writers  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
torch.set_num_threads(snakemake.threads)
p = snakemake.params
model_dir = Path(snakemake.output.model)
model_dir.mkdir(parents=True, exist_ok=True)
out = protein.cohort_totalvi(ad.read_h5ad(snakemake.input.rna), ad.read_h5ad(snakemake.input.prot),
                             batch_key=p.batch_key, isotype_pattern=p.isotype_pattern, max_epochs=p.max_epochs,
                             seed=p.seed, model_dir=model_dir)
writers.write_h5ad(out, snakemake.output.h5ad, compression="gzip")
print(f"totalVI: {out.uns['totalvi']}", file=sys.stderr)
