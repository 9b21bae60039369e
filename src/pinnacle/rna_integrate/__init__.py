"""The scRNA-seq cohort: per-sample files joined into one object, integrated and clustered.

At trial scale (~106 samples, up to 1M cells) the full-gene cohort does not fit in memory, so
the full-gene join is done on disk with ``anndata.experimental.concat_on_disk``
(:func:`merge_samples_on_disk`, which takes paths, the one exception to the AnnData-in /
AnnData-out rule of the library), and the analysis object holds only the cohort genes, stacked
one sample at a time (:func:`build_cohort`). Private modules: ``_cohort`` (HVGs, the cohort
object, normalisation, PCA, reading), ``_integrate`` (scVI, Harmony, clustering, metrics),
``_figures``.
"""

from ._cohort import (
    build_cohort,
    cohort_genes,
    genes_in_yaml,
    merge_samples_on_disk,
    normalise,
    pca,
    read_cohort,
    sample_hvg_stats,
    select_hvgs,
)
from ._figures import MAX_LEGEND, NUMBER_ON_DATA, category_palette, plot_embeddings, plot_integration_metrics
from ._integrate import (
    EMBEDDING_KEYS,
    cluster,
    integrate,
    integration_metrics,
    run_harmony,
    run_scvi,
    scvi_max_epochs,
    stratified_subsample,
    unintegrated_umap,
)

__all__ = [
    "EMBEDDING_KEYS", "MAX_LEGEND", "NUMBER_ON_DATA", "build_cohort", "category_palette", "cluster", "cohort_genes",
    "genes_in_yaml", "integrate", "integration_metrics", "merge_samples_on_disk", "normalise", "pca",
    "plot_embeddings", "plot_integration_metrics", "read_cohort", "run_harmony", "run_scvi", "sample_hvg_stats",
    "scvi_max_epochs", "select_hvgs", "stratified_subsample", "unintegrated_umap",
]
