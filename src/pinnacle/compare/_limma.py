"""limma's variance moderation, ported from R (limma is R-only), function for function.

Checked against limma's own output (``tests/fixtures/limma/``, written by
``tools/limma_fixtures.R``; ``tests/test_compare_null.py`` holds the comparison); the R
routines these call (trigammaInverse, lowess/loessFit, uniroot/optimize, splines::ns,
gauss.quad.prob) are in ``_limma_numerics``; the pipeline-facing wrappers in ``_moderation``.

==============================  ===========================================================
here                            limma (3.54 for equal df; 3.61+ for unequal df)
==============================  ===========================================================
:func:`fit_f_dist`              ``fitFDist`` (moments; ``covariate=``: natural-spline trend)
:func:`fit_f_dist_robustly`     ``fitFDistRobustly`` (Winsorized moments, per-feature df)
:func:`fit_f_dist_unequal_df1`  ``fitFDistUnequalDF1`` (maximum likelihood, unequal df)
``_squeeze``                    ``squeezeVar`` with ``legacy=NULL`` (behind
                                ``_moderation.squeeze_variances``)
``_posterior``                  ``.squeezeVar``
:func:`bh`                      R's ``p.adjust(method="BH")`` (fitFDistUnequalDF1's outlier
                                FDR; also the pipeline's BH, re-exported by ``_moderation``)
==============================  ===========================================================
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

from ._limma_numerics import (
    _approx_rule2,
    _f_isf,
    _f_logcdf,
    _f_logsf,
    _f_ppf,
    _fmin,
    _loess_fit,
    _logmdigamma,
    _natural_spline,
    _trigamma_inverse,
    _winsorized_moments,
    _zeroin,
)


def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN.

    Parameters
    ----------
    p
        P-values; non-finite ones are left out of the adjustment and come back NaN.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


# ---------------------------------------------------------------------------------------------
# limma's hyperparameter estimators
# ---------------------------------------------------------------------------------------------
def fit_f_dist(x, df1, covariate=None) -> tuple:
    """Moment estimates of the scaled F distribution of ``x`` given ``df1`` (limma's fitFDist,
    Smyth 2004): returns ``(scale, df2)``; ``scale`` is one value, or one per feature when
    ``covariate`` is given, when the mean of log variance follows a natural cubic spline in the
    covariate (1-4 df with the number of features, as limma chooses).

    Parameters
    ----------
    x
        Per-feature variances (residual mean squares); non-finite or negative ones are left out of the
        fit.
    df1
        Their residual degrees of freedom: one value, or one per feature (features with df <= 0 are
        left out).
    covariate
        One value per feature (no NaN) that the prior scale follows; None: one scale for all.

    Returns
    -------
    ``(scale, df2)``: the prior scale ``s0^2`` and the prior df ``d0`` (``inf`` when the variances
    vary no more than sampling explains; NaN without any usable variance, 0 with only one).
    """
    return _fit_f_dist(x, df1, covariate)[:2]


def _fit_f_dist(x, df1, covariate=None) -> tuple:
    """:func:`fit_f_dist`, plus each feature's trend variance factor (the sum of squared weights
    of its fitted log prior variance on the features' log variances: the hat value of the spline
    fit; None without a covariate)."""
    x = np.array(x, dtype=float, ndmin=1)
    n = len(x)
    if n == 0:
        return np.nan, np.nan, None
    if n == 1:
        return x[0], 0.0, None
    df1 = np.asarray(df1, dtype=float)
    scalar_df = df1.size == 1
    if scalar_df:
        df1 = float(df1.ravel()[0])
        if not (np.isfinite(df1) and df1 > 1e-15):
            return np.nan, np.nan, None
        ok = np.ones(n, dtype=bool)
    else:
        if len(df1) != n:
            raise ValueError("x and df1 have different lengths")
        ok = np.isfinite(df1) & (df1 > 1e-15)
    cov = None
    if covariate is not None:
        cov = np.array(covariate, dtype=float)
        if len(cov) != n:
            raise ValueError("x and covariate must be of same length")
        if np.isnan(cov).any():
            raise ValueError("NA covariate values not allowed")
        fin = np.isfinite(cov)
        if not fin.all():
            if fin.any():
                cov[cov == -np.inf] = cov[fin].min() - 1
                cov[cov == np.inf] = cov[fin].max() + 1
            else:
                cov = np.sign(cov)
    with np.errstate(invalid="ignore"):
        ok &= np.isfinite(x) & (x > -1e-15)
    nok = int(ok.sum())
    if nok == 1:
        return x[ok][0], 0.0, None
    notallok = nok < n
    cov_notok = None
    if notallok:
        x = x[ok]
        if not scalar_df:
            df1 = df1[ok]
        if cov is not None:
            cov_notok, cov = cov[~ok], cov[ok]
    if cov is not None:
        splinedf = min(1 + (nok >= 3) + (nok >= 6) + (nok >= 30), len(np.unique(cov)))
        if splinedf < 2:
            scale, df2 = fit_f_dist(x, df1)
            return np.full(n, scale), df2, None
    x = np.maximum(x, 0)
    m = np.median(x)
    if m == 0:
        warnings.warn("More than half of residual variances are exactly zero: eBayes unreliable", stacklevel=2)
        m = 1.0
    x = np.maximum(x, 1e-5 * m)
    e = np.log(x) + _logmdigamma(np.asarray(df1) / 2)
    leverage = None
    if cov is None:
        emean = e.mean()
        evar = np.sum((e - emean) ** 2) / (nok - 1)
    else:
        basis = _natural_spline(cov, splinedf)
        B = basis(cov)
        B_pinv = np.linalg.pinv(B)
        coef = B_pinv @ e
        rank = np.linalg.matrix_rank(B)
        fitted = B @ coef
        evar = np.sum((e - fitted) ** 2) / (nok - rank)
        leverage = ((B @ B_pinv) ** 2).sum(axis=1)
        if notallok:
            emean, lev = np.zeros(n), np.zeros(n)
            emean[ok], lev[ok] = fitted, leverage
            emean[~ok] = basis(cov_notok) @ coef
            lev[~ok] = ((basis(cov_notok) @ B_pinv) ** 2).sum(axis=1)
            leverage = lev
        else:
            emean = fitted
    evar = evar - np.mean(special.polygamma(1, np.asarray(df1) / 2))
    if evar > 0:
        df2 = float(2 * _trigamma_inverse(evar)[0])
        s20 = np.exp(emean - _logmdigamma(df2 / 2))
    else:
        df2 = np.inf
        s20 = np.mean(x) if cov is None else np.exp(emean)
    return (float(s20) if np.ndim(s20) == 0 else s20), df2, leverage


def fit_f_dist_robustly(x, df1, covariate=None, winsor_tail_p=(0.05, 0.1)) -> dict:
    """Robust estimates of the scaled F distribution (limma's fitFDistRobustly, Phipson et al.,
    Ann Appl Stat 2016): the prior df from the variance of Winsorized log variances (both
    tails), the trend (``covariate``) by lowess, and a prior df per feature (``df2_shrunk``) that
    falls continuously with the feature's probability of being an upper outlier.

    Parameters
    ----------
    x
        Per-feature variances; NaN ones are left out of the fit and get the overall prior df.
    df1
        Their residual degrees of freedom: one value, or one per feature (features with df <= 1e-6
        are left out as NaN ones are).
    covariate
        One finite value per feature; the trend of the log variances in it is a lowess fit. None: no
        trend.
    winsor_tail_p
        Shares Winsorized at the lower and the upper tail of the log variances (one value: both).

    Returns
    -------
    A dict with ``scale``, ``df2``, ``df2_shrunk`` (and, when computed, ``tail_p``, ``prob_outlier``,
    ``df2_outlier``) and, with a covariate, ``trend_leverage``: each feature's sum of squared
    weights of its fitted trend on the log variances (see :func:`_coefficient_stats`).

    Raises
    ------
    ValueError
        When ``df1`` or ``covariate`` do not match ``x`` in length, ``covariate`` is not finite, or
        most variances are <= 0.
    """
    x = np.array(x, dtype=float, ndmin=1)
    n = len(x)
    if n < 2:
        return {"scale": np.nan, "df2": np.nan, "df2_shrunk": np.nan}
    if n == 2:
        scale, df2, lev = _fit_f_dist(x, df1, covariate)
        return {"scale": scale, "df2": df2, "df2_shrunk": np.full(n, df2), "trend_leverage": lev}
    df1 = np.asarray(df1, dtype=float)
    if df1.size not in (1, n):
        raise ValueError("x and df1 are different lengths")
    cov = None
    if covariate is not None:
        cov = np.asarray(covariate, dtype=float)
        if len(cov) != n:
            raise ValueError("x and covariate are different lengths")
        if not np.isfinite(cov).all():
            raise ValueError("covariate contains NA or infinite values")
    with np.errstate(invalid="ignore"):
        ok = ~np.isnan(x) & np.isfinite(df1) & (df1 > 1e-6)
    ok = np.broadcast_to(ok, (n,))
    if not ok.all():
        fit = fit_f_dist_robustly(x[ok], df1 if df1.size == 1 else df1[ok], None if cov is None else cov[ok],
                                  winsor_tail_p)
        shrunk = x.copy()
        shrunk[ok] = fit["df2_shrunk"]
        shrunk[~ok] = fit["df2"]
        scale = fit["scale"]
        if cov is not None:
            full = np.empty(n)
            full[ok] = scale
            full[~ok] = np.exp(_approx_rule2(cov[ok], np.log(scale), cov[~ok]))
            scale = full
        lev = None
        if cov is not None and fit.get("trend_leverage") is not None:
            lev = np.full(n, np.nan)
            lev[ok] = fit["trend_leverage"]
        return {"scale": scale, "df2": fit["df2"], "df2_shrunk": shrunk, "trend_leverage": lev}
    m = np.median(x)
    if m <= 0:
        raise ValueError("Variances are mostly <= 0")
    x = np.where(x < m * 1e-12, m * 1e-12, x)
    nr_scale, nr_df2, nr_lev = _fit_f_dist(x, df1, cov)
    tail_p = np.resize(np.asarray(winsor_tail_p, dtype=float), 2)
    prob = np.array([tail_p[0], 1 - tail_p[1]])
    if np.all(tail_p < 1 / n):
        return {"scale": nr_scale, "df2": nr_df2, "df2_shrunk": np.full(n, nr_df2), "trend_leverage": nr_lev}
    if df1.size > 1:
        df1max = df1.max()
        i = df1 < df1max - 1e-14
        if i.any():
            s = nr_scale if cov is None else nr_scale[i]
            f = x[i] / s
            pupper = _f_logsf(f, df1[i], nr_df2)
            plower = _f_logcdf(f, df1[i], nr_df2)
            up = pupper < plower
            f[up] = _f_isf(np.exp(pupper[up]), df1max, nr_df2)
            f[~up] = _f_ppf(np.exp(plower[~up]), df1max, nr_df2)
            x = x.copy()
            x[i] = f * s
        df1 = float(df1max)
    else:
        df1 = float(df1.ravel()[0])
    z = np.log(x)
    lev = None
    if cov is None:
        ztrend = stats.trim_mean(z, tail_p[1])
    else:
        ztrend, lev = _loess_fit(z, cov, span=0.4, smoother=True)
    zresid = z - ztrend
    zrq = np.quantile(zresid, prob)
    zwins = np.clip(zresid, zrq[0], zrq[1])
    zwmean = zwins.mean()
    zwvar = np.mean((zwins - zwmean) ** 2) * n / (n - 1)

    mom_mean, mom_var = _winsorized_moments(df1, np.inf, tail_p)
    funval_inf = np.log(zwvar / mom_var)
    if funval_inf <= 0:
        ztc = ztrend + zwmean - mom_mean
        fstat = np.exp(z - ztc)
        tail = stats.chi2.sf(fstat * df1, df1)
        r = stats.rankdata(fstat)
        pno = np.minimum(tail / ((n - r + 0.5) / n), 1)
        shrunk = np.full(n, np.inf)
        out = pno < 1
        if out.any():
            shrunk[out] = pno[out] * n * df1
            o = np.argsort(tail, kind="stable")
            shrunk[o] = np.maximum.accumulate(shrunk[o])
        return {"scale": np.exp(ztc), "df2": np.inf, "tail_p": tail, "df2_shrunk": shrunk, "trend_leverage": lev}
    if nr_df2 == np.inf:
        return {"scale": nr_scale, "df2": nr_df2, "df2_shrunk": np.full(n, nr_df2), "trend_leverage": nr_lev}

    def fun(u):
        if u >= 1:
            return funval_inf
        return np.log(zwvar / _winsorized_moments(df1, u / (1 - u), tail_p)[1])

    rbx = nr_df2 / (1 + nr_df2)
    funval_low = fun(rbx)
    if funval_low >= 0:
        df2 = nr_df2
    else:
        root = _zeroin(fun, rbx, 1.0, funval_low, funval_inf, tol=1e-8)
        df2 = root / (1 - root)
    mom_mean = _winsorized_moments(df1, df2, tail_p)[0]
    ztc = ztrend + zwmean - mom_mean
    s20 = np.exp(ztc)
    fstat = np.exp(z - ztc)
    log_tail = _f_logsf(fstat, df1, df2)
    r = stats.rankdata(fstat)
    log_pno = np.minimum(log_tail - (np.log(n - r + 0.5) - np.log(n)), 0)
    pno, po = np.exp(log_pno), -np.expm1(log_pno)
    if (log_pno < 0).any():
        min_log_tail = log_tail.min()
        if min_log_tail == -np.inf:
            df2_outlier = 0.0
            shrunk = pno * df2
        else:
            df2_outlier = np.log(0.5) / min_log_tail * df2
            new_log_tail = _f_logsf(fstat.max(), df1, df2_outlier)
            df2_outlier = np.log(0.5) / new_log_tail * df2_outlier
            shrunk = pno * df2 + po * df2_outlier
        shrunk = _monotone_in(shrunk, log_tail)
    else:
        df2_outlier = df2
        shrunk = np.full(n, df2)
    return {"scale": s20, "df2": df2, "tail_p": np.exp(log_tail), "prob_outlier": po,
            "df2_outlier": df2_outlier, "df2_shrunk": shrunk, "trend_leverage": lev}


def _monotone_in(shrunk: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Force the prior df to rise with the tail probability (limma: running means up to their
    minimum, then cumulative maximum, in the order of ``key``)."""
    n = len(shrunk)
    o = np.argsort(key, kind="stable")
    ordered = shrunk[o].copy()
    m = np.cumsum(ordered) / np.arange(1, n + 1)
    imin = int(np.argmin(m))
    ordered[: imin + 1] = m[imin]
    out = np.empty(n)
    out[o] = np.maximum.accumulate(ordered)
    return out


