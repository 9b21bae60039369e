"""Responder vs non-responder and on-treatment comparisons, with patients as replicates.

Every test here works on per-sample summaries (pseudobulk sums, per-sample proportions,
per-sample signature scores), never on cells, so a patient with 5,000 cells weighs as much as
one with 500. The designs:

- ``baseline``: baseline samples, ``~ response`` (+ patient covariates from config);
- ``on_treatment`` and ``on_treatment_<level>``: patients with both timepoints,
  ``~ patient + timepoint`` (paired: each patient is its own control), for all patients and
  within each response group;
- ``interaction``: patients with both timepoints, ``~ patient + timepoint + timepoint:response``;
  the last coefficient asks whether the on-treatment change differs between response groups
  (response itself is absorbed by the patient terms).

Patients missing a timepoint enter ``baseline`` and are dropped from the paired designs;
patients without a response level enter ``on_treatment`` and are left out of the designs that
use the response; each table says how many patients each group kept and who was left out.

Libraries: decoupler makes the pseudobulks, filters genes (edgeR's filterByExpr rule) and runs
the enrichment (ulm); pydeseq2 tests DE with apeGLM-style shrunken fold changes; statsmodels fits
the per-type linear models. Written here: the design matrices (explicit, so the paired and
interaction designs are exactly the ones described and full rank is checked), and the
composition test. For composition we use a linear model of arcsine-square-root (or logit)
transformed per-sample proportions with patient as the pairing factor and empirical-Bayes
moderated variances (as propeller does with limma, Phipson et al., Bioinformatics 2022; limma's
squeezeVar is ported here as limma is R-only, and tested against limma's own output) instead of
scCODA, because scCODA (pertpy) has no pairing or interaction and pooling a patient's two samples
as independent would overstate the evidence.

Modules (private, behind this public namespace): ``_design`` (sample metadata, design matrices),
``_moderation`` (least squares with moderated variances, BH), ``_limma`` (the limma port:
fitFDist, fitFDistRobustly, fitFDistUnequalDF1, squeezeVar), ``_limma_numerics`` (the R
routines it calls), ``_de`` (pseudobulks, pydeseq2 DE per cell type with a leave-one-patient-out check of each call,
per-type file names, result tables), ``_composition`` (composition test), ``_proteomics`` (bulk proteomics test),
``_signatures`` (signature file, scores, tests, enrichment), ``_camera`` (limma's camera gene-set
test, re-implemented; run on each type's DE fit by ``pseudobulk_de`` and joined by ``combine_camera``),
``_figures`` (plots).
"""

from ._camera import CAMERA_COLUMNS, CAMERA_TABLE_COLUMNS, camera, combine_camera, zscore_t
from ._composition import NON_IMMUNE_LINEAGES, composition_test, composition_tests, non_immune_types, proportions
from ._de import (
    DE_COLUMNS,
    LOO_COLUMNS,
    cell_type_file_name,
    cell_type_file_names,
    cell_type_from_file_name,
    cell_type_pseudobulks,
    combine_de,
    concat_pseudobulks,
    de_cell_types,
    deseq2_test,
    leave_one_patient_out,
    pseudobulk_de,
    pseudobulk_sample,
    read_result_table,
    significant,
)
from ._design import (
    META_COLUMNS,
    Design,
    NotEstimable,
    covariate_columns,
    design_matrix,
    design_names,
    sample_meta,
)
from ._figures import (
    RESPONSE_COLOURS,
    plot_composition_pairs,
    plot_effect_heatmap,
    plot_protein_volcanoes,
    plot_top_genes,
    plot_volcanoes,
)
from ._moderation import bh, ols_test, squeeze_variances, squeeze_variances_robust
from ._proteomics import protein_test
from ._signatures import (
    load_signatures,
    present_signatures,
    score_cells,
    score_pseudobulks,
    signature_enrichment,
    signature_tests,
)

__all__ = [
    "CAMERA_COLUMNS",
    "CAMERA_TABLE_COLUMNS",
    "camera",
    "combine_camera",
    "zscore_t",
    "NON_IMMUNE_LINEAGES",
    "composition_tests",
    "non_immune_types",
    "covariate_columns",
    "DE_COLUMNS",
    "LOO_COLUMNS",
    "META_COLUMNS",
    "RESPONSE_COLOURS",
    "Design",
    "NotEstimable",
    "bh",
    "cell_type_file_name",
    "cell_type_file_names",
    "cell_type_from_file_name",
    "cell_type_pseudobulks",
    "combine_de",
    "composition_test",
    "concat_pseudobulks",
    "de_cell_types",
    "deseq2_test",
    "design_matrix",
    "design_names",
    "leave_one_patient_out",
    "load_signatures",
    "ols_test",
    "plot_composition_pairs",
    "plot_effect_heatmap",
    "plot_protein_volcanoes",
    "plot_top_genes",
    "plot_volcanoes",
    "present_signatures",
    "proportions",
    "protein_test",
    "pseudobulk_de",
    "read_result_table",
    "pseudobulk_sample",
    "sample_meta",
    "score_cells",
    "score_pseudobulks",
    "signature_enrichment",
    "signature_tests",
    "significant",
    "squeeze_variances",
    "squeeze_variances_robust",
]
