"""Adapter: enrichment of every design's DE statistics in the curated signatures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

de = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.de], ignore_index=True)
enr = compare.signature_enrichment(de, compare.load_signatures(snakemake.input.signatures))
writers.write_table(enr, snakemake.output.table, sep="\t", index=False)
fig = compare.plot_effect_heatmap(enr, value="score", fdr=snakemake.params.fdr,
                                  title="Enrichment of DE statistics (ulm)")
writers.save_figure(fig, snakemake.output.figure, dpi=100)
print(enr.to_string(), file=sys.stderr)
