"""Per-sample scRNA-seq quality control: cell labels, QC metrics, per-sample summaries.

One sample at a time (the trial's unit of work), all genes of that sample in memory, sparse.
Metrics come from ``scanpy.pp.calculate_qc_metrics``; what is written here is only the
bookkeeping around it (which genes are mitochondrial, ribosomal, haemoglobin; the summary row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from pinnacle.errors import InputError


def flag_gene_groups(adata: ad.AnnData, *, mito_prefix: str = "MT-",
                     ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
                     hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$") -> ad.AnnData:
    """Boolean var columns ``mt``, ``ribo``, ``hb`` from gene symbols (var_names).

    Parameters
    ----------
    adata
        Gene symbols as ``var_names``; the columns are added in place.
    mito_prefix
        Mitochondrial symbol prefix, case-insensitive (``"mt-"`` for mouse).
    ribo_prefixes
        Ribosomal protein symbol prefixes.
    hb_regex
        Regular expression matching haemoglobin symbols.
    """
    names = adata.var_names.to_series().astype(str)
    adata.var["mt"] = names.str.upper().str.startswith(mito_prefix.upper()).to_numpy()
    adata.var["ribo"] = names.str.startswith(tuple(ribo_prefixes)).to_numpy()
    hb = re.compile(hb_regex)
    adata.var["hb"] = np.array([bool(hb.match(n)) for n in names])
    return adata


#: value of ``uns['mito_filter']`` / the QC table's ``mito_filter`` column when the filter runs
MITO_APPLIED = "applied"


def mito_skip_reason(mito_prefix: str) -> str:
    """The QC table's ``mito_filter`` text for a sample whose matrix has no mitochondrial gene.

    Parameters
    ----------
    mito_prefix
        The mitochondrial gene-symbol prefix that matched no gene (``qc.mito_prefix``).
    """
    return f"skipped: no gene with prefix '{mito_prefix}' in the matrix (qc.require_mito: false)"


def qc_metrics(adata: ad.AnnData, *, mito_prefix: str = "MT-",
               ribo_prefixes: Sequence[str] = ("RPL", "RPS"),
               hb_regex: str = r"^HB[ABDEGMQZ][0-9]?$", require_mito: bool = True,
               where: str = "sample") -> ad.AnnData:
    """Per-cell counts, genes, and mitochondrial / ribosomal / haemoglobin percentages.

    Adds obs ``total_counts``, ``n_genes_by_counts``, ``log1p_total_counts``,
    ``log1p_n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``, ``pct_counts_hb``, and
    ``uns['mito_filter']``: ``"applied"``, or the reason the mitochondrial filter is skipped.

    Parameters
    ----------
    adata
        One sample, raw counts in ``X``, gene symbols as ``var_names``. Changed in place.
    mito_prefix
        Prefix of mitochondrial gene symbols (case-insensitive; ``"mt-"`` for mouse).
    ribo_prefixes
        Prefixes of ribosomal protein gene symbols.
    hb_regex
        Regular expression matching haemoglobin gene symbols.
    require_mito
        With no gene starting with ``mito_prefix``: ``True`` stops with an :class:`InputError`
        (usually Ensembl ids or the wrong prefix); ``False`` accepts the matrix (a targeted
        panel, a filtered public object), sets ``pct_counts_mt`` (and ``total_counts_mt``,
        ``log1p_total_counts_mt``) to NaN, not a fake 0, and records the reason in
        ``uns['mito_filter']`` so :func:`run_sample_qc` skips the mitochondrial filter.
    where
        The input's name (file), for the error message.

    Returns
    -------
    The same AnnData, with the metrics added.
    """
    flag_gene_groups(adata, mito_prefix=mito_prefix, ribo_prefixes=ribo_prefixes, hb_regex=hb_regex)
    has_mito = bool(adata.var["mt"].any())
    if not has_mito and require_mito:
        raise InputError(where, f"no gene symbol starts with the mitochondrial prefix '{mito_prefix}'.",
                         "features must be gene symbols (not Ensembl ids), or set qc.mito_prefix "
                         "(e.g. 'mt-' for mouse); if the matrix truly has no mitochondrial genes "
                         "(a targeted panel, a filtered public object), set qc.require_mito: false "
                         "to skip the mitochondrial filter for such samples.")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo", "hb"] if has_mito else ["ribo", "hb"],
                               percent_top=None, log1p=True, inplace=True)
    if not has_mito:
        for col in ("total_counts_mt", "log1p_total_counts_mt", "pct_counts_mt"):
            adata.obs[col] = np.full(adata.n_obs, np.nan)
    adata.uns["mito_filter"] = MITO_APPLIED if has_mito else mito_skip_reason(mito_prefix)
    return adata


def plot_qc_summary(obs: pd.DataFrame, *, table: pd.DataFrame | None = None, metrics: Sequence[str] = (
        "log1p_total_counts", "log1p_n_genes_by_counts", "pct_counts_mt")):
    """Violin per sample for each metric (all cells loaded), samples grouped by patient, and, with
    the per-sample QC ``table``, the cells kept and removed by each filter.

    Parameters
    ----------
    obs
        Per-cell QC metrics of all samples, with ``sample_id``, ``patient_id``, ``timepoint``.
    table
        The per-sample QC table (:func:`run_sample_qc` summaries), for the kept/removed bars and
        the ``mito_filter`` reasons.
    metrics
        The obs columns drawn as violins, one panel each.

    Returns
    -------
    The matplotlib figure. A sample with no value of a metric (no mitochondrial gene, so the
    mitochondrial filter was skipped) gets no violin but a note at its place saying why.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = (obs[["patient_id", "timepoint", "sample_id"]].drop_duplicates()
             .sort_values(["patient_id", "timepoint"])["sample_id"].astype(str).tolist())
    labels = {"log1p_total_counts": "log(1 + UMIs)", "log1p_n_genes_by_counts": "log(1 + genes)",
              "pct_counts_mt": "% mitochondrial"}
    n_panels = len(metrics) + (table is not None)
    fig, axes = plt.subplots(n_panels, 1, figsize=(max(6, 0.5 * len(order) + 2), 2.6 * n_panels),
                             sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    sid = obs["sample_id"].astype(str)
    skipped = {}
    if table is not None and "mito_filter" in table:
        mf = table.set_index("sample_id")["mito_filter"].astype(str)
        skipped = {str(k): v for k, v in mf.items() if v != MITO_APPLIED and v != "nan"}
    for ax, metric in zip(axes, metrics):
        values = obs[metric].to_numpy(dtype=float) if metric in obs else np.full(len(obs), np.nan)
        data = [values[(sid == s).to_numpy()] for s in order]
        data = [d[np.isfinite(d)] for d in data]
        pos = [i + 1 for i, d in enumerate(data) if len(d)]
        if pos:
            parts = ax.violinplot([data[i - 1] for i in pos], positions=pos, showmedians=True, widths=0.8)
            for body in parts["bodies"]:
                body.set_alpha(0.6)
        for i, s in enumerate(order):
            if not len(data[i]):
                note = ("MT filter skipped:\nno MT genes" if metric == "pct_counts_mt" and s in skipped
                        else "no data")
                ax.text(i + 1, 0.5, note, rotation=90, ha="center", va="center", fontsize=7,
                        color="0.3", transform=ax.get_xaxis_transform())
        ax.set_ylabel(labels.get(metric, metric))
    axes[0].set_xlim(0.4, len(order) + 0.6)
    if table is not None:
        ax = axes[-1]
        t = table.set_index("sample_id").loc[order]
        x = np.arange(1, len(order) + 1)
        bottom = np.zeros(len(order))
        for col, name, color in (("n_cells_kept", "kept", "tab:green"),
                                 ("removed_thresholds", "removed: thresholds", "tab:orange"),
                                 ("removed_doublets", "removed: doublets", "tab:red")):
            if col in t:
                vals = t[col].to_numpy(dtype=float)
                ax.bar(x, vals, bottom=bottom, color=color, label=name, width=0.8)
                bottom += vals
        ax.set_ylabel("cells")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1].set_xticks(np.arange(1, len(order) + 1), order, rotation=90)
    axes[0].set_title("Per-cell QC metrics by sample (all cells loaded)")
    return fig


