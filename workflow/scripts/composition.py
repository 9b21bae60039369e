"""Adapter: per-type composition tests for every design (all cells and immune cells as the
denominator), and the paired-proportions figure."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import annotate, compare, writers  # noqa: E402

p, cfg = snakemake.params, snakemake.params.compare
meta = compare.sample_meta(p.meta)
sizes = pd.read_csv(snakemake.input.sizes, sep="\t")
counts = sizes.pivot_table(index="sample_id", columns="cell_type", values="n_cells", fill_value=0, aggfunc="sum")
non_immune = compare.non_immune_types(annotate.load_markers(snakemake.input.markers))
tests = compare.composition_tests(counts, meta, designs=p.designs, non_immune=non_immune,
                                  response_levels=p.response_levels, timepoints=p.timepoints,
                                  covariates=cfg["covariates"], min_patients=cfg["min_patients"],
                                  transform=cfg["composition_transform"], pseudocount=cfg["pseudocount"])
writers.write_table(tests, snakemake.output.tests, sep="\t", index=False)
props = compare.proportions(counts)
writers.write_table(props, snakemake.output.proportions, sep="\t")
fig = compare.plot_composition_pairs(props, meta, tests[tests["denominator"] == "all cells"],
                                     response_levels=p.response_levels, timepoints=p.timepoints, fdr=cfg["fdr"])
writers.save_figure(fig, snakemake.output.figure, dpi=110)
print(tests.to_string(), file=sys.stderr)
