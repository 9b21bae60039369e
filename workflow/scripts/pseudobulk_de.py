"""Adapter: pseudobulk DE (pydeseq2) of one design in every cell type, with its figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import compare  # noqa: E402

p, cfg, design = snakemake.params, snakemake.params.compare, snakemake.wildcards.design
meta = compare.sample_meta(p.meta)
pb = ad.read_h5ad(snakemake.input.h5ad)
res, status = compare.pseudobulk_de(
    pb, meta, design=design, response_levels=p.response_levels, timepoints=p.timepoints,
    covariates=cfg["covariates"], cell_types=cfg["cell_types"] or None, min_cells=cfg["min_cells"], min_counts=cfg["min_counts"],
    min_patients=cfg["min_patients"], alpha=cfg["fdr"], shrink=cfg["shrink_lfc"], n_cpus=snakemake.threads)
res.to_csv(snakemake.output.table, sep="\t", index=False)
status.to_csv(snakemake.output.status, sep="\t", index=False)
title = f"{design} ({res['formula'].iloc[0]})" if len(res) else design
compare.plot_volcanoes(res, fdr=cfg["fdr"], title=title).savefig(snakemake.output.volcano, dpi=100)
compare.plot_top_genes(pb, res, meta, fdr=cfg["fdr"], title=title).savefig(snakemake.output.heatmap, dpi=100)
print(status.to_string(), file=sys.stderr)