def fit_f_dist_unequal_df1(x, df1, covariate=None, robust: bool = False, prior_weights=None) -> dict:
    """Maximum-likelihood estimates of the scaled F distribution when the residual df differ
    between features (limma's fitFDistUnequalDF1, Smyth & Chen 2024, the default of limma >= 3.61
    for unequal df): returns a dict with ``scale``, ``df2`` and, with ``robust`` and outliers,
    ``df2_shrunk``. The prior df lies in (2, 9998); two-sided outliers (BH FDR of the F tail
    below 0.3) are down-weighted in a second fit. ``covariate`` is not supported (limma smooths
    with its own weighted lowess); use ``legacy=True`` in :func:`squeeze_variances` for a trend.

    Parameters
    ----------
    x
        Per-feature variances; NaN ones get weight 0.
    df1
        Their residual degrees of freedom: one per feature (or one value); features below 0.01 get
        weight 0.
    covariate
        Must be None: a covariate raises NotImplementedError.
    robust
        Down-weight two-sided outliers in a second fit and give each feature its own prior df
        (``df2_shrunk``).
    prior_weights
        Per-feature weights of the likelihood (limma's ``prior.weights``); None: all 1.

    Returns
    -------
    A dict with ``scale`` and ``df2``; with ``robust`` and outliers also ``df2_outlier`` and
    ``df2_shrunk``. Both are NaN with fewer than 2 positive variances of non-zero weight.
    """
    if covariate is not None:
        raise NotImplementedError("a covariate with unequal df: use squeeze_variances(..., legacy=True)")
    x = np.array(x, dtype=float, ndmin=1)
    n = len(x)
    df1 = np.broadcast_to(np.asarray(df1, dtype=float), (n,)).copy()
    if np.isnan(df1).any():
        raise ValueError("NA df1 values")
    pw = None if prior_weights is None else np.array(prior_weights, dtype=float)
    if np.isnan(x).any():
        i = np.isnan(x)
        pw = (~i).astype(float) if pw is None else np.where(i, 0.0, pw)
        x = np.where(i, 0.0, x)
    if df1.min() < 0.01:
        i = df1 < 0.01
        pw = (~i).astype(float) if pw is None else np.where(i, 0.0, pw)
        df1[i] = 1
    informative = x > 0
    if pw is not None:
        informative &= pw != 0
    if informative.sum() < 2:
        return {"scale": np.nan, "df2": np.nan}
    if informative.sum() == 2:
        robust, pw = False, None
    m = np.median(x[informative])
    xpos = np.maximum(x, 1e-12 * m)
    d1 = df1 / 2
    e = np.log(xpos) + _logmdigamma(d1)
    w = 1 / special.polygamma(1, d1)
    if pw is not None:
        w = w * pw
    emean = np.sum(w * e) / np.sum(w)
    d1x = d1 * xpos
    weights = np.ones(n) if pw is None else pw

    def minus_twice_loglik(par):
        d2 = par / (1 - par)
        d2s20 = d2 * np.exp(emean - _logmdigamma(d2))
        return -2 * np.sum(weights * (-(d1 + d2) * np.log1p(d1x / d2s20) - d1 * np.log(d2s20)
                                      + special.gammaln(d1 + d2) - special.gammaln(d2)))

    par = _fmin(minus_twice_loglik, 0.5, 0.9998)
    d2 = par / (1 - par)
    s20 = float(np.exp(emean - _logmdigamma(d2)))
    if not robust:
        return {"scale": s20, "df2": 2 * d2}
    df2 = 2 * d2
    fstat = x / s20
    right = stats.f.sf(fstat, df1, df2)
    left = 1 - right
    if left.min() < 0.001:
        i = left < 0.001
        left[i] = stats.f.cdf(fstat[i], df1[i], df2)
    fdr = bh(2 * np.minimum(left, right))
    fdr[fdr > 0.3] = 1
    if fdr.min() == 1:
        return {"scale": s20, "df2": df2}
    refit = fit_f_dist_unequal_df1(x, df1, robust=False, prior_weights=fdr)
    df2 = refit["df2"]
    r = stats.rankdata(fstat)
    pno = np.minimum(right / ((n - r + 0.5) / n), 1)
    if pno.min() == 1:
        return refit
    i = int(np.argmin(right))
    if right[i] == 0:
        df2_outlier = 0.0
        shrunk = pno * df2
    else:
        df2_outlier = np.log(0.5) / np.log(right[i]) * df2
        new_log = stats.f.logsf(fstat[i], df1[i], df2_outlier)
        df2_outlier = np.log(0.5) / new_log * df2_outlier
        shrunk = pno * df2 + (1 - pno) * df2_outlier
    return {"scale": refit["scale"], "df2": df2, "df2_outlier": df2_outlier, "df2_shrunk": _monotone_in(shrunk, right)}


