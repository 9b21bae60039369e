"""Least squares per feature with empirical-Bayes moderated variances (limma's squeezeVar), and BH.

limma is R-only, so its variance moderation is ported, function for function, in ``_limma``
(fitFDist, fitFDistRobustly, fitFDistUnequalDF1, squeezeVar) and ``_limma_numerics`` (the R
routines they call), and checked against limma's own output (``tests/fixtures/limma/``, written
by ``tools/limma_fixtures.R``; ``tests/test_compare_null.py`` holds the comparison and the null
calibration). Here, the pipeline-facing part:

==============================  ===========================================================
here                            limma (3.54 for equal df; 3.61+ for unequal df)
==============================  ===========================================================
:func:`squeeze_variances`       ``squeezeVar`` (+ ``.squeezeVar``), with ``legacy=NULL``
:func:`_coefficient_stats`      the moderated t of ``eBayes``; one departure: with a trend,
                                ``df.total`` is capped by the trend's local information too
==============================  ===========================================================

:func:`bh` is defined in ``_limma`` (fitFDistUnequalDF1 needs it) and re-exported here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ._design import Design
from ._limma import _squeeze
from ._limma import bh as bh


def squeeze_variances(s2: np.ndarray, df, *, covariate=None, robust: bool = False,
                      winsor_tail_p=(0.05, 0.1), legacy: bool | None = None) -> tuple:
    """Empirical-Bayes posterior variances (limma's squeezeVar, Smyth 2004).

    Each feature's residual variance ``s2`` on ``df`` degrees of freedom borrows strength from the
    others through a scaled inverse chi-square prior (``s0^2``, ``d0``). ``covariate`` lets the
    prior's scale follow a trend (limma-trend: a natural spline of log variance in the covariate,
    lowess when robust); ``robust`` estimates the prior from Winsorized variances and gives
    outlying features a smaller prior df of their own (Phipson et al. 2016). As current limma
    (``legacy=None``), equal df use fitFDist / fitFDistRobustly and unequal df use
    fitFDistUnequalDF1. With fewer than 3 features nothing is squeezed (``d0 = 0``).

    Parameters
    ----------
    s2
        Per-feature residual variances.
    df
        Their residual degrees of freedom: one value, or one per feature.
    covariate
        One value per feature that the prior scale follows (limma-trend, e.g. mean abundance); None:
        no trend. With unequal df it needs ``legacy=True``.
    robust
        Robust prior (Winsorized log variances, a prior df per feature).
    winsor_tail_p
        Shares Winsorized at the lower and the upper tail when ``robust`` (fitFDistRobustly; not
        used by fitFDistUnequalDF1).
    legacy
        None: fitFDist / fitFDistRobustly when the df are all equal, fitFDistUnequalDF1 otherwise;
        True: always the former; False: always fitFDistUnequalDF1.

    Returns
    -------
    ``(s2_post, d0, s0_sq)``: ``d0`` is one value, or one per feature when ``robust``
    (``inf``: variances all alike); ``s0_sq`` is one value, or one per feature with a covariate.

    Raises
    ------
    ValueError
        When ``s2`` is empty, no feature has residual df, or the prior df cannot be estimated.
    """
    return _squeeze(s2, df, covariate, robust, winsor_tail_p, legacy)[:3]


def squeeze_variances_robust(s2: np.ndarray, df, *, covariate=None, winsor_tail_p=(0.05, 0.1),
                             legacy: bool | None = None) -> tuple:
    """:func:`squeeze_variances` with ``robust=True`` (limma's ``squeezeVar(robust=TRUE)``).

    Why: one prior for all features assumes their true variances are alike. A feature far more
    variable than the rest (the malignant fraction, which spans 5-35% between patients, among
    immune types of a few percent) would be squeezed towards theirs and look significant; so
    would an unusually quiet one in the other direction. The prior is estimated from Winsorized
    log variances (both tails), and each feature gets a prior df that falls continuously with
    its probability of being an upper outlier.

    Parameters
    ----------
    s2, df, covariate, winsor_tail_p, legacy
        As in :func:`squeeze_variances`.

    Returns
    -------
    ``(s2_post, d0 per feature, s0_sq)``.
    """
    post, d0, s0 = squeeze_variances(s2, df, covariate=covariate, robust=True, winsor_tail_p=winsor_tail_p,
                                     legacy=legacy)
    return post, np.broadcast_to(np.asarray(d0, dtype=float), np.shape(post)).copy(), s0


def ols_test(values: pd.DataFrame, design: Design, *, moderate: bool = True, robust: bool = True,
             covariate=None) -> pd.DataFrame:
    """Least squares of each column of ``values`` (samples x features) on the design; the tested
    coefficient's estimate, 95% interval, t and p.

    With ``moderate`` (default) the residual variances are squeezed across the features
    (limma's lmFit + eBayes: :func:`squeeze_variances`, ``robust`` by default, with a trend in
    ``covariate``, one value per feature, if given) and t has ``df_resid + d0`` degrees of
    freedom: with three patients per group the plain t-test has 2-4 degrees of freedom and
    almost no power.

    Parameters
    ----------
    values
        Samples x features; the rows of the design's samples are used (each must be there).
    design
        The design (:func:`design_matrix`); its coefficient ``design.coef`` is tested.
    moderate
        Squeeze the residual variances across the features (only with at least 3 features); False:
        the plain t on the residual df.
    robust
        Robust prior (:func:`squeeze_variances_robust`) when moderating.
    covariate
        One value per feature that the prior variance follows (limma-trend); None: no trend.

    Returns
    -------
    One row per feature: ``feature``, ``estimate``, ``ci_low``, ``ci_high``, ``t``, ``pvalue``,
    ``df_resid``, ``df_prior``, ``df_total``.
    """
    X = design.X.to_numpy(dtype=float)
    Y = values.loc[design.X.index].to_numpy(dtype=float)
    n, p = X.shape
    df = n - p
    XtX_inv = _xtx_inverse(X)
    beta = XtX_inv @ X.T @ Y
    resid = Y - X @ beta
    s2 = (resid ** 2).sum(axis=0) / df
    j = design.X.columns.get_loc(design.coef)
    res = _coefficient_stats(beta[j], s2, np.full(len(s2), float(df)), XtX_inv[j, j],
                             moderate=moderate and Y.shape[1] >= 3, robust=robust, covariate=covariate)
    res.insert(0, "feature", values.columns)
    return res


def _xtx_inverse(X: np.ndarray) -> np.ndarray:
    """(X'X)^-1 by Cholesky for a full-rank design (design_matrix checks the rank); the
    pseudo-inverse otherwise."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    XtX = X.T @ X
    try:
        return cho_solve(cho_factor(XtX), np.eye(len(XtX)))
    except LinAlgError:
        return np.linalg.pinv(XtX)


def _coefficient_stats(estimate, s2, df, unscaled_var, *, moderate: bool = True, robust: bool = True,
                       covariate=None) -> pd.DataFrame:
    """Estimate, 95% interval, t and p of one coefficient per feature, from its residual
    variance ``s2`` on ``df`` degrees of freedom (squeezed by empirical Bayes when ``moderate``,
    as limma's eBayes) and ``unscaled_var`` = the coefficient's entry of (X'X)^-1.

    limma caps a feature's total df (``df + d0``) at the residual df of all features together:
    the prior cannot be known better than the data it was estimated from. With a trend
    (``covariate``) the prior at a feature is estimated from its neighbours only, so here the cap
    is the feature's residual df over the trend's variance factor at it (its sum of squared
    weights: 1/n for a flat prior, where this is limma's cap; near 1 for a type alone at the end
    of the trend, such as the most abundant one; never below the feature's own df). This is the
    one departure from limma; without it the most abundant type was called at 8-9% at nominal
    5% (4 vs 4 patients, 19 types; tests/test_compare_null.py).
    """
    s2 = np.asarray(s2, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), s2.shape)
    # limma's cap: a feature never has more df than all features' residual df together
    cap = np.full(s2.shape, np.nansum(df))
    try:
        s2_use, d0, _, leverage = _squeeze(s2, df, covariate, robust) if moderate else (s2, 0.0, None, None)
    except ValueError as why:  # limma stops here; a pipeline reports the plain t instead
        warnings.warn(f"variances not moderated ({why})", stacklevel=2)
        s2_use, d0, leverage = s2, 0.0, None
    d0 = np.broadcast_to(np.asarray(d0, dtype=float), s2.shape)
    if leverage is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = np.fmin(cap, df / np.minimum(leverage, 1.0))  # never below the feature's own df
    df_total = np.minimum(df + d0, cap)
    se = np.sqrt(s2_use * unscaled_var)
    t = estimate / se
    q = stats.t.ppf(0.975, df_total)
    return pd.DataFrame({"estimate": estimate, "ci_low": estimate - q * se, "ci_high": estimate + q * se,
                         "t": t, "pvalue": 2 * stats.t.sf(np.abs(t), df_total), "df_resid": df, "df_prior": d0,
                         "df_total": df_total})
