# Stage 2: per-sample scRNA-seq QC (one job per sample, so a cluster runs them in parallel).


rule qc_sample:
    input:
        unpack(lambda wc: {"rna": get_rna(wc), "rna_raw": get_rna_raw(wc)}),
    output:
        rna="results/rna/{sample}/rna.h5ad",
        prot="results/rna/{sample}/prot.h5ad",
        cells="results/rna/{sample}/cells.tsv.gz",
        summary="results/rna/{sample}/qc.tsv",
        # Seurat v3 variance statistics of the kept cells, for the cohort's HVGs (build_cohort):
        # here rather than in a job of their own, which cost more to start than to compute
        hvg_stats="results/rna/{sample}/hvg_stats.tsv",
        figure=report("results/figures/qc/{sample}.png", caption="../report/qc_sample.rst",
                      category="1. Quality control", subcategory="per sample",
                      labels={"sample": "{sample}"}),
    params:
        meta=lambda wc: RUN.sample_meta(wc.sample),
        qc=CFG["qc"],
        seed=CFG["seed"],
    log:
        "logs/rna/{sample}/qc_sample.log",
    benchmark:
        "benchmarks/rna/{sample}/qc_sample.tsv"
    threads: 1
    resources:
        mem_mb=qc_mem_mb,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/qc_sample.py"


rule qc_summary:
    input:
        cells=expand("results/rna/{sample}/cells.tsv.gz", sample=RUN.rna_samples),
        summaries=expand("results/rna/{sample}/qc.tsv", sample=RUN.rna_samples),
    output:
        table=report("results/rna/qc_summary.tsv", caption="../report/qc_summary_table.rst",
                     category="1. Quality control", labels={"table": "per-sample QC summary"}),
        figure=report("results/figures/qc_summary.png", caption="../report/qc_summary.rst",
                      category="1. Quality control", labels={"figure": "QC metrics by sample"}),
    log:
        "logs/rna/qc_summary.log",
    benchmark:
        "benchmarks/rna/qc_summary.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/qc_summary.py"