# ---------------------------------------------------------------------------------------------
# squeezeVar (behind _moderation.squeeze_variances)
# ---------------------------------------------------------------------------------------------
def _squeeze(s2, df, covariate=None, robust=False, winsor_tail_p=(0.05, 0.1), legacy=None) -> tuple:
    """:func:`squeeze_variances`, plus the trend's variance factor per feature (None without one)."""
    var = np.array(s2, dtype=float, ndmin=1)
    n = len(var)
    if n == 0:
        raise ValueError("var is empty")
    if n < 3:
        return var.copy(), 0.0, var.copy(), None
    dfa = np.asarray(df, dtype=float)
    if dfa.size > 1:
        var[dfa == 0] = 0
    if legacy is None:
        dfp = dfa[dfa > 0]
        if dfp.size == 0:
            raise ValueError("no residual degrees of freedom")
        legacy = bool(dfp.min() == dfp.max())
    leverage = None
    if legacy:
        if robust:
            fit = fit_f_dist_robustly(var, dfa, covariate, winsor_tail_p)
            scale, d0, leverage = fit["scale"], fit["df2_shrunk"], fit.get("trend_leverage")
        else:
            scale, d0, leverage = _fit_f_dist(var, dfa, covariate)
    else:
        fit = fit_f_dist_unequal_df1(var, dfa, covariate, robust=robust)
        scale, d0 = fit["scale"], fit.get("df2_shrunk", fit["df2"])
    if np.isnan(d0).any():
        raise ValueError("could not estimate the prior df")
    return _posterior(var, dfa, scale, d0), d0, scale, leverage


def _posterior(var, df, var_prior, df_prior) -> np.ndarray:
    """limma's .squeezeVar: posterior variances given the hyperparameters (Inf prior df: the prior)."""
    n = len(var)
    df_prior = np.asarray(df_prior, dtype=float)
    if np.isfinite(df_prior.max()):
        return (df * var + df_prior * var_prior) / (df + df_prior)
    post = np.broadcast_to(np.asarray(var_prior, dtype=float), (n,)).copy()
    if df_prior.min() > 1e100:
        return post
    dfp = np.broadcast_to(df_prior, (n,))
    i = np.isfinite(dfp)
    dfi = np.broadcast_to(np.asarray(df, dtype=float), (n,))[i]
    post[i] = (dfi * var[i] + dfp[i] * post[i]) / (dfi + dfp[i])
    return post
