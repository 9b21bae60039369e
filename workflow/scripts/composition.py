"""Adapter: per-type composition tests for every design, and the paired-proportions figure."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, cfg = snakemake.params, snakemake.params.compare
meta = compare.sample_meta(p.meta)
sizes = pd.read_csv(snakemake.input.sizes, sep="\t")
counts = sizes.pivot_table(index="sample_id", columns="cell_type", values="n_cells", fill_value=0, aggfunc="sum")
tests = pd.concat([compare.composition_test(counts, meta, design=d, response_levels=p.response_levels,
                                            timepoints=p.timepoints, covariates=cfg["covariates"],
                                            min_patients=cfg["min_patients"], transform=cfg["composition_transform"],
                                            pseudocount=cfg["pseudocount"])
                   for d in p.designs], ignore_index=True)
writers.write_table(tests, snakemake.output.tests, sep="\t", index=False)
props = compare.proportions(counts)
writers.write_table(props, snakemake.output.proportions, sep="\t")
fig = compare.plot_composition_pairs(props, meta, tests, response_levels=p.response_levels,
                                     timepoints=p.timepoints, fdr=cfg["fdr"])
writers.save_figure(fig, snakemake.output.figure, dpi=110)
print(tests.to_string(), file=sys.stderr)
