"""Names and defaults shared by the annotation modules."""

from __future__ import annotations

MAJOR_TYPES = ("T/NK", "B", "plasma", "myeloid", "mast", "pDC", "malignant/epithelial",
               "fibroblast", "endothelial")
UNKNOWN = "unknown"
METHOD_NAME = "markers"

_MAJOR_KEYS = {"markers", "negative", "source", "subtypes", "groups", "components"}
_SUBTYPE_KEYS = {"markers", "negative", "requires", "source", "group"}
_GROUP_KEYS = {"markers", "source"}

# Defaults of the assignment, in units of the ulm t-value on standardised marker genes.
# Chosen on six simulated cohorts (seeds 0, 1, 3, 7, 11, 23) with null clusters, and checked on
# real PBMCs (tests/test_annotate.py); see assign_labels for what each does.
DEFAULTS = {
    "min_score": 1.0,           # best major score below this: unknown
    "min_margin": 0.3,          # best minus runner-up below this: unknown
    "strong_score": 4.0,        # a call this sure (score and margin) may stand against its cluster
    "strong_margin": 3.0,
    "majority": 0.5,            # share of a cluster's calls one type needs for a consensus
    "min_called": 0.25,         # share of a cluster's cells that must have a call for a consensus
    "against": 0.5,             # a cell's score for its cluster's type at or below this speaks against it
    "minority": 0.15,           # a type with this share of a cluster's calls is a population of its own
    "group_majority": 0.7,      # share of a cluster's subtype calls one group (CD8 T, CD4 T) needs to smooth
    "min_score_subtype": 0.5,   # best subtype score below this: subtype unknown
    "min_margin_subtype": 0.1,  # best minus runner-up subtype below this: subtype unknown
    "margin_full": 3.0,         # margin that counts as full confidence
    "max_value": 10.0,          # clip of the standardised marker genes
}
