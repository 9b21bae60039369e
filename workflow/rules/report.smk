# Stage 8: cohort outputs and the self-check against a simulated cohort's planted truth.


def truth_check_inputs(wildcards):
    inputs = {
        "cells": "results/cohort/cells.tsv.gz",
        "qc_summary": "results/rna/qc_summary.tsv",
        "truth_cells": f"{TRUTH}/cells.tsv.gz",
        "dna": expand("results/dna/{sample}/bins.h5ad", sample=DNA_SAMPLES),
    }
    if PROTEOMICS["path"]:
        inputs["proteomics"] = "results/proteomics/proteomics.h5ad"
    return inputs


if TRUTH:

    rule truth_check:
        input:
            unpack(truth_check_inputs),
        output:
            report("results/truth_check.tsv", caption="../report/truth_check.rst",
                   category="0. Truth check", labels={"table": "planted truth recovered"}),
        params:
            truth=TRUTH,
        log:
            "logs/truth_check.log",
        benchmark:
            "benchmarks/truth_check.tsv"
        threads: 1
        resources:
            mem_mb=2000,
        conda:
            "../../envs/pinnacle.yaml"
        script:
            "../scripts/truth_check.py"
