"""Adapter: cohort QC table and figure from the per-sample outputs (obs only, never matrices)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import rna_qc  # noqa: E402

table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.summaries], ignore_index=True)
table.to_csv(snakemake.output.table, sep="\t", index=False)
obs = pd.concat([ad.read_h5ad(p, backed="r").obs for p in snakemake.input.rna])
fig = rna_qc.plot_qc_summary(obs)
fig.savefig(snakemake.output.figure, dpi=120)
