"""Per-cell scDNA copy number: cell QC, GC correction, ploidy and integer copy number.

What comes from libraries and what is written here:

- GC correction is the Shah-lab (HMMcopy / single_cell_pipeline) modal quantile regression:
  reads ~ gc + gc^2 at quantiles 0.1-0.9, the modal quantile is where neighbouring quantile
  curves lie closest together (their integrals over the central GC range, smoothed with
  statsmodels ``lowess``), reads are divided by that curve. ``engine="statsmodels"`` fits each
  cell and quantile with ``statsmodels.QuantReg``; the default ``engine="vectorised"`` runs
  ``QuantReg.fit``'s iteratively reweighted least squares (same weights, least-squares start)
  for all cells at once, with a residual floor and stopping rule relative to the cell's depth
  and the curves fitted on at most 1,500 bins spread over the GC range. Written here because
  QuantReg fits one cell-quantile per call (~40 ms for 3,000 bins: ~20 min for 2,000 cells x
  17 quantiles, against ~25 s vectorised); the engines' curves agree within 2% over the central
  GC range (tests/test_cnv.py).
- Integer copy number: ``hmmlearn.hmm.GaussianHMM`` Viterbi decoding with fixed states
  0..max_cn (means fixed at the integers in copy-number units, per-cell variance, a sticky
  transition matrix, chromosomes as separate sequences). hmmlearn only decodes; no parameter
  is learned, so a noisy cell cannot move its states off the integers.
- Per-cell scale (ploidy): a grid search written here (scAbsolute / Ginkgo idea: each ploidy
  gives a scale; pick the one whose scaled, smoothed ratios lie closest to integers, plus a small
  parsimony penalty per copy of ploidy). A flat diploid profile fits 2 exactly and is not
  called 4 because the penalty and the doubled noise at scale 4 both weigh against it.
- Cell QC metrics (reads, MAPD, zero-bin fraction) and MAD thresholds are numpy arithmetic.

Nothing here draws random numbers: the same input gives the same output.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy import ndimage
from threadpoolctl import threadpool_limits

from pinnacle.errors import InputError

from .bins import filter_bins, is_autosome

__all__ = ["call_copy_number", "cell_qc", "gc_correct", "process_sample", "summarise_cell_qc"]

_MAD_SCALE = 1.4826


def _dense(adata: ad.AnnData, layer: str | None, where: str) -> np.ndarray:
    if layer is not None and layer not in adata.layers:
        raise InputError(where, f"layer {layer!r} not found (layers: {list(adata.layers)}).",
                         "run the previous step first (gc_correct writes layers['ratio']) or name the layer.")
    X = adata.X if layer is None else adata.layers[layer]
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return X.astype(np.float64, copy=False)


def _chrom_runs(adata: ad.AnnData, where: str) -> tuple[np.ndarray, list[int]]:
    """Chromosome code per bin and the run lengths; bins of a chromosome must be contiguous."""
    if "chrom" not in adata.var:
        raise InputError(where, "var has no 'chrom' column.", "read scDNA with pinnacle.io.read_scdna.")
    chrom = adata.var["chrom"].astype(str).to_numpy()
    change = np.r_[True, chrom[1:] != chrom[:-1]]
    starts = np.flatnonzero(change)
    if len(set(chrom[starts])) != len(starts):
        raise InputError(where, "the bins of a chromosome are not contiguous.",
                         "sort bins by chromosome then start (pinnacle.io.read_scdna does).")
    lengths = np.diff(np.r_[starts, len(chrom)]).tolist()
    return np.cumsum(change) - 1, lengths


def _within_chrom_diffs(X: np.ndarray, code: np.ndarray) -> np.ndarray:
    same = code[1:] == code[:-1]
    return (X[:, 1:] - X[:, :-1])[:, same]


# ---------------------------------------------------------------------------------------------
# cell QC
# ---------------------------------------------------------------------------------------------
def cell_qc(adata: ad.AnnData, *, layer: str | None = None, groupby: str | None = "sample_id",
            method: str = "mad", n_mads: float = 3.0, min_reads: float | None = None,
            max_mapd: float | None = None, max_zero_fraction: float | None = None,
            key_added: str = "cnv_qc_pass") -> pd.DataFrame:
    """Per-cell scDNA QC: reads, MAPD (bin-to-bin noise) and the fraction of empty bins.

    MAPD is the median absolute difference of neighbouring bins' normalised counts (counts over
    the cell's mean) within chromosomes: high MAPD means noise will drown copy-number steps.
    With ``method="mad"`` each sample gets its own thresholds (median -/+ ``n_mads`` scaled MADs:
    low log10 reads, high MAPD, high zero fraction); a zero MAD is widened to a small floor
    so that a tight sample does not fail cells for trivial differences. Fixed thresholds, when
    given, apply as well (``method="fixed"`` uses only them). Cells without reads always fail.

    Parameters
    ----------
    adata
        Cells x bins, raw read counts in ``X`` (or ``layer``). obs gets ``total_reads``,
        ``mapd``, ``zero_fraction`` and ``key_added``; ``uns['cnv_qc']`` the thresholds.
    layer
        Layer holding the counts instead of ``X``.
    groupby
        obs column of the sample (thresholds per sample); all cells together when absent.
    method
        ``"mad"`` or ``"fixed"``.
    n_mads
        Width of the MAD thresholds.
    min_reads, max_mapd, max_zero_fraction
        Fixed thresholds (None: not used).
    key_added
        obs column of the pass flag.

    Returns
    -------
    The QC table: one row per cell with the metrics, the failed tests and the pass flag.
    """
    if method not in ("mad", "fixed"):
        raise InputError("cell_qc", f"method={method!r} is not known.", "use 'mad' or 'fixed'.")
    X = _dense(adata, layer, "cell_qc")
    code, _ = _chrom_runs(adata, "cell_qc")
    total = X.sum(axis=1)
    mean = np.where(total > 0, total / max(X.shape[1], 1), 1.0)
    norm = X / mean[:, None]
    diffs = _within_chrom_diffs(norm, code)
    mapd = np.median(np.abs(diffs), axis=1) if diffs.shape[1] else np.zeros(len(X))
    zero = (X == 0).mean(axis=1)
    table = pd.DataFrame({"total_reads": total, "mapd": mapd, "zero_fraction": zero}, index=adata.obs_names)
    groups = adata.obs[groupby].astype(str).to_numpy() if groupby and groupby in adata.obs else \
        np.full(adata.n_obs, "all", dtype=object)
    table.insert(0, "group", groups)
    thresholds = {}
    fail = {k: np.zeros(len(table), bool) for k in ("reads", "mapd", "zero_fraction")}
    logr = np.log10(np.maximum(total, 1.0))
    for g in pd.unique(groups):
        m = (groups == g) & (total > 0)
        th = {"min_reads": min_reads, "max_mapd": max_mapd, "max_zero_fraction": max_zero_fraction}
        if method == "mad" and m.sum() >= 3:
            def spread(v, floor):
                return max(n_mads * _MAD_SCALE * float(np.median(np.abs(v - np.median(v)))), floor)
            lo = 10 ** (np.median(logr[m]) - spread(logr[m], np.log10(1.5)))
            hi_mapd = float(np.median(mapd[m])) + spread(mapd[m], 0.02)
            hi_zero = float(np.median(zero[m])) + spread(zero[m], 0.02)
            th = {"min_reads": lo if min_reads is None else max(lo, min_reads),
                  "max_mapd": hi_mapd if max_mapd is None else min(hi_mapd, max_mapd),
                  "max_zero_fraction": hi_zero if max_zero_fraction is None else min(hi_zero, max_zero_fraction)}
        g_m = groups == g
        if th["min_reads"] is not None:
            fail["reads"] |= g_m & (total < th["min_reads"])
        if th["max_mapd"] is not None:
            fail["mapd"] |= g_m & (mapd > th["max_mapd"])
        if th["max_zero_fraction"] is not None:
            fail["zero_fraction"] |= g_m & (zero > th["max_zero_fraction"])
        thresholds[str(g)] = {k: (None if v is None else float(v)) for k, v in th.items()}
    fail["reads"] |= total <= 0
    for k, v in fail.items():
        table[f"fail_{k}"] = v
    table[key_added] = ~(fail["reads"] | fail["mapd"] | fail["zero_fraction"])
    for c in ("total_reads", "mapd", "zero_fraction", key_added):
        adata.obs[c] = table[c].to_numpy()
    adata.uns["cnv_qc"] = {"method": method, "n_mads": float(n_mads), "thresholds": thresholds}
    return table


# ---------------------------------------------------------------------------------------------
# GC correction
# ---------------------------------------------------------------------------------------------
def _quantreg_irls(Y: np.ndarray, D: np.ndarray, q: float, *, max_iter: int, tol: float) -> np.ndarray:
    """``statsmodels.QuantReg.fit``'s IRLS (weights 1 / check-loss residual, starting from least
    squares) for every row of ``Y`` at once; returns (n, p) params.

    Two changes, both for speed at the same solution: the residual floor is 1e-3 of the cell's
    mean count instead of 1e-6 (integer counts tie at zero residual, which makes IRLS with a tiny
    floor oscillate for hundreds of iterations), and the stopping rule is relative to the cell's
    mean count. Converged cells leave the active set.
    """
    n, p = Y.shape[0], D.shape[1]
    pairs = [(i, j) for i in range(p) for j in range(i, p)]
    prods = np.column_stack([D[:, i] * D[:, j] for i, j in pairs])  # (B, p(p+1)/2)
    scale = np.maximum(np.abs(Y).mean(axis=1), 1e-12)
    beta = np.ones((n, p))
    idx = np.arange(n)
    Ya, floor, w = Y, (1e-3 * scale)[:, None], np.ones_like(Y)
    side = np.array([1.0 / (1 - q), 1.0 / q])
    for _ in range(max_iter):
        flat = w @ prods
        xtx = np.empty((len(idx), p, p))
        for k, (i, j) in enumerate(pairs):
            xtx[:, i, j] = xtx[:, j, i] = flat[:, k]
        new = np.einsum("nij,nj->ni", np.linalg.pinv(xtx), (w * Ya) @ D)
        r = Ya - new @ D.T
        w = side[(r < 0).view(np.int8)] / np.maximum(np.abs(r), floor)
        go = np.abs(new - beta[idx]).max(axis=1) > tol * scale[idx]
        beta[idx] = new
        if not go.all():
            idx, Ya, w, floor = idx[go], Ya[go], w[go], floor[go]
            if not idx.size:
                break
    return beta


def _quantreg_statsmodels(Y: np.ndarray, D: np.ndarray, q: float, *, max_iter: int, tol: float) -> np.ndarray:
    from statsmodels.regression.quantile_regression import QuantReg

    out = np.empty((Y.shape[0], D.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, y in enumerate(Y):
            out[i] = QuantReg(y, D).fit(q=q).params  # its own defaults: the reference
    return out


def gc_correct(adata: ad.AnnData, *, layer: str | None = None, quantiles: Sequence[float] | None = None,
               lowess_frac: float = 0.2, engine: str = "vectorised", max_iter: int = 100,
               tol: float = 1e-4, max_fit_bins: int | None = 1500, chunk_cells: int = 512,
               key_added: str = "ratio") -> ad.AnnData:
    """GC-correct each cell's bin counts by modal quantile regression (Shah-lab HMMcopy pipeline).

    The modal quantile's curve follows the cell's most common copy-number state, so dividing by
    it leaves ratios near 1 for that state whatever the cell's aneuploidy; a mean or median fit
    would be pulled by gained and lost arms.

    Parameters
    ----------
    adata
        Cells x bins, raw read counts in ``X`` (or ``layer``), ``var['gc']`` finite for every
        bin (run :func:`filter_bins` first). Changed in place.
    layer
        Layer holding the counts instead of ``X``.
    quantiles
        Quantiles fitted (default 0.10, 0.15, ..., 0.90; the Shah pipeline uses steps of 0.01,
        which costs five times as long for the same modal curve within the ploidy search's
        rescaling).
    lowess_frac
        ``frac`` of the lowess that smooths the gaps between neighbouring quantile curves.
    engine
        ``"vectorised"`` (all cells at once) or ``"statsmodels"`` (``QuantReg`` per cell).
    max_iter, tol
        Vectorised IRLS stopping rule: at most ``max_iter`` iterations, or until no parameter
        moves by more than ``tol`` times the cell's mean count (the statsmodels engine uses
        ``QuantReg.fit``'s own defaults).
    max_fit_bins
        Fit the curves on at most this many bins, spread evenly over the GC range (None: all);
        a 3-parameter curve needs no more, and the cost grows with the bins. The correction is
        applied to every bin.
    chunk_cells
        Cells per vectorised batch (memory).
    key_added
        Layer of the GC-corrected ratios (float32); obs gets ``gc_modal_quantile``.
    """
    if engine not in ("vectorised", "statsmodels"):
        raise InputError("gc_correct", f"engine={engine!r} is not known.", "use 'vectorised' or 'statsmodels'.")
    if "gc" not in adata.var:
        raise InputError("gc_correct", "var has no 'gc' column.",
                         "run pinnacle.cnv.filter_bins(adata, reference=...) first to add GC from a bin table.")
    gc = adata.var["gc"].to_numpy(dtype=np.float64)
    if not np.isfinite(gc).all() or (gc <= 0).any():
        raise InputError("gc_correct", f"{int((~np.isfinite(gc) | (gc <= 0)).sum())} bins have no usable GC.",
                         "run pinnacle.cnv.filter_bins first: it drops bins with missing or extreme GC.")
    q = np.asarray(np.arange(0.10, 0.9001, 0.05) if quantiles is None else quantiles, dtype=float)
    if q.ndim != 1 or len(q) < 3 or (q <= 0).any() or (q >= 1).any() or (np.diff(q) <= 0).any():
        raise InputError("gc_correct", f"quantiles {q.tolist()} are not increasing values in (0, 1).",
                         "give at least three increasing quantiles, e.g. 0.1, 0.15, ..., 0.9.")
    Y = _dense(adata, layer, "gc_correct")
    empty = Y.sum(axis=1) <= 0
    if empty.any():
        raise InputError("gc_correct", f"{int(empty.sum())} cell(s) have no reads, e.g. {adata.obs_names[empty][0]!r}.",
                         "remove cells failing cell_qc first: adata[adata.obs['cnv_qc_pass']].")
    z = (gc - gc.mean()) / (gc.std() or 1.0)  # same model as gc + gc^2, better conditioned
    D = np.column_stack([np.ones_like(z), z, z * z])
    fit = _quantreg_irls if engine == "vectorised" else _quantreg_statsmodels
    sub = np.arange(len(z))
    if max_fit_bins is not None and len(z) > max_fit_bins:
        pick = np.unique(np.linspace(0, len(z) - 1, max_fit_bins).round().astype(int))
        sub = np.sort(np.argsort(z, kind="stable")[pick])
    Ds = D[sub]
    params = np.empty((len(Y), len(q), 3))
    # thin matrix products: BLAS threads only contend (10x slower on a loaded 2-core box)
    with threadpool_limits(limits=1, user_api="blas"):
        for s in range(0, len(Y), chunk_cells):
            Ys = Y[s:s + chunk_cells][:, sub]
            for k, qq in enumerate(q):
                params[s:s + chunk_cells, k] = fit(Ys, Ds, qq, max_iter=max_iter, tol=tol)
    lo, hi = np.quantile(z, [0.1, 0.9])
    integ = params[..., 0] * (hi - lo) + params[..., 1] * (hi**2 - lo**2) / 2 + params[..., 2] * (hi**3 - lo**3) / 3
    gaps = np.diff(integ, axis=1)  # (cells, Q-1): small gap = dense = near the mode
    modal = _modal_index(gaps, q[1:], lowess_frac) + 1
    curve = np.einsum("cp,bp->cb", params[np.arange(len(Y)), modal], D)
    floor = 0.05 * np.maximum(np.median(curve, axis=1, keepdims=True), 1e-9)
    adata.layers[key_added] = (Y / np.maximum(curve, floor)).astype(np.float32)
    adata.obs["gc_modal_quantile"] = q[modal]
    return adata


def _modal_index(gaps: np.ndarray, qs: np.ndarray, frac: float) -> np.ndarray:
    """Per row, the index of the smallest lowess-smoothed gap, after dropping gaps at or above the
    row's 95th percentile (as the Shah pipeline does)."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    out = np.empty(len(gaps), dtype=int)
    for i, g in enumerate(gaps):
        keep = np.flatnonzero(g < np.quantile(g, 0.95))
        if keep.size < 4:
            out[i] = int(np.argmin(g))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm = lowess(g[keep], qs[keep], frac=frac, return_sorted=False)
        out[i] = int(keep[np.nanargmin(sm)]) if np.isfinite(sm).any() else int(np.argmin(g))
    return out


