"""Adapter: UMAPs of the cohort before (PCA) and after integration."""
import sys

sys.stderr = open(snakemake.log[0], "w")


from pinnacle import rna_integrate as ri  # noqa: E402
from pinnacle import writers  # noqa: E402

adata = ri.read_cohort(snakemake.input.h5ad, matrices=False)
method = adata.uns["integration"]["method"]
fig = ri.plot_embeddings(adata, bases={"unintegrated (PCA)": "X_umap_pca", f"integrated ({method})": "X_umap"},
                         colors=[snakemake.params.batch_key, "timepoint", snakemake.params.leiden])
writers.save_figure(fig, snakemake.output.figure, dpi=110)
