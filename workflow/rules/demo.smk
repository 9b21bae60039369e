# Stage 1: write the embedded demo cohort (a simulated trial with planted truth) when asked.
if RUN.demo:

    rule simulate_demo_cohort:
        output:
            rna=[RUN.samples.loc[s, "rna"] for s in RUN.rna_samples],
            rna_raw=[RUN.samples.loc[s, "rna_raw"] for s in RUN.rna_samples if RUN.samples.loc[s, "rna_raw"]],
            dna=[RUN.samples.loc[s, "dna"] for s in RUN.dna_samples],
            proteomics=RUN.proteomics["path"],
            truth_cells=truth_layout.truth_file(RUN.truth, truth_layout.CELLS),
            truth_effects=truth_layout.truth_file(RUN.truth, truth_layout.EFFECTS),
            truth_samples=truth_layout.truth_file(RUN.truth, truth_layout.SAMPLES),
            truth_params=truth_layout.truth_file(RUN.truth, truth_layout.PARAMS),
            truth_dna_cells=truth_layout.truth_file(RUN.truth, truth_layout.DNA_CELLS),
            truth_clones=truth_layout.truth_file(RUN.truth, truth_layout.CLONES),
            truth_proteins=truth_layout.truth_file(RUN.truth, truth_layout.PROTEINS),
            twins=[RUN.twin_path(s) for s in RUN.twin_samples],
        params:
            outdir=lambda wildcards, output: Path(output.truth_cells).parent.parent.as_posix(),
            n_patients=CFG["demo"]["n_patients"],
            n_responders=CFG["demo"]["n_responders"],
            cells_per_sample=CFG["demo"]["cells_per_sample"],
            dna_cells_per_sample=CFG["demo"]["dna_cells_per_sample"],
            doublet_rate=CFG["demo"]["doublet_rate"],
            seed=CFG["demo"]["seed"],
            interferon_twin=CFG["demo"]["interferon_twin"],
            normal_epithelial=CFG["demo"]["normal_epithelial"],
            ebv=CFG["demo"]["ebv"],
        log:
            "logs/demo/simulate_demo_cohort.log",
        benchmark:
            "benchmarks/demo/simulate_demo_cohort.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
        conda:
            "../../envs/pinnacle.yaml"
        script:
            "../scripts/simulate_demo_cohort.py"
