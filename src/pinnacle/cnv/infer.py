"""Copy number inferred from scRNA-seq and the malignant call per cell, one patient at a time.

Why: an NPC biopsy mixes malignant epithelium with normal epithelium and a dense immune
infiltrate; markers say "epithelial", not "malignant". Malignant cells carry arm-level copy-number
changes, which shift the expression of hundreds of neighbouring genes; the patient's own immune
and stromal cells are diploid and serve as the reference (per patient, so batch and patient
effects cancel). Latent Epstein-Barr virus (EBV) in NPC cells is a second, independent marker.

Per patient::

    genes = pd.read_csv("resources/genes_grch38.tsv", sep="\\t")
    status = infer_cnv(adata, genes=genes)    # obsm["X_cnv"], obs["cnv_score"], uns["cnv"]
    summary = call_malignant(adata)           # obs["malignant_call"], obs["malignant_confidence"]
    fig = plot_cnv_heatmap(adata)

What comes from libraries and what is written here:

- infercnvpy ``tl.infercnv``: the inferCNV algorithm (log fold change against the reference,
  clipped, pyramid-weighted running mean along each chromosome, per-cell median centring). With
  several reference types a gene's range over their means counts as "no change", so a gene high
  in one immune type (immunoglobulins, HLA) is not a gain. Written here: positions from the gene
  table, normalisation and log1p on a sparse float32 copy of the used genes, inferCNV's gene
  filter (mean count in the reference), a filter of cell-type programme genes (mean in the other
  cells > e-fold outside the reference range: a marker such as a keratin, not copy number, which
  moves an arm by at most ~2-fold), a window that scales with the number of genes (infercnvpy's
  100 assumes ~10,000), the window coordinates, and the per-cell score: the mean squared CNV
  value (as Tirosh et al., Science 2016) standardised against reference cells of the same depth.
  Unadjusted it falls with library size and ranks shallow immune cells above deep tumour cells
  (infercnvpy's ``cnv_score`` is per cluster, not per cell).
- Malignant call (written here; infercnvpy has no classifier): each cell's Pearson correlation
  with the patient's tumour consensus (mean profile of the epithelial cells scoring above 95% of
  the reference; scale-free, so shallow and deep cells compare). Normal epithelium shares the
  tumour's tissue-programme "events" (genes epithelia express unlike immune cells) and so
  correlates too. A two-component scikit-learn ``GaussianMixture`` on the epithelial cells'
  (correlation, score) proposes a low group, taken as normal epithelium only if its pooled
  expression has no arm-scale steps (scipy one-way ANOVA of gene-level fold changes over blocks
  of neighbouring genes: a subclone has steps, a tissue programme gene-to-gene scatter). Its mean
  profile, the tissue artefact, is subtracted from every epithelial cell; the group is
  re-estimated once from the confident calls (more rounds feed mis-called tumour cells back into
  the artefact and drift, measured on the simulator). Evidence per cell: the log-likelihood
  ratio of scikit-learn's ``LinearDiscriminantAnalysis`` on (correlation, score) trained on
  normal anchors (reference cells, normal epithelium) and tumour anchors; linear, so an odd cell
  far from both is not called with confidence. Prior: the epithelial tumour share (EM on the
  epithelial cells); a non-epithelial cell's prior odds are 1:1000, so the noise tail of
  thousands of immune cells is never called, and a tumour cell the annotation missed only on
  overwhelming evidence.
- EBV (:func:`ebv_genes`): a cell is EBV-positive when it has EBV UMIs; by ambient RNA alone a
  cell with ``n`` UMIs is positive with probability ``1 - exp(-rate n)``, the rate being the
  reference cells' EBV UMIs per UMI. The positive share of the tumour anchors gives the
  likelihood ratio of a positive and of a negative cell, added to the CNV evidence, when EBV
  separates (tumour share >= 3x the ambient one); an EBV-negative tumour, or a matrix without
  EBV genes, is called from copy number alone.

Nothing here draws random numbers (the mixture starts from fixed means): same input, same output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from .figures import _chrom_ticks

__all__ = ["EPITHELIAL_TYPES", "REFERENCE_TYPES", "call_malignant", "ebv_genes", "infer_cnv", "plot_cnv_heatmap"]

#: major types (``resources/markers.yaml``) used as the diploid reference: immune and stromal cells.
REFERENCE_TYPES = ("T/NK", "B", "plasma", "myeloid", "pDC", "mast", "fibroblast", "endothelial")
#: major types that may be malignant (the epithelial lineage).
EPITHELIAL_TYPES = ("malignant/epithelial",)
MALIGNANT, NON_MALIGNANT, UNCERTAIN = "malignant", "non_malignant", "uncertain"

_EBV_CONTIGS = {"chrebv", "ebv", "nc_007605", "nc_007605.1"}
_EBV_NAME = re.compile(r"^(EBV([-_:.].+)?|BART\w*|RPMS1|A73|LMP-?1|LMP-?2[AB]|EBNA-?(1|2|LP|3[ABC])|"
                       r"BNLF2[AB]|BARF[01]|BZLF[12]|BRLF1|BHRF1|BALF[1-5]|EBER-?[12])$", re.IGNORECASE)


def ebv_genes(var_names: Sequence[str], *, chrom: Sequence[str] | None = None) -> list[str]:
    """The Epstein-Barr virus features among ``var_names``.

    A feature is EBV when its contig (``chrom``, when given) is the EBV genome (``chrEBV``,
    ``EBV``, ``NC_007605``), or its name is an EBV gene as references that append the EBV genome
    name them: ``EBV*`` (e.g. ``EBV_RPMS1``), ``BART*``, ``RPMS1``, ``A73``, ``LMP1``,
    ``LMP2A``/``LMP2B``, ``EBNA1/2/3A-C/LP``, ``BNLF2a/b``, ``BARF0/1``, ``BZLF1/2``, ``BRLF1``,
    ``BHRF1``, ``BALF1-5``, ``EBER1/2``. Whole names, not prefixes, so the human EBNA1BP2 and
    LMP2 (an old alias of PSMB9) are not taken.

    Parameters
    ----------
    var_names
        Feature names (or ids) of the matrix.
    chrom
        Optional contig of each feature, same order.

    Returns
    -------
    The EBV features, in input order.
    """
    names = [str(v) for v in var_names]
    contig = [str(c).lower() for c in chrom] if chrom is not None else [""] * len(names)
    if len(contig) != len(names):
        raise InputError("ebv_genes", f"{len(contig)} contigs for {len(names)} features.",
                         "pass one contig per feature (var['chrom']).")
    return [n for n, c in zip(names, contig) if _EBV_NAME.match(n) or c in _EBV_CONTIGS]


def _ebv_mask(adata: ad.AnnData) -> np.ndarray:
    mask = np.isin(adata.var_names.astype(str), ebv_genes(adata.var_names))
    if "gene_ids" in adata.var:
        mask |= np.isin(adata.var["gene_ids"].astype(str), ebv_genes(adata.var["gene_ids"].astype(str)))
    for col in ("chrom", "chromosome"):
        if col in adata.var:
            mask |= adata.var[col].astype(str).str.lower().isin(_EBV_CONTIGS).to_numpy()
    return mask


# ---------------------------------------------------------------------------------------------
# inferred copy number
# ---------------------------------------------------------------------------------------------
def _gene_positions(genes: pd.DataFrame, where: str) -> pd.DataFrame:
    need = ["gene_symbol", "chrom", "start", "end"]
    if not isinstance(genes, pd.DataFrame):
        raise InputError(where, f"genes is a {type(genes).__name__}, not a table.",
                         "pass the gene table as a DataFrame (pd.read_csv('resources/genes_grch38.tsv', sep='\\t')).")
    missing = [c for c in need if c not in genes.columns]
    if missing:
        raise InputError(where, f"the gene table lacks column(s) {missing} (it has {list(genes.columns)}).",
                         "give a table with gene_symbol, chrom, start, end (resources/genes_grch38.tsv).")
    g = genes[need].dropna().drop_duplicates("gene_symbol")
    chrom = g["chrom"].astype(str)
    chrom = chrom.where(chrom.str.startswith("chr"), "chr" + chrom)
    start, end = pd.to_numeric(g["start"], errors="coerce"), pd.to_numeric(g["end"], errors="coerce")
    if start.isna().any() or end.isna().any():
        raise InputError(where, "the gene table has non-numeric start/end values.", "give positions as integers.")
    return pd.DataFrame({"chromosome": chrom.to_numpy(), "start": start.to_numpy(np.int64),
                         "end": end.to_numpy(np.int64)}, index=g["gene_symbol"].astype(str).to_numpy())


def _counts(adata: ad.AnnData, layer: str | None, where: str) -> sp.csr_matrix:
    if layer is not None and layer not in adata.layers:
        raise InputError(where, f"layer {layer!r} not found (layers: {list(adata.layers)}).",
                         "put raw counts in layers['counts'] or name the layer (layer=None: X).")
    X = adata.X if layer is None else adata.layers[layer]
    return sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()


def _is_gene(adata: ad.AnnData) -> np.ndarray:
    if "feature_types" in adata.var:
        return (adata.var["feature_types"].astype(str) == "Gene Expression").to_numpy()
    return np.ones(adata.n_vars, bool)


def _log_norm(X: sp.csr_matrix, libsize: np.ndarray, cols: np.ndarray) -> sp.csr_matrix:
    """log1p of counts per 10,000 (library = all gene UMIs) on the columns ``cols`` only."""
    Y = X[:, cols]  # a new matrix: scaled in place below
    Y = Y.astype(np.float32) if Y.dtype != np.float32 else Y
    Y.data *= np.repeat((1e4 / np.maximum(libsize, 1)).astype(np.float32), np.diff(Y.indptr))
    np.log1p(Y.data, out=Y.data)
    return Y


def _col_means(Y: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Column means over the selected rows (a vector-matrix product: no copy of the rows)."""
    return np.asarray(rows.astype(np.float32) @ Y).ravel() / max(int(rows.sum()), 1)


