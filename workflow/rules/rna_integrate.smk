# Stage 3: the cohort of scRNA-seq cells: HVGs from per-sample statistics (each qc_sample job
# writes its sample's), the cohort AnnData on the genes it needs, integration (scVI on GPU when
# present, Harmony, none) and clustering.


rule build_cohort:
    input:
        rna=expand("results/rna/{sample}/rna.h5ad", sample=RUN.rna_samples),
        stats=expand("results/rna/{sample}/hvg_stats.tsv", sample=RUN.rna_samples),
    output:
        h5ad="results/cohort/rna.h5ad",
        hvg="results/cohort/hvg.tsv",
    params:
        n_top_genes=CFG["integration"]["n_top_genes"],
        extra_genes=CFG["integration"]["extra_genes"],
        gene_resources=RUN.gene_resources,
        n_pcs=CFG["integration"]["n_pcs"],
        seed=CFG["seed"],
    log:
        "logs/cohort/build_cohort.log",
    benchmark:
        "benchmarks/cohort/build_cohort.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/build_cohort.py"


rule integrate:
    input:
        h5ad="results/cohort/rna.h5ad",
    output:
        h5ad="results/cohort/integrated.h5ad",
        model=directory("results/cohort/scvi_model"),
    params:
        integration=CFG["integration"],
        seed=CFG["seed"],
    log:
        "logs/cohort/integrate.log",
    benchmark:
        "benchmarks/cohort/integrate.tsv"
    threads: workflow.cores
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        gpu=1 if CFG["gpu"] and CFG["integration"]["method"] == "scvi" else 0,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/integrate.py"


rule plot_integration:
    input:
        h5ad="results/cohort/integrated.h5ad",
    output:
        figure=report("results/figures/umap_integration.png", caption="../report/umap_integration.rst",
                      category="2. Integration", labels={"figure": "UMAP before / after integration"}),
    params:
        batch_key=CFG["integration"]["batch_key"],
        leiden=f"leiden_{CFG['integration']['leiden_resolutions'][0]}",
    log:
        "logs/cohort/plot_integration.log",
    benchmark:
        "benchmarks/cohort/plot_integration.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/plot_integration.py"


rule merge_samples:
    input:
        rna=expand("results/rna/{sample}/rna.h5ad", sample=RUN.rna_samples),
    output:
        h5ad="results/cohort/rna_counts.h5ad",
        cells="results/cohort/cells.tsv.gz",
    log:
        "logs/cohort/merge_samples.log",
    benchmark:
        "benchmarks/cohort/merge_samples.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/merge_samples.py"
