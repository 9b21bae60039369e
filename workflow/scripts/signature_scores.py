"""Adapter: signature scores per cell and per pseudobulk, tested with every design."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, cfg = snakemake.params, snakemake.params.compare
meta = compare.sample_meta(p.meta)
signatures = compare.load_signatures(snakemake.input.signatures)
cohort = ad.read_h5ad(snakemake.input.cohort)
compare.score_cells(cohort, signatures, random_state=p.seed)
cols = ["sample_id", "cell_type", *[c for c in cohort.obs if c.startswith("signature_")]]
writers.write_table(cohort.obs[cols], snakemake.output.cells, sep="\t", index_label="cell_id")
del cohort
pb = ad.read_h5ad(snakemake.input.pseudobulk)
scores = compare.score_pseudobulks(pb, signatures, min_cells=cfg["min_cells"], min_counts=cfg["min_counts"])
writers.write_table(scores, snakemake.output.scores, sep="\t", index=False)
tests = pd.concat([compare.signature_tests(scores, meta, design=d, response_levels=p.response_levels,
                                           timepoints=p.timepoints, covariates=cfg["covariates"],
                                           min_patients=cfg["min_patients"]) for d in p.designs],
                  ignore_index=True)
writers.write_table(tests, snakemake.output.tests, sep="\t", index=False)
fig = compare.plot_effect_heatmap(tests, value="t", fdr=cfg["fdr"], title="Signature scores per pseudobulk")
writers.save_figure(fig, snakemake.output.figure, dpi=100)
print(tests.to_string(), file=sys.stderr)