def _windows(var: pd.DataFrame, chr_pos: dict, window: int, step: int) -> pd.DataFrame:
    """Coordinates of infercnvpy's windows: per chromosome, genes sorted by start, window j spans
    genes j*step .. j*step+window-1 (one window of all genes when fewer)."""
    rows, chroms = [], list(chr_pos)
    for i, c in enumerate(chroms):
        v = var[var["chromosome"] == c].sort_values("start")
        n = len(v)
        first = np.arange(0, n - window + 1, step) if n > window else np.array([0])
        last = np.minimum(first + min(window, n) - 1, n - 1)
        if i + 1 < len(chroms) and chr_pos[chroms[i + 1]] - chr_pos[c] != len(first):  # pragma: no cover
            raise RuntimeError(f"infercnvpy's window layout of {c} changed")
        rows.append(pd.DataFrame({"chrom": c, "start": v["start"].to_numpy()[first],
                                  "end": v["end"].to_numpy()[last], "n_genes": last - first + 1}))
    return pd.concat(rows, ignore_index=True)


def _depth_z(signal: np.ndarray, loglib: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """log mean squared CNV (``signal``), minus the reference cells' straight-line fit on log
    library size, in units of the reference's residual SD (reference cells ~ N(0, 1))."""
    s = np.log(np.asarray(signal, dtype=np.float64) + 1e-8)
    A = np.c_[np.ones(int(ref.sum())), loglib[ref]]
    coef = np.linalg.lstsq(A, s[ref], rcond=None)[0]
    res = s - (coef[0] + coef[1] * loglib)
    return res / max(float(np.std(res[ref])), 1e-6)


def infer_cnv(adata: ad.AnnData, *, genes: pd.DataFrame, reference_key: str = "cell_type_major",
              reference_categories: Sequence[str] = REFERENCE_TYPES, layer: str | None = "counts",
              window: int | None = None, step: int | None = None, min_mean_counts: float = 0.1,
              max_programme_lfc: float | None = 1.0, min_reference_cells: int = 20, min_category_cells: int = 10,
              exclude_chromosomes: Sequence[str] = ("chrX", "chrY", "chrM"), dynamic_threshold: float | None = None,
              chunksize: int = 2000, n_jobs: int = 1, key_added: str = "cnv") -> dict:
    """Inferred copy number of one patient's cells against their immune and stromal cells.

    Parameters
    ----------
    adata
        One patient's cells x genes, raw counts in ``layer``, cell types in ``obs[reference_key]``.
        Changed in place.
    genes
        Gene positions: a table with gene_symbol, chrom, start, end (``resources/genes_grch38.tsv``;
        any build that matches the data). Genes absent from it are dropped and counted.
    reference_key, reference_categories
        obs column and its values of the diploid reference cells (default: immune and stromal
        major types). A category with at least ``min_category_cells`` cells is its own reference
        (infercnvpy's bounded difference); smaller ones are pooled.
    layer
        Layer of the raw counts (``None``: ``X``).
    window, step
        Genes per running window and the stride; default ``window`` = used genes / 100 within
        15..101 (an arm spans many windows) and ``step`` = window / 10.
    min_mean_counts
        Genes with a lower mean count in the reference cells are dropped (inferCNV's ``cutoff``:
        0.1 for 10x, ~1 for Smart-seq2).
    max_programme_lfc
        Genes whose mean log expression in the non-reference cells lies more than this outside
        the reference categories' range are dropped as cell-type programme genes (None: keep).
    min_reference_cells
        Fewer reference cells: no inference, status ``"too_few_reference_cells"``.
    min_category_cells
        Smallest reference category kept as its own reference.
    exclude_chromosomes
        Contigs left out (X inactivation and Y make sex chromosomes differ without copy number).
    dynamic_threshold
        infercnvpy's noise filter (values below this many SDs set to 0). Off by default: at 10x
        depth it zeroes most single-cell values and weakens the correlation the call rests on.
    chunksize, n_jobs
        Cells per chunk (the dense part is chunk x genes) and infercnvpy's worker processes.
    key_added
        ``obsm[f"X_{key_added}"]`` (cells x windows, CSR float32), ``obs[f"{key_added}_score"]``
        (depth-standardised score, NaN without inference), ``obs[f"{key_added}_signal"]`` (mean
        squared CNV), ``uns[key_added]``: ``chr_pos``, ``windows`` (chrom/start/end/n_genes),
        ``genes`` (used genes with the reference range, for :func:`call_malignant`), ``status``.

    Returns
    -------
    The status: ``status`` ("ok" / "too_few_reference_cells" / "too_few_genes"), ``message``,
    cell and gene counts (``n_genes_not_in_table`` among them), reference categories, window, step.
    """
    import infercnvpy as cnv

    where = "infer_cnv"
    pos = _gene_positions(genes, where)
    X = _counts(adata, layer, where)
    if reference_key not in adata.obs:
        raise InputError(where, f"obs has no {reference_key!r} column (cell types).",
                         "annotate the cells first, or name the column with reference_key.")
    is_gene, names = _is_gene(adata), adata.var_names.astype(str)
    ebv = _ebv_mask(adata)
    in_table = names.isin(pos.index) & is_gene
    n_absent = int((is_gene & ~in_table & ~ebv).sum())
    chrom = pos["chromosome"].reindex(names).to_numpy()
    keep = in_table & ~pd.Series(chrom).isin(list(exclude_chromosomes)).to_numpy()

    ref_lab = adata.obs[reference_key].astype(str).to_numpy()
    is_ref = np.isin(ref_lab, [str(c) for c in reference_categories])
    counts = pd.Series(ref_lab[is_ref]).value_counts()
    big = sorted(c for c in counts.index if counts[c] >= min_category_cells)
    small, pooled = is_ref & ~np.isin(ref_lab, big), "reference (pooled)"
    lab = np.where(np.isin(ref_lab, big), ref_lab, np.where(small, pooled, ""))
    cats = big + ([pooled] if small.sum() >= min_category_cells or not big else [])
    status = {"status": "ok", "n_cells": int(adata.n_obs), "n_reference_cells": int(is_ref.sum()),
              "reference_categories": cats, "n_genes_input": int(is_gene.sum()),
              "n_genes_not_in_table": n_absent, "n_ebv_genes": int(ebv.sum())}
    libsize = np.asarray(X @ is_gene.astype(np.float32)).ravel()  # mat-vec: no copy of the matrix
    ref_mean = np.asarray(is_ref.astype(np.float32) @ X).ravel() / max(int(is_ref.sum()), 1)
    keep &= ref_mean >= min_mean_counts
    status["n_genes_low_expression"] = int((in_table & ~keep).sum())
    adata.obs[f"{key_added}_score"] = np.nan
    adata.obs[f"{key_added}_signal"] = np.nan
    if is_ref.sum() < min_reference_cells:
        status.update(status="too_few_reference_cells",
                      message=f"{int(is_ref.sum())} reference cells ({', '.join(map(str, reference_categories))}); "
                              f"inference needs at least {min_reference_cells}. No copy number inferred.")
        adata.uns[key_added] = {"status": status}
        return status
    Y = _log_norm(X, libsize, np.flatnonzero(keep))
    mu = np.vstack([_col_means(Y, lab == c) for c in cats])
    lo, hi = mu.min(axis=0), mu.max(axis=0)
    prog = np.zeros(Y.shape[1], bool)
    if max_programme_lfc is not None and (~is_ref).any():
        m = _col_means(Y, ~is_ref)
        prog = np.abs(np.maximum(m - hi, 0) + np.minimum(m - lo, 0)) > max_programme_lfc
    Y, lo, hi = Y[:, ~prog], lo[~prog], hi[~prog]
    keep[np.flatnonzero(keep)[prog]] = False
    status.update(n_genes_programme=int(prog.sum()), n_genes_used=int(keep.sum()))
    if keep.sum() < 200:
        status.update(status="too_few_genes", message=f"{int(keep.sum())} genes with a position and a mean count "
                                                      f">= {min_mean_counts} in the reference; inference needs 200.")
        adata.uns[key_added] = {"status": status}
        return status
    window = int(np.clip(round(keep.sum() / 100), 15, 101)) if window is None else int(window)
    step = max(1, window // 10) if step is None else int(step)
    var = pos.reindex(names[keep])
    tmp = ad.AnnData(Y, obs=pd.DataFrame({"_ref": lab}, index=adata.obs_names), var=var)
    chr_pos, res, _ = cnv.tl.infercnv(tmp, reference_key="_ref", reference_cat=cats, window_size=window, step=step,
                                      dynamic_threshold=dynamic_threshold, exclude_chromosomes=None,
                                      chunksize=chunksize, n_jobs=n_jobs, inplace=False)
    res = sp.csr_matrix(res, dtype=np.float32)
    signal = np.asarray(res.multiply(res).mean(axis=1)).ravel()
    adata.obsm[f"X_{key_added}"] = res
    adata.obs[f"{key_added}_signal"] = signal
    adata.obs[f"{key_added}_score"] = _depth_z(signal, np.log(np.maximum(libsize, 1)), is_ref)
    status.update(window=window, step=step, n_windows=int(res.shape[1]),
                  message=f"{int(keep.sum())} genes in {res.shape[1]} windows; {n_absent} genes not in the "
                          f"gene table, {int(prog.sum())} cell-type programme genes dropped.")
    gtab = var.assign(ref_low=lo, ref_high=hi)
    adata.uns[key_added] = {"chr_pos": {k: int(v) for k, v in chr_pos.items()}, "genes": gtab,
                            "windows": _windows(var, chr_pos, window, step), "status": status}
    return status


# ---------------------------------------------------------------------------------------------
# malignant call
# ---------------------------------------------------------------------------------------------
def _corr_rows(X: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of X with c (0 for a flat row)."""
    Xc = X - X.mean(axis=1, keepdims=True)
    cc = c - c.mean()
    den = np.sqrt((Xc * Xc).sum(axis=1) * float(cc @ cc))
    return np.divide(Xc @ cc, den, out=np.zeros(len(X)), where=den > 0)


def _aneuploidy_p(Xc: sp.csr_matrix, lib: np.ndarray, cells: np.ndarray, gtab: pd.DataFrame, cols: np.ndarray,
                  block: int) -> float:
    """p-value that a group of cells is diploid: one-way ANOVA of its pooled gene-level log fold
    changes (outside the reference range, clipped at +/-3) over blocks of ``block`` neighbouring
    genes. Copy number shifts whole blocks; tissue programmes scatter gene by gene."""
    from scipy.stats import f_oneway

    m = _col_means(_log_norm(Xc[cells], lib[cells], cols), np.ones(int(cells.sum()), bool))
    d = np.clip(np.maximum(m - gtab["ref_high"].to_numpy(), 0) + np.minimum(m - gtab["ref_low"].to_numpy(), 0), -3, 3)
    groups = []
    for _, idx in gtab.reset_index(drop=True).sort_values(["chromosome", "start"]).groupby("chromosome").groups.items():
        idx = np.asarray(idx)
        n_b = max(1, len(idx) // block)
        groups += [d[part] for part in np.array_split(idx, n_b) if len(part) >= 3]
    return float(f_oneway(*groups).pvalue) if len(groups) > 2 else 1.0


def call_malignant(adata: ad.AnnData, *, cnv_key: str = "cnv", cell_type_key: str = "cell_type_major",
                   epithelial_categories: Sequence[str] = EPITHELIAL_TYPES,
                   reference_categories: Sequence[str] = REFERENCE_TYPES, layer: str | None = "counts",
                   use_ebv: bool = True, min_cells: int = 10, min_probability: float = 0.8,
                   non_epithelial_prior: float = 1e-3, aneuploidy_p: float = 1e-3, patient_key: str = "patient_id",
                   key_added: str = "malignant") -> pd.DataFrame:
    """Malignant, non-malignant or uncertain, per cell, from inferred copy number, annotation and EBV.

    Parameters
    ----------
    adata
        One patient's cells after :func:`infer_cnv` (same ``cnv_key``), cell types in
        ``obs[cell_type_key]``, raw counts in ``layer`` (library sizes, EBV UMIs). Changed in place.
    cnv_key
        ``key_added`` of :func:`infer_cnv`.
    cell_type_key, epithelial_categories, reference_categories
        The annotation: which cells may be malignant (prior: the epithelial tumour share) and
        which are the diploid reference; every other cell is non-epithelial (prior odds
        ``non_epithelial_prior``, so it is called malignant only on overwhelming evidence).
    layer
        Layer of the raw counts.
    use_ebv
        Use EBV UMIs (:func:`ebv_genes`) as evidence when the matrix has them and they separate.
    min_cells
        Fewest cells for a consensus, an anchor group or a normal-epithelium group.
    min_probability
        Posterior probability for a call; between ``1 - min_probability`` and it: uncertain.
    non_epithelial_prior
        Prior probability that a non-epithelial cell is malignant.
    aneuploidy_p
        The low epithelial group counts as normal epithelium unless its arm-scale test gives a
        p-value below this (then it is a subclone, and no artefact is subtracted).
    patient_key
        obs column named in the summary (when present).
    key_added
        obs columns ``{key_added}_call`` (malignant / non_malignant / uncertain),
        ``_confidence`` (posterior probability of the more likely class, 0.5-1), ``_probability``
        (posterior probability of malignant), ``_cnv_correlation`` (with the tumour consensus),
        ``_ebv_counts`` (EBV UMIs, when any EBV feature); ``uns[key_added]``: the summary row.

    Returns
    -------
    One-row summary: patient, status, counts per call, epithelial cells called malignant,
    non-epithelial cells called malignant, whether normal epithelium was found (and its
    aneuploidy p-value), and the EBV evidence used (positive shares, likelihood ratios).
    """
    from scipy.special import expit, logit
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.mixture import GaussianMixture

    where = "call_malignant"
    if cell_type_key not in adata.obs:
        raise InputError(where, f"obs has no {cell_type_key!r} column.", "annotate the cells first.")
    if not 0.5 < min_probability < 1 or not 0 < non_epithelial_prior < 1:
        raise InputError(where, f"min_probability={min_probability}, non_epithelial_prior={non_epithelial_prior}.",
                         "use 0.5 < min_probability < 1 and 0 < non_epithelial_prior < 1.")
    Xc = _counts(adata, layer, where)
    info = adata.uns.get(cnv_key, {})
    lab = adata.obs[cell_type_key].astype(str).to_numpy()
    E, R = np.isin(lab, list(map(str, epithelial_categories))), np.isin(lab, list(map(str, reference_categories)))
    lib = np.asarray(Xc @ _is_gene(adata).astype(np.float32)).ravel()
    loglib = np.log(np.maximum(lib, 1))
    ebv = _ebv_mask(adata)
    k_ebv = np.asarray(Xc @ ebv.astype(np.float32)).ravel()
    n = adata.n_obs
    p, r = np.full(n, np.nan), np.full(n, np.nan)
    summ = {"patient_id": str(adata.obs[patient_key].iloc[0]) if patient_key in adata.obs and n else "",
            "status": "ok", "n_cells": n, "n_epithelial": int(E.sum()), "n_reference": int(R.sum()),
            "normal_epithelium": False, "normal_epithelium_cells": 0, "aneuploidy_p_low_group": np.nan,
            "ebv_used": False, "ebv_positive_tumour": np.nan, "ebv_positive_ambient": np.nan, "message": ""}
    def _posterior(F: np.ndarray, T: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, float]:
        """Posterior of malignant: LDA log-likelihood ratio (+ EBV), epithelial prior by EM."""
        lda = LinearDiscriminantAnalysis(priors=[0.5, 0.5]).fit(F[N | T], T[N | T].astype(int))
        llr = lda.decision_function(F)
        summ["ebv_used"] = False
        if use_ebv and ebv.any():
            rate = k_ebv[R].sum() / max(lib[R].sum(), 1)  # ambient EBV UMIs per UMI
            amb = np.clip(1 - np.exp(-rate * lib), 1e-3, 0.5)
            pos = k_ebv > 0
            d1 = float(np.clip(pos[T].mean(), 1e-3, 0.99))
            summ.update(ebv_positive_tumour=round(d1, 4), ebv_positive_ambient=round(float(amb[T].mean()), 4))
            if d1 >= 3 * amb[T].mean():
                summ["ebv_used"] = True
                llr = llr + np.where(pos, np.log(d1 / amb), np.log((1 - d1) / (1 - amb)))
        pi = 0.5
        for _ in range(200):  # the epithelial tumour share, by EM with the evidence fixed
            pi, old = float(np.clip(expit(llr[E] + logit(pi)).mean(), 0.01, 0.99)), pi
            if abs(pi - old) < 1e-6:
                break
        return expit(llr + np.where(E, logit(pi), logit(non_epithelial_prior))), pi

    fallback = None
    if f"X_{cnv_key}" not in adata.obsm or info.get("status", {}).get("status", "ok") != "ok":
        fallback = ("no_cnv", f"no inferred copy number ({info.get('status', {}).get('status', 'infer_cnv not run')}).")
    elif R.sum() < min_cells:
        fallback = ("too_few_reference_cells", f"{int(R.sum())} reference cells; the call needs {min_cells}.")
    else:
        X = np.asarray(adata.obsm[f"X_{cnv_key}"].toarray() if sp.issparse(adata.obsm[f"X_{cnv_key}"])
                       else adata.obsm[f"X_{cnv_key}"], dtype=np.float32)
        z = _depth_z((X.astype(np.float64) ** 2).mean(axis=1), loglib, R)
        seeds = E & (z > np.quantile(z[R], 0.95))
        if seeds.sum() < min_cells:
            fallback = ("no_tumour_consensus", f"{int(seeds.sum())} epithelial cells score above 95% of the "
                                               f"reference; a consensus needs {min_cells}.")
    if fallback is None:
        r = _corr_rows(X, X[seeds].mean(axis=0))
        low, high = np.zeros(n, bool), np.zeros(n, bool)
        if E.sum() >= 2 * min_cells:  # propose a low (normal epithelium?) group
            F = np.c_[r, z][E]
            init = np.array([[np.median(r[R]), np.median(z[R])], [np.median(r[seeds]), np.median(z[seeds])]])
            gm2 = GaussianMixture(2, means_init=init, random_state=0).fit(F)
            if gm2.bic(F) < GaussianMixture(1, random_state=0).fit(F).bic(F):
                post = gm2.predict_proba(F)[:, int(np.argmin(gm2.means_[:, 0]))]
                low[np.flatnonzero(E)[post > 0.9]] = True
                high[np.flatnonzero(E)[post < 0.1]] = True
        if min_cells <= low.sum() <= E.sum() - min_cells and "genes" in info:
            gtab = info["genes"]
            cols = adata.var_names.get_indexer(gtab.index)
            block = int(info["status"].get("window", 25))
            pval = _aneuploidy_p(Xc, lib, low, gtab, cols, block)
            summ["aneuploidy_p_low_group"] = pval
            if pval >= aneuploidy_p:  # diploid: normal epithelium; its mean is the tissue artefact
                summ["normal_epithelium"] = True
        normal_epi = summ["normal_epithelium"]
        X0 = X.copy() if normal_epi else X
        T, pi = (high if normal_epi else E & (r > np.quantile(r[R], 0.99))), np.nan
        for _ in range(2 if normal_epi else 1):  # normal epithelium: re-estimated once from the calls
            if normal_epi:
                X = X0.copy()
                X[E] -= X0[low].mean(axis=0)
                z = _depth_z((X.astype(np.float64) ** 2).mean(axis=1), loglib, R)
            if T.sum() < min_cells:
                fallback = ("no_tumour_consensus", f"{int(T.sum())} epithelial cells resemble the consensus; "
                                                   f"tumour anchors need {min_cells}.")
                break
            r = _corr_rows(X, X[T].mean(axis=0))
            p, pi = _posterior(np.c_[r, z], T, R | low if normal_epi else R)
            new_low = E & (p <= 1 - min_probability)  # confidently normal epithelium only
            if not normal_epi or new_low.sum() < min_cells or (new_low == low).all() \
                    or _aneuploidy_p(Xc, lib, new_low, gtab, cols, block) < aneuploidy_p:
                break
            low, T = new_low, E & (p >= 0.5)
        summ["normal_epithelium_cells"] = int(low.sum()) if normal_epi else 0
        summ["message"] = (f"tumour consensus of {int(T.sum())} cells, epithelial tumour share {pi:.2f}; "
                           + ("normal epithelium found and its tissue artefact removed; " if normal_epi else "")
                           + ("EBV used." if summ["ebv_used"] else "EBV not used."))
    calls = np.where(p >= min_probability, MALIGNANT, np.where(p <= 1 - min_probability, NON_MALIGNANT, UNCERTAIN))
    conf = np.maximum(p, 1 - p)
    if fallback is not None:  # epithelium uncertain, everything else non-malignant, no per-cell evidence
        calls = np.where(E, UNCERTAIN, NON_MALIGNANT)
        conf = np.full(n, 0.5)
        summ.update(status=fallback[0], message=fallback[1])
    adata.obs[f"{key_added}_call"] = pd.Categorical(calls, categories=[MALIGNANT, UNCERTAIN, NON_MALIGNANT])
    adata.obs[f"{key_added}_confidence"] = conf
    adata.obs[f"{key_added}_probability"] = p
    adata.obs[f"{key_added}_cnv_correlation"] = r
    if ebv.any():
        adata.obs[f"{key_added}_ebv_counts"] = k_ebv
    for c in (MALIGNANT, UNCERTAIN, NON_MALIGNANT):
        summ[f"n_{c}"] = int((calls == c).sum())
    summ["n_epithelial_malignant"] = int((E & (calls == MALIGNANT)).sum())
    summ["n_non_epithelial_malignant"] = int((~E & (calls == MALIGNANT)).sum())
    adata.uns[key_added] = dict(summ)
    return pd.DataFrame([summ])


# ---------------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------------
def plot_cnv_heatmap(adata: ad.AnnData, *, cnv_key: str = "cnv", call_key: str = "malignant_call",
                     cell_type_key: str = "cell_type_major", reference_categories: Sequence[str] = REFERENCE_TYPES,
                     max_cells_per_group: int = 400, vmax: float | None = None, title: str | None = None):
    """Cells (rows, grouped by malignant call, the reference apart) x genome (windows) heatmap of
    the inferred copy number, with chromosome boundaries and a labelled colour bar.

    Parameters
    ----------
    adata
        One patient after :func:`infer_cnv` (and :func:`call_malignant`, else cells are grouped
        as reference / other).
    cnv_key, call_key, cell_type_key, reference_categories
        Where the CNV matrix, the calls and the cell types are; which types are the reference.
    max_cells_per_group
        Rows drawn per group (evenly spaced after sorting by correlation with the tumour
        consensus), so that thousands of reference cells do not squeeze the tumour out.
    vmax
        Colour limit (symmetric); default the 99th percentile of the absolute values drawn.
    title
        Figure title (default: the patient).

    Returns
    -------
    A matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if f"X_{cnv_key}" not in adata.obsm or "chr_pos" not in adata.uns.get(cnv_key, {}):
        raise InputError("plot_cnv_heatmap", f"no inferred copy number under {cnv_key!r}.", "run infer_cnv first.")
    M = adata.obsm[f"X_{cnv_key}"]
    ref = adata.obs[cell_type_key].astype(str).isin(list(map(str, reference_categories))).to_numpy() \
        if cell_type_key in adata.obs else np.zeros(adata.n_obs, bool)
    if call_key in adata.obs:
        call = adata.obs[call_key].astype(str).to_numpy()
        group = np.where(ref & (call != MALIGNANT), "reference (non-malignant)", call)
        order = [MALIGNANT, UNCERTAIN, NON_MALIGNANT, "reference (non-malignant)"]
    else:
        group = np.where(ref, "reference", "other cells")
        order = ["other cells", "reference"]
    key = f"{call_key.rsplit('_', 1)[0]}_cnv_correlation"
    sort_by = adata.obs[key].to_numpy(dtype=float) if key in adata.obs else np.zeros(adata.n_obs)
    rows, groups = [], []
    for g in order:
        idx = np.flatnonzero(group == g)
        if not len(idx):
            continue
        idx = idx[np.argsort(-np.nan_to_num(sort_by[idx]), kind="stable")]
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, min(len(idx), max_cells_per_group)).round().astype(int))]
        rows.append(idx)
        groups.append((g, int((group == g).sum()), len(idx)))
    rows = np.concatenate(rows)
    X = M[rows].toarray() if sp.issparse(M) else np.asarray(M)[rows]
    vmax = (float(np.quantile(np.abs(X), 0.99)) or 0.1) if vmax is None else float(vmax)
    chr_pos = adata.uns[cnv_key]["chr_pos"]
    starts = np.array(list(chr_pos.values()))
    chrom = np.repeat(list(chr_pos), np.diff(np.r_[starts, X.shape[1]]))  # each window's chromosome

    fig = plt.figure(figsize=(12, 2.5 + min(6.0, 0.006 * len(rows) + 2)))
    grid = fig.add_gridspec(1, 3, width_ratios=[0.4, 30, 0.6], wspace=0.03)
    ax_g, ax, cax = (fig.add_subplot(grid[0, i]) for i in range(3))
    im = ax.imshow(X, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="black", lw=0.5)
    ax.set(yticks=[], xlabel="chromosome")
    _chrom_ticks(ax, chrom)  # the small chromosomes' names on two lines
    bounds = np.cumsum([n for _, _, n in groups])
    for b in bounds[:-1]:
        ax.axhline(b - 0.5, color="black", lw=1.0)
    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label("inferred copy number\n(log expression vs reference; <0 loss, >0 gain)", fontsize=8)
    colours = {MALIGNANT: "#b2182b", UNCERTAIN: "#fdb863", NON_MALIGNANT: "#4393c3",
               "reference (non-malignant)": "#bdbdbd", "reference": "#bdbdbd", "other cells": "#762a83"}
    ax_g.imshow(np.array([plt.matplotlib.colors.to_rgb(colours[group[i]]) for i in rows])[:, None, :],
                aspect="auto", interpolation="nearest")
    ax_g.set(xticks=[], yticks=bounds - np.array([n for _, _, n in groups]) / 2)
    ax_g.set_yticklabels([g.split(" ")[0] for g, _, _ in groups], fontsize=7)
    handles = [Patch(color=colours[g], label=f"{g}: {n} cells" + (f" ({k} shown)" if k < n else ""))
               for g, n, k in groups]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.1), ncol=2, fontsize=7, frameon=False)
    patient = str(adata.obs["patient_id"].iloc[0]) if "patient_id" in adata.obs and adata.n_obs else ""
    ax.set_title(title or f"{patient}: inferred copy number per cell, grouped by malignant call".lstrip(": "))
    return fig
