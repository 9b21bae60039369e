# Stage 5: protein. CITE-seq antibody tags per sample (DSB with the raw matrix's empty droplets,
# CLR without; tag QC), the cohort's protein modality on the tags every panel shares, optional
# totalVI, and the cohort MuData (rna + prot). Bulk proteomics is read once for the cohort.


rule protein_sample:
    input:
        prot="results/rna/{sample}/prot.h5ad",
        rna_raw=get_rna_raw,
    output:
        h5ad="results/protein/{sample}/prot_norm.h5ad",
        tags=report("results/protein/{sample}/tag_qc.tsv", caption="../report/protein_tag_qc_table.rst",
                    category="6. Protein (CITE-seq)", subcategory="per sample",
                    labels={"sample": "{sample}", "type": "tag table"}),
        figure=report("results/figures/protein/{sample}_tag_qc.png", caption="../report/protein_tag_qc.rst",
                      category="6. Protein (CITE-seq)", subcategory="per sample",
                      labels={"sample": "{sample}", "type": "tag QC figure"}),
    params:
        # only the keys this step uses (params are a rerun trigger: switching totalVI on must not
        # renormalise every sample)
        protein={k: v for k, v in CFG["protein"].items() if not k.startswith("totalvi")},
        seed=CFG["seed"],
    log:
        "logs/protein/{sample}/protein_sample.log",
    benchmark:
        "benchmarks/protein/{sample}/protein_sample.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/protein_sample.py"


rule protein_cohort:
    input:
        rna="results/cohort/annotated.h5ad",
        prot=expand("results/protein/{sample}/prot_norm.h5ad", sample=RUN.rna_samples),
        expectations=CFG["annotation"]["protein_markers"],
    output:
        h5ad="results/cohort/prot.h5ad",
        methods=report("results/tables/protein_normalisation.tsv", caption="../report/protein_normalisation.rst",
                       category="6. Protein (CITE-seq)", subcategory="cohort",
                       labels={"table": "normalisation per sample"}),
        violins=report("results/figures/protein_lineage_tags.png", caption="../report/protein_lineage_tags.rst",
                       category="6. Protein (CITE-seq)", subcategory="cohort",
                       labels={"figure": "lineage tags before / after normalisation"}),
        umap=report("results/figures/protein_umap.png", caption="../report/protein_umap.rst",
                    category="6. Protein (CITE-seq)", subcategory="cohort", labels={"figure": "UMAPs by tag"}),
    params:
        samples=RUN.rna_samples,
        seed=CFG["seed"],
    log:
        "logs/protein/protein_cohort.log",
    benchmark:
        "benchmarks/protein/protein_cohort.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/protein_cohort.py"


# totalVI runs only when protein.totalvi is on (protein_mudata then asks for its output).
rule protein_totalvi:
    input:
        rna="results/cohort/annotated.h5ad",
        prot="results/cohort/prot.h5ad",
    output:
        h5ad="results/cohort/totalvi.h5ad",
        model=directory("results/cohort/totalvi_model"),
    params:
        isotype_pattern=CFG["protein"]["isotype_pattern"],
        max_epochs=CFG["protein"]["totalvi_max_epochs"],
        batch_key=CFG["integration"]["batch_key"],
        seed=CFG["seed"],
    log:
        "logs/protein/protein_totalvi.log",
    benchmark:
        "benchmarks/protein/protein_totalvi.tsv"
    threads: workflow.cores
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        gpu=1 if CFG["gpu"] else 0,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/protein_totalvi.py"


rule protein_mudata:
    input:
        rna="results/cohort/annotated.h5ad",
        prot="results/cohort/prot.h5ad",
        totalvi="results/cohort/totalvi.h5ad" if CFG["protein"]["totalvi"] else [],
    output:
        h5mu="results/cohort/cohort.h5mu",
    log:
        "logs/protein/protein_mudata.log",
    benchmark:
        "benchmarks/protein/protein_mudata.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
    conda:
        "../../envs/pinnacle.yaml"
    script:
        "../scripts/protein_mudata.py"


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
