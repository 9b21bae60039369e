"""Adapter: enrichment of every design's DE statistics in the curated signatures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, cfg = snakemake.params, snakemake.params.de
de = pd.concat([pd.read_csv(path, sep="\t") for path in snakemake.input.de], ignore_index=True)
signatures = compare.load_signatures(snakemake.input.signatures)
enr = compare.signature_enrichment(de, signatures)
# camera (inter-gene correlation allowed for) next to ulm, on the same statistics and pseudobulks
cam = compare.signature_camera(de, ad.read_h5ad(snakemake.input.pseudobulk), compare.sample_meta(p.meta), signatures,
                               response_levels=p.response_levels, timepoints=p.timepoints,
                               covariates=cfg["covariates"], min_cells=cfg["min_cells"], min_counts=cfg["min_counts"],
                               min_patients=cfg["min_patients"])
enr = enr.merge(cam, on=["design", "cell_type", "signature"], how="left")
writers.write_table(enr, snakemake.output.table, sep="\t", index=False)
fig = compare.plot_effect_heatmap(enr.assign(padj=enr["camera_fdr"]), value="score", fdr=p.fdr,
                                  title="Enrichment of DE statistics (colour: ulm score; *: camera FDR)")
writers.save_figure(fig, snakemake.output.figure, dpi=100)
print(enr.to_string(), file=sys.stderr)
