"""Adapter: the cohort's malignant calls, the cell labels the comparisons use (the epithelium
split by the call), clone fractions from both assays and the dominant-clone test on the
scRNA-assigned cells."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import cnv, writers  # noqa: E402

inp, out, p = snakemake.input, snakemake.output, snakemake.params
calls = pd.concat([pd.read_csv(path, sep="\t", index_col="cell_id") for path in inp.cells])
labels = pd.read_csv(inp.labels, sep="\t", index_col="cell_id")
summary = pd.concat([pd.read_csv(path, sep="\t") for path in inp.summaries], ignore_index=True)
fractions = cnv.rna_clone_fractions(calls)
tests, _ = cnv.clone_dynamics_test(fractions, pd.DataFrame(p.meta).set_index("sample_id"), designs=p.designs,
                                   response_levels=p.levels, timepoints=p.timepoints, min_patients=p.min_patients,
                                   min_tumour_cells=p.min_tumour_cells, source="scRNA", random_state=p.seed)
if inp.dna_fractions:
    fractions = pd.concat([pd.read_csv(inp.dna_fractions[0], sep="\t").assign(assay="scDNA"), fractions],
                          ignore_index=True)
writers.write_table(calls.reset_index(), out.cells, sep="\t", index=False)
writers.write_table(cnv.refine_labels(labels, calls, label_key=p.label_key).reset_index(), out.labels, sep="\t",
                    index=False)
writers.write_table(summary, out.summary, sep="\t", index=False)
writers.write_table(fractions, out.fractions, sep="\t", index=False)
writers.write_table(tests, out.dynamics, sep="\t", index=False)
print(summary.to_string(), file=sys.stderr)
