# Stage 5: proteomics. Bulk proteomics is read once for the cohort.


rule read_proteomics:
    input:
        RUN.proteomics["path"] if RUN.proteomics["path"] else [],
    output:
        h5ad="results/proteomics/proteomics.h5ad",
    params:
        format=RUN.proteomics["format"],
        quantity=RUN.proteomics.get("quantity"),
        samples=RUN.samples[["sample_id", "patient_id", "timepoint", "response"]].to_dict("records"),
    log:
        "logs/proteomics/read_proteomics.log",
    benchmark:
        "benchmarks/proteomics/read_proteomics.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/read_proteomics.py"
