# Stage 8: cohort outputs and the self-check against a simulated cohort's planted truth.


if RUN.truth:

    rule label_stability:
        input:
            h5ad="results/cohort/annotated.h5ad",
            twins=[RUN.twin_path(s) for s in RUN.twin_samples],
            markers=CFG["annotation"]["markers"],
            states=CFG["annotation"]["states"],
        output:
            "results/truth/label_stability.tsv",
        params:
            samples=RUN.twin_samples,
            annotation=CFG["annotation"],
        log:
            "logs/truth/label_stability.log",
        benchmark:
            "benchmarks/truth/label_stability.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 8000 * attempt,
        conda:
            "../../envs/pinnacle.yaml"
        script:
            "../scripts/label_stability.py"

    rule truth_check:
        input:
            unpack(truth_check_inputs),
        output:
            report("results/truth_check.tsv", caption="../report/truth_check.rst",
                   category="0. Truth check", labels={"table": "planted truth recovered"}),
        params:
            fdr=CFG["compare"]["fdr"],
            levels=CFG["response"]["levels"],
            timepoints=CFG["timepoints"],
            sex=RUN.patients["sex"].astype(str).to_dict() if "sex" in RUN.patients else {},
        log:
            "logs/truth_check.log",
        benchmark:
            "benchmarks/truth_check.tsv"
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 2000 * attempt,
        conda:
            "../../envs/pinnacle.yaml"
        script:
            "../scripts/truth_check.py"
