"""Adapter: batch mixing and conservation of the annotated cell types, per embedding."""
import sys

sys.stderr = open(snakemake.log[0], "w")


from pinnacle import rna_integrate as ri  # noqa: E402
from pinnacle import writers  # noqa: E402

adata = ri.read_cohort(snakemake.input.h5ad, matrices=False)
names = {"X_pca": "unintegrated (PCA)", "X_scVI": "scVI", "X_harmony": "Harmony"}
embeddings = {names[k]: k for k in names if k in adata.obsm}
known = adata[(adata.obs["cell_type_major"] != "unknown").to_numpy()]
rows = ri.stratified_subsample(known.obs[snakemake.params.batch_key], snakemake.params.max_cells,
                               random_state=snakemake.params.seed)
table = ri.integration_metrics(known[rows].copy(), embeddings=embeddings, batch_key=snakemake.params.batch_key,
                               label_key="cell_type_major")
table.insert(1, "n_cells", len(rows))
table.insert(1, "chosen", [embeddings[e] == adata.uns["integration"]["embedding"] for e in table["embedding"]])
writers.write_table(table, snakemake.output.table, sep="\t", index=False)
writers.save_figure(ri.plot_integration_metrics(table), snakemake.output.figure, dpi=110)
print(table.to_string(), file=sys.stderr)