# ---------------------------------------------------------------------------------------------
# ploidy and integer copy number
# ---------------------------------------------------------------------------------------------
def _smooth(R: np.ndarray, lengths: list[int], width: int) -> np.ndarray:
    out = np.empty_like(R)
    s = 0
    for n in lengths:
        w = max(1, min(width, n - (1 - n % 2)))
        out[:, s:s + n] = ndimage.median_filter(R[:, s:s + n], size=(1, w), mode="nearest")
        s += n
    return out


def _choose_scale(Rs: np.ndarray, grid: np.ndarray, max_cn: int, parsimony: float):
    """Per cell, the ploidy on ``grid`` minimising integer-fit error + parsimony * ploidy."""
    mean = np.maximum(Rs.mean(axis=1), 1e-9)
    best = np.full(len(Rs), np.inf)
    best_p = np.full(len(Rs), grid[0])
    best_err = np.zeros(len(Rs))
    for P in grid:
        X = Rs * (P / mean)[:, None]
        err = np.mean((X - np.clip(np.rint(X), 0, max_cn)) ** 2, axis=1)
        obj = err + parsimony * P
        better = obj < best
        best[better], best_p[better], best_err[better] = obj[better], P, err[better]
    return best_p / mean, best_p, best_err


def call_copy_number(adata: ad.AnnData, *, layer: str | None = "ratio", max_cn: int = 8,
                     ploidy_range: tuple[float, float] = (1.5, 5.0), ploidy_step: float = 0.02,
                     parsimony: float = 0.005, smooth_bins: int = 21, switch_prob: float = 1e-3,
                     min_sd: float = 0.02, diploid_max_fraction: float = 0.01,
                     key_added: str = "copy_number") -> ad.AnnData:
    """Integer copy number per cell and bin: a per-cell scale from a ploidy grid, then an HMM.

    The scale (copies per unit ratio) is chosen on each cell's within-chromosome running median
    of the ratio, where bin noise no longer hides how close to integers the levels are. The HMM
    then decodes every bin at that scale, with emissions N(copies, (scale * noise)^2 * copies /
    scale), i.e. variance growing with the copy number as read counts' does, noise estimated
    from the cell's neighbouring-bin differences.

    Parameters
    ----------
    adata
        Cells x bins with GC-corrected ratios in ``layer`` (:func:`gc_correct`) or a ratio table
        (:func:`read_ratio_table`); bins grouped by chromosome. Changed in place.
    layer
        Layer of the ratios (None: ``X``).
    max_cn
        Highest copy-number state (states 0..max_cn).
    ploidy_range, ploidy_step
        Grid of candidate ploidies (mean copy number of the cell).
    parsimony
        Penalty per copy of ploidy added to the integer-fit error (mean squared distance to the
        nearest integer, in copies): keeps a flat or simple profile at the lowest ploidy that fits.
    smooth_bins
        Width (bins) of the running median used to choose the scale.
    switch_prob
        HMM probability of a copy-number change between neighbouring bins.
    min_sd
        Floor of the per-cell ratio noise (segment-ratio tables are nearly noise-free).
    diploid_max_fraction
        A cell is diploid (``obs['cnv_diploid']``) when at most this fraction of its autosomal
        bins is not 2 copies.
    key_added
        Layer of the integer copy number (int8); ``layers['segment_ratio']`` gets the mean
        ratio over each HMM segment (float32). obs gets ``ploidy`` (mean copy number),
        ``cnv_scale``, ``cnv_fit_error``, ``cnv_noise_sd``, ``aneuploid_fraction``,
        ``cnv_diploid``.
    """
    from hmmlearn.hmm import GaussianHMM

    if not (isinstance(max_cn, (int, np.integer)) and max_cn >= 2):
        raise InputError("call_copy_number", f"max_cn={max_cn!r} is invalid.", "use an integer >= 2.")
    lo, hi = ploidy_range
    if not (0 < lo < hi <= max_cn):
        raise InputError("call_copy_number", f"ploidy_range={ploidy_range!r} is invalid.",
                         f"use 0 < low < high <= max_cn ({max_cn}).")
    R = _dense(adata, layer, "call_copy_number")
    if not np.isfinite(R).all() or (R < 0).any():
        raise InputError("call_copy_number", "the ratios have missing, infinite or negative values.",
                         "give GC-corrected ratios (gc_correct) or a ratio table (read_ratio_table).")
    code, lengths = _chrom_runs(adata, "call_copy_number")
    diffs = _within_chrom_diffs(R, code)
    sd = np.maximum(_MAD_SCALE * np.median(np.abs(diffs), axis=1) / np.sqrt(2), min_sd) \
        if diffs.shape[1] else np.full(len(R), min_sd)
    smooth = _smooth(R, lengths, smooth_bins)
    step = max(1, int(np.ceil(R.shape[1] / 1500)))
    grid = np.arange(lo, hi + 1e-9, ploidy_step)
    scale, _, err = _choose_scale(smooth[:, ::step], grid, max_cn, parsimony)

    K = max_cn + 1
    states = np.arange(K, dtype=float)
    hmm = GaussianHMM(n_components=K, covariance_type="diag", init_params="", params="")
    hmm.n_features = 1
    hmm.startprob_ = np.full(K, 1.0 / K)
    T = np.full((K, K), switch_prob / (K - 1))
    np.fill_diagonal(T, 1 - switch_prob)
    hmm.transmat_ = T
    hmm.means_ = states[:, None]
    CN = np.empty(R.shape, dtype=np.int8)
    seg = np.empty(R.shape, dtype=np.float32)
    new_chrom = np.r_[True, code[1:] != code[:-1]]
    for i in range(len(R)):
        s_cn = scale[i] * sd[i]
        hmm.covars_ = (s_cn**2 * np.maximum(states, 0.5) / max(scale[i], 1e-9))[:, None]
        _, path = hmm.decode((R[i] * scale[i])[:, None], lengths=lengths, algorithm="viterbi")
        CN[i] = path
        sid = np.cumsum(new_chrom | np.r_[True, path[1:] != path[:-1]]) - 1
        seg[i] = (np.bincount(sid, R[i]) / np.bincount(sid))[sid]
    auto = is_autosome(adata.var["chrom"].to_numpy())
    aneu = (CN[:, auto] != 2).mean(axis=1) if auto.any() else (CN != 2).mean(axis=1)
    adata.layers[key_added] = CN
    adata.layers["segment_ratio"] = seg
    adata.obs["ploidy"] = CN.mean(axis=1).astype(np.float32)
    adata.obs["cnv_scale"] = scale.astype(np.float32)
    adata.obs["cnv_fit_error"] = err.astype(np.float32)
    adata.obs["cnv_noise_sd"] = sd.astype(np.float32)
    adata.obs["aneuploid_fraction"] = aneu.astype(np.float32)
    adata.obs["cnv_diploid"] = aneu <= diploid_max_fraction
    adata.uns["cnv_call"] = {"layer": layer, "max_cn": int(max_cn), "ploidy_range": [float(lo), float(hi)],
                             "parsimony": float(parsimony), "switch_prob": float(switch_prob),
                             "diploid_max_fraction": float(diploid_max_fraction)}
    return adata