# --------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------

#: metric -> which tails are outliers ("both", "upper")
MAD_METRICS = {"log1p_total_counts": "both", "log1p_n_genes_by_counts": "both", "pct_counts_mt": "upper"}


def mad(values: np.ndarray) -> float:
    """Median absolute deviation scaled to estimate the SD of a normal (scipy, scale="normal").

    Parameters
    ----------
    values
        The metric of one sample's cells.
    """
    from scipy.stats import median_abs_deviation

    return float(median_abs_deviation(np.asarray(values, dtype=float), scale="normal"))


def qc_thresholds(obs: pd.DataFrame, *, method: str = "mad", n_mads: dict | None = None,
                  mito_floor: float = 15.0, fixed: dict | None = None, use_mito: bool = True) -> dict:
    """Per-sample thresholds on log counts, log genes and mitochondrial %.

    ``mad``: median +/- k MADs within the sample (k per metric in ``n_mads``), so a sample
    sequenced deeper or shallower gets thresholds that move with it; the mitochondrial upper
    limit is never set below ``mito_floor`` %, so a very clean sample does not lose healthy
    cells to a tiny MAD. ``fixed``: the values of ``fixed`` (min/max counts and genes, max %
    mitochondrial) for every sample.

    Parameters
    ----------
    obs
        Per-cell QC metrics of one sample (:func:`qc_metrics`).
    method
        ``"mad"`` or ``"fixed"``.
    n_mads
        MADs from the median per metric (``mad``); missing metrics keep their defaults.
    mito_floor
        Lowest allowed mitochondrial % limit (``mad``).
    fixed
        ``min_counts``, ``max_counts``, ``min_genes``, ``max_genes``, ``max_pct_mt`` (``fixed``);
        a missing key means no limit.
    use_mito
        Threshold ``pct_counts_mt``. ``False`` (a matrix without mitochondrial genes) leaves the
        metric out of the result, so no cell is judged on it.

    Returns
    -------
    ``{metric: (low, high)}`` (None = no limit) in the metric's own units.
    """
    if use_mito and not np.isfinite(obs.get("pct_counts_mt", pd.Series(dtype=float)).to_numpy(dtype=float)).any():
        raise ValueError("pct_counts_mt has no finite value (no mitochondrial gene); "
                         "pass use_mito=False to skip the mitochondrial filter")
    if method == "fixed":
        f = fixed or {}
        out = {
            "log1p_total_counts": (_log1p(f.get("min_counts")), _log1p(f.get("max_counts"))),
            "log1p_n_genes_by_counts": (_log1p(f.get("min_genes")), _log1p(f.get("max_genes"))),
            "pct_counts_mt": (None, f.get("max_pct_mt")),
        }
        if not use_mito:
            del out["pct_counts_mt"]
        return out
    if method != "mad":
        raise ValueError(f"method must be 'mad' or 'fixed', not {method!r}")
    n_mads = {"log1p_total_counts": 5.0, "log1p_n_genes_by_counts": 5.0, "pct_counts_mt": 3.0,
              **(n_mads or {})}
    out = {}
    for metric, tails in MAD_METRICS.items():
        if metric == "pct_counts_mt" and not use_mito:
            continue
        x = obs[metric].to_numpy(dtype=float)
        med, spread = float(np.median(x)), mad(x)
        k = float(n_mads[metric])
        low = med - k * spread if tails == "both" else None
        high = med + k * spread
        if metric == "pct_counts_mt":
            high = max(high, float(mito_floor))
        out[metric] = (low, high)
    return out


