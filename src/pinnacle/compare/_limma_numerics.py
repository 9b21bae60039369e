"""R's numerical routines and special functions behind the limma port (``_limma``), step for step.

==============================  ===========================================================
here                            R
==============================  ===========================================================
``_logmdigamma``                statmod's ``logmdigamma``
``_trigamma_inverse``           limma's ``trigammaInverse``
``_zeroin`` / ``_fmin``         R's ``uniroot`` / ``optimize`` (Brent), same tolerances
``_lowess`` / ``_loess_fit``    R's ``lowess`` (clowess) / limma's ``loessFit`` without weights
``_natural_spline``             ``splines::ns(x, df, intercept=TRUE)`` (same space, other basis)
``_f_logsf`` ... ``_f_pdf``     R's F distribution functions, with df2 = Inf allowed
``_winsorized_moments``         fitFDistRobustly's quadrature (``statmod::gauss.quad.prob``)
``_approx_rule2``               R's ``approx(rule=2, ties=mean)``
==============================  ===========================================================
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats


def _logmdigamma(x):
    """log(x) - digamma(x) (statmod's logmdigamma)."""
    x = np.asarray(x, dtype=float)
    return np.log(x) - special.digamma(x)


def _trigamma_inverse(x) -> np.ndarray:
    """Solve trigamma(y) = x for y (limma's trigammaInverse: Newton's method, Smyth 2004)."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.full_like(x, np.nan)
    ok = ~np.isnan(x) & (x >= 0)
    big, small = ok & (x > 1e7), ok & (x < 1e-6)
    y[big] = 1 / np.sqrt(x[big])
    y[small] = 1 / x[small]
    mid = ok & ~big & ~small
    if mid.any():
        xm = x[mid]
        ym = 0.5 + 1 / xm
        for _ in range(51):
            tri = special.polygamma(1, ym)
            dif = tri * (1 - tri / xm) / special.polygamma(2, ym)
            ym = ym + dif
            if np.max(-dif / ym) < 1e-8:
                break
        y[mid] = ym
    return y


def _zeroin(f, ax: float, bx: float, fa: float, fb: float, tol: float = 1e-8, maxit: int = 1000) -> float:
    """R's uniroot (R_zeroin2, Brent's root finder), step for step, so that the root limma finds
    within ``tol`` is the root found here."""
    eps = np.finfo(float).eps
    a, b, c, fc = ax, bx, ax, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(maxit + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * eps * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q, t1, t2 = fa / fc, fb / fc, fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def _fmin(f, ax: float, bx: float, tol: float = np.finfo(float).eps ** 0.25) -> float:
    """R's optimize (Brent_fmin, golden section and parabolic steps), with its default tolerance."""
    c = (3.0 - np.sqrt(5.0)) * 0.5
    eps = np.sqrt(np.finfo(float).eps)
    a, b = ax, bx
    v = w = x = a + c * (b - a)
    d = e = 0.0
    fx = fv = fw = f(x)
    tol3 = tol / 3.0
    while True:
        xm = (a + b) * 0.5
        tol1 = eps * abs(x) + tol3
        t2 = tol1 * 2.0
        if abs(x - xm) <= t2 - (b - a) * 0.5:
            break
        p = q = r = 0.0
        if abs(e) > tol1:
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = (q - r) * 2.0
            if q > 0.0:
                p = -p
            else:
                q = -q
            r = e
            e = d
        if abs(p) >= abs(q * 0.5 * r) or p <= q * (a - x) or p >= q * (b - x):
            e = (b - x) if x < xm else (a - x)
            d = c * e
        else:
            d = p / q
            u = x + d
            if u - a < t2 or b - u < t2:
                d = tol1 if x < xm else -tol1
        if abs(d) >= tol1:
            u = x + d
        elif d > 0.0:
            u = x + tol1
        else:
            u = x - tol1
        fu = f(u)
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, w, x = w, x, u
            fv, fw, fx = fw, fx, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv = w, fw
                w, fw = u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x


