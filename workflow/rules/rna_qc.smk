# Stage 2: per-sample scRNA-seq reading and QC (one job per sample).


rule read_rna_sample:
    input:
        rna=get_rna,
    output:
        rna="results/rna/{sample}/rna.h5ad",
        prot="results/rna/{sample}/prot.h5ad",
        summary="results/rna/{sample}/qc_summary.tsv",
    params:
        meta=lambda wc: sample_meta(wc.sample),
        qc=config["qc"],
    log:
        "logs/rna/{sample}/read_rna_sample.log",
    benchmark:
        "benchmarks/rna/{sample}/read_rna_sample.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/read_rna_sample.py"


rule qc_summary:
    input:
        rna=expand("results/rna/{sample}/rna.h5ad", sample=RNA_SAMPLES),
        summaries=expand("results/rna/{sample}/qc_summary.tsv", sample=RNA_SAMPLES),
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
        mem_mb=4000,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/qc_summary.py"
