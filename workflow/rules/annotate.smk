# Stage 4: cell types (marker-based, hierarchical: cell_type_major then cell_type; optional
# CellTypist / scANVI and their consensus), protein (CITE-seq) evidence for the labels, and the
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
        panel=report("results/tables/annotation_panel.tsv", caption="../report/annotation_panel.rst",
                     category="3. Cell types", labels={"table": "marker genes the data lack"}),
        states=report("results/figures/state_scores.png", caption="../report/state_scores.rst",
                      category="3. Cell types", labels={"figure": "cell states per type and timepoint"}),
        umap=report("results/figures/umap_cell_types.png", caption="../report/umap_cell_types.rst",
                    category="3. Cell types", labels={"figure": "UMAP by cell type"}),
        dotplot=report("results/figures/marker_dotplot.png", caption="../report/marker_dotplot.rst",
                       category="3. Cell types", labels={"figure": "marker dot plot"}),
        methods=report("results/figures/annotation_methods.png", caption="../report/annotation_methods.rst",
                       category="3. Cell types", labels={"figure": "agreement of annotation methods"}),
    params:
        annotation=CFG["annotation"],
        batch_key=CFG["integration"]["batch_key"],
        seed=CFG["seed"],
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
        batch_key=CFG["integration"]["batch_key"],
        max_cells=CFG["integration"]["metrics_cells"],
        seed=CFG["seed"],
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


rule protein_evidence:
    input:
        prot=expand("results/rna/{sample}/prot.h5ad", sample=RUN.rna_samples),
        labels="results/cohort/cell_labels.tsv.gz",
        expectations=CFG["annotation"]["protein_markers"],
    output:
        table=report("results/tables/protein_evidence.tsv", caption="../report/protein_evidence.rst",
                     category="3. Cell types", labels={"table": "protein evidence per label"}),
        cells="results/cohort/protein_evidence.tsv.gz",
        figure=report("results/figures/protein_evidence.png", caption="../report/protein_evidence.rst",
                      category="3. Cell types", labels={"figure": "protein evidence for RNA labels"}),
    params:
        samples=RUN.rna_samples,
        max_discordant=CFG["annotation"]["protein_max_discordant"],
        seed=CFG["seed"],
    log:
        "logs/cohort/protein_evidence.log",
    benchmark:
        "benchmarks/cohort/protein_evidence.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/protein_evidence.py"