def _log1p(v):
    return None if v is None else float(np.log1p(v))


def apply_thresholds(adata: ad.AnnData, thresholds: dict, *, key_added: str = "qc_pass") -> ad.AnnData:
    """Flag cells outside the thresholds: ``obs['qc_fail_<metric>']`` and ``obs[key_added]``.

    Parameters
    ----------
    adata
        One sample with the metrics in ``obs``; flags are added in place.
    thresholds
        ``{metric: (low, high)}`` from :func:`qc_thresholds` (None = no limit).
    key_added
        obs column of the combined call (True = passes every threshold).
    """
    keep = np.ones(adata.n_obs, dtype=bool)
    for metric, (low, high) in thresholds.items():
        x = adata.obs[metric].to_numpy(dtype=float)
        fail = np.zeros(adata.n_obs, dtype=bool)
        if low is not None:
            fail |= x < low
        if high is not None:
            fail |= x > high
        adata.obs[f"qc_fail_{metric}"] = fail
        keep &= ~fail
    adata.obs[key_added] = keep
    return adata


# --------------------------------------------------------------------------------------------
# doublets
# --------------------------------------------------------------------------------------------


def expected_doublet_rate(n_cells: int, *, rate_per_1000: float = 0.008) -> float:
    """10x rule of thumb: the multiplet rate grows ~linearly with cells recovered (~0.8%/1,000).

    Parameters
    ----------
    n_cells
        Cells recovered (loaded) in the sample.
    rate_per_1000
        Multiplet rate added per 1,000 cells.

    Returns
    -------
    The rate, kept within 0.005-0.5.
    """
    return float(min(max(rate_per_1000 * n_cells / 1000.0, 0.005), 0.5))


