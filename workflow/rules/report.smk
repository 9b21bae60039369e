# Stage 8: cohort outputs and the self-check against a simulated cohort's planted truth.


if TRUTH:

    rule truth_check:
        input:
            unpack(truth_check_inputs),
        output:
            report("results/truth_check.tsv", caption="../report/truth_check.rst",
                   category="0. Truth check", labels={"table": "planted truth recovered"}),
        params:
            truth=TRUTH,
            fdr=COMPARE["fdr"],
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
