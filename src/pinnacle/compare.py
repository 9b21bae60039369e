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

Patients missing a timepoint enter ``baseline`` and are dropped from the paired designs; each
table says how many patients each group kept.

Libraries: decoupler makes the pseudobulks, filters genes (edgeR's filterByExpr rule) and runs
the enrichment (ulm); pydeseq2 tests DE with apeGLM-style shrunken fold changes; statsmodels fits
the per-type linear models. Written here: the design matrices (explicit, so the paired and
interaction designs are exactly the ones described and full rank is checked), and the
composition test. For composition we use a linear model of arcsine-square-root (or logit)
transformed per-sample proportions with patient as the pairing factor and empirical-Bayes moderated variances (as
propeller does with limma, Phipson et al., Bioinformatics 2022; limma's squeezeVar is
re-implemented here as limma is R-only) instead of scCODA, because scCODA (pertpy) has no pairing or interaction
and pooling a patient's two samples as independent would overstate the evidence.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from .errors import InputError

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
    frame indexed by sample."""
    meta = pd.DataFrame(list(records))
    return meta.set_index("sample_id")


def design_names(designs: Sequence[str], response_levels: Sequence[str]) -> list[str]:
    """Config design keywords to concrete design names (``on_treatment_by_response`` expands to
    one on-treatment design per response level)."""
    names = []
    for d in designs:
        if d == "on_treatment_by_response":
            names += [f"on_treatment_{lvl}" for lvl in response_levels]
        else:
            names.append(d)
    return names


def _covariate_columns(meta: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    cols = {}
    for cov in covariates:
        if cov not in meta:
            raise InputError("config.yaml, key compare.covariates", f"'{cov}' is not a column of the patient sheet.",
                             f"use one of {sorted(c for c in meta.columns if c not in META_COLUMNS)} or remove it.")
        v = meta[cov]
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().all():
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


def design_matrix(meta: pd.DataFrame, design: str, *, response_levels: Sequence[str],
                  timepoints: Sequence[str], covariates: Sequence[str] = (), paired: bool = True,
                  min_patients: int = 2) -> Design:
    """The design matrix of one named design over the samples in ``meta``.

    ``meta`` is indexed by sample and has ``patient_id``, ``timepoint``, ``response`` (and the
    covariates). ``paired=False`` drops the patient terms of the on-treatment designs; it exists
    to show what ignoring the pairing costs, never as a recommended analysis. Raises
    :class:`NotEstimable` when a group has fewer than ``min_patients`` patients or the matrix is
    rank-deficient.
    """
    ref, alt = response_levels[0], response_levels[1]
    t0, t1 = timepoints[0], timepoints[1]
    meta = meta[meta["response"].isin(response_levels)]
    if design == "baseline":
        sub = meta[meta["timepoint"] == t0]
        groups = {lvl: int(sub.loc[sub["response"] == lvl, "patient_id"].nunique()) for lvl in (ref, alt)}
        X = pd.DataFrame({"Intercept": 1.0, "response": (sub["response"] == alt).astype(float)}, index=sub.index)
        X = pd.concat([X, _covariate_columns(sub, covariates)], axis=1)
        formula = "~ " + " + ".join(["response", *covariates])
        coef, dropped = "response", ""
    elif design == "on_treatment" or design.startswith("on_treatment_") or design == "interaction":
        level = design[len("on_treatment_"):] if design.startswith("on_treatment_") else None
        if level is not None and level not in response_levels:
            raise InputError("config.yaml, key compare.designs", f"design '{design}' names no response level.",
                             f"use on_treatment_{{{'|'.join(response_levels)}}} or on_treatment_by_response.")
        sub = meta if level is None else meta[meta["response"] == level]
        sub, n_incomplete = _pairs(sub, timepoints)
        dropped = f"{n_incomplete} patients without both {t0} and {t1}" if n_incomplete else ""
        tp = (sub["timepoint"] == t1).astype(float)
        X = pd.DataFrame({"Intercept": 1.0}, index=sub.index)
        if paired:
            patients = sorted(sub["patient_id"].unique())
            for p in patients[1:]:
                X[f"patient[{p}]"] = (sub["patient_id"] == p).astype(float)
        X["timepoint"] = tp
        if design == "interaction":
            X["timepoint:response"] = tp * (sub["response"] == alt).astype(float)
            groups = {f"{lvl} pairs": int(sub.loc[sub["response"] == lvl, "patient_id"].nunique()) for lvl in (ref, alt)}
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
                           f"need {min_patients} per group)")
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1] or X.shape[0] <= X.shape[1]:
        raise NotEstimable(f"design {formula} is not estimable on {X.shape[0]} samples "
                           "(no residual degrees of freedom or confounded covariates)")
    return Design(design, formula, X, coef, groups, dropped)


# ---------------------------------------------------------------------------------------------
# pseudobulk
# ---------------------------------------------------------------------------------------------
def pseudobulk_sample(adata: ad.AnnData, labels: pd.DataFrame, *, label_key: str = "cell_type",
                      sample_key: str = "sample_id", exclude: Sequence[str] = ("unknown",)) -> ad.AnnData:
    """Sum one sample's counts per cell type (decoupler), all genes.

    ``labels`` is the cohort cell table (cell id -> label); cells it does not list (removed after
    QC) and ``exclude`` labels are left out. Returns types x genes with ``obs`` ``sample_id``,
    ``cell_type``, ``n_cells``, ``n_counts``; ``X`` sparse float32 sums.
    """
    import decoupler as dc

    if label_key not in labels:
        raise InputError("cell label table", f"has no column '{label_key}'.",
                         f"set compare.label_key to one of {list(labels.columns)}.")
    lab = labels[label_key].reindex(adata.obs_names)
    keep = lab.notna().to_numpy() & ~lab.isin(list(exclude)).to_numpy()
    sub = adata[keep].copy()
    sub.obs = pd.DataFrame({sample_key: adata.obs[sample_key].astype(str).to_numpy()[keep],
                            "cell_type": lab.to_numpy()[keep].astype(str)}, index=sub.obs_names)
    if "counts" in sub.layers:
        sub.X = sub.layers["counts"]
    if sub.n_obs == 0:
        return ad.AnnData(X=sp.csr_matrix((0, adata.n_vars), dtype=np.float32), var=adata.var[[]].copy(),
                          obs=pd.DataFrame(columns=[sample_key, "cell_type", "n_cells", "n_counts"]))
    pb = dc.pp.pseudobulk(sub, sample_col=sample_key, groups_col="cell_type", mode="sum", skip_checks=True)
    out = ad.AnnData(X=sp.csr_matrix(np.asarray(pb.X, dtype=np.float32)), var=adata.var[[]].copy())
    out.obs = pd.DataFrame({"sample_id": pb.obs[sample_key].astype(str).to_numpy(),
                            "cell_type": pb.obs["cell_type"].astype(str).to_numpy(),
                            "n_cells": pb.obs["psbulk_cells"].astype(int).to_numpy(),
                            "n_counts": pb.obs["psbulk_counts"].astype(float).to_numpy()})
    out.obs_names = out.obs["sample_id"] + "|" + out.obs["cell_type"]
    return out


def concat_pseudobulks(parts: Sequence[ad.AnnData]) -> ad.AnnData:
    """Stack per-sample pseudobulks; genes a sample lacks count as 0 (outer join)."""
    pb = ad.concat(list(parts), join="outer", fill_value=0, index_unique=None)
    pb.X = sp.csr_matrix(pb.X, dtype=np.float32)
    return pb


def _cell_type_counts(pb: ad.AnnData, cell_type: str, *, min_cells: int, min_counts: float) -> pd.DataFrame:
    """Samples x genes integer counts of one type's pseudobulks above the floors."""
    obs = pb.obs
    rows = np.flatnonzero((obs["cell_type"] == cell_type).to_numpy()
                          & (obs["n_cells"] >= min_cells).to_numpy() & (obs["n_counts"] >= min_counts).to_numpy())
    X = pb.X[rows]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return pd.DataFrame(np.rint(X).astype(np.int64), index=obs["sample_id"].to_numpy()[rows], columns=pb.var_names)


def _expressed_genes(counts: pd.DataFrame, group: pd.Series) -> np.ndarray:
    """Genes expressed enough to test: edgeR's filterByExpr rule, via decoupler."""
    import decoupler as dc

    a = ad.AnnData(X=counts.to_numpy(dtype=np.float32), obs=pd.DataFrame({"group": group.astype(str).to_numpy()},
                                                                          index=counts.index),
                   var=pd.DataFrame(index=counts.columns))
    genes = dc.pp.filter_by_expr(a, group="group", min_count=10, min_total_count=15, inplace=False)
    return np.asarray(genes)


def deseq2_test(counts: pd.DataFrame, design: Design, *, alpha: float = 0.1, shrink: bool = True,
                n_cpus: int = 1) -> pd.DataFrame:
    """pydeseq2 Wald test of ``design.coef``, with shrunken log2 fold changes and BH FDR.

    ``counts`` is samples x genes (integers) over ``design.samples``. Returns one row per gene:
    ``base_mean``, ``log2fc`` (MLE), ``log2fc_shrunk``, ``lfc_se``, ``stat``, ``pvalue``,
    ``padj`` (BH after pydeseq2's independent filtering, at ``alpha``).
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    counts = counts.loc[design.samples]
    meta = pd.DataFrame({"sample": design.samples}, index=design.samples)
    dds = DeseqDataSet(counts=counts, metadata=meta, design=design.X, quiet=True, n_cpus=n_cpus)
    dds.deseq2()
    contrast = (design.X.columns == design.coef).astype(float)
    stats = DeseqStats(dds, contrast=contrast, alpha=alpha, quiet=True, n_cpus=n_cpus)
    stats.summary()
    res = stats.results_df.copy()
    out = pd.DataFrame({"gene": res.index, "base_mean": res["baseMean"].to_numpy(),
                        "log2fc": res["log2FoldChange"].to_numpy(), "lfc_se": res["lfcSE"].to_numpy(),
                        "stat": res["stat"].to_numpy(), "pvalue": res["pvalue"].to_numpy(),
                        "padj": res["padj"].to_numpy()})
    if shrink:
        stats.lfc_shrink(coeff=design.coef)
        out["log2fc_shrunk"] = stats.results_df["log2FoldChange"].to_numpy()
    else:
        out["log2fc_shrunk"] = np.nan
    return out


DE_COLUMNS = ("cell_type", "gene", "base_mean", "log2fc", "log2fc_shrunk", "lfc_se", "stat", "pvalue", "padj",
              "design", "formula", "patients", "dropped", "test")


def pseudobulk_de(pb: ad.AnnData, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                  timepoints: Sequence[str], covariates: Sequence[str] = (), cell_types: Sequence[str] | None = None,
                  min_cells: int = 10, min_counts: float = 1000, min_patients: int = 2, alpha: float = 0.1,
                  shrink: bool = True, paired: bool = True, n_cpus: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pseudobulk DE of one design in every cell type (or the ``cell_types`` given, in their order).

    Returns ``(results, status)``: results has one row per cell type x gene with the design, its
    formula, patients per group and the test; status has one row per cell type saying whether it
    was tested, on how many samples and genes, or why not. Each type is fitted and BH-adjusted on
    its own, so calling this once per type and joining the parts with :func:`combine_de` gives
    the same tables as one call (the workflow does that, one job per design and type).
    """
    if cell_types is None:
        cell_types = de_cell_types(pb.obs["cell_type"])
    results, status = [], []
    for ct in cell_types:
        counts = _cell_type_counts(pb, ct, min_cells=min_cells, min_counts=min_counts)
        row = {"cell_type": ct, "design": design, "n_samples": 0, "n_genes": 0, "n_significant": 0}
        try:
            d = design_matrix(meta.loc[meta.index.intersection(counts.index)], design,
                              response_levels=response_levels, timepoints=timepoints,
                              covariates=covariates, paired=paired, min_patients=min_patients)
        except NotEstimable as why:
            status.append({**row, "status": f"not tested: {why}"})
            continue
        counts = counts.loc[d.samples]
        genes = _expressed_genes(counts, d.X[d.coef])
        if len(genes) < 10:
            status.append({**row, "status": "not tested: fewer than 10 expressed genes"})
            continue
        res = deseq2_test(counts[genes], d, alpha=alpha, shrink=shrink, n_cpus=n_cpus)
        res.insert(0, "cell_type", ct)
        res = res.assign(**d.describe())
        res["test"] = "pydeseq2 Wald, BH FDR"
        results.append(res)
        status.append({**row, **d.describe(), "n_samples": len(d.samples), "n_genes": len(genes),
                       "n_significant": int((res["padj"] < alpha).sum()), "status": "tested"})
    cols = list(DE_COLUMNS)
    res = pd.concat(results, ignore_index=True)[cols] if results else pd.DataFrame(columns=cols)
    return res, pd.DataFrame(status)


def de_cell_types(observed: Sequence[str], listed: Sequence[str] = ()) -> list[str]:
    """The cell types whose DE is tested: ``listed`` (in its order, once each) when it names any,
    else every type in ``observed`` (the pseudobulks' ``cell_type`` column), sorted. A listed
    type without pseudobulks is kept: its status row says it could not be tested."""
    if len(listed):
        return list(dict.fromkeys(str(t) for t in listed))
    return sorted({str(t) for t in observed})


_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def cell_type_file_name(cell_type: str) -> str:
    """A file name for a cell type's per-type outputs.

    Names of letters, digits, ``_`` and ``-`` (starting with a letter or digit, at most 64
    characters) are kept as they are. Any other name (CellTypist labels such as ``CD4+ T cells``
    or ``Tem/Effector helper T cells``) becomes its letters, digits, ``_`` and ``-`` with every
    other run of characters replaced by ``_``, then ``-`` and 8 hex digits of the name's SHA-1:
    ``CD4+ T cells`` -> ``CD4_T_cells-<hash>``, so ``CD4+`` and ``CD4-`` stay apart. The same name
    gives the same file name in every run and on every machine; tables keep the real name.
    """
    if _SAFE_FILE_NAME.fullmatch(cell_type):
        return cell_type
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", cell_type).strip("_-")[:48].rstrip("_-") or "cell_type"
    return f"{stem}-{hashlib.sha1(cell_type.encode('utf-8')).hexdigest()[:8]}"


def cell_type_file_names(cell_types: Sequence[str]) -> dict[str, str]:
    """Cell type -> file name (:func:`cell_type_file_name`), checked to be distinct even on a
    file system that ignores case."""
    names = {ct: cell_type_file_name(ct) for ct in cell_types}
    seen: dict[str, str] = {}
    for ct, name in names.items():
        other = seen.setdefault(name.lower(), ct)
        if other != ct:
            raise InputError("cell type labels (compare.label_key / compare.cell_types)",
                             f"'{other}' and '{ct}' would share the file name '{name}' "
                             "(names that differ only in upper/lower case).",
                             "rename one of the two cell types in the annotation or in compare.cell_types.")
    return names


def cell_type_from_file_name(file_name: str, cell_types: Sequence[str]) -> str:
    """The cell type among ``cell_types`` whose file name (:func:`cell_type_file_name`) is
    ``file_name``."""
    hits = list(dict.fromkeys(ct for ct in map(str, cell_types) if cell_type_file_name(ct) == file_name))
    if len(hits) != 1:
        raise InputError(f"cell type file name '{file_name}'",
                         f"names {'none' if not hits else 'more than one'} of the cell types "
                         f"({', '.join(hits or map(str, cell_types)) or 'none'}).",
                         "the pseudobulks changed since the job was planned: run snakemake again.")
    return hits[0]


def cell_type_pseudobulks(pb: ad.AnnData, cell_type: str) -> ad.AnnData:
    """One type's pseudobulks (all samples, all genes) in memory; ``pb`` may be opened backed, so
    a per-type job reads only its rows of the cohort file."""
    sub = pb[(pb.obs["cell_type"].astype(str) == cell_type).to_numpy()]
    return sub.to_memory() if pb.isbacked else sub.copy()


def combine_de(tables: Sequence[pd.DataFrame], statuses: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the per-type results of one design (:func:`pseudobulk_de` called on one type each)
    into the two tables one call on all those types gives, in the order given. Nothing is
    re-estimated: each type's fit and BH adjustment are its own. Raises ValueError when a type
    comes twice or the parts are of different designs."""
    status = pd.concat(list(statuses), ignore_index=True) if len(statuses) else pd.DataFrame()
    if len(status):
        if status["cell_type"].duplicated().any():
            raise ValueError(f"cell types given twice: {sorted(set(status.loc[status['cell_type'].duplicated(), 'cell_type']))}")
        if status["design"].nunique() > 1:
            raise ValueError(f"parts of different designs: {sorted(status['design'].unique())}")
    tables = [t for t in tables if len(t)]
    cols = list(DE_COLUMNS)
    res = pd.concat(tables, ignore_index=True)[cols] if tables else pd.DataFrame(columns=cols)
    if len(res) and not set(res["cell_type"]) <= set(status.get("cell_type", ())):
        raise ValueError("result rows of cell types that have no status row")
    return res, status


def significant(table: pd.DataFrame, *, fdr: float, by: str = "cell_type") -> pd.DataFrame:
    """The rows of a result table with ``padj`` below ``fdr``, grouped by ``by`` (in the table's
    order) and by ``padj`` within each group: the short table the report shows (the full table
    stays on disk)."""
    hits = table[table["padj"].lt(fdr).fillna(False).to_numpy(dtype=bool)] if "padj" in table else table.iloc[0:0]
    if hits.empty:
        return hits.reset_index(drop=True)
    order = {k: i for i, k in enumerate(dict.fromkeys(hits[by]))}
    return (hits.assign(_group=hits[by].map(order)).sort_values(["_group", "padj"], kind="stable")
            .drop(columns="_group").reset_index(drop=True))


# ---------------------------------------------------------------------------------------------
# linear models on per-sample values (composition, signature scores)
# ---------------------------------------------------------------------------------------------
def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def _trigamma_inverse(x: np.ndarray) -> np.ndarray:
    """Solve trigamma(y) = x by Newton's method (Smyth 2004, as limma's trigammaInverse)."""
    from scipy.special import polygamma

    x = np.asarray(x, dtype=float)
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = polygamma(1, y)
        dif = tri * (1 - tri / x) / polygamma(2, y)
        y = y + dif
        if np.all(-dif / y < 1e-8):
            break
    return y


def squeeze_variances(s2: np.ndarray, df, *, prior_from: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Empirical-Bayes posterior variances (limma's squeezeVar, Smyth 2004, method of moments).

    Returns ``(s2_post, d0, s0_sq)``: with few patients each feature's residual variance borrows
    strength from the others; ``d0`` is the prior's degrees of freedom (``inf``: all equal).
    ``prior_from`` (boolean mask) limits the features the prior is estimated from; every feature
    gets its posterior. Hand-written because limma is R-only; checked against limma's published
    estimator in tests.
    """
    from scipy.special import digamma, polygamma

    s2 = np.asarray(s2, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), s2.shape)  # per-feature df (missing values)
    ok = np.isfinite(s2) & (s2 > 0) & (df > 0)
    if prior_from is not None:
        ok &= np.asarray(prior_from, dtype=bool)
    if ok.sum() < 3:
        return s2, 0.0, float("nan")
    z = np.log(s2[ok])
    e = z - digamma(df[ok] / 2) + np.log(df[ok] / 2)
    emean = e.mean()
    evar = e.var(ddof=1) - polygamma(1, df[ok] / 2).mean()
    if evar > 0:
        d0 = float(2 * _trigamma_inverse(np.array([evar]))[0])
        s0_sq = float(np.exp(emean + digamma(d0 / 2) - np.log(d0 / 2)))
        post = (d0 * s0_sq + df * s2) / (d0 + df)
    else:
        d0, s0_sq = float("inf"), float(np.exp(emean))
        post = np.full_like(s2, s0_sq)
    return post, d0, s0_sq


