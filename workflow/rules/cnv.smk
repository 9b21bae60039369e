# Stage 6: copy number. scDNA per sample (bins, cell QC, GC correction, integer copy number),
# clones per patient (clusters, consensus profiles, tree, fractions), then the cohort's tables.


rule cnv_sample:
    input:
        dna=get_dna,
        reference=CFG["cnv"]["bin_reference"],
    output:
        h5ad="results/dna/{sample}/copy_number.h5ad",
        qc="results/dna/{sample}/cell_qc.tsv",
    params:
        meta=lambda wc: RUN.sample_meta(wc.sample),
        cnv=CFG["cnv"],
    log:
        "logs/dna/{sample}/cnv_sample.log",
    benchmark:
        "benchmarks/dna/{sample}/cnv_sample.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/cnv_sample.py"


rule cnv_patient:
    input:
        samples=get_patient_copy_number,
    output:
        h5ad="results/cnv/{patient}/clones.h5ad",
        consensus="results/cnv/{patient}/consensus.tsv",
        tree="results/cnv/{patient}/tree.tsv",
        fractions="results/cnv/{patient}/clone_fractions.tsv",
        status="results/cnv/{patient}/status.tsv",
        heatmap=report("results/figures/cnv/{patient}_heatmap.png", caption="../report/cnv_heatmap.rst",
                       category="5. Copy number", subcategory="per patient", labels={"patient": "{patient}",
                                                                                     "figure": "cells by clone"}),
        profiles=report("results/figures/cnv/{patient}_consensus.png", caption="../report/cnv_consensus.rst",
                        category="5. Copy number", subcategory="per patient",
                        labels={"patient": "{patient}", "figure": "clone consensus profiles"}),
    params:
        clones=CFG["cnv"]["clones"],
        max_cn=CFG["cnv"]["max_copy_number"],
        seed=CFG["seed"],
    log:
        "logs/cnv/{patient}/cnv_patient.log",
    benchmark:
        "benchmarks/cnv/{patient}/cnv_patient.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/cnv_patient.py"


rule cnv_cohort:
    input:
        qc=expand("results/dna/{sample}/cell_qc.tsv", sample=RUN.dna_samples),
        fractions=expand("results/cnv/{patient}/clone_fractions.tsv", patient=RUN.dna_patients),
        trees=expand("results/cnv/{patient}/tree.tsv", patient=RUN.dna_patients),
        status=expand("results/cnv/{patient}/status.tsv", patient=RUN.dna_patients),
    output:
        qc=report("results/tables/cnv_cell_qc.tsv", caption="../report/cnv_cell_qc.rst",
                  category="5. Copy number", labels={"table": "scDNA cell QC per sample"}),
        fractions=report("results/tables/clone_fractions.tsv", caption="../report/clone_fractions_table.rst",
                         category="5. Copy number", labels={"table": "clone fractions per sample"}),
        trees="results/tables/clone_trees.tsv",
        status=report("results/tables/cnv_clone_status.tsv", caption="../report/cnv_clone_status.rst",
                      category="5. Copy number", labels={"table": "clone calling per patient"}),
        figure=report("results/figures/clone_fractions.png", caption="../report/clone_fractions.rst",
                      category="5. Copy number", labels={"figure": "clone fractions per sample"}),
        dynamics=report("results/tables/clone_dynamics_tests.tsv", caption="../report/clone_dynamics_tests.rst",
                        category="5. Copy number", labels={"table": "dominant clone: tests"}),
        shares="results/tables/clone_dynamics_shares.tsv",
        dynamics_figure=report("results/figures/clone_dynamics.png", caption="../report/clone_dynamics.rst",
                               category="5. Copy number", labels={"figure": "clone shares per patient"}),
    params:
        meta=RUN.compare_meta(),
        designs=RUN.designs,
        levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
        min_patients=CFG["compare"]["min_patients"],
        min_tumour_cells=CFG["cnv"]["min_tumour_cells"],
        seed=CFG["seed"],
    log:
        "logs/cnv/cnv_cohort.log",
    benchmark:
        "benchmarks/cnv/cnv_cohort.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/cnv_cohort.py"


# From scRNA-seq, per patient: inferred copy number against the patient's immune and stromal
# cells, the malignant call, and (with scDNA) each malignant cell's clone.
rule cnv_rna:
    input:
        unpack(cnv_rna_inputs),
    output:
        cells="results/cnv/{patient}/rna_cells.tsv.gz",
        summary="results/cnv/{patient}/rna_summary.tsv",
        pseudobulk="results/cnv/{patient}/clone_pseudobulk.h5ad",
        heatmap=report("results/figures/cnv/{patient}_rna_cnv.png", caption="../report/cnv_rna_heatmap.rst",
                       category="5. Copy number", subcategory="per patient",
                       labels={"patient": "{patient}", "figure": "scRNA inferred copy number"}),
    params:
        infer=CFG["cnv"]["infer"],
        link=CFG["cnv"]["link"],
        label_key=CFG["compare"]["label_key"],
    log:
        "logs/cnv/{patient}/cnv_rna.log",
    benchmark:
        "benchmarks/cnv/{patient}/cnv_rna.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/cnv_rna.py"


rule cnv_rna_cohort:
    input:
        cells=expand("results/cnv/{patient}/rna_cells.tsv.gz", patient=RUN.rna_patients),
        summaries=expand("results/cnv/{patient}/rna_summary.tsv", patient=RUN.rna_patients),
        labels="results/cohort/cell_labels.tsv.gz",
        dna_fractions=["results/tables/clone_fractions.tsv"] if RUN.dna_samples else [],
    output:
        cells="results/cohort/malignant_calls.tsv.gz",
        labels="results/cohort/cell_labels_cnv.tsv.gz",
        summary=report("results/tables/malignant_calls.tsv", caption="../report/malignant_calls.rst",
                       category="5. Copy number", labels={"table": "malignant calls per patient"}),
        fractions="results/tables/clone_fractions_both_assays.tsv",
        dynamics=report("results/tables/clone_dynamics_tests_rna.tsv", caption="../report/clone_dynamics_tests.rst",
                        category="5. Copy number", labels={"table": "dominant clone: tests (scRNA-assigned cells)"}),
    params:
        label_key=CFG["compare"]["label_key"],
        meta=RUN.compare_meta(),
        designs=RUN.designs,
        levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
        min_patients=CFG["compare"]["min_patients"],
        min_tumour_cells=CFG["cnv"]["min_tumour_cells"],
        seed=CFG["seed"],
    log:
        "logs/cnv/cnv_rna_cohort.log",
    benchmark:
        "benchmarks/cnv/cnv_rna_cohort.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/cnv_rna_cohort.py"