def process_sample(adata: ad.AnnData, *, reference: pd.DataFrame | None = None,
                   bin_options: dict | None = None, qc_options: dict | None = None,
                   gc_options: dict | None = None, cn_options: dict | None = None
                   ) -> tuple[ad.AnnData, pd.DataFrame]:
    """One scDNA sample from raw bin counts to integer copy number (the per-sample rule's work).

    Runs :func:`filter_bins`, :func:`cell_qc`, then :func:`gc_correct` and
    :func:`call_copy_number` on the QC-passing cells.

    Parameters
    ----------
    adata
        One sample as :func:`pinnacle.io.read_scdna` returns it (raw counts in ``X``).
    reference
        Bin reference table (:func:`pinnacle.cnv.read_bin_reference`) for GC and blacklist.
    bin_options, qc_options, gc_options, cn_options
        Keyword options of the four steps.

    Returns
    -------
    The QC-passing cells with counts in ``layers['counts']``, ratios and copy number; and the QC
    table of all cells.
    """
    kept = filter_bins(adata, reference=reference, **(bin_options or {}))
    table = cell_qc(kept, **(qc_options or {}))
    key = (qc_options or {}).get("key_added", "cnv_qc_pass")
    out = kept[kept.obs[key].to_numpy()].copy()
    if out.n_obs == 0:
        raise InputError("process_sample", "no cell passes scDNA QC.",
                         "inspect the QC table; loosen the thresholds (method='fixed') if the sample is usable.")
    out.layers["counts"] = np.asarray(out.X, dtype=np.float32)
    gc_correct(out, **(gc_options or {}))
    call_copy_number(out, **(cn_options or {}))
    return out, table


