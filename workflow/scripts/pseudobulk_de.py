"""Adapter: one design's per-cell-type DE results joined into its tables (full, status, significant
genes), and its figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, design, out = snakemake.params, snakemake.wildcards.design, snakemake.output
res, status = compare.combine_de([compare.read_result_table(f) for f in snakemake.input.tables],
                                 [compare.read_result_table(f) for f in snakemake.input.status])
writers.write_table(res, out.table, sep="\t", index=False)
writers.write_table(status, out.status, sep="\t", index=False)
writers.write_table(compare.significant(res, fdr=p.fdr), out.significant, sep="\t", index=False)
meta = compare.sample_meta(p.meta)
pb = ad.read_h5ad(snakemake.input.h5ad)
title = f"{design} ({res['formula'].iloc[0]})" if len(res) else design
writers.save_figure(compare.plot_volcanoes(res, fdr=p.fdr, title=title), out.volcano, dpi=100)
writers.save_figure(compare.plot_top_genes(pb, res, meta, title=title), out.heatmap, dpi=100)
print(status.to_string(), file=sys.stderr)
