"""Adapter: cell types on the integrated cohort (markers; CellTypist / scANVI when given; their
consensus), with tables and figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import annotate, compare, rna_integrate, writers  # noqa: E402

cfg = snakemake.params.annotation
adata = rna_integrate.read_cohort(snakemake.input.h5ad)
markers = annotate.load_markers(snakemake.input.markers)
states = compare.load_signatures(snakemake.input.states)
cluster_key = f"leiden_{cfg['cluster_resolution']}"
# annotation.cluster_resolution is one of integration.leiden_resolutions: pinnacle.config checks it
annotate.annotate_by_markers(adata, markers, cluster_key=cluster_key, min_score=cfg["min_score"],
                             min_margin=cfg["min_margin"], majority=cfg["majority"], absent=cfg["absent"],
                             state_genes=annotate.state_genes(states),
                             skip_lineages=cfg["skip_lineages"], random_state=snakemake.params.seed,
                             where=snakemake.input.markers)
annotate.score_states(adata, states, random_state=snakemake.params.seed)
state_cols = [f"state_{k}" for k in adata.uns["cell_states"]["genes"]]
methods = ["markers"]
if snakemake.input.get("celltypist_model"):
    annotate.annotate_celltypist(adata, snakemake.input.celltypist_model, over_clustering=cluster_key)
    methods.append("celltypist")
if snakemake.input.get("scanvi_reference"):
    reference = ad.read_h5ad(snakemake.input.scanvi_reference)
    annotate.annotate_scanvi(adata, reference, label_key=cfg["scanvi_label_key"],
                             batch_key=snakemake.params.batch_key, random_state=snakemake.params.seed,
                             num_threads=snakemake.threads)
    methods.append("scanvi")
consensus = annotate.consensus_labels(adata.obs, methods=methods)
adata.obs["cell_type_consensus"] = consensus["cell_type_consensus"].to_numpy()
adata.obs["cell_type_agreement"] = consensus["cell_type_agreement"].to_numpy()
if snakemake.input.get("corrections"):
    corrections = annotate.load_corrections(snakemake.input.corrections, markers)
    annotate.apply_corrections(adata, corrections, cluster_key=cluster_key, where=snakemake.input.corrections)
extra = [c for c in ("celltypist_label", "celltypist_conf", "scanvi_label", "scanvi_conf", "cell_type_auto",
                     "annotation_corrected") if c in adata.obs]
labels = adata.obs[["sample_id", "cell_type_major", "cell_type", "cell_type_confidence", *extra,
                    "cell_type_consensus", "cell_type_agreement", cluster_key, *state_cols]]
writers.write_table(labels, snakemake.output.labels, sep="\t", index_label="cell_id")
writers.write_table(annotate.cell_type_counts(adata.obs), snakemake.output.counts, sep="\t")
writers.write_table(adata.uns["annotation_markers"]["panel"], snakemake.output.panel, sep="\t", index=False)
writers.save_figure(annotate.plot_state_scores(adata.obs, states=list(states)), snakemake.output.states, dpi=110,
                    bbox_inches="tight")
writers.write_table(annotate.crosstab_clusters(adata.obs, cluster_key, "cell_type"), snakemake.output.crosstab,
                    sep="\t")
fig = rna_integrate.plot_embeddings(adata, bases={"UMAP": "X_umap"}, colors=["cell_type_major", "cell_type"])
writers.save_figure(fig, snakemake.output.umap, dpi=110)
writers.save_figure(annotate.plot_marker_dotplot(adata, markers, groupby="cell_type"), snakemake.output.dotplot,
                    dpi=110, bbox_inches="tight")
writers.save_figure(annotate.plot_method_agreement(adata.obs, methods=methods), snakemake.output.methods, dpi=110,
                    bbox_inches="tight")
writers.write_h5ad(adata, snakemake.output.h5ad, compression="gzip")
print(adata.obs["cell_type"].value_counts().to_string(), file=sys.stderr)
