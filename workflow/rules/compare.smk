# Stage 7: responder vs non-responder and on-treatment comparisons. Patients are the replicates:
# every test runs on per-sample summaries (pseudobulk sums, proportions, signature scores).


rule pseudobulk_sample:
    input:
        rna="results/rna/{sample}/rna.h5ad",
        labels=compare_labels(),
    output:
        "results/rna/{sample}/pseudobulk.h5ad",
    params:
        label_key=CFG["compare"]["label_key"],
    log:
        "logs/rna/{sample}/pseudobulk_sample.log",
    benchmark:
        "benchmarks/rna/{sample}/pseudobulk_sample.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/pseudobulk_sample.py"


# A checkpoint: when compare.cell_types is empty, the cell types to test (one DE job each) are
# read from its sizes table once it exists (de_cell_types in common.smk).
checkpoint pseudobulk_cohort:
    input:
        expand("results/rna/{sample}/pseudobulk.h5ad", sample=RUN.rna_samples),
    output:
        h5ad="results/compare/pseudobulk.h5ad",
        sizes="results/tables/pseudobulk_sizes.tsv",
    log:
        "logs/compare/pseudobulk_cohort.log",
    benchmark:
        "benchmarks/compare/pseudobulk_cohort.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/pseudobulk_cohort.py"


rule composition:
    input:
        sizes="results/tables/pseudobulk_sizes.tsv",
        markers=CFG["annotation"]["markers"],
    output:
        tests=report("results/tables/composition_tests.tsv", caption="../report/composition.rst",
                     category="4. Comparisons", subcategory="composition", labels={"table": "composition tests"}),
        proportions="results/tables/composition_proportions.tsv",
        figure=report("results/figures/composition_paired.png", caption="../report/composition.rst",
                      category="4. Comparisons", subcategory="composition", labels={"figure": "paired proportions"}),
    params:
        meta=RUN.compare_meta(),
        designs=RUN.designs,
        compare=CFG["compare"],
        response_levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
    log:
        "logs/compare/composition.log",
    benchmark:
        "benchmarks/compare/composition.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/composition.py"


# Pseudobulk DE: one job per design x cell type (pydeseq2 is ~15 ms per gene and fit on one core,
# so a design over every type of a trial is hours in one job; a cluster runs these side by side).
# Each call is refitted without each patient in turn (compare.leave_one_out): one refit of the
# called genes per patient, nothing for a type without calls.
# The same job runs camera of each signature on its fit (same samples, design and Wald statistics);
# signature_enrichment adds the FDR across the design's types.
# {cell_type} is compare.cell_type_file_name of the label; the tables keep the label itself.
rule pseudobulk_de_cell_type:
    input:
        h5ad="results/compare/pseudobulk.h5ad",
        signatures=CFG["compare"]["signatures"],
    output:
        table="results/compare/de/{design}/{cell_type}.tsv",
        status="results/compare/de/{design}/{cell_type}.status.tsv",
        camera="results/compare/de/{design}/{cell_type}.camera.tsv",
    params:
        meta=RUN.compare_meta(),
        de=DE_SETTINGS,
        leave_one_out=CFG["compare"]["leave_one_out"],
        listed=de_listed_cell_type,
        response_levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
    log:
        "logs/compare/de/{design}/{cell_type}.log",
    benchmark:
        "benchmarks/compare/de/{design}/{cell_type}.tsv"
    wildcard_constraints:
        design="|".join(RUN.designs),
        cell_type=CELL_TYPE_FILE_NAME,
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/pseudobulk_de_cell_type.py"


