# Stage 1: write the embedded demo cohort (a simulated trial with planted truth) when asked.
if DEMO:

    rule simulate_demo_cohort:
        output:
            rna=[samples.loc[s, "rna"] for s in RNA_SAMPLES],
            rna_raw=[samples.loc[s, "rna_raw"] for s in RNA_SAMPLES if samples.loc[s, "rna_raw"]],
            dna=[samples.loc[s, "dna"] for s in DNA_SAMPLES],
            proteomics=PROTEOMICS["path"],
            truth_cells=truth_layout.truth_file(TRUTH, truth_layout.CELLS),
            truth_effects=truth_layout.truth_file(TRUTH, truth_layout.EFFECTS),
            twins=[twin_path(s) for s in TWIN_SAMPLES],
        params:
            outdir=lambda wildcards, output: Path(output.truth_cells).parent.parent.as_posix(),
            n_patients=config["demo"]["n_patients"],
            n_responders=config["demo"]["n_responders"],
            cells_per_sample=config["demo"]["cells_per_sample"],
            dna_cells_per_sample=config["demo"]["dna_cells_per_sample"],
            doublet_rate=config["demo"]["doublet_rate"],
            seed=config["demo"]["seed"],
            interferon_twin=config["demo"]["interferon_twin"],
        log:
            "logs/demo/simulate_demo_cohort.log",
        benchmark:
            "benchmarks/demo/simulate_demo_cohort.tsv"
        threads: 1
        resources:
            mem_mb=4000,
        conda:
            "../../envs/pinnacle.yaml"
        script:
            "../scripts/simulate_demo_cohort.py"
