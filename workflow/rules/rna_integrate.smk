# Stage 3: the cohort of scRNA-seq cells (merged on disk; never all samples in memory).


rule merge_samples:
    input:
        rna=expand("results/rna/{sample}/rna.h5ad", sample=RNA_SAMPLES),
    output:
        h5ad="results/cohort/rna_counts.h5ad",
        cells="results/cohort/cells.tsv.gz",
    log:
        "logs/cohort/merge_samples.log",
    benchmark:
        "benchmarks/cohort/merge_samples.tsv"
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/merge_samples.py"
