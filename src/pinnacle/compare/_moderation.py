"""Least squares per feature with empirical-Bayes moderated variances (limma's squeezeVar), and BH."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._design import Design


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
