"""The cell labels the comparisons use once copy number has called the malignant cells.

Markers say "epithelial", not "malignant": the annotation labels NPC's epithelium ``malignant``
by its lineage genes, normal epithelium included. With the per-cell malignant call
(:func:`pinnacle.cnv.call_malignant`) the comparisons count and pseudobulk only CNV-confirmed
malignant cells as ``malignant``; epithelial cells called non-malignant become
``epithelial_normal`` and uncertain ones ``epithelial_uncertain`` (their own small types, so
neither dilutes the tumour nor disappears). Non-epithelial cells keep their label: the call
gives them a 1:1000 prior, and one called malignant is flagged in the call table, not relabelled.
Written here (a relabelling rule; no library call).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pinnacle.errors import InputError

__all__ = ["EPITHELIAL_NORMAL", "EPITHELIAL_UNCERTAIN", "refine_labels"]

EPITHELIAL_NORMAL = "epithelial_normal"
EPITHELIAL_UNCERTAIN = "epithelial_uncertain"


def refine_labels(labels: pd.DataFrame, calls: pd.DataFrame, *, label_key: str = "cell_type",
                  major_key: str = "cell_type_major", epithelial: Sequence[str] = ("malignant/epithelial",),
                  call_key: str = "malignant_call") -> pd.DataFrame:
    """The labels with the epithelium split by the malignant call.

    Parameters
    ----------
    labels
        The annotation's cell table indexed by cell (``results/cohort/cell_labels.tsv.gz``).
    calls
        Per-cell malignant calls indexed by cell (``malignant_call``, ``malignant_confidence``,
        ``clone``); cells without a call (a patient without inference) keep their label.
    label_key
        The label column the comparisons use (``compare.label_key``); ``cell_type`` is
        refined too when it is another column.
    major_key
        Column of the major type.
    epithelial
        Major types whose cells the call splits.
    call_key
        Column of the call.
    """
    for key in {label_key, "cell_type", major_key}:
        if key not in labels:
            raise InputError("cell labels", f"no column {key!r}.", "pass the annotation's cell_labels.tsv.gz.")
    if call_key not in calls:
        raise InputError("malignant calls", f"no column {call_key!r}.", "pass the cnv_rna stage's cell table.")
    out = labels.copy()
    call = calls[call_key].reindex(out.index).fillna("").astype(str)
    epi = out[major_key].astype(str).isin(epithelial)
    new = {"non_malignant": EPITHELIAL_NORMAL, "uncertain": EPITHELIAL_UNCERTAIN}
    for key in dict.fromkeys([label_key, "cell_type"]):
        values = out[key].astype(str)
        for c, name in new.items():
            values = values.mask(epi & (call == c), name)
        out[key] = values
    extra = [c for c in (call_key, "malignant_confidence", "clone") if c in calls]
    return out.join(calls[extra].reindex(out.index))
