"""Adapter: the run summary table (samples, cells in and out of QC, cell types, versions, config
hash, seed)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import export, writers  # noqa: E402

qc = pd.read_csv(snakemake.input.qc, sep="\t")
labels = pd.read_csv(snakemake.input.labels, sep="\t", usecols=["cell_type"])
lock, top = export.pinned_packages(snakemake.input.lock), export.pinned_packages(snakemake.input.requirements)
# the stack's top level (envs/requirements.txt, plus torch, installed before it) at the lock's pins
pinned = {name: lock.get(name, top.get(name, "")) for name in [*top, "torch"]}
table = export.run_summary(qc, labels["cell_type"], config_sha256=snakemake.params.config_sha256,
                           seed=snakemake.params.seed, pinned=pinned)
writers.write_table(table, snakemake.output.table, sep="\t", index=False)
print(table.to_string(), file=sys.stderr)
