# Stage 4: cell types (marker-based, hierarchical: cell_type_major then cell_type), and the
# integration metrics, which need the labels.


rule annotate_cells:
    input:
        unpack(annotation_inputs),
    output:
        h5ad="results/cohort/annotated.h5ad",
        labels="results/cohort/cell_labels.tsv.gz",
        counts=report("results/tables/cell_type_counts.tsv", caption="../report/cell_type_counts.rst",
                      category="3. Cell types", labels={"table": "cells per sample and type"}),
        crosstab="results/tables/cluster_vs_cell_type.tsv",
        umap=report("results/figures/umap_cell_types.png", caption="../report/umap_cell_types.rst",
                    category="3. Cell types", labels={"figure": "UMAP by cell type"}),
        dotplot=report("results/figures/marker_dotplot.png", caption="../report/marker_dotplot.rst",
                       category="3. Cell types", labels={"figure": "marker dot plot"}),
    params:
        annotation=config["annotation"],
        batch_key=config["integration"]["batch_key"],
        seed=config["seed"],
    log:
        "logs/cohort/annotate_cells.log",
    benchmark:
        "benchmarks/cohort/annotate_cells.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/annotate_cells.py"


rule integration_metrics:
    input:
        h5ad="results/cohort/annotated.h5ad",
    output:
        table=report("results/tables/integration_metrics.tsv", caption="../report/integration_metrics.rst",
                     category="2. Integration", labels={"table": "integration metrics"}),
        figure=report("results/figures/integration_metrics.png", caption="../report/integration_metrics.rst",
                      category="2. Integration", labels={"figure": "integration metrics"}),
    params:
        batch_key=config["integration"]["batch_key"],
        seed=config["seed"],
    log:
        "logs/cohort/integration_metrics.log",
    benchmark:
        "benchmarks/cohort/integration_metrics.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/integration_metrics.py"
