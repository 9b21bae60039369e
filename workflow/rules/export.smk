# Stage 9: outputs other tools open: the cohort as a cellxgene-ready h5ad (every gene, written in
# chunks from the on-disk counts) and the run summary table (also in the report).
from pinnacle import export as _export  # noqa: E402


rule export_cellxgene:
    input:
        annotated="results/cohort/annotated.h5ad",
        counts="results/cohort/rna_counts.h5ad",
    output:
        h5ad="results/cohort/cellxgene.h5ad",
    params:
        title=CFG["export"]["title"],
        chunk_size=CFG["export"]["chunk_size"],
    log:
        "logs/cohort/export_cellxgene.log",
    benchmark:
        "benchmarks/cohort/export_cellxgene.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/export_cellxgene.py"


rule run_summary:
    input:
        qc="results/rna/qc_summary.tsv",
        labels="results/cohort/cell_labels.tsv.gz",
        requirements=workflow.source_path("../../envs/requirements.txt"),
        lock=workflow.source_path("../../envs/lock.txt"),
    output:
        table=report("results/tables/run_summary.tsv", caption="../report/run_summary.rst",
                     category="0. Run summary", labels={"table": "samples, cells, cell types, versions"}),
    params:
        config_sha256=_export.config_hash(config),  # the settings as given (a changed one reruns it)
        seed=CFG["seed"],
    log:
        "logs/run_summary.log",
    benchmark:
        "benchmarks/run_summary.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/run_summary.py"
