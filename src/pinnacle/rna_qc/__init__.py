"""Per-sample scRNA-seq quality control: cell labels, QC metrics, per-sample summaries.

One sample at a time (the trial's unit of work), all genes of that sample in memory, sparse.
Metrics come from ``scanpy.pp.calculate_qc_metrics``; what is written here is only the
bookkeeping around it (which genes are mitochondrial, ribosomal, haemoglobin; the summary row).

Modules (private, behind this public namespace): ``_metrics`` (gene groups, QC metrics,
thresholds), ``_doublets`` (Scrublet), ``_ambient`` (raw/filtered barcode check, ambient
profile and contamination estimate), ``_sample`` (one sample, end to end), ``_figures`` (plots).
"""

from ._ambient import (
    ambient_profile,
    check_raw_matches_filtered,
    estimate_ambient,
    estimate_contamination,
    quick_clusters,
)
from ._doublets import call_doublets, expected_doublet_rate
from ._figures import plot_qc_summary, plot_sample_qc
from ._metrics import (
    MAD_METRICS,
    MITO_APPLIED,
    apply_thresholds,
    flag_gene_groups,
    mad,
    mito_skip_reason,
    qc_metrics,
    qc_thresholds,
)
from ._sample import run_sample_qc

__all__ = [
    "MAD_METRICS",
    "MITO_APPLIED",
    "ambient_profile",
    "apply_thresholds",
    "call_doublets",
    "check_raw_matches_filtered",
    "estimate_ambient",
    "estimate_contamination",
    "expected_doublet_rate",
    "flag_gene_groups",
    "mad",
    "mito_skip_reason",
    "plot_qc_summary",
    "plot_sample_qc",
    "qc_metrics",
    "qc_thresholds",
    "quick_clusters",
    "run_sample_qc",
]
