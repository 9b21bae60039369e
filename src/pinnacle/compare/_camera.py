"""Competitive gene-set test that allows for inter-gene correlation (limma's camera, re-implemented).

Why: a test that treats a set's genes as independent replicates (decoupler ulm, a t-test of
the set's statistics against the rest) gives co-regulated programmes p-values that are far too
small, because correlated genes carry less information than their number suggests (Wu & Smyth,
Nucleic Acids Research 2012). camera keeps the competitive question (are the set's statistics
different from the other genes'?) but inflates the variance of the set's mean statistic by
``VIF = 1 + (m - 1) * rho``, with ``rho`` the mean inter-gene correlation of the set's genes,
estimated from the residuals of the same linear model across samples.

Re-implemented here because camera is R-only (limma) and no Python library has it; the code
follows ``limma::camera.default`` (limma 3.54) line for line for unweighted, parametric
(``use.ranks = FALSE``) tests, and ``tests/fixtures/camera`` (written by ``tools/camera_fixture.R``)
holds limma's own results that the tests reproduce to 1e-6 relative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._limma import bh

CAMERA_COLUMNS = ["gene_set", "n_genes", "correlation", "direction", "pvalue", "fdr"]


def zscore_t(t, df) -> np.ndarray:
    """z-scores with the same tail probabilities as t statistics on ``df`` (Hill's approximation).

    Why: camera compares statistics on one scale; limma converts moderated t to z this way
    (``zscoreT(approx = TRUE, method = "hill")``) before the set test.

    Parameters
    ----------
    t
        t statistics.
    df
        Their degrees of freedom (one value or one per statistic; capped at 1e100 as limma does).
    """
    x = np.asarray(t, dtype=float)
    df = np.minimum(np.asarray(df, dtype=float), 1e100)
    a = df - 0.5
    b = 48 * a * a
    z = a * np.log1p(x / df * x)
    z = (((((-0.4 * z - 3.3) * z - 24) * z - 85.5) / (0.8 * z * z + 100 + b) + z + 3) / b + 1) * np.sqrt(z)
    return z * np.sign(x)


def camera(statistics: pd.Series, gene_sets: Mapping[str, Sequence[str]], *, residuals: pd.DataFrame | None = None,
           df_residual: float | None = None, inter_gene_cor: float | None = None, min_genes: int = 1,
           allow_neg_cor: bool = False) -> pd.DataFrame:
    """Two-sided competitive test of each gene set's mean statistic, with camera's variance inflation.

    Why: co-regulated genes are not independent replicates; the variance of a set's mean
    statistic grows by ``1 + (m - 1) * rho`` (Wu & Smyth 2012), which a plain competitive test
    ignores. As ``limma::camera``: with ``inter_gene_cor=None`` ``rho`` is estimated per set
    from the standardised residuals (``vif = m * mean_k(mean_g u_gk)^2`` over the residual
    effects, i.e. one plus ``(m - 1)`` times the mean off-diagonal residual correlation) and the
    t test has ``min(df_residual, G - 2)`` df; with a fixed ``inter_gene_cor`` (limma's default
    0.01) it has ``G - 2`` df. A negative estimate counts as 0 unless ``allow_neg_cor``.

    Parameters
    ----------
    statistics
        Per-gene statistics on a z scale (Wald z, or moderated t through :func:`zscore_t`), indexed
        by gene: the genes tested in the cell type, and only those (they are the comparison genes).
    gene_sets
        Set name -> genes; genes not in ``statistics`` are ignored.
    residuals
        Genes x samples residuals of the model that gave ``statistics`` (the same design, fitted
        to log-normalised expression); needed when ``inter_gene_cor`` is None. Only their
        cross-products are used, so residuals (``n`` columns) and residual effects (``n - p``
        columns) give the same correlation.
    df_residual
        Residual df of that fit (samples minus design rank); needed with ``residuals``.
    inter_gene_cor
        A fixed inter-gene correlation for every set instead of the estimate.
    min_genes
        Fewest of a set's genes among ``statistics`` for it to be tested.
    allow_neg_cor
        Let a negative estimated correlation shrink the variance (limma's ``allow.neg.cor``).

    Returns
    -------
    One row per tested set, in the order given: ``gene_set``, ``n_genes``, ``correlation`` (the
    estimate, or the fixed value; NaN for a one-gene set), ``direction`` (Up / Down), ``pvalue``
    (two-sided) and ``fdr`` (BH across the sets tested here).

    Raises
    ------
    ValueError
        With fewer than 3 genes, or without residuals (or residual df) when the correlation is
        estimated, or when a gene with a statistic has no residuals.
    """
    stat = pd.Series(statistics, dtype=float).dropna()
    stat = stat[~stat.index.duplicated()]
    g = len(stat)
    if g < 3:
        raise ValueError(f"camera needs at least 3 genes with statistics, got {g}")
    fixed = inter_gene_cor is not None and not np.isnan(inter_gene_cor)
    if fixed:
        df_camera = g - 2
    else:
        if residuals is None or df_residual is None:
            raise ValueError("camera needs residuals and df_residual to estimate the inter-gene correlation "
                             "(or a fixed inter_gene_cor)")
        if df_residual < 1:
            raise ValueError(f"camera needs residual df, got {df_residual}")
        missing = stat.index.difference(residuals.index)
        if len(missing):
            raise ValueError(f"camera: {len(missing)} genes with statistics have no residuals, e.g. "
                             f"{', '.join(map(str, missing[:5]))}")
        r = residuals.loc[stat.index].to_numpy(dtype=float)
        sigma2 = np.sum(r * r, axis=1) / df_residual
        u = r / np.sqrt(np.maximum(sigma2, 1e-8))[:, None]
        df_camera = min(df_residual, g - 2)

    values = stat.to_numpy()
    mean_all, var_all = values.mean(), values.var(ddof=1)
    pos = pd.Series(np.arange(g), index=stat.index)
    rows = []
    for name, genes in gene_sets.items():
        idx = pos.reindex(pd.Index(list(dict.fromkeys(genes)))).dropna().to_numpy(dtype=int)
        m = len(idx)
        if m < max(min_genes, 1) or m == g:
            continue
        m2 = g - m
        if fixed:
            correlation = float(inter_gene_cor)
            vif = 1 + (m - 1) * correlation
        elif m > 1:
            # camera: vif = m * mean over residual effects of the squared set-mean standardised residual
            vif = m * np.sum(u[idx].mean(axis=0) ** 2) / df_residual
            correlation = (vif - 1) / (m - 1)
        else:
            vif, correlation = 1.0, np.nan
        if not allow_neg_cor:
            vif = max(1.0, vif)
        delta = g / m2 * (values[idx].mean() - mean_all)
        var_pooled = ((g - 1) * var_all - delta ** 2 * m * m2 / g) / (g - 2)
        t = delta / np.sqrt(var_pooled * (vif / m + 1 / m2))
        down, up = stats.t.cdf(t, df_camera), stats.t.sf(t, df_camera)
        rows.append((name, m, correlation, "Down" if down < up else "Up", 2 * min(down, up)))
    out = pd.DataFrame(rows, columns=CAMERA_COLUMNS[:-1])
    out["fdr"] = bh(out["pvalue"].to_numpy()) if len(out) else []
    return out


CAMERA_TABLE_COLUMNS = ["design", "cell_type", "signature", "camera_correlation", "camera_direction",
                        "camera_pvalue"]


def _cell_type_camera(counts: pd.DataFrame, design, statistics: pd.Series, signatures: Mapping[str, dict], *,
                      cell_type: str, min_genes: int = 3) -> pd.DataFrame:
    """camera of each signature in one design x cell type's DE statistics (:func:`pseudobulk_de`
    calls it with the counts, design and Wald statistics of its own fit).

    The inter-gene correlation comes from the residuals of the same design fitted by least
    squares to the log-CPM of the same pseudobulks (``log2((count + 0.5) / (library size + 1) * 1e6)``,
    library size over all genes), as camera does with voom's log-CPM; residual df is samples minus
    the design's rank. No rows when that df is below 2 or no signature has ``min_genes`` of the
    tested genes.

    Parameters
    ----------
    counts
        Samples x genes counts of the type, all genes (the library sizes), rows of ``design.samples``.
    design
        The :class:`Design` the DE fitted (``X``, ``samples``, ``name``).
    statistics
        Wald statistic per tested gene, indexed by gene (NaN ones are left out).
    signatures
        Name -> entry with ``genes`` (:func:`load_signatures`).
    cell_type
        The type's label, for the table.
    min_genes
        Fewest of a signature's genes among the tested genes.

    Returns
    -------
    One row per tested signature with :data:`CAMERA_TABLE_COLUMNS` (no FDR: that is across the
    design's types, :func:`combine_camera`).
    """
    stat = pd.Series(statistics, dtype=float).dropna()
    stat = stat[~stat.index.duplicated()]
    stat = stat[stat.index.isin(counts.columns)]
    X = design.X.to_numpy(dtype=float)
    df_residual = len(design.samples) - np.linalg.matrix_rank(X)
    sets = {name: [x for x in s["genes"] if x in stat.index] for name, s in signatures.items()}
    sets = {name: genes for name, genes in sets.items() if len(genes) >= min_genes}
    if df_residual < 2 or not sets:
        return pd.DataFrame(columns=CAMERA_TABLE_COLUMNS)
    c = counts.loc[design.samples]
    logcpm = np.log2((c[stat.index].to_numpy(dtype=float) + 0.5)
                     / (c.sum(axis=1).to_numpy(dtype=float)[:, None] + 1.0) * 1e6)
    beta = np.linalg.lstsq(X, logcpm, rcond=None)[0]
    residuals = pd.DataFrame((logcpm - X @ beta).T, index=stat.index, columns=design.samples)
    res = camera(stat, sets, residuals=residuals, df_residual=df_residual)
    return pd.DataFrame({"design": design.name, "cell_type": cell_type, "signature": res["gene_set"],
                         "camera_correlation": res["correlation"], "camera_direction": res["direction"],
                         "camera_pvalue": res["pvalue"]})[CAMERA_TABLE_COLUMNS]


def combine_camera(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Join per-type camera tables (the third of :func:`pseudobulk_de`'s results, one per design x
    cell type) and add ``camera_fdr``: BH across each design's types x signatures (one family per
    design, the family of ulm's ``padj`` in :func:`signature_enrichment`).

    Parameters
    ----------
    parts
        Per-type camera tables (:data:`CAMERA_TABLE_COLUMNS`), of one or more designs; empty ones
        are skipped.

    Returns
    -------
    The rows in the order given, with ``camera_fdr``.
    """
    cols = [*CAMERA_TABLE_COLUMNS, "camera_fdr"]
    parts = [p[CAMERA_TABLE_COLUMNS] for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    out["camera_pvalue"] = out["camera_pvalue"].astype(float)
    out["camera_fdr"] = out.groupby("design", sort=False)["camera_pvalue"].transform(lambda p: bh(p.to_numpy()))
    return out[cols]
