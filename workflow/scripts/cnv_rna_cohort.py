"""Adapter: the cohort's malignant calls, the cell labels the comparisons use (the epithelium
split by the call) and clone fractions from both assays."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import cnv, writers  # noqa: E402

inp, out = snakemake.input, snakemake.output
calls = pd.concat([pd.read_csv(p, sep="\t", index_col="cell_id") for p in inp.cells])
labels = pd.read_csv(inp.labels, sep="\t", index_col="cell_id")
refined = cnv.refine_labels(labels, calls, label_key=snakemake.params.label_key)
summary = pd.concat([pd.read_csv(p, sep="\t") for p in inp.summaries], ignore_index=True)
patient_of = {m["sample_id"]: m["patient_id"] for m in snakemake.params.meta}
assigned = calls[calls["clone"].fillna("").astype(str) != ""]
fractions = cnv.clone_fractions_from_rna(assigned)
fractions.insert(1, "patient_id", fractions["sample_id"].map(patient_of))
if inp.dna_fractions:
    dna = pd.read_csv(inp.dna_fractions[0], sep="\t").assign(assay="scDNA")
    fractions = pd.concat([dna, fractions], ignore_index=True)
writers.write_table(calls.reset_index(), out.cells, sep="\t", index=False)
writers.write_table(refined.reset_index(), out.labels, sep="\t", index=False)
writers.write_table(summary, out.summary, sep="\t", index=False)
writers.write_table(fractions, out.fractions, sep="\t", index=False)
print(summary.to_string(), file=sys.stderr)
