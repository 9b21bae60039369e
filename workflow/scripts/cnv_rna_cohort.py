"""Adapter: the cohort's malignant calls, the cell labels the comparisons use (the epithelium
split by the call), clone fractions from both assays and the dominant-clone test on the
scRNA-assigned cells."""
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
p = snakemake.params
meta = pd.DataFrame(p.meta).set_index("sample_id")
rna_clones = fractions[fractions["clone"] != cnv.UNASSIGNED]
if rna_clones.empty:  # no scDNA clones, or no malignant cell assigned
    tests = pd.DataFrame({"source": "scRNA", "design": list(p.designs), "feature": "dominant_clone_share",
                          "status": "not tested: no scRNA cell assigned to a scDNA clone"})
else:
    tests, _ = cnv.clone_dynamics_test(rna_clones, meta, designs=p.designs, response_levels=p.levels,
                                       timepoints=p.timepoints, min_patients=p.min_patients,
                                       min_tumour_cells=p.min_tumour_cells, source="scRNA", random_state=p.seed)
writers.write_table(tests, out.dynamics, sep="\t", index=False)
if inp.dna_fractions:
    dna = pd.read_csv(inp.dna_fractions[0], sep="\t").assign(assay="scDNA")
    fractions = pd.concat([dna, fractions], ignore_index=True)
writers.write_table(calls.reset_index(), out.cells, sep="\t", index=False)
writers.write_table(refined.reset_index(), out.labels, sep="\t", index=False)
writers.write_table(summary, out.summary, sep="\t", index=False)
writers.write_table(fractions, out.fractions, sep="\t", index=False)
print(summary.to_string(), file=sys.stderr)