def call_doublets(adata: ad.AnnData, *, expected_rate: float, threshold: str = "expected",
                  random_state: int = 0, key_added: str = "predicted_doublet") -> ad.AnnData:
    """Scrublet (``scanpy.pp.scrublet``) doublet scores on raw counts, one sample at a time.

    ``threshold="expected"`` flags the ``expected_rate`` fraction of cells with the highest
    scores: Scrublet's automatic threshold (``"auto"``), taken from the valley of the simulated
    doublets' score histogram, is often far too strict (on the demo it found 1 doublet in 10),
    and the number of multiplets is known from the number of cells loaded. With ``"auto"`` the
    expected-rate rule is the fallback when Scrublet finds no valley.

    Parameters
    ----------
    adata
        One sample, raw counts in ``X``; ``obs['doublet_score']``, ``obs[key_added]`` and
        ``uns['scrublet']`` are added in place.
    expected_rate
        Expected doublet fraction (:func:`expected_doublet_rate`).
    threshold
        ``"expected"`` or ``"auto"``.
    random_state
        Seed for Scrublet.
    key_added
        obs column of the boolean call.
    """
    sub = ad.AnnData(adata.X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    n_pcs = int(min(30, sub.n_obs - 1, sub.n_vars - 1))
    sc.pp.scrublet(sub, expected_doublet_rate=expected_rate, random_state=random_state,
                   n_prin_comps=n_pcs, verbose=False)
    scores = sub.obs["doublet_score"].to_numpy()
    auto = sub.uns.get("scrublet", {}).get("threshold")
    if threshold == "auto" and auto is not None and np.isfinite(auto):
        cut, method = float(auto), "scrublet"
    elif threshold in ("auto", "expected"):
        n_flag = round(expected_rate * len(scores))
        cut = float(np.sort(scores)[::-1][n_flag]) if 0 < n_flag < len(scores) else float(np.inf)
        method = "expected rate"
    else:
        raise ValueError(f"threshold must be 'expected' or 'auto', not {threshold!r}")
    adata.obs["doublet_score"] = scores
    adata.obs[key_added] = scores > cut
    adata.uns["scrublet"] = {"threshold": cut, "threshold_method": method, "expected_rate": float(expected_rate),
                             "scrublet_auto_threshold": float(auto) if auto is not None else float("nan")}
    return adata


# --------------------------------------------------------------------------------------------
# ambient RNA
# --------------------------------------------------------------------------------------------


def check_raw_matches_filtered(raw_barcodes, cell_barcodes, *, min_shared: float = 0.99,
                               raw_where: str = "raw matrix",
                               filtered_where: str = "filtered matrix") -> float:
    """The raw (all-barcode) matrix belongs to the filtered one: it holds at least ``min_shared``
    of the filtered matrix's barcodes.

    Cell Ranger's ``raw_feature_bc_matrix`` holds every barcode of its ``filtered_feature_bc_matrix``,
    so a lower share means the raw matrix comes from another sample or another run, and its
    "empty droplets" would hold that sample's cells.

    Parameters
    ----------
    raw_barcodes
        Barcodes (or cell ids) of the raw matrix.
    cell_barcodes
        Barcodes of the filtered matrix, named as ``raw_barcodes`` are.
    min_shared
        Smallest accepted share (``qc.raw_min_shared_barcodes``).
    raw_where, filtered_where
        The two files, for the error message.

    Returns
    -------
    The share of filtered barcodes found in the raw matrix.
    """
    cells = pd.Index(cell_barcodes)
    if len(cells) == 0:
        return 1.0
    found = int(cells.isin(pd.Index(raw_barcodes)).sum())
    share = found / len(cells)
    if share < min_shared:
        raise InputError(
            f"{raw_where} (rna_raw) and {filtered_where} (rna)",
            f"the raw matrix holds only {found} of the filtered matrix's {len(cells)} barcodes "
            f"({share:.2%}; need {min_shared:.2%}), so it is not this sample's raw matrix.",
            "give the raw_feature_bc_matrix of the same sample and Cell Ranger run as the filtered "
            "matrix in the sample sheet's rna_raw column, or leave rna_raw empty (lower "
            "qc.raw_min_shared_barcodes only if the filtered barcodes were renamed on purpose).")
    return share


def ambient_profile(raw: ad.AnnData, cell_barcodes, *, max_umis: int = 100,
                    min_droplets: int = 50, where: str = "raw matrix") -> pd.Series:
    """Gene-wise ambient fractions from empty droplets: raw barcodes that are not cells and have
    1..``max_umis`` UMIs (SoupX's default soup range).

    Parameters
    ----------
    raw
        Every barcode of the sample (Cell Ranger's raw matrix), counts in ``X``.
    cell_barcodes
        Barcodes called as cells; never counted as empty.
    max_umis
        Largest total of a droplet still counted as empty.
    min_droplets
        Fewest empty droplets accepted; fewer is an :class:`InputError`.
    where
        The raw matrix's name, for the error message.

    Returns
    -------
    Fraction of the soup per gene (sums to 1); ``attrs['n_droplets']`` holds the droplets used.
    """
    is_cell = raw.obs_names.isin(pd.Index(cell_barcodes))
    totals = np.asarray(raw.X.sum(axis=1)).ravel()
    empty = (~is_cell) & (totals > 0) & (totals <= max_umis)
    if empty.sum() < min_droplets:
        raise InputError(where, f"only {int(empty.sum())} empty droplets with 1-{max_umis} UMIs "
                         f"(need {min_droplets}).",
                         "give Cell Ranger's raw_feature_bc_matrix (all barcodes), not the filtered one, "
                         "or leave rna_raw empty.")
    soup = np.asarray(raw.X[empty].sum(axis=0)).ravel()
    prof = pd.Series(soup / soup.sum(), index=raw.var_names, name="ambient_fraction")
    prof.attrs["n_droplets"] = int(empty.sum())
    return prof


def estimate_contamination(adata: ad.AnnData, ambient: pd.Series, *, groupby: str,
                           min_fold: float = 20.0, min_expected: float = 50.0,
                           min_cluster_cells: int = 10) -> dict:
    """Fraction of each cell's UMIs that come from the ambient soup, for the whole sample.

    Hand-written after SoupX's idea (SoupX is R-only): a gene that some clusters express and
    others do not is, in the others, seen only through the soup, so there
    ``counts / (ambient fraction x cluster UMIs)`` estimates the contamination. Genes whose
    cluster-level ratio spans at least ``min_fold`` (expressed somewhere, absent elsewhere) are
    used in the clusters where they sit ``min_fold`` below their top cluster, if the soup
    would give them at least ``min_expected`` UMIs at full contamination; the estimate is the
    median of those ratios. Broadly expressed genes (mitochondrial, ribosomal) never qualify.
    ``min_fold`` is 20, not 10: a gene one tenth of its top cluster's level is often still made
    by the cell (markers shared at a low level by related types), which biased the estimate up
    (demo cohort: mean error +0.025 at 10, +0.005 at 20, +0.002 at 40, planted 0.03-0.10).

    Parameters
    ----------
    adata
        QC-passing cells of one sample, raw counts in ``X``.
    ambient
        Gene-wise ambient fractions (:func:`ambient_profile`).
    groupby
        obs column of the clusters (:func:`quick_clusters`).
    min_fold
        Fold between a gene's top cluster and a cluster where it counts as soup only.
    min_expected
        Fewest UMIs the soup must give a gene in a cluster at full contamination.
    min_cluster_cells
        Clusters with fewer cells are left out.

    Returns
    -------
    ``contamination`` (NaN with fewer than 2 clusters or 5 usable gene-cluster pairs),
    ``n_pairs_used`` and ``n_clusters``.
    """
    genes = ambient.index.intersection(adata.var_names)
    amb = (ambient.loc[genes] / ambient.loc[genes].sum()).to_numpy()
    cols = adata.var_names.get_indexer(genes)
    groups = adata.obs[groupby].astype(str).to_numpy()
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    clusters = [g for g in np.unique(groups) if (groups == g).sum() >= min_cluster_cells]
    if len(clusters) < 2:
        return {"contamination": float("nan"), "n_pairs_used": 0, "n_clusters": len(clusters)}
    X = adata.X[:, cols]
    observed = np.vstack([np.asarray(X[groups == g].sum(axis=0)).ravel() for g in clusters])
    expected = np.vstack([amb * totals[groups == g].sum() for g in clusters])
    ratio = observed / np.maximum(expected, 1e-12)
    top = ratio.max(axis=0, keepdims=True)
    specific = (top > 1.0) & (top > min_fold * np.maximum(ratio.min(axis=0, keepdims=True), 1e-9))
    use = (ratio < top / min_fold) & specific & (expected >= min_expected)
    if use.sum() < 5:
        return {"contamination": float("nan"), "n_pairs_used": int(use.sum()), "n_clusters": len(clusters)}
    return {"contamination": float(np.clip(np.median(ratio[use]), 0, 1)), "n_pairs_used": int(use.sum()),
            "n_clusters": len(clusters)}


# --------------------------------------------------------------------------------------------
# one sample, end to end
# --------------------------------------------------------------------------------------------


def run_sample_qc(adata: ad.AnnData, *, method: str = "mad", n_mads: dict | None = None,
                  mito_floor: float = 15.0, fixed: dict | None = None, doublets: bool = True,
                  remove_doublets: bool = True, doublet_rate_per_1000: float = 0.008,
                  doublet_rate: float | None = None, doublet_threshold: str = "expected",
                  random_state: int = 0) -> tuple[ad.AnnData, dict]:
    """Thresholds, then Scrublet on the cells that pass them; ``obs['keep']`` is the final call.

    QC metrics must already be in ``obs`` (:func:`qc_metrics`). Scrublet runs after the
    threshold filter so dying cells do not shape the simulated doublets. When
    :func:`qc_metrics` found no mitochondrial gene (``uns['mito_filter']`` is not
    ``"applied"``), the mitochondrial filter (MAD or ``max_pct_mt``) is skipped for this sample;
    its summary fields (``pct_counts_mt_low``/``_high``, ``removed_pct_counts_mt``) are NaN and
    ``mito_filter`` says why.

    Parameters
    ----------
    adata
        One sample with QC metrics in ``obs``; flags are added in place.
    method, n_mads, mito_floor, fixed
        Threshold rule, see :func:`qc_thresholds`.
    doublets
        Run Scrublet on the cells passing the thresholds (needs at least 50 of them).
    remove_doublets
        Flagged doublets fail ``obs['keep']`` (else they are only flagged).
    doublet_rate_per_1000
        Expected multiplet rate per 1,000 cells loaded, when ``doublet_rate`` is None.
    doublet_rate
        A fixed expected doublet rate for this sample.
    doublet_threshold
        ``"expected"`` or ``"auto"``, see :func:`call_doublets`.
    random_state
        Seed for Scrublet.

    Returns
    -------
    The sample with every cell and its flags, and a summary dict with the thresholds, the cells
    each filter removed, and ``mito_filter``.
    """
    mito_filter = adata.uns.get("mito_filter")
    if mito_filter is None:  # metrics made elsewhere: infer from the column
        pct = adata.obs.get("pct_counts_mt", pd.Series(dtype=float)).to_numpy(dtype=float)
        mito_filter = MITO_APPLIED if np.isfinite(pct).any() else "skipped: no pct_counts_mt value"
    mito_filter = str(mito_filter)
    use_mito = mito_filter == MITO_APPLIED
    thresholds = qc_thresholds(adata.obs, method=method, n_mads=n_mads, mito_floor=mito_floor, fixed=fixed,
                               use_mito=use_mito)
    apply_thresholds(adata, thresholds)
    # NaN for "no limit": h5ad cannot store None
    adata.uns["qc_thresholds"] = {m: np.array([np.nan if v is None else v for v in lim], dtype=float)
                                  for m, lim in thresholds.items()}
    adata.uns["mito_filter"] = mito_filter
    adata.obs["doublet_score"] = np.nan
    adata.obs["predicted_doublet"] = False
    summary = {"n_cells_loaded": int(adata.n_obs), "threshold_method": method, "mito_filter": mito_filter}
    for metric in MAD_METRICS:
        low, high = thresholds.get(metric, (np.nan, np.nan))  # NaN: filter not applied
        summary[f"{metric}_low"] = low
        summary[f"{metric}_high"] = high
        summary[f"removed_{metric}"] = (int(adata.obs[f"qc_fail_{metric}"].sum()) if metric in thresholds
                                        else np.nan)
    passing = adata.obs["qc_pass"].to_numpy()
    summary["removed_thresholds"] = int((~passing).sum())
    if doublets and passing.sum() >= 50:
        rate = doublet_rate or expected_doublet_rate(adata.n_obs, rate_per_1000=doublet_rate_per_1000)
        sub = adata[passing].copy()
        call_doublets(sub, expected_rate=rate, threshold=doublet_threshold, random_state=random_state)
        adata.obs.loc[sub.obs_names, "doublet_score"] = sub.obs["doublet_score"]
        adata.obs.loc[sub.obs_names, "predicted_doublet"] = sub.obs["predicted_doublet"].to_numpy()
        adata.uns["scrublet"] = sub.uns["scrublet"]
        summary.update(expected_doublet_rate=rate, doublet_threshold=sub.uns["scrublet"]["threshold"],
                       doublet_threshold_method=sub.uns["scrublet"]["threshold_method"])
    adata.obs["predicted_doublet"] = adata.obs["predicted_doublet"].astype(bool)
    summary["flagged_doublets"] = int(adata.obs["predicted_doublet"].sum())
    keep = passing & ~(adata.obs["predicted_doublet"].to_numpy() if remove_doublets else False)
    adata.obs["keep"] = keep
    summary["removed_doublets"] = int((passing & ~keep).sum())
    summary["n_cells_kept"] = int(keep.sum())
    return adata, summary


def plot_sample_qc(adata: ad.AnnData, thresholds: dict | None = None, *, title: str = ""):
    """Histograms of the three QC metrics with the thresholds drawn, and UMIs vs genes coloured
    by mitochondrial %, so a reader sees where the cut falls on this sample's distribution.

    Parameters
    ----------
    adata
        One sample after :func:`run_sample_qc` (or with QC metrics and ``thresholds``).
    thresholds
        ``{metric: (low, high)}``; default: the ones :func:`run_sample_qc` applied.
    title
        Figure title.

    Returns
    -------
    The matplotlib figure. When the sample has no mitochondrial percentage (the filter was
    skipped), the mitochondrial panel states why instead of an empty histogram, and the scatter
    is drawn in one colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = adata.obs
    if thresholds is None:  # the ones run_sample_qc applied
        thresholds = {m: tuple(v) for m, v in adata.uns["qc_thresholds"].items()}
    mito_filter = str(adata.uns.get("mito_filter", MITO_APPLIED))
    pct_mt = obs["pct_counts_mt"].to_numpy(dtype=float) if "pct_counts_mt" in obs else np.full(len(obs), np.nan)
    has_mt = bool(np.isfinite(pct_mt).any())
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), constrained_layout=True)
    names = {"log1p_total_counts": "log(1 + UMIs)", "log1p_n_genes_by_counts": "log(1 + genes)",
             "pct_counts_mt": "% mitochondrial"}
    for ax, metric in zip(axes, MAD_METRICS):
        ax.set_xlabel(names.get(metric, metric))
        if metric == "pct_counts_mt" and not has_mt:
            why = mito_filter if mito_filter != MITO_APPLIED else "no mitochondrial % in the data"
            ax.text(0.5, 0.5, "mitochondrial filter\n" + "\n".join(_wrap(why, 34)), ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        x = obs[metric].to_numpy(dtype=float)
        ax.hist(x[np.isfinite(x)], bins=60, color="0.6")
        for v in thresholds.get(metric, (None, None)):
            if v is not None and np.isfinite(v):
                ax.axvline(v, color="crimson", ls="--")
        ax.set_ylabel("cells")
    ax = axes[3]
    counts, genes = obs["total_counts"].to_numpy(), obs["n_genes_by_counts"].to_numpy()
    if has_mt:
        order = np.argsort(pct_mt)
        pts = ax.scatter(counts[order], genes[order], c=pct_mt[order], s=4, cmap="viridis", vmax=50)
    else:
        ax.scatter(counts, genes, s=4, color="tab:blue")
        ax.set_title("no mitochondrial genes: not coloured", fontsize=8)
    if "predicted_doublet" in obs:
        d = obs["predicted_doublet"].to_numpy(dtype=bool)
        ax.scatter(counts[d], genes[d], facecolors="none", edgecolors="red", s=14, lw=0.6,
                   label="Scrublet doublet")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("UMIs")
    ax.set_ylabel("genes")
    if has_mt:
        fig.colorbar(pts, ax=ax, label="% mito")
    fig.suptitle(title)
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def quick_clusters(adata: ad.AnnData, *, resolution: float = 0.8, random_state: int = 0,
                   key_added: str = "qc_cluster") -> ad.AnnData:
    """Coarse Leiden clusters of one sample (log-normalised copy, 2,000 HVGs, 20 PCs): enough to
    tell cell populations apart for the ambient estimate; not used downstream.

    Parameters
    ----------
    adata
        One sample, raw counts in ``X`` (not changed; ``obs[key_added]`` is added).
    resolution
        Leiden resolution.
    random_state
        Seed for PCA, neighbours and Leiden.
    key_added
        obs column of the cluster labels.
    """
    tmp = ad.AnnData(adata.X.astype(np.float32, copy=True), obs=pd.DataFrame(index=adata.obs_names),
                     var=pd.DataFrame(index=adata.var_names))
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=min(2000, tmp.n_vars), flavor="seurat")
    n_comps = int(min(20, tmp.n_obs - 2, int(tmp.var["highly_variable"].sum()) - 1))
    sc.pp.pca(tmp, n_comps=n_comps, mask_var="highly_variable", random_state=random_state)
    sc.pp.neighbors(tmp, n_neighbors=15, random_state=random_state)
    sc.tl.leiden(tmp, resolution=resolution, flavor="igraph", n_iterations=2, directed=False,
                 random_state=random_state, key_added=key_added)
    adata.obs[key_added] = tmp.obs[key_added].to_numpy()
    return adata


def estimate_ambient(kept: ad.AnnData, raw: ad.AnnData, *, cell_barcodes, max_umis: int = 100,
                     random_state: int = 0, where: str = "raw matrix", min_shared_barcodes: float = 0.99,
                     filtered_where: str = "filtered matrix") -> tuple[dict, pd.Series]:
    """Ambient profile from the raw matrix's empty droplets (barcodes not in ``cell_barcodes``,
    i.e. not among all the called cells) and the sample's contamination estimate on its
    QC-passing cells ``kept`` (coarsely clustered for it, in place). Returns the QC-table fields
    and the profile.

    Parameters
    ----------
    kept
        The sample's QC-passing cells, raw counts.
    raw
        Every barcode of the sample (Cell Ranger's raw matrix).
    cell_barcodes
        All called cells, kept or not; none of them counts as an empty droplet.
    max_umis
        Largest total of a droplet still counted as empty.
    random_state
        Seed for the coarse clustering.
    where
        The raw matrix's name, for error messages.
    min_shared_barcodes
        Share of ``cell_barcodes`` the raw matrix must hold (:func:`check_raw_matches_filtered`),
        checked before anything is estimated.
    filtered_where
        The filtered matrix's name, for error messages.
    """
    check_raw_matches_filtered(raw.obs_names, cell_barcodes, min_shared=min_shared_barcodes,
                               raw_where=where, filtered_where=filtered_where)
    genes = kept.var_names.intersection(raw.var_names)
    ambient = ambient_profile(raw[:, genes], cell_barcodes, max_umis=max_umis, where=where)
    quick_clusters(kept, random_state=random_state)
    est = estimate_contamination(kept, ambient, groupby="qc_cluster")
    return ({"ambient_contamination": est["contamination"], "ambient_pairs_used": est["n_pairs_used"],
             "ambient_clusters": est["n_clusters"], "empty_droplets": ambient.attrs["n_droplets"]}, ambient)