def _lowess_pass(x: np.ndarray, Y: np.ndarray, ns: int, rw: np.ndarray, userw: bool, delta: float) -> np.ndarray:
    """One pass of R's clowess over x sorted ascending: local linear fits (tricube weights over
    the ``ns`` nearest points, times the robustness weights ``rw`` when ``userw``), points within
    ``delta`` interpolated. Linear in ``Y`` (n x m) for given weights."""
    n = len(x)
    rng = x[-1] - x[0]
    ys = np.empty(Y.shape)

    def lowest(xs, nleft, nright):
        h = max(xs - x[nleft], x[nright] - xs)
        h9, h1 = 0.999 * h, 0.001 * h
        w = np.zeros(n)
        a = 0.0
        j = nleft
        while j < n:  # all points within the radius (ties on the right included)
            r = abs(x[j] - xs)
            if r <= h9:
                w[j] = 1.0 if r <= h1 else (1 - (r / h) ** 3) ** 3
                if userw:
                    w[j] *= rw[j]
                a += w[j]
            elif x[j] > xs:
                break
            j += 1
        if a <= 0:
            return None
        sl = slice(nleft, j)
        wj = w[sl] / a
        if h > 0:
            a = np.sum(wj * x[sl])
            b = xs - a
            c = np.sum(wj * (x[sl] - a) ** 2)
            if np.sqrt(c) > 0.001 * rng:
                b /= c
                wj = wj * (b * (x[sl] - a) + 1.0)
        return wj @ Y[sl]

    nleft, nright, last, i = 0, ns - 1, -1, 0
    while True:
        if nright < n - 1:
            d1 = x[i] - x[nleft]
            d2 = x[nright + 1] - x[i]
            if d1 > d2:
                nleft += 1
                nright += 1
                continue
        fit = lowest(x[i], nleft, nright)
        ys[i] = Y[i] if fit is None else fit
        if last < i - 1:
            denom = x[i] - x[last]
            for j in range(last + 1, i):
                alpha = (x[j] - x[last]) / denom
                ys[j] = alpha * ys[i] + (1 - alpha) * ys[last]
        last = i
        cut = x[last] + delta
        i = last + 1
        while i < n:
            if x[i] > cut:
                break
            if x[i] == x[last]:
                ys[i] = ys[last]
                last = i
            i += 1
        i = max(last + 1, i - 1)
        if last >= n - 1:
            break
    return ys


def _lowess(x: np.ndarray, y: np.ndarray, f: float, iterations: int, delta: float, *, smoother: bool = False):
    """R's lowess (clowess, Cleveland 1979) on x sorted ascending, with ``iterations``
    robustness iterations; returns the fitted values, and with ``smoother`` also the n x n matrix
    L of the last pass (fitted = L @ y at the final robustness weights)."""
    n = len(x)
    y = np.asarray(y, dtype=float)
    if n < 2:
        return (y.copy(), np.eye(n)) if smoother else y.copy()
    ns = max(2, min(n, int(f * n + 1e-7)))
    rw = np.ones(n)
    for it in range(1, iterations + 2):
        rw_used, userw = rw, it > 1
        ys = _lowess_pass(x, y[:, None], ns, rw, userw, delta)[:, 0]
        res = y - ys
        sc = np.mean(np.abs(res))
        if it > iterations:
            break
        cmad = 6 * np.median(np.abs(res))
        if cmad < 1e-7 * sc:
            break
        r = np.abs(res)
        rw = np.where(r <= 0.001 * cmad, 1.0, np.where(r <= 0.999 * cmad, (1 - (r / cmad) ** 2) ** 2, 0.0))
    if smoother:
        return ys, _lowess_pass(x, np.eye(n), ns, rw_used, userw, delta)
    return ys


