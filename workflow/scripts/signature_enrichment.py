"""Adapter: enrichment of every design's DE statistics in the curated signatures: ulm here, next to
camera, which each per-type DE job ran on its own fit (the FDR across each design's types is added here)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p = snakemake.params
de = pd.concat([compare.read_result_table(path) for path in snakemake.input.de], ignore_index=True)
signatures = compare.load_signatures(snakemake.input.signatures)
enr = compare.signature_enrichment(de, signatures)
# camera (inter-gene correlation allowed for) next to ulm, on the same statistics, samples and design
cam = compare.combine_camera([compare.read_result_table(path) for path in snakemake.input.camera])
enr = enr.merge(cam, on=["design", "cell_type", "signature"], how="left")
writers.write_table(enr, snakemake.output.table, sep="\t", index=False)
fig = compare.plot_effect_heatmap(enr.assign(padj=enr["camera_fdr"]), value="score", fdr=p.fdr,
                                  title="Enrichment of DE statistics (colour: ulm score; *: camera FDR)")
writers.save_figure(fig, snakemake.output.figure, dpi=100)
print(enr.to_string(), file=sys.stderr)