def squeeze_variances_robust(s2: np.ndarray, df, *, outlier_p: float = 0.05) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`squeeze_variances` that leaves outlying variances alone.

    Why: one prior for all features assumes their true variances are alike. A feature far more
    variable than the rest (the malignant fraction, which spans 5-35% between patients, among
    immune types of a few percent) would be squeezed towards theirs and look significant. Here a
    feature whose variance is an upper outlier of the prior (F-test tail probability below
    ``outlier_p`` / number of features) keeps its own variance and residual df (prior df 0), and
    the prior is estimated from the other features. A simplification, written by hand, of limma's
    ``robust=TRUE`` (Phipson et al., Ann Appl Stat 2016), which lowers rather than zeroes the
    outliers' prior df. Returns ``(s2_post, d0 per feature, s0_sq)``.
    """
    from scipy import stats

    s2 = np.asarray(s2, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), s2.shape)
    post, d0, s0_sq = squeeze_variances(s2, df)
    ok = np.isfinite(s2) & (s2 > 0) & (df > 0)
    if not np.isfinite(s0_sq) or d0 == 0 or ok.sum() < 3:
        return post, np.full(s2.shape, d0), s0_sq
    ratio = np.where(ok, s2, np.nan) / s0_sq
    tail = stats.f.sf(ratio, df, d0) if np.isfinite(d0) else stats.chi2.sf(ratio * df, df)
    outlier = ok & (tail < outlier_p / ok.sum())
    if outlier.any():
        post, d0, s0_sq = squeeze_variances(s2, df, prior_from=~outlier)
        post = np.where(outlier, s2, post)
    return post, np.where(outlier, 0.0, d0), s0_sq


def ols_test(values: pd.DataFrame, design: Design, *, moderate: bool = True) -> pd.DataFrame:
    """Least squares of each column of ``values`` (samples x features) on the design; the tested
    coefficient's estimate, 95% interval, t and p.

    With ``moderate`` (default) the residual variances are squeezed towards their common value
    (empirical Bayes, as limma/propeller do, robust to outlying variances:
    :func:`squeeze_variances_robust`) and t has ``df_resid + d0`` degrees of freedom: with
    three patients per group the plain t-test has 2-4 degrees of freedom and almost no power.
    """
    X = design.X.to_numpy(dtype=float)
    Y = values.loc[design.X.index].to_numpy(dtype=float)
    n, p = X.shape
    df = n - p
    XtX_inv = np.linalg.pinv(X.T @ X)
    beta = XtX_inv @ X.T @ Y
    resid = Y - X @ beta
    s2 = (resid ** 2).sum(axis=0) / df
    j = design.X.columns.get_loc(design.coef)
    res = _coefficient_stats(beta[j], s2, np.full(len(s2), float(df)), XtX_inv[j, j],
                             moderate=moderate and Y.shape[1] >= 3)
    res.insert(0, "feature", values.columns)
    return res


def _coefficient_stats(estimate, s2, df, unscaled_var, *, moderate: bool = True) -> pd.DataFrame:
    """Estimate, 95% interval, t and p of one coefficient per feature, from its residual
    variance ``s2`` on ``df`` degrees of freedom (squeezed by empirical Bayes when ``moderate``)
    and ``unscaled_var`` = the coefficient's entry of (X'X)^-1."""
    from scipy import stats

    s2_use, d0 = squeeze_variances_robust(s2, df)[:2] if moderate else (s2, np.zeros(np.shape(s2)))
    # limma's cap: a feature never has more df than all features' residual df together
    df_total = np.minimum(df + d0, np.nansum(np.broadcast_to(df, np.shape(s2))))
    se = np.sqrt(s2_use * unscaled_var)
    t = estimate / se
    q = stats.t.ppf(0.975, df_total)
    return pd.DataFrame({"estimate": estimate, "ci_low": estimate - q * se, "ci_high": estimate + q * se,
                         "t": t, "pvalue": 2 * stats.t.sf(np.abs(t), df_total), "df_resid": df, "df_prior": d0})


def proportions(counts: pd.DataFrame) -> pd.DataFrame:
    """Per-sample proportions from a samples x types count table."""
    return counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)


def composition_test(counts: pd.DataFrame, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                     timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 2,
                     transform: str = "asin", pseudocount: float = 0.5, paired: bool = True,
                     exclude: Sequence[str] = ("unknown",)) -> pd.DataFrame:
    """Per-type test of proportions: each sample's proportion transformed, least squares on the
    design with moderated variances, BH across types.

    ``transform="asin"`` (default) is arcsin(sqrt(p)), which makes the sampling variance of a
    proportion nearly the same for rare and common types, so that one variance prior fits all
    types; ``"logit"`` is the empirical logit ``log((n + c) / (N - n + c))``, whose estimate is a
    log odds ratio but whose variance is far larger for rare types (anti-conservative there when
    variances are pooled). ``log2_ratio`` is log2 of the mean proportion in the tested group over
    the reference. Returns a one-row frame with a ``status`` note when the design is not estimable.
    """
    counts = counts.drop(columns=[c for c in exclude if c in counts.columns])
    counts = counts.loc[counts.index.intersection(meta.index)]
    try:
        d = design_matrix(meta.loc[counts.index], design, response_levels=response_levels, timepoints=timepoints,
                          covariates=covariates, paired=paired, min_patients=min_patients)
    except NotEstimable as why:
        return pd.DataFrame([{"design": design, "status": f"not tested: {why}"}])
    c = counts.loc[d.samples].astype(float)
    total = c.sum(axis=1)
    props = proportions(c)
    if transform == "asin":
        y = np.arcsin(np.sqrt(props))
    elif transform == "logit":
        y = np.log((c + pseudocount) / (c.rsub(total, axis=0) + pseudocount))
    else:
        raise InputError("config.yaml, key compare.composition_transform", f"unknown transform '{transform}'.",
                         "use asin or logit.")
    res = ols_test(y, d).rename(columns={"feature": "cell_type"})
    group_col = d.X[d.coef] > 0
    res["mean_prop_ref"] = props[~group_col.to_numpy()].mean().reindex(res["cell_type"]).to_numpy()
    res["mean_prop_test"] = props[group_col.to_numpy()].mean().reindex(res["cell_type"]).to_numpy()
    res["log2_ratio"] = np.log2((res["mean_prop_test"] + 1e-6) / (res["mean_prop_ref"] + 1e-6))
    res["transform"] = transform
    res["padj"] = bh(res["pvalue"].to_numpy())
    res = res.assign(**d.describe())
    res["test"] = f"least squares on {transform}-transformed proportions, moderated variances, BH FDR"
    res["status"] = "tested"
    return res


def protein_test(prot: ad.AnnData, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                 timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 2,
                 min_valid: float = 0.7, median_centre: bool = True) -> pd.DataFrame:
    """Bulk proteomics (samples x proteins, NaN = missing; linear intensities, as
    ``uns['proteomics']['scale']`` says, are taken to log2) tested with a design:
    least squares per protein on its observed samples, variances moderated with per-protein
    degrees of freedom (as limma does for proteomics), BH. Proteins observed in fewer than
    ``min_valid`` of the design's samples are not tested; missing values are never imputed.
    ``median_centre`` subtracts each sample's median over the proteins seen in every sample
    (loading differences between runs), the usual normalisation of label-free intensities."""
    try:
        d = design_matrix(meta.loc[meta.index.intersection(prot.obs_names)], design, response_levels=response_levels,
                          timepoints=timepoints, covariates=covariates, min_patients=min_patients)
    except NotEstimable as why:
        return pd.DataFrame([{"design": design, "status": f"not tested: {why}"}])
    Y = np.asarray(prot[d.samples].X, dtype=float)
    if prot.uns.get("proteomics", {}).get("scale", "log2") == "linear":  # as read (io.read_proteomics)
        with np.errstate(divide="ignore", invalid="ignore"):
            Y = np.where(Y > 0, np.log2(Y), np.nan)
    if median_centre:
        complete = np.isfinite(Y).all(axis=0)
        ref = Y[:, complete] if complete.sum() >= 10 else Y
        Y = Y - np.nanmedian(ref, axis=1, keepdims=True)
    X = d.X.to_numpy(dtype=float)
    j = d.X.columns.get_loc(d.coef)
    n, p = X.shape
    beta, s2, dfs, cjj = (np.full(Y.shape[1], np.nan) for _ in range(4))
    for k in np.flatnonzero(np.isfinite(Y).mean(axis=0) >= min_valid):
        obs = np.isfinite(Y[:, k])
        Xk = X[obs]
        if obs.sum() <= p or np.linalg.matrix_rank(Xk) < p:
            continue
        inv = np.linalg.inv(Xk.T @ Xk)
        b = inv @ Xk.T @ Y[obs, k]
        r = Y[obs, k] - Xk @ b
        beta[k], dfs[k], cjj[k] = b[j], obs.sum() - p, inv[j, j]
        s2[k] = (r ** 2).sum() / dfs[k]
    tested = np.isfinite(s2)
    var = prot.var
    res = _coefficient_stats(beta[tested], s2[tested], dfs[tested], cjj[tested])
    res.insert(0, "protein_id", (var["protein_id"] if "protein_id" in var else var.index).to_numpy()[tested])
    res.insert(1, "gene", (var["gene"] if "gene" in var else var.index).to_numpy()[tested])
    res = res.rename(columns={"estimate": "log2fc"})
    res["n_samples"] = dfs[tested] + p
    res["padj"] = bh(res["pvalue"].to_numpy())
    res = res.assign(**d.describe())
    res["test"] = "moderated least squares on log2 intensity (missing left out), BH FDR"
    res["status"] = "tested"
    return res


# ---------------------------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------------------------
def load_signatures(path) -> dict[str, dict]:
    """Signatures from YAML: name -> {genes, source, description}; each needs genes and a source."""
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(where, f"cannot be read as YAML ({err}).", "fix the file or point compare.signatures elsewhere.") from None
    if not isinstance(data, dict) or not data:
        raise InputError(where, "holds no signatures.", "give a mapping: name -> {genes: [...], source: ...}.")
    out = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("genes"), list) or not entry["genes"]:
            raise InputError(f"{where}, signature '{name}'", "has no list of genes.", "add `genes: [GENE1, GENE2, ...]`.")
        if not entry.get("source"):
            raise InputError(f"{where}, signature '{name}'", "has no source.",
                             "add `source:` with the publication the genes come from.")
        out[str(name)] = {"genes": [str(g) for g in entry["genes"]], "source": str(entry["source"]),
                          "description": str(entry.get("description", ""))}
    return out


def present_signatures(signatures: Mapping[str, dict], genes: Sequence[str], *, min_genes: int = 3) -> dict[str, list[str]]:
    """Each signature's genes found in ``genes``; signatures with fewer than ``min_genes`` dropped."""
    have = set(genes)
    out = {}
    for name, s in signatures.items():
        g = [x for x in s["genes"] if x in have]
        if len(g) >= min_genes:
            out[name] = g
    return out


