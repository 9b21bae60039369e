"""Adapter: batch mixing and conservation of the annotated cell types, per embedding."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import rna_integrate as ri  # noqa: E402
from pinnacle import writers  # noqa: E402

adata = ad.read_h5ad(snakemake.input.h5ad)
names = {"X_pca": "unintegrated (PCA)", "X_scVI": "scVI", "X_harmony": "Harmony"}
embeddings = {names[k]: k for k in names if k in adata.obsm}
known = (adata.obs["cell_type_major"] != "unknown").to_numpy()
table = ri.integration_metrics(adata[known].copy(), embeddings=embeddings, batch_key=snakemake.params.batch_key,
                               label_key="cell_type_major", random_state=snakemake.params.seed)
table.insert(1, "chosen", [embeddings[e] == adata.uns["integration"]["embedding"] for e in table["embedding"]])
writers.write_table(table, snakemake.output.table, sep="\t", index=False)
writers.save_figure(ri.plot_integration_metrics(table), snakemake.output.figure, dpi=110)
print(table.to_string(), file=sys.stderr)
