"""Adapter: protein (CITE-seq) evidence for the RNA labels, one sample's tags at a time."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import annotate, writers  # noqa: E402

p = snakemake.params
expectations = annotate.load_protein_expectations(snakemake.input.expectations)
labels = pd.read_csv(snakemake.input.labels, sep="\t", index_col="cell_id")
parts = []
for sample, path in zip(p.samples, snakemake.input.prot, strict=True):
    cells = labels[labels["sample_id"].astype(str) == str(sample)]
    part, tags = annotate.protein_evidence(ad.read_h5ad(path), cells, expectations,
                                           max_discordant=p.max_discordant, random_state=p.seed)
    print(f"{sample}: {len(cells)} cells; tag thresholds:\n{tags.to_string()}", file=sys.stderr)
    parts.append(pd.concat([cells[["sample_id", "cell_type_major", "cell_type"]], part], axis=1))
per_cell = pd.concat(parts) if parts else pd.DataFrame()
writers.write_table(per_cell, snakemake.output.cells, sep="\t", index_label="cell_id")
table = annotate.protein_evidence_by_label(per_cell, expectations)
writers.write_table(table, snakemake.output.table, sep="\t", index=False)
writers.save_figure(annotate.plot_protein_evidence(table), snakemake.output.figure, dpi=110, bbox_inches="tight")
if len(per_cell):
    print(per_cell["protein_evidence"].value_counts().to_string(), file=sys.stderr)
