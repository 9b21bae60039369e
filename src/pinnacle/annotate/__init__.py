"""Marker-based cell-type annotation at two levels: ``cell_type_major`` and ``cell_type``.

Why: every later comparison of the trial (composition, pseudobulk expression per cell type,
signatures) is made per cell type, so every cell needs a label that a reader can check against
known biology and correct. Curated literature markers (``resources/markers.yaml``, each set with
its source) need nothing external, so this is the default method; CellTypist and scANVI transfer
are optional alternatives elsewhere.

What comes from libraries and what is written here:

- **Scoring (library):** decoupler 2.x univariate linear model (``decoupler.mt.ulm``) gives each
  cell an enrichment t-value per marker set; negative markers enter with weight -1. Only the
  marker genes are taken out of the (sparse) matrix and made dense, in blocks of cells; each
  gene is first standardised across the cohort (mean 0, variance 1, clipped at ``max_value``,
  as ``scanpy.pp.scale`` does) so that a highly expressed marker (LYZ, immunoglobulins) does not
  outvote a specific but lowly expressed one (CLEC9A, FOXP3). The scores are cohort-relative.
  One hand-written guard: a cell that detects none of a set's positive markers scores at most 0
  for it (a cell without markers would otherwise score high for sets of rare genes).
- **Hierarchical assignment and smoothing (hand-written, :func:`assign_labels`):** the major
  type is the per-cell best major set (a lineage also counts the evidence of its own subtypes, so
  a FOXP3+ IL2RA+ cell is T/NK even when CD3 transcripts dropped out), called ``unknown`` when
  the best score is low or barely beats the runner-up. Each Leiden cluster whose called cells
  agree by a clear majority then gives its type to all its cells, except a cell whose markers
  speak against the cluster's type and whose own call is strong or shared by a sizeable part of
  the cluster (a mast cell or pDC that Leiden put in a myeloid cluster keeps its label); in a
  cluster without consensus only strong calls stand and the rest are ``unknown``. The subtype is
  the best subtype set *of that major type only*, again ``unknown`` when weak or ambiguous. No
  library implements this two-level rule with abstention, hence the hand-written code. The
  thresholds (:data:`DEFAULTS`) were chosen on simulated cohorts with planted null clusters and
  checked on real PBMCs.

Modules (private, behind this public namespace): ``_markers`` (the curated file, cell-state
genes out of identity, panel gaps), ``_scoring`` (scores and assignment), ``_tables`` (tables,
state scores, figures), ``_transfer`` (CellTypist / scANVI label transfer, consensus, agreement
figure), ``_corrections`` (the analyst's corrections). Protein (CITE-seq) evidence for the labels
lives in :mod:`pinnacle.protein` and is re-exported here for existing callers.

Nothing here imports the simulator or reads its truth: the annotation must recover the planted
types from literature markers alone.
"""


from pinnacle.protein import (
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

from ._constants import DEFAULTS, MAJOR_TYPES, METHOD_NAME, UNKNOWN
from ._corrections import apply_corrections, load_corrections
from ._markers import (
    check_markers_present,
    drop_absent_sets,
    load_markers,
    marker_sets,
    panel_gaps,
    remove_state_genes,
    state_genes,
)
from ._scoring import annotate_by_markers, assign_labels, score_markers
from ._tables import cell_type_counts, crosstab_clusters, plot_marker_dotplot, plot_state_scores, score_states
from ._transfer import (
    annotate_celltypist,
    annotate_scanvi,
    consensus_labels,
    method_agreement,
    plot_method_agreement,
    train_celltypist_model,
)

__all__ = [
    "MAJOR_TYPES", "UNKNOWN", "DEFAULTS", "METHOD_NAME",
    "load_markers", "marker_sets", "check_markers_present", "drop_absent_sets", "remove_state_genes", "state_genes",
    "panel_gaps", "score_markers", "assign_labels", "annotate_by_markers",
    "cell_type_counts", "crosstab_clusters", "score_states", "plot_state_scores", "plot_marker_dotplot",
    "train_celltypist_model", "annotate_celltypist", "annotate_scanvi", "consensus_labels",
    "method_agreement", "plot_method_agreement", "load_corrections", "apply_corrections",
    "PROTEIN_EVIDENCE", "load_protein_expectations", "match_tags", "isotype_controls", "clr", "call_tags",
    "protein_evidence", "protein_evidence_by_label", "plot_protein_evidence",
]
