"""CITE-seq antibody tags, the protein stage's library: per-sample normalisation (DSB with
empty droplets, CLR without), per-sample tag QC, totalVI across samples, and the protein evidence
for the RNA cell-type labels (tag calls against ``resources/protein_markers.yaml``).

Why DSB: antibody counts carry ambient antibody (in every droplet) and unspecific binding (per
cell). DSB (Mule, Martins & Tsang, Nat Commun 2022) expresses each protein in SDs above the
empty droplets' level and removes each cell's technical component, so a protein a cell lacks
sits near 0 in every sample. Without the raw matrix there are no empty droplets, and the
per-cell CLR (``_evidence``) is used instead (``uns`` records which and why).

What comes from libraries and what is written here:

- **Library:** scikit-learn ``GaussianMixture`` (each cell's background level, seeded),
  ``StandardScaler`` + ``PCA`` (the technical component) and ``LinearRegression`` (its per-protein
  fit across cells); scipy's MAD (isotype outliers); scvi-tools 1.4.2 ``TOTALVI``
  (``setup_anndata(protein_expression_obsm_key=...)``); the CLR of ``_evidence``.
- **Hand-written:** the DSB steps around those calls (log(x + 10), standardisation against the
  empties in float64, dropping proteins hardly detected in cells or empties), because the
  reference implementations are the R package dsb and muon, neither a dependency here; the
  empty-droplet choice from the raw matrix (RNA and ADT count windows, a seeded cap); the tag
  table and its figure; the NaN check and refit of totalVI without the empirical prior.

Differences from R dsb, on purpose: the per-cell mixture is sklearn's unequal-variance model
seeded by k-means++ (mclust chooses equal or unequal variances by BIC), and without isotypes the
background mean is centred before it is regressed out, so each protein keeps its mean.

The workflow's steps: :func:`normalise_sample` per sample (empty droplets from the raw matrix,
tag QC, DSB or CLR); :func:`cohort_protein` (the samples' shared tags; samples without CITE-seq
stay in the RNA modality only), :func:`normalisation_table` and :func:`tag_umap` for the cohort;
:func:`cohort_totalvi` (optional); :func:`build_mudata` (``results/cohort/cohort.h5mu``).

Modules (private): ``_evidence`` (CLR, tag calls, protein evidence for RNA labels), ``_dsb``
(isotypes, empty droplets, DSB, the DSB-or-CLR choice), ``_qc`` (tag table, isotype outliers,
figure), ``_totalvi`` (totalVI), ``_cohort`` (one sample end to end, the cohort's protein
modality, totalVI's inputs, the MuData), ``_figures`` (lineage-tag violins, UMAPs).
"""

from ._cohort import (
    NO_TAGS,
    NORMALISATION_COLUMNS,
    TAG_TABLE_COLUMNS,
    build_mudata,
    cohort_protein,
    cohort_totalvi,
    normalisation_table,
    normalise_sample,
    tag_umap,
)
from ._dsb import (
    EMPTY_ADT_RANGE,
    EMPTY_RNA_RANGE,
    ISOTYPE_PATTERN,
    METHODS,
    dsb,
    find_isotypes,
    normalise_protein,
    select_empty_droplets,
)
from ._evidence import (
    PROTEIN_EVIDENCE,
    call_tags,
    clr,
    isotype_controls,
    load_protein_expectations,
    match_tags,
    plot_protein_evidence,
    protein_evidence,
    protein_evidence_by_label,
)
from ._figures import LINEAGE_TAGS, lineage_tags, plot_lineage_tags, plot_tag_umap
from ._qc import TAG_QC_COLUMNS, plot_tag_qc, tag_qc
from ._totalvi import run_totalvi

__all__ = [
    "ISOTYPE_PATTERN", "EMPTY_ADT_RANGE", "EMPTY_RNA_RANGE", "METHODS", "TAG_QC_COLUMNS",
    "find_isotypes", "select_empty_droplets", "dsb", "normalise_protein", "tag_qc", "plot_tag_qc",
    "run_totalvi",
    "NO_TAGS", "NORMALISATION_COLUMNS", "TAG_TABLE_COLUMNS", "LINEAGE_TAGS",
    "normalise_sample", "normalisation_table", "cohort_protein", "tag_umap", "cohort_totalvi", "build_mudata",
    "lineage_tags", "plot_lineage_tags", "plot_tag_umap",
    "PROTEIN_EVIDENCE",
    "load_protein_expectations",
    "match_tags",
    "isotype_controls",
    "clr",
    "call_tags",
    "protein_evidence",
    "protein_evidence_by_label",
    "plot_protein_evidence",
]
