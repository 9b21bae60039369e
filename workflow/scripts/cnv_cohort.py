"""Adapter: the cohort's copy-number tables (cell QC per sample, clone fractions, trees, status)
and the clone-fraction figure."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import cnv, compare, writers  # noqa: E402

inp, out = snakemake.input, snakemake.output
meta = pd.DataFrame(snakemake.params.meta).set_index("sample_id")


def _stack(paths):
    return pd.concat([pd.read_csv(p, sep="\t") for p in paths], ignore_index=True) if paths else pd.DataFrame()


qc = cnv.summarise_cell_qc(_stack(inp.qc))
fractions = _stack(inp.fractions)
fractions = fractions.join(meta[["timepoint", "response"]], on="sample_id")
writers.write_table(qc, out.qc, sep="\t", index=False)
writers.write_table(fractions, out.fractions, sep="\t", index=False)
writers.write_table(_stack(inp.trees), out.trees, sep="\t", index=False)
writers.write_table(_stack(inp.status), out.status, sep="\t", index=False)
writers.save_figure(cnv.plot_clone_fractions(fractions), out.figure, dpi=120, bbox_inches="tight")
p = snakemake.params
tests, shares = cnv.clone_dynamics_test(fractions, meta, designs=p.designs, response_levels=p.levels,
                                        timepoints=p.timepoints, min_patients=p.min_patients,
                                        min_tumour_cells=p.min_tumour_cells, source="scDNA", random_state=p.seed)
writers.write_table(tests, out.dynamics, sep="\t", index=False)
writers.write_table(shares, out.shares, sep="\t", index=False)
fig = cnv.plot_clone_dynamics(fractions, timepoints=p.timepoints,
                              response_colours=dict(zip(p.levels, compare.RESPONSE_COLOURS)))
writers.save_figure(fig, out.dynamics_figure, dpi=120, bbox_inches="tight")
print(qc.to_string(), file=sys.stderr)
print(tests.to_string(), file=sys.stderr)
