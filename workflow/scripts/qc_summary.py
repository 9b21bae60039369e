"""Adapter: cohort QC table and figure from the per-sample cell tables (never the matrices)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import rna_qc, writers  # noqa: E402

table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.summaries], ignore_index=True)
writers.write_table(table, snakemake.output.table, sep="\t", index=False)
if "mito_filter" in table:
    for sid, why in table.loc[table["mito_filter"].astype(str) != rna_qc.MITO_APPLIED,
                              ["sample_id", "mito_filter"]].itertuples(index=False):
        print(f"WARNING {sid}: mitochondrial filter {why}", file=sys.stderr)
cells = pd.concat([pd.read_csv(p, sep="\t", index_col="cell_id") for p in snakemake.input.cells])
writers.save_figure(rna_qc.plot_qc_summary(cells, table=table), snakemake.output.figure, dpi=120)
