"""Sample metadata and the explicit design matrices of the named designs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

META_COLUMNS = ("patient_id", "timepoint", "response")


class NotEstimable(Exception):
    """A design that cannot be fitted on the samples at hand (the reason is the message)."""


@dataclass
class Design:
    """An explicit design matrix over samples and the coefficient that is tested."""

    name: str
    formula: str
    X: pd.DataFrame
    coef: str
    groups: dict = field(default_factory=dict)  # label -> number of patients
    dropped: str = ""

    @property
    def samples(self) -> pd.Index:
        return self.X.index

    def describe(self) -> dict:
        """The columns every result table carries: design, formula, patients per group, drops."""
        return {"design": self.name, "formula": self.formula,
                "patients": "; ".join(f"{k}: {v}" for k, v in self.groups.items()),
                "dropped": self.dropped}


def sample_meta(records: Sequence[Mapping]) -> pd.DataFrame:
    """Sample metadata (records with sample_id, patient_id, timepoint, response, covariates) as a
    frame indexed by sample.

    Parameters
    ----------
    records
        One mapping per sample with ``sample_id``, ``patient_id``, ``timepoint``, ``response`` and any
        covariates.
    """
    meta = pd.DataFrame(list(records))
    return meta.set_index("sample_id")


def design_names(designs: Sequence[str], response_levels: Sequence[str]) -> list[str]:
    """Config design keywords to concrete design names (``on_treatment_by_response`` expands to
    one on-treatment design per response level).

    Parameters
    ----------
    designs
        Design keywords of the config (``compare.designs``); all but ``on_treatment_by_response`` are
        kept as they are.
    response_levels
        The response levels, in the order the expanded designs take.
    """
    names = []
    for d in designs:
        if d == "on_treatment_by_response":
            names += [f"on_treatment_{lvl}" for lvl in response_levels]
        else:
            names.append(d)
    return names


def covariate_columns(meta: pd.DataFrame, covariates: Mapping[str, str] | Sequence[str]) -> pd.DataFrame:
    """Design columns of the covariates: numeric ones centred, categorical ones as indicators.

    A blank value, or a non-number in a declared numeric column, is an error naming the patients.

    Parameters
    ----------
    meta
        Samples (or patients) with the covariate columns (and ``patient_id``, named in errors).
    covariates
        Column -> ``"numeric"`` or ``"categorical"`` (the config's form); a plain list of names
        infers each type (numeric when every value is a number).
    """
    types = dict(covariates) if isinstance(covariates, Mapping) else dict.fromkeys(covariates)
    cols = {}
    for cov, kind in types.items():
        if cov not in meta:
            raise InputError("config.yaml, key compare.covariates", f"'{cov}' is not a column of the patient sheet.",
                             f"use one of {sorted(c for c in meta.columns if c not in META_COLUMNS)} or remove it.")
        v = meta[cov]
        blank = v.isna() | (v.astype(str).str.strip().isin(["", "nan", "NA", "None"]))
        if blank.any():
            who = sorted(meta.loc[blank, "patient_id"].astype(str).unique()) if "patient_id" in meta else []
            raise InputError("patient sheet, column " + cov, f"no value for patients {who}.",
                             "fill the value in the patient sheet or drop the covariate from compare.covariates.")
        num = pd.to_numeric(v, errors="coerce")
        if kind == "numeric" and num.isna().any():
            bad = sorted(v[num.isna()].astype(str).unique())
            raise InputError("patient sheet, column " + cov, f"values {bad} are not numbers, but compare.covariates "
                             f"declares '{cov}' numeric.", "correct the values or declare it categorical.")
        if kind == "numeric" or (kind is None and num.notna().all()):
            cols[cov] = (num - num.mean()).astype(float)
        else:
            levels = sorted(v.astype(str).unique())
            for lvl in levels[1:]:
                cols[f"{cov}[{lvl}]"] = (v.astype(str) == lvl).astype(float)
    return pd.DataFrame(cols, index=meta.index)


def _pairs(meta: pd.DataFrame, timepoints: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Samples of patients seen at both compared timepoints, and how many patients lacked one."""
    sub = meta[meta["timepoint"].isin(timepoints[:2])]
    n_tp = sub.groupby("patient_id", observed=True)["timepoint"].nunique()
    complete = n_tp.index[n_tp == 2]
    return sub[sub["patient_id"].isin(complete)], int((n_tp < 2).sum())


def _with_response(meta: pd.DataFrame, response_levels: Sequence[str], kept: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The samples whose patient has one of the ``kept`` levels, and a note on the patients left
    out for having no response level (blank: not assessed); patients of other configured levels
    are mentioned when the design compares two levels (a third level is in no two-level test)."""
    resp = meta["response"].astype(str)
    none = ~resp.isin(list(response_levels))
    other = resp.isin(list(response_levels)) & ~resp.isin(list(kept))
    notes = []
    n_none = meta.loc[none.to_numpy(), "patient_id"].nunique()
    if n_none:
        notes.append(f"{n_none} patients without a response")
    n_other = meta.loc[other.to_numpy(), "patient_id"].nunique()
    if n_other and len(kept) > 1:
        notes.append(f"{n_other} patients of other response levels")
    return meta[resp.isin(list(kept)).to_numpy()], "; ".join(notes)


def design_matrix(meta: pd.DataFrame, design: str, *, response_levels: Sequence[str],
                  timepoints: Sequence[str], covariates: Sequence[str] = (), paired: bool = True,
                  min_patients: int = 3) -> Design:
    """The design matrix of one named design over the samples in ``meta``.

    ``meta`` is indexed by sample and has ``patient_id``, ``timepoint``, ``response`` (and the
    covariates). ``paired=False`` drops the patient terms of the on-treatment designs; it exists
    to show what ignoring the pairing costs, never as a recommended analysis. Raises
    :class:`NotEstimable` when a group has fewer than ``min_patients`` patients or the matrix is
    rank-deficient.

    Only designs that use the response need it: ``on_treatment`` keeps every patient with both
    timepoints, whatever their response (a patient not yet assessed, or not evaluable, is still
    a pair); ``baseline``, ``interaction`` and ``on_treatment_<level>`` leave out patients without
    one of the compared levels, and ``dropped`` says how many.

    Parameters
    ----------
    meta
        Samples (index) with ``patient_id``, ``timepoint``, ``response`` and the covariates. A
        response outside ``response_levels`` (blank: not assessed) counts as none.
    design
        ``"baseline"`` (second response level vs the first, at the first timepoint),
        ``"on_treatment"`` (second timepoint vs the first, within patients), ``"on_treatment_<level>"``
        (the same in one response level) or ``"interaction"`` (the on-treatment change in the second
        response level minus that in the first).
    response_levels
        The response levels: the reference first, the tested group second.
    timepoints
        The timepoints compared: baseline first, on-treatment second.
    covariates
        Columns of ``meta`` added to the ``baseline`` design (:func:`covariate_columns`); the paired
        designs do not use them.
    paired
        Patient terms in the on-treatment and interaction designs (see above).
    min_patients
        Fewest patients in each group (a response level; in the paired designs, patients with both
        timepoints) for the design to be fitted.

    Returns
    -------
    The :class:`Design`: ``X`` (samples x columns), the tested coefficient ``coef``, the formula,
    patients per group and what was dropped (patients without both timepoints, or without a
    response in a design that uses it).
    """
    ref, alt = response_levels[0], response_levels[1]
    t0, t1 = timepoints[0], timepoints[1]
    if design == "baseline":
        sub, dropped = _with_response(meta[meta["timepoint"] == t0], response_levels, (ref, alt))
        groups = {lvl: int(sub.loc[sub["response"] == lvl, "patient_id"].nunique()) for lvl in (ref, alt)}
        X = pd.DataFrame({"Intercept": 1.0, "response": (sub["response"] == alt).astype(float)}, index=sub.index)
        X = pd.concat([X, covariate_columns(sub, covariates)], axis=1)
        formula = "~ " + " + ".join(["response", *covariates])
        coef = "response"
    elif design == "on_treatment" or design.startswith("on_treatment_") or design == "interaction":
        level = design[len("on_treatment_"):] if design.startswith("on_treatment_") else None
        if level is not None and level not in response_levels:
            raise InputError("config.yaml, key compare.designs", f"design '{design}' names no response level.",
                             f"use on_treatment_{{{'|'.join(response_levels)}}} or on_treatment_by_response.")
        sub, no_response = meta[meta["timepoint"].isin((t0, t1))], ""
        if level is not None or design == "interaction":  # on_treatment itself needs no response
            sub, no_response = _with_response(sub, response_levels, (level,) if level else (ref, alt))
        sub, n_incomplete = _pairs(sub, timepoints)
        dropped = "; ".join(filter(None, [no_response, f"{n_incomplete} patients without both {t0} and {t1}"
                                          if n_incomplete else ""]))
        tp = (sub["timepoint"] == t1).astype(float)
        cols = {"Intercept": np.ones(len(sub))}
        if paired:  # one indicator per patient but the first, built at once (53 columns at trial size)
            pid = sub["patient_id"].to_numpy()
            for p in sorted(sub["patient_id"].unique())[1:]:
                cols[f"patient[{p}]"] = (pid == p).astype(float)
        cols["timepoint"] = tp.to_numpy()
        X = pd.DataFrame(cols, index=sub.index)
        if design == "interaction":
            X["timepoint:response"] = tp * (sub["response"] == alt).astype(float)
            groups = {f"{lvl} pairs": int(sub.loc[sub["response"] == lvl, "patient_id"].nunique())
                      for lvl in (ref, alt)}
            formula, coef = "~ patient + timepoint + timepoint:response", "timepoint:response"
        else:
            groups = {f"{level or 'all'} pairs": int(sub["patient_id"].nunique())}
            formula, coef = ("~ patient + timepoint" if paired else "~ timepoint"), "timepoint"
    else:
        raise InputError("config.yaml, key compare.designs", f"unknown design '{design}'.",
                         "use baseline, on_treatment, on_treatment_by_response, on_treatment_<level> or interaction.")
    short = {k: v for k, v in groups.items() if v < min_patients}
    if short:
        raise NotEstimable(f"too few patients ({', '.join(f'{k}: {v}' for k, v in short.items())}; "
                           f"need {min_patients} per group)" + (f"; left out: {dropped}" if dropped else ""))
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1] or X.shape[0] <= X.shape[1]:
        raise NotEstimable(f"design {formula} is not estimable on {X.shape[0]} samples "
                           "(no residual degrees of freedom or confounded covariates)")
    return Design(design, formula, X, coef, groups, dropped)