def score_cells(adata: ad.AnnData, signatures: Mapping[str, dict], *, key_prefix: str = "signature_",
                random_state: int = 0) -> ad.AnnData:
    """Per-cell scores (scanpy ``score_genes``: mean of the set minus matched control genes) on
    log-normalised ``X``; one obs column per signature."""
    import scanpy as sc

    for name, genes in present_signatures(signatures, adata.var_names).items():
        sc.tl.score_genes(adata, genes, score_name=f"{key_prefix}{name}", random_state=random_state)
    return adata


def score_pseudobulks(pb: ad.AnnData, signatures: Mapping[str, dict], *, min_cells: int = 10,
                      min_counts: float = 1000) -> pd.DataFrame:
    """Per-pseudobulk scores: the mean over a signature's genes of log2-CPM standardised across
    the pseudobulks of the same cell type. Long table: sample_id, cell_type, signature, score."""
    obs = pb.obs
    ok = (obs["n_cells"] >= min_cells).to_numpy() & (obs["n_counts"] >= min_counts).to_numpy()
    sigs = present_signatures(signatures, pb.var_names)
    rows = []
    for ct in sorted(obs.loc[ok, "cell_type"].unique()):
        idx = np.flatnonzero(ok & (obs["cell_type"] == ct).to_numpy())
        X = pb.X[idx]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        cpm = np.log2(X / X.sum(axis=1, keepdims=True) * 1e6 + 1)
        sd = cpm.std(axis=0)
        z = np.where(sd > 0, (cpm - cpm.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
        for name, genes in sigs.items():
            cols = pb.var_names.get_indexer(genes)
            score = z[:, cols].mean(axis=1)
            for i, s in zip(idx, score):
                rows.append({"sample_id": obs["sample_id"].iloc[i], "cell_type": ct, "signature": name,
                             "score": float(s)})
    return pd.DataFrame(rows, columns=["sample_id", "cell_type", "signature", "score"])


def signature_tests(scores: pd.DataFrame, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                    timepoints: Sequence[str], covariates: Sequence[str] = (), min_patients: int = 2,
                    paired: bool = True) -> pd.DataFrame:
    """OLS of per-pseudobulk signature scores on the design, per cell type x signature; BH within
    the design across all of them."""
    out = []
    for ct, sub in scores.groupby("cell_type"):
        wide = sub.pivot(index="sample_id", columns="signature", values="score")
        try:
            d = design_matrix(meta.loc[meta.index.intersection(wide.index)], design, response_levels=response_levels,
                              timepoints=timepoints, covariates=covariates, paired=paired, min_patients=min_patients)
        except NotEstimable as why:
            out.append(pd.DataFrame([{"cell_type": ct, "design": design, "status": f"not tested: {why}"}]))
            continue
        res = ols_test(wide, d).rename(columns={"feature": "signature"})
        res.insert(0, "cell_type", ct)
        res = res.assign(**d.describe())
        res["status"] = "tested"
        out.append(res)
    if not out:
        return pd.DataFrame(columns=["cell_type", "signature", "design", "status"])
    res = pd.concat(out, ignore_index=True)
    if "pvalue" not in res:
        res["pvalue"] = np.nan
    res["padj"] = bh(res["pvalue"].to_numpy())
    res["test"] = "OLS on standardised pseudobulk signature score, BH FDR"
    return res


def signature_enrichment(de: pd.DataFrame, signatures: Mapping[str, dict], *, min_genes: int = 3) -> pd.DataFrame:
    """Enrichment of each cell type's DE statistics in the signatures (decoupler ulm: a linear
    model of the Wald statistics on signature membership); BH across cell types x signatures."""
    import decoupler as dc

    cols = ["design", "cell_type", "signature", "score", "pvalue", "padj", "test"]
    if de.empty:
        return pd.DataFrame(columns=cols)
    net = pd.DataFrame([(name, g, 1.0) for name, s in signatures.items() for g in s["genes"]],
                       columns=["source", "target", "weight"])
    out = []
    for design, sub in de.groupby("design"):
        mat = sub.pivot_table(index="cell_type", columns="gene", values="stat", aggfunc="first").fillna(0.0)
        present = net[net["target"].isin(mat.columns)]
        present = present[present.groupby("source")["target"].transform("size") >= min_genes]
        if present.empty:
            continue
        es, pv = dc.mt.ulm(mat, present, tmin=min_genes)
        long = pd.concat([es.stack().rename("score"), pv.stack().rename("pvalue")], axis=1).reset_index()
        long.columns = ["cell_type", "signature", "score", "pvalue"]
        long.insert(0, "design", design)
        long["padj"] = bh(long["pvalue"].to_numpy())
        long["test"] = "decoupler ulm on pydeseq2 Wald statistics, BH FDR"
        out.append(long)
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _grid(n: int, *, ncols: int = 5, size: tuple[float, float] = (3.0, 2.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes


def _empty_figure(message: str):
    fig, axes = _grid(1)
    ax = axes[0]
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


RESPONSE_COLOURS = ("#3b6fb6", "#d1495b")


def plot_composition_pairs(props: pd.DataFrame, meta: pd.DataFrame, tests: pd.DataFrame, *,
                           response_levels: Sequence[str], timepoints: Sequence[str], fdr: float = 0.1):
    """Per-patient proportions at each timepoint, a line per patient coloured by response; panel
    titles give the on-treatment FDR within each response group."""
    types = list(props.columns)
    if not types:
        return _empty_figure("no cell types to show")
    fig, axes = _grid(len(types), ncols=6, size=(2.6, 2.4))
    colour = dict(zip(response_levels, RESPONSE_COLOURS))
    tp_x = {t: i for i, t in enumerate(timepoints)}
    m = meta.loc[meta.index.intersection(props.index)]
    for ax, ct in zip(axes, types):
        for pid, rows in m.groupby("patient_id"):
            rows = rows[rows["timepoint"].isin(tp_x)].sort_values("timepoint", key=lambda s: s.map(tp_x))
            ax.plot(rows["timepoint"].map(tp_x), props.loc[rows.index, ct] * 100, "-o", ms=3, lw=1,
                    color=colour.get(rows["response"].iloc[0], "grey"), alpha=0.8)
        notes = []
        if "padj" in tests:
            for lvl in response_levels:
                hit = tests[(tests["design"] == f"on_treatment_{lvl}") & (tests["cell_type"] == ct)]
                if len(hit) and np.isfinite(hit["padj"].iloc[0]):
                    q = hit["padj"].iloc[0]
                    notes.append(f"{lvl[:6]} q={q:.2g}{'*' if q < fdr else ''}")
        ax.set_title(ct + ("\n" + ", ".join(notes) if notes else ""), fontsize=7)
        ax.set_xticks(range(len(timepoints)), timepoints, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.3, len(timepoints) - 0.7)
    axes[0].set_ylabel("% of cells", fontsize=7)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=level) for level, c in colour.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle("Cell-type proportions per patient (q: paired test within response group; * below FDR)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_volcanoes(de: pd.DataFrame, *, fdr: float = 0.1, title: str = ""):
    """One volcano per tested cell type: shrunken log2 fold change vs -log10 p, FDR hits in red."""
    if de.empty:
        return _empty_figure(f"{title}: no cell type could be tested (see the status table)")
    types = sorted(de["cell_type"].unique())
    fig, axes = _grid(len(types), ncols=5)
    for ax, ct in zip(axes, types):
        sub = de[de["cell_type"] == ct]
        lfc = sub["log2fc_shrunk"].where(sub["log2fc_shrunk"].notna(), sub["log2fc"])
        hit = (sub["padj"] < fdr).to_numpy()
        y = -np.log10(sub["pvalue"].clip(lower=1e-300))
        ax.scatter(lfc[~hit], y[~hit], s=3, c="grey", alpha=0.5, rasterized=True)
        ax.scatter(lfc[hit], y[hit], s=5, c="#d1495b")
        for _, r in sub[hit].nsmallest(5, "pvalue").iterrows():
            ax.annotate(r["gene"], (lfc[_], -np.log10(max(r["pvalue"], 1e-300))), fontsize=6)
        ax.set_title(f"{ct} ({hit.sum()} at FDR {fdr})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.supxlabel("log2 fold change (shrunken)", fontsize=8)
    fig.supylabel("-log10 p", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_protein_volcanoes(tests: pd.DataFrame, *, fdr: float = 0.1):
    """One volcano per design of :func:`protein_test` results (fold changes are not shrunk)."""
    tested = tests[tests["status"].eq("tested")] if "status" in tests else tests.iloc[0:0]
    return plot_volcanoes(tested.assign(cell_type=tested.get("design"), log2fc_shrunk=tested.get("log2fc")),
                          fdr=fdr, title="Bulk proteomics by design")


def plot_top_genes(pb: ad.AnnData, de: pd.DataFrame, meta: pd.DataFrame, design_col: pd.Series | None = None, *,
                   n_top: int = 8, fdr: float = 0.1, title: str = ""):
    """Per tested cell type, a heatmap of the top genes (by p) across that type's pseudobulks:
    standardised log2-CPM, samples ordered by timepoint then response, the groups separated by
    black lines and labelled with their size (a hundred sample names would not be legible)."""
    if de.empty:
        return _empty_figure(f"{title}: no cell type could be tested")
    types = sorted(de["cell_type"].unique())
    fig, axes = _grid(len(types), ncols=4, size=(3.6, 2.8))
    for ax, ct in zip(axes, types):
        top = de[de["cell_type"] == ct].nsmallest(n_top, "pvalue")["gene"].tolist()
        rows = np.flatnonzero((pb.obs["cell_type"] == ct).to_numpy()
                              & pb.obs["sample_id"].isin(meta.index).to_numpy())
        sids = pb.obs["sample_id"].to_numpy()[rows]
        order = np.lexsort((meta.loc[sids, "response"].to_numpy(), meta.loc[sids, "timepoint"].to_numpy()))
        rows, sids = rows[order], sids[order]
        X = pb.X[rows]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        cpm = np.log2(X / np.maximum(X.sum(axis=1, keepdims=True), 1) * 1e6 + 1)[:, pb.var_names.get_indexer(top)]
        z = (cpm - cpm.mean(0)) / np.where(cpm.std(0) > 0, cpm.std(0), 1)
        ax.imshow(z.T, aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2, interpolation="nearest")
        ax.set_yticks(range(len(top)), top, fontsize=6)
        group = pd.Series([f"{meta.loc[s, 'timepoint']}\n{meta.loc[s, 'response']}" for s in sids])
        starts = np.flatnonzero(np.r_[True, group.to_numpy()[1:] != group.to_numpy()[:-1]])
        ends = np.r_[starts[1:], len(group)]
        for x in starts[1:]:
            ax.axvline(x - 0.5, color="black", lw=1)
        ax.set_xticks((starts + ends - 1) / 2, [f"{group[a]}\n(n={b - a})" for a, b in zip(starts, ends)], fontsize=5)
        ax.set_title(ct, fontsize=8)
    fig.suptitle(f"{title}: top genes, standardised log2-CPM of pseudobulks", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return fig


def plot_effect_heatmap(table: pd.DataFrame, *, value: str, row: str = "cell_type", col: str = "signature",
                        fdr: float = 0.1, title: str = ""):
    """A heatmap per design of ``value`` (rows x cols), with * where padj < fdr."""
    tested = table[table["status"].eq("tested")] if "status" in table else table
    tested = tested.dropna(subset=[value]) if value in tested else tested.iloc[0:0]
    if tested.empty:
        return _empty_figure(f"{title}: nothing could be tested")
    designs = list(dict.fromkeys(tested["design"]))
    fig, axes = _grid(len(designs), ncols=3, size=(4.2, 0.25 * tested[row].nunique() + 1.8))
    for ax, d in zip(axes, designs):
        sub = tested[tested["design"] == d]
        M = sub.pivot_table(index=row, columns=col, values=value, aggfunc="first")
        Q = sub.pivot_table(index=row, columns=col, values="padj", aggfunc="first").reindex_like(M)
        lim = float(np.nanmax(np.abs(M.to_numpy()))) if np.isfinite(M.to_numpy()).any() else 1.0
        ax.imshow(M.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        for (i, j), q in np.ndenumerate(Q.to_numpy()):
            if np.isfinite(q) and q < fdr:
                ax.text(j, i, "*", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(M.shape[1]), M.columns, rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(M.shape[0]), M.index, fontsize=6)
        ax.set_title(d, fontsize=8)
    fig.suptitle(f"{title} (colour: {value}; * FDR < {fdr})", fontsize=9)
    fig.tight_layout()
    return fig
