"""Clone dynamics: does treatment shrink a patient's dominant clone, and more in responders?

Clones are the patient's own (P01_C1 and P02_C1 are unrelated), so there is no feature shared
across patients to test clone by clone. The one shared question is about each patient's
*dominant* clone, the largest at the first timepoint (chosen on half of that sample's cells and
measured on the other half, so that chance does not make it seem to shrink; see
:func:`dominant_clone_share`): its share of the tumour cells per sample,
arcsine-square-root transformed (as composition proportions are), is tested with the
comparison designs of :mod:`pinnacle.compare` (``design_matrix`` and ``ols_test``; patients are
the replicates, a patient's two samples a pair). One feature, so no variance moderation; one
test per design, and BH across the designs of the table is the stated family.

A sample with fewer than ``min_tumour_cells`` tumour cells has no usable share (one cell gives 0
or 1); it is left out, and with it the patient's pair from the paired designs.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pinnacle import compare
from pinnacle.errors import InputError

from .clones import _NOT_CLONES
from .link import UNASSIGNED

__all__ = ["clone_dynamics_test", "dominant_clone_share"]


def dominant_clone_share(fractions: pd.DataFrame, meta: pd.DataFrame, *, timepoints: Sequence[str],
                         min_tumour_cells: int = 5, random_state: int = 0) -> pd.DataFrame:
    """Per sample: the patient's dominant clone and its share of the sample's tumour cells.

    The dominant clone is the largest among a random half of the tumour cells of the patient's
    first sample (a seeded hypergeometric split of its clone counts); that sample's share is
    measured on the other half. Choosing and measuring on the same cells would favour a clone that
    is large there by chance, which then seems to shrink (regression to the mean; with 15-60
    cells per sample that made null cohorts call shrinking far above the nominal rate). Later
    samples use all their cells.

    Parameters
    ----------
    fractions
        Long clone-fraction table (``patient_id``, ``sample_id``, ``clone``, ``n_cells``), as
        :func:`pinnacle.cnv.clone_fractions` gives per patient.
    meta
        Sample metadata indexed by sample (``patient_id``, ``timepoint``, ``response``).
    timepoints
        Timepoints in order (samples at other timepoints are left out).
    min_tumour_cells
        Fewer tumour cells behind a share (in the first sample: in its measuring half): share NaN
        (``status`` says why).
    random_state
        Seed of the split.
    """
    missing = {"patient_id", "sample_id", "clone", "n_cells"} - set(fractions)
    if missing:
        raise InputError("clone fractions table", f"columns {sorted(missing)} are missing.",
                         "pass the table written by the cnv stage (results/tables/clone_fractions.tsv).")
    tum = fractions[~fractions["clone"].astype(str).isin((*_NOT_CLONES, UNASSIGNED))].copy()
    tum = tum.drop(columns=[c for c in ("timepoint", "response") if c in tum]).join(meta[["timepoint"]], on="sample_id")
    tum = tum[tum["timepoint"].isin(timepoints)]
    tum["_t"] = tum["timepoint"].map({t: i for i, t in enumerate(timepoints)})
    rows = []
    for pid, part in tum.groupby("patient_id", sort=True):
        counts = part.pivot_table(index="clone", columns="sample_id", values="n_cells", aggfunc="sum", fill_value=0)
        counts = counts.sort_index()
        order = part.drop_duplicates("sample_id").sort_values(["_t", "sample_id"]).set_index("sample_id")
        first = order.index[0]
        c = counts[first].to_numpy(dtype=np.int64)
        rng = np.random.default_rng([random_state, zlib.crc32(str(pid).encode())])
        choose = rng.multivariate_hypergeometric(c, int(c.sum()) // 2) if c.sum() else c
        dominant = counts.index[int(np.argmax(choose))]
        measure = {first: pd.Series(c - choose, index=counts.index)}
        for sid in order.index:
            m = measure.get(sid, counts[sid])
            n, k = int(m.sum()), int(m[dominant])
            ok = n >= min_tumour_cells
            why = "used" if ok else f"left out: {n} tumour cells{' in the measuring half' * (sid == first)} " \
                                    f"(< {min_tumour_cells})"
            rows.append({"patient_id": pid, "sample_id": sid, "timepoint": order.loc[sid, "timepoint"],
                         "dominant_clone": dominant, "n_tumour_cells": int(counts[sid].sum()), "n_measured": n,
                         "n_dominant": k, "share": k / n if ok else np.nan, "status": why})
    out = pd.DataFrame(rows, columns=["patient_id", "sample_id", "timepoint", "dominant_clone", "n_tumour_cells",
                                      "n_measured", "n_dominant", "share", "status"])
    return out.join(meta[["response"]], on="sample_id")


def _describe(used: pd.DataFrame, design: str, levels: Sequence[str], timepoints: Sequence[str]) -> dict:
    """Plain-scale summaries per response group: the mean share at baseline (baseline design),
    else the mean paired change of the share (second minus first timepoint), so that the
    columns always have the sign of what is tested."""
    if design == "baseline":
        return {f"mean_share_{lv}": float(used.loc[used["response"] == lv, "share"].mean()) for lv in levels}
    wide = used.pivot_table(index=["patient_id", "response"], columns="timepoint", values="share").reset_index()
    change = wide[timepoints[1]] - wide[timepoints[0]]
    return {f"mean_change_{lv}": float(change[wide["response"] == lv].mean()) for lv in levels}


def clone_dynamics_test(fractions: pd.DataFrame, meta: pd.DataFrame, *, designs: Sequence[str],
                        response_levels: Sequence[str], timepoints: Sequence[str], min_patients: int = 2,
                        min_tumour_cells: int = 5, source: str = "scDNA", random_state: int = 0
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test the dominant clone's share with each comparison design.

    Parameters
    ----------
    fractions, meta, timepoints, min_tumour_cells, random_state
        As :func:`dominant_clone_share`.
    designs
        Design names of :func:`pinnacle.compare.design_matrix` (e.g. ``on_treatment_responder``,
        ``interaction``); ``baseline`` asks whether responders start with a more dominant clone.
    response_levels
        Reference level first.
    min_patients
        Fewest patients (pairs) per group for a design to be tested.
    source
        The assay the fractions come from, written in the table (``scDNA``, ``scRNA``).

    Returns
    -------
    The tests (one row per design: estimate on the arcsine-square-root scale with 95% interval,
    t, p, BH-adjusted p across the designs, mean shares, status) and the per-sample shares.
    """
    shares = dominant_clone_share(fractions, meta, timepoints=timepoints, min_tumour_cells=min_tumour_cells,
                                  random_state=random_state)
    if shares.empty:  # no clone in any sample (no scDNA clones, or no cell assigned to one)
        return pd.DataFrame({"source": source, "design": list(designs), "feature": "dominant_clone_share",
                             "status": f"not tested: no {source} cell in a clone"}), shares
    used = shares.dropna(subset=["share"]).set_index("sample_id")
    y = pd.DataFrame({"dominant_clone_share": np.arcsin(np.sqrt(used["share"]))})
    rows = []
    for design in designs:
        base = {"source": source, "design": design, "feature": "dominant_clone_share"}
        try:
            d = compare.design_matrix(meta.loc[used.index], design, response_levels=response_levels,
                                      timepoints=timepoints, min_patients=min_patients)
        except compare.NotEstimable as why:
            rows.append({**base, "status": f"not tested: {why}"})
            continue
        res = compare.ols_test(y, d, moderate=False).iloc[0].to_dict()
        res.pop("feature", None)
        rows.append({**base, **res, **_describe(used.loc[d.samples], design, response_levels, timepoints),
                     **d.describe(), "status": "tested"})
    table = pd.DataFrame(rows)
    if "pvalue" in table:
        tested = table["pvalue"].notna().to_numpy()
        table["padj"] = np.nan
        table.loc[tested, "padj"] = compare.bh(table.loc[tested, "pvalue"].to_numpy())
    table["test"] = ("least squares on the arcsine-square-root share of the patient's dominant clone (largest in a "
                     "random half of the first sample's cells, measured on the other half) among the sample's tumour "
                     "cells; BH across the designs of this table")
    return table, shares