def summarise_cell_qc(table: pd.DataFrame, *, sample_key: str = "sample_id", pass_key: str = "cnv_qc_pass"
                      ) -> pd.DataFrame:
    """One row per sample from the per-cell scDNA QC tables: cells read and kept, the medians
    of reads, MAPD and empty-bin share, and the diploid share of the kept cells.

    Parameters
    ----------
    table
        Per-cell QC rows of one or more samples (:func:`cell_qc`, plus ``cnv_diploid`` of the
        kept cells as the per-sample rule writes them).
    sample_key, pass_key
        Columns of the sample and of the pass flag.
    """
    cols = ["n_cells", "n_pass", "pass_fraction", "median_reads", "median_mapd", "median_zero_fraction",
            "n_diploid", "diploid_fraction"]
    if table.empty:
        return pd.DataFrame(columns=[sample_key, *cols])
    t = table.assign(_pass=table[pass_key].astype(bool),
                     _diploid=table.get("cnv_diploid", pd.Series(False, index=table.index)).fillna(False).astype(bool))
    g = t.groupby(sample_key, sort=False)
    out = pd.DataFrame({"n_cells": g.size(), "n_pass": g["_pass"].sum(),
                        "median_reads": g["total_reads"].median(), "median_mapd": g["mapd"].median(),
                        "median_zero_fraction": g["zero_fraction"].median(),
                        "n_diploid": g["_diploid"].sum()})
    out["pass_fraction"] = out["n_pass"] / out["n_cells"]
    out["diploid_fraction"] = out["n_diploid"] / out["n_pass"].where(out["n_pass"] > 0)
    return out[cols].round(4).rename_axis(sample_key).reset_index()
