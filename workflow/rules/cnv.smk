# Stage 6: copy number. Per-sample scDNA bin counts are read into AnnData (cells x bins).


rule read_dna_sample:
    input:
        dna=get_dna,
    output:
        h5ad="results/dna/{sample}/bins.h5ad",
    params:
        meta=lambda wc: RUN.sample_meta(wc.sample),
    log:
        "logs/dna/{sample}/read_dna_sample.log",
    benchmark:
        "benchmarks/dna/{sample}/read_dna_sample.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/read_dna_sample.py"