def _loess_fit(y: np.ndarray, x: np.ndarray, span: float = 0.3, iterations: int = 4, *, smoother: bool = False):
    """limma's loessFit without weights: R's lowess(x, y, f=span, iter=iterations-1) with its
    default delta; fitted values in the input order (and, with ``smoother``, each fitted value's
    sum of squared weights on the observations, its variance factor)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    fitted, factor = np.full(len(y), np.nan), np.full(len(y), np.nan)
    obs = np.isfinite(y) & np.isfinite(x)
    xo, yo = x[obs], y[obs]
    if len(yo) == 0 or span < 1 / len(yo):
        fitted[obs], factor[obs] = yo, 1.0
        return (fitted, factor) if smoother else fitted
    o = np.argsort(xo, kind="stable")
    fo, vo = np.empty(len(yo)), np.empty(len(yo))
    out = _lowess(xo[o], yo[o], span, iterations - 1, 0.01 * (xo.max() - xo.min()), smoother=smoother)
    if smoother:
        fo[o], vo[o] = out[0], (out[1] ** 2).sum(axis=1)
        fitted[obs], factor[obs] = fo, vo
        return fitted, factor
    fo[o] = out
    fitted[obs] = fo
    return fitted


def _natural_spline(x: np.ndarray, df: int):
    """A basis of the natural cubic splines of R's ``splines::ns(x, df, intercept=TRUE)`` (knots
    at quantiles of x, linear beyond its range), as a function of new x. The basis differs from
    R's B-spline one; the space, and so every least-squares fit on it, is the same."""
    lo, hi = float(np.min(x)), float(np.max(x))
    inner = np.quantile(x, np.linspace(0, 1, df)[1:-1]) if df > 2 else np.array([])
    knots = (np.r_[lo, inner, hi] - lo) / (hi - lo)
    K = len(knots)

    def d(u, j):
        return (np.clip(u - knots[j], 0, None) ** 3 - np.clip(u - knots[-1], 0, None) ** 3) / (knots[-1] - knots[j])

    def basis(t):
        u = (np.asarray(t, dtype=float) - lo) / (hi - lo)
        return np.column_stack([np.ones_like(u), u, *[d(u, j) - d(u, K - 2) for j in range(K - 2)]])

    return basis


# F distributions with df2 = Inf allowed (then df1 * F is chi-square on df1)
def _f_logsf(x, df1, df2):
    return stats.chi2.logsf(x * df1, df1) if np.isinf(df2) else stats.f.logsf(x, df1, df2)


def _f_logcdf(x, df1, df2):
    return stats.chi2.logcdf(x * df1, df1) if np.isinf(df2) else stats.f.logcdf(x, df1, df2)


def _f_ppf(p, df1, df2):
    return stats.chi2.ppf(p, df1) / df1 if np.isinf(df2) else stats.f.ppf(p, df1, df2)


def _f_isf(p, df1, df2):
    return stats.chi2.isf(p, df1) / df1 if np.isinf(df2) else stats.f.isf(p, df1, df2)


def _f_pdf(x, df1, df2):
    return stats.chi2.pdf(x * df1, df1) * df1 if np.isinf(df2) else stats.f.pdf(x, df1, df2)


_GQ_NODES, _GQ_WEIGHTS = np.polynomial.legendre.leggauss(128)
_GQ_NODES, _GQ_WEIGHTS = (_GQ_NODES + 1) / 2, _GQ_WEIGHTS / 2  # statmod::gauss.quad.prob(128, "uniform")


def _winsorized_moments(df1: float, df2: float, tail_p) -> tuple[float, float]:
    """Mean and variance of log F(df1, df2) Winsorized at the tail probabilities (Gaussian
    quadrature on the x/(1+x) scale, as fitFDistRobustly)."""
    fq = _f_ppf(np.array([tail_p[0], 1 - tail_p[1]]), df1, df2)
    zq = np.log(fq)
    q = fq / (1 + fq)
    nodes = q[0] + (q[1] - q[0]) * _GQ_NODES
    fnodes = nodes / (1 - nodes)
    znodes = np.log(fnodes)
    dens = _f_pdf(fnodes, df1, df2) / (1 - nodes) ** 2
    q21 = q[1] - q[0]
    tail_p = np.asarray(tail_p, dtype=float)
    m = q21 * np.sum(_GQ_WEIGHTS * dens * znodes) + np.sum(zq * tail_p)
    v = q21 * np.sum(_GQ_WEIGHTS * dens * (znodes - m) ** 2) + np.sum((zq - m) ** 2 * tail_p)
    return m, v


def _approx_rule2(x, y, xout):
    """R's approx(x, y, xout, rule=2, ties=mean)."""
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    return np.interp(xout, ux, uy)