# The design's per-type parts joined (same tables as one job over every type), the significant
# genes for the report, and the figures (the camera parts are signature_enrichment's).
rule pseudobulk_de:
    input:
        unpack(de_cell_type_parts),
        h5ad="results/compare/pseudobulk.h5ad",
    output:
        table="results/tables/de/{design}.tsv",
        status=report("results/tables/de/{design}_status.tsv", caption="../report/de_status.rst",
                      category="4. Comparisons", subcategory="differential expression",
                      labels={"design": "{design}", "item": "status per cell type"}),
        significant=report("results/tables/de/{design}_significant.tsv", caption="../report/de_significant.rst",
                           category="4. Comparisons", subcategory="differential expression",
                           labels={"design": "{design}", "item": "significant genes"}),
        volcano=report("results/figures/de/{design}_volcano.png", caption="../report/pseudobulk_de.rst",
                       category="4. Comparisons", subcategory="differential expression",
                       labels={"design": "{design}", "item": "volcano plots"}),
        heatmap=report("results/figures/de/{design}_top_genes.png", caption="../report/de_top_genes.rst",
                       category="4. Comparisons", subcategory="differential expression",
                       labels={"design": "{design}", "item": "top-gene heatmaps"}),
    params:
        meta=RUN.compare_meta(),
        fdr=CFG["compare"]["fdr"],
    log:
        "logs/compare/pseudobulk_de_{design}.log",
    benchmark:
        "benchmarks/compare/pseudobulk_de_{design}.tsv"
    wildcard_constraints:
        design="|".join(RUN.designs),
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/pseudobulk_de.py"


rule signature_scores:
    input:
        pseudobulk="results/compare/pseudobulk.h5ad",
        cohort="results/cohort/annotated.h5ad",
        signatures=CFG["compare"]["signatures"],
    output:
        cells="results/cohort/signature_scores_cells.tsv.gz",
        scores="results/tables/signature_scores.tsv",
        tests=report("results/tables/signature_tests.tsv", caption="../report/signature_tests.rst",
                     category="4. Comparisons", subcategory="signatures", labels={"table": "signature tests"}),
        figure=report("results/figures/signature_tests.png", caption="../report/signature_tests.rst",
                      category="4. Comparisons", subcategory="signatures", labels={"figure": "signature tests"}),
    params:
        meta=RUN.compare_meta(),
        designs=RUN.designs,
        compare=CFG["compare"],
        response_levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
        seed=CFG["seed"],
    log:
        "logs/compare/signature_scores.log",
    benchmark:
        "benchmarks/compare/signature_scores.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/signature_scores.py"


# ulm of every design's DE statistics, next to camera from the per-type DE jobs (camera parts of
# every design and type, in the order of the designs and de_cell_types()).
rule signature_enrichment:
    input:
        de=expand("results/tables/de/{design}.tsv", design=RUN.designs),
        signatures=CFG["compare"]["signatures"],
        camera=de_camera_parts,
    output:
        table=report("results/tables/signature_enrichment.tsv", caption="../report/signature_enrichment.rst",
                     category="4. Comparisons", subcategory="signatures", labels={"table": "enrichment"}),
        figure=report("results/figures/signature_enrichment.png", caption="../report/signature_enrichment.rst",
                      category="4. Comparisons", subcategory="signatures", labels={"figure": "enrichment"}),
    params:
        fdr=CFG["compare"]["fdr"],
    log:
        "logs/compare/signature_enrichment.log",
    benchmark:
        "benchmarks/compare/signature_enrichment.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/signature_enrichment.py"


rule proteomics_tests:
    input:
        h5ad="results/proteomics/proteomics.h5ad",
    output:
        table="results/tables/proteomics_tests.tsv",
        significant=report("results/tables/proteomics_significant.tsv", caption="../report/proteomics_significant.rst",
                           category="4. Comparisons", subcategory="proteomics",
                           labels={"table": "significant proteins"}),
        figure=report("results/figures/proteomics_volcano.png", caption="../report/proteomics_tests.rst",
                      category="4. Comparisons", subcategory="proteomics", labels={"figure": "protein volcanoes"}),
    params:
        meta=RUN.compare_meta(),
        designs=RUN.designs,
        compare=CFG["compare"],
        response_levels=CFG["response"]["levels"],
        timepoints=CFG["timepoints"],
    log:
        "logs/compare/proteomics_tests.log",
    benchmark:
        "benchmarks/compare/proteomics_tests.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/proteomics_tests.py"
