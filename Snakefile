# pinnacle-sc: single-cell multi-omics of the PINNACLE trial (NCT07129772).
# The Snakefile is a table of contents; stages live in workflow/rules/ in data-flow order.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/rna_qc.smk"
include: "workflow/rules/rna_integrate.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/protein.smk"
include: "workflow/rules/cnv.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
