"""Copy number from single-cell DNA: bins, cell QC, GC correction, integer copy number, clones.

Per sample (:func:`process_sample` runs the first four)::

    ref = read_bin_reference("resources/bins_1mb_grch38.tsv.gz")
    a = filter_bins(read_scdna(path, sample_id=...), reference=ref)   # GC, blacklist
    qc = cell_qc(a)                                                     # obs cnv_qc_pass
    a = a[a.obs["cnv_qc_pass"]].copy()
    gc_correct(a)                                                       # layers["ratio"]
    call_copy_number(a)                                                 # layers["copy_number"]

Per patient::

    p = combine_samples([a1, a2])                # InputError when the bins differ
    call_clones(p)                               # obs["clone"]: {patient}_C1.., normal, outlier
    cons = clone_consensus(p)                    # clones x bins, median integer copy number
    tree = clone_tree(cons)                      # clone, parent, events
    fr = clone_fractions(p.obs)                  # per sample
    # or all of it: p, cons, tree, fr, status = process_patient([a1, a2])

From scRNA-seq (``infer``): :func:`infer_cnv` (infercnvpy against the patient's immune and
stromal cells), :func:`call_malignant` (malignant / non_malignant / uncertain per cell, with EBV
transcripts as extra evidence), :func:`plot_cnv_heatmap`; :func:`refine_labels` (``labels``)
splits the epithelium by the call for the comparisons; :func:`patient_malignant_cells` (``rna``)
runs a patient's steps in order, with the link below.

The link (``link``): :func:`assign_clones` gives each scRNA malignant cell one of its patient's
scDNA clones (clonealign-style, with a consistency check), :func:`clone_fractions_from_rna`,
:func:`clone_pseudobulk`.

Figures (``figures``): :func:`plot_clone_heatmap`, :func:`plot_consensus_profiles`,
:func:`plot_clone_fractions`, :func:`plot_clone_dynamics`. Clone dynamics (``dynamics``): the
patient's dominant clone's share tested with the comparison designs (:func:`clone_dynamics_test`).

A ratio table (e.g. CopyKit segment ratios) enters at :func:`read_ratio_table` and skips GC
correction. Libraries: statsmodels (quantile regression's reference engine, lowess), hmmlearn
(Viterbi), scipy (median filter, spanning tree), scikit-learn (PCA, HDBSCAN). Each module's
docstring says what is written here and why.
"""

from .bins import annotate_bins, combine_samples, filter_bins, read_bin_reference, read_ratio_table
from .clones import call_clones, clone_consensus, clone_fractions, clone_tree, event_distance, process_patient
from .dynamics import clone_dynamics_test, dominant_clone_share
from .figures import plot_clone_dynamics, plot_clone_fractions, plot_clone_heatmap, plot_consensus_profiles
from .infer import EPITHELIAL_TYPES, REFERENCE_TYPES, call_malignant, ebv_genes, infer_cnv, plot_cnv_heatmap
from .labels import EPITHELIAL_NORMAL, EPITHELIAL_UNCERTAIN, refine_labels
from .link import UNASSIGNED, assign_clones, clone_fractions_from_rna, clone_pseudobulk, genes_to_bins
from .rna import CALL_COLUMNS, patient_malignant_cells, rna_clone_fractions
from .scdna import call_copy_number, cell_qc, gc_correct, process_sample, summarise_cell_qc

__all__ = [
    "CALL_COLUMNS",
    "patient_malignant_cells",
    "rna_clone_fractions",
    "EPITHELIAL_TYPES",
    "REFERENCE_TYPES",
    "call_malignant",
    "ebv_genes",
    "infer_cnv",
    "plot_cnv_heatmap",
    "EPITHELIAL_NORMAL",
    "EPITHELIAL_UNCERTAIN",
    "refine_labels",
    "UNASSIGNED",
    "assign_clones",
    "clone_fractions_from_rna",
    "clone_pseudobulk",
    "genes_to_bins",
    "annotate_bins",
    "call_clones",
    "call_copy_number",
    "cell_qc",
    "clone_consensus",
    "clone_dynamics_test",
    "clone_fractions",
    "clone_tree",
    "combine_samples",
    "dominant_clone_share",
    "event_distance",
    "filter_bins",
    "gc_correct",
    "plot_clone_dynamics",
    "plot_clone_fractions",
    "plot_clone_heatmap",
    "plot_consensus_profiles",
    "process_patient",
    "process_sample",
    "read_bin_reference",
    "read_ratio_table",
    "summarise_cell_qc",
]
