"""The self-check: compare pipeline results on a simulated cohort with its planted truth.

This package is the only code that reads a ``truth/`` folder; no analysis module may, or the check
would prove nothing. Each stage contributes ``check_*`` functions that return rows
``metric, value, threshold, direction, pass, detail``; ``truth_table`` stacks them.

Modules (private): ``_rna`` (row helpers and the scRNA stages: reading, QC, integration,
annotation, comparisons, proteomics), ``_cnv`` (copy number and clones), ``_protein`` (CITE-seq
normalisation), ``_cohorts`` (analysis-ready simulated cohorts for tests and benchmarks).
"""

from ._cnv import (
    check_clone_dynamics,
    check_malignant_calls,
    check_rna_clones,
    check_scdna_clones,
    planted_copy_number,
)
from ._cohorts import simulated_cohort_object
from ._protein import (
    DSB_LINEAGE_TAGS,
    check_dsb,
    check_dsb_isotypes,
    check_dsb_lineage,
    check_dsb_nonspecific_binding,
)
from ._rna import (
    COLUMNS,
    auroc,
    check_adt,
    check_ambient,
    check_annotation,
    check_composition,
    check_composition_state_only,
    check_differential_expression,
    check_dna_reading,
    check_doublets,
    check_enrichment,
    check_integration,
    check_label_stability,
    check_protein_evidence,
    check_proteomics_reading,
    check_proteomics_tests,
    check_qc_filtering,
    check_qc_metrics,
    check_rna_reading,
    knn_label_purity,
    label_stability,
    row,
    truth_table,
)

__all__ = [
    "simulated_cohort_object",
    "DSB_LINEAGE_TAGS", "check_dsb", "check_dsb_isotypes", "check_dsb_lineage", "check_dsb_nonspecific_binding",
    "check_clone_dynamics", "check_malignant_calls", "check_rna_clones", "check_scdna_clones", "planted_copy_number",
    "COLUMNS", "row", "truth_table", "auroc", "check_rna_reading", "check_qc_metrics", "check_adt",
    "check_dna_reading", "check_proteomics_reading", "check_qc_filtering", "check_doublets", "check_ambient",
    "knn_label_purity", "check_integration", "check_annotation", "check_protein_evidence", "check_composition",
    "check_composition_state_only", "check_differential_expression", "check_enrichment",
    "check_proteomics_tests", "label_stability", "check_label_stability",
]
