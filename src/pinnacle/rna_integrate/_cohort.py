"""The cohort object: per-sample HVG statistics, the cohort on the genes it needs (streamed),
its normalisation and PCA, and reading it back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from anndata.experimental import concat_on_disk

from pinnacle.errors import InputError
from pinnacle.writers import atomic_path

log = logging.getLogger(__name__)

def merge_samples_on_disk(paths: Sequence[str | Path], out: str | Path, *,
                          join: str = "inner") -> pd.DataFrame:
    """Concatenate per-sample h5ad files (cells ``{sample}:{barcode}``) into ``out``.

    Genes are joined with ``join`` (``inner``: genes measured in every sample). Returns the
    cohort's obs table. The output is written to a temporary name and renamed at the end, so an
    interrupted merge never leaves a file that looks complete.

    Parameters
    ----------
    paths
        Per-sample h5ad files, cell ids already unique across samples.
    out
        The cohort h5ad to write.
    join
        ``"inner"`` or ``"outer"``, as in :func:`anndata.concat`.
    """
    if not paths:
        raise InputError("sample sheet", "no sample has an 'rna' file.", "give at least one scRNA-seq matrix.")
    var_sets = []
    n_obs = 0
    obs_names: list[str] = []
    for p in paths:
        backed = ad.read_h5ad(p, backed="r")
        var_sets.append(set(backed.var_names))
        obs_names.extend(backed.obs_names)
        n_obs += backed.n_obs
        backed.file.close()
    if len(set(obs_names)) != len(obs_names):
        raise InputError(", ".join(map(str, paths)), "cell ids repeat across samples.",
                         "cell ids must be '{sample_id}:{barcode}' with unique sample ids.")
    common = set.intersection(*var_sets)
    union = set.union(*var_sets)
    if not common:
        raise InputError(", ".join(map(str, paths)), "the samples share no gene.",
                         "quantify all samples against the same reference.")
    if len(common) < len(union):
        log.warning("%d of %d genes are missing from at least one sample and are dropped (join=%s)",
                    len(union) - len(common), len(union), join)
    out = Path(out)
    with atomic_path(out) as tmp:
        concat_on_disk([str(p) for p in paths], str(tmp), join=join, merge="same")
    obs = ad.read_h5ad(out, backed="r").obs.copy()
    return obs


# --------------------------------------------------------------------------------------------
# highly variable genes from per-sample statistics
# --------------------------------------------------------------------------------------------


def sample_hvg_stats(adata: ad.AnnData, *, n_top_genes: int = 2000,
                     spans: tuple[float, ...] = (0.3, 0.5, 0.8)) -> pd.DataFrame:
    """Seurat v3 normalised variance of every gene in one sample (raw counts in ``X``).

    This is the per-batch quantity of ``scanpy.pp.highly_variable_genes(flavor="seurat_v3",
    batch_key=...)``; computing it per sample lets the cohort pick HVGs without holding all
    samples' full-gene matrices at once. The loess fit can fail on small samples ("near
    singularities"); wider spans are then tried and the span used is recorded.

    Parameters
    ----------
    adata
        One sample, raw counts in ``X``.
    n_top_genes
        HVGs asked of scanpy; only the statistics are kept, and they do not depend on it (so
        each sample's QC job computes them once, whatever ``integration.n_top_genes`` is).
    spans
        Loess spans to try in turn.

    Returns
    -------
    ``means`` and ``variances_norm`` per gene (index ``gene``); ``attrs['span']`` is the span used.
    """
    last_err = None
    for span in spans:
        try:
            df = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=min(n_top_genes, adata.n_vars),
                                             span=span, inplace=False, check_values=False)
            break
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:  # loess failures
            last_err = err
    else:
        raise RuntimeError(f"seurat_v3 HVG loess failed for every span {spans}: {last_err}")
    out = pd.DataFrame({"means": df["means"].to_numpy(), "variances_norm": df["variances_norm"].to_numpy()},
                       index=adata.var_names)
    out.index.name = "gene"
    out.attrs["span"] = span
    return out


def select_hvgs(stats: dict[str, pd.DataFrame], *, n_top_genes: int = 2000) -> pd.DataFrame:
    """Combine per-sample Seurat v3 statistics exactly as scanpy does with a batch key.

    Each sample ranks genes by normalised variance; a gene's ``highly_variable_nbatches`` is the
    number of samples where it ranks in the top ``n_top_genes``, its ``highly_variable_rank``
    the median of those ranks; genes are sorted by rank, then by number of samples.
    Genes missing from a sample (different references) count as not variable there.

    Parameters
    ----------
    stats
        ``{sample_id: sample_hvg_stats(...)}``.
    n_top_genes
        HVGs to mark, and the per-sample rank that counts as variable.

    Returns
    -------
    Per gene: ``highly_variable_rank``, ``highly_variable_nbatches``, ``variances_norm`` (mean over
    samples) and ``highly_variable``.
    """
    genes = sorted(set.union(*(set(s.index) for s in stats.values())))
    genes = pd.Index(genes)
    norm = np.vstack([s["variances_norm"].reindex(genes).fillna(-np.inf).to_numpy() for s in stats.values()])
    ranks = np.argsort(np.argsort(-norm, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float32)
    nbatches = (ranks < n_top_genes).sum(axis=0)
    ranks[ranks >= n_top_genes] = np.nan
    median_rank = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    df = pd.DataFrame({"highly_variable_rank": median_rank, "highly_variable_nbatches": nbatches,
                       "variances_norm": np.mean(np.where(np.isfinite(norm), norm, np.nan), axis=0)},
                      index=genes)
    order = df.sort_values(["highly_variable_rank", "highly_variable_nbatches"], ascending=[True, False],
                           na_position="last").index
    df["highly_variable"] = False
    df.loc[order[:n_top_genes], "highly_variable"] = True
    return df


# --------------------------------------------------------------------------------------------
# normalisation, embeddings, integration
# --------------------------------------------------------------------------------------------


def normalise(adata: ad.AnnData, *, target_sum: float = 1e4, chunk_size: int = 10_000) -> ad.AnnData:
    """Counts to ``layers['counts']``; ``X`` = log1p of counts per ``target_sum`` (float32, sparse).

    As ``sc.pp.normalize_total`` + ``sc.pp.log1p``, but ``X`` shares the counts' sparsity
    structure (``indices``/``indptr`` arrays) instead of copying it, and cells are scaled in
    chunks: 12 bytes per non-zero for both matrices instead of 16, and no temporary the size of
    the matrix (at a million cells that is gigabytes).

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or already in ``layers['counts']``, which is then kept); in place.
    target_sum
        Counts per cell after scaling.
    chunk_size
        Cells scaled at a time.
    """
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X
    counts = adata.layers["counts"]
    if not (sp.issparse(counts) and counts.format == "csr") or counts.dtype != np.float32:
        counts = sp.csr_matrix(counts, dtype=np.float32)
        adata.layers["counts"] = counts
    # X shares these arrays: with sorted indices and no stored zeros, no in-place sort or
    # zero elimination on X can ever rewrite them (and with them the counts).
    counts.sum_duplicates()
    counts.eliminate_zeros()
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
    logged = np.empty_like(counts.data)
    for start in range(0, adata.n_obs, chunk_size):
        stop = min(start + chunk_size, adata.n_obs)
        lo, hi = counts.indptr[start], counts.indptr[stop]
        out = logged[lo:hi]
        np.multiply(counts.data[lo:hi], np.repeat(scale[start:stop], np.diff(counts.indptr[start:stop + 1])), out=out)
        np.log1p(out, out=out)
    adata.X = sp.csr_matrix((logged, counts.indices, counts.indptr), shape=counts.shape, copy=False)
    adata.uns["log1p"] = {"base": None}
    return adata


def read_cohort(path: str | Path, *, matrices: bool = True) -> ad.AnnData:
    """Read a cohort h5ad as the cohort jobs need it.

    With ``matrices``, ``X`` shares the counts' sparsity structure again when it has the same
    one (as :func:`normalise` made it; h5ad stores the two apart), a third less memory for the
    two matrices. Without, only obs, var, obsm and uns are read (figures and metrics on the
    embeddings need no expression matrix).

    Parameters
    ----------
    path
        The h5ad file.
    matrices
        Read ``X`` and the layers too.
    """
    if not matrices:
        import h5py

        with h5py.File(path, "r") as f:
            parts = {key: ad.io.read_elem(f[key]) for key in ("obs", "var", "obsm", "uns") if key in f}
        return ad.AnnData(obs=parts["obs"], var=parts["var"], obsm=parts.get("obsm"), uns=parts.get("uns"))
    adata = ad.read_h5ad(path)
    counts, X = adata.layers.get("counts"), adata.X
    if (sp.issparse(counts) and sp.issparse(X) and counts.format == X.format == "csr" and counts.nnz == X.nnz
            and np.array_equal(counts.indptr, X.indptr) and np.array_equal(counts.indices, X.indices)):
        adata.X = sp.csr_matrix((X.data, counts.indices, counts.indptr), shape=X.shape, copy=False)
    return adata


def pca(adata: ad.AnnData, *, n_comps: int = 50, random_state: int = 0) -> ad.AnnData:
    """PCA on the HVGs of sparse log-normalised ``X`` without densifying (implicit centring).

    Parameters
    ----------
    adata
        Log-normalised ``X``; ``var['highly_variable']`` restricts the genes when present.
    n_comps
        Components wanted (fewer when cells or genes are too few).
    random_state
        Seed for ARPACK.
    """
    use_hvg = "highly_variable" in adata.var and adata.var["highly_variable"].any()
    n_comps = int(min(n_comps, adata.n_obs - 1, (adata.var["highly_variable"].sum() if use_hvg else adata.n_vars) - 1))
    sc.pp.pca(adata, n_comps=n_comps, mask_var="highly_variable" if use_hvg else None,
              svd_solver="arpack", random_state=random_state)
    adata.obsm["X_pca"] = adata.obsm["X_pca"].astype(np.float32)
    return adata


# --------------------------------------------------------------------------------------------
# the cohort object on the genes it needs
# --------------------------------------------------------------------------------------------


def genes_in_yaml(data) -> set[str]:
    """Every gene named under a ``markers``, ``negative`` or ``genes`` key of a parsed YAML
    resource (marker sets, signatures), at any depth.

    Parameters
    ----------
    data
        The parsed YAML (dicts and lists).
    """
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("markers", "negative", "genes") and isinstance(value, list):
                found.update(str(g) for g in value)
            else:
                found |= genes_in_yaml(value)
    elif isinstance(data, list):
        for item in data:
            found |= genes_in_yaml(item)
    return found


def cohort_genes(hvg: pd.DataFrame, *, extra: set[str] | Sequence[str] = ()) -> list[str]:
    """The genes the cohort object holds: the HVGs, then every extra gene (markers, signatures,
    config) that the samples measured. Marks them in ``hvg['in_cohort']``.

    Parameters
    ----------
    hvg
        :func:`select_hvgs` output; gets an ``in_cohort`` column.
    extra
        Genes to keep besides the HVGs.
    """
    variable = list(hvg.index[hvg["highly_variable"]])
    genes = variable + sorted(set(extra) - set(variable))
    genes = [g for g in genes if g in hvg.index]
    hvg["in_cohort"] = hvg.index.isin(genes)
    return genes


def build_cohort(samples, *, genes: Sequence[str]) -> ad.AnnData:
    """Stack per-sample AnnData objects (any iterable, consumed one at a time) on ``genes``.

    Each sample is cut to the cohort genes as soon as it is read, so only one sample's full
    gene matrix is ever in memory, and the cut matrices are copied into one preallocated CSR
    matrix, each freed as soon as it is copied: the peak is about one cohort matrix, not the two
    that stacking all parts at once holds. Genes a sample lacks are dropped from the cohort
    (logged).

    Parameters
    ----------
    samples
        Labelled per-sample AnnData objects (``obs['sample_id']``).
    genes
        The cohort genes (:func:`cohort_genes`).

    Returns
    -------
    The cohort (sparse float32 ``X``; sample, patient, timepoint and response columns as
    categories).
    """
    shells, mats = [], []
    genes = pd.Index(pd.unique(np.asarray(genes, dtype=str)))
    for a in samples:
        present = genes.intersection(a.var_names, sort=False)
        if len(present) < len(genes):
            log.warning("%s lacks %d cohort genes; they are dropped", a.obs["sample_id"].iloc[0],
                        len(genes) - len(present))
            keep = genes.get_indexer(present)
            mats = [m[:, keep] for m in mats]
            shells = [s[:, present] for s in shells]
            genes = present
        cut = a[:, genes]
        mats.append(sp.csr_matrix(cut.X, dtype=np.float32))
        shells.append(ad.AnnData(obs=cut.obs.copy(), var=cut.var.copy()))
        del a, cut
    cohort = ad.concat(shells, join="inner", merge="same")
    cohort.X = _stack_csr(mats, n_vars=len(genes))
    for col in ("sample_id", "patient_id", "timepoint", "response"):
        if col in cohort.obs:
            cohort.obs[col] = cohort.obs[col].astype("category")
    return cohort


def _stack_csr(mats: list, *, n_vars: int) -> sp.csr_matrix:
    """Row-stack CSR matrices into one preallocated matrix, emptying ``mats`` as it goes (a
    part's memory is returned as soon as it is copied; the target's pages are touched only as
    they are filled)."""
    nnz = sum(m.nnz for m in mats)
    n_obs = sum(m.shape[0] for m in mats)
    idx = np.int64 if max(nnz, n_vars) > np.iinfo(np.int32).max else np.int32
    data = np.empty(nnz, dtype=np.float32)
    indices = np.empty(nnz, dtype=idx)
    indptr = np.zeros(n_obs + 1, dtype=idx)
    row = pos = 0
    while mats:
        m = mats.pop(0)
        data[pos:pos + m.nnz] = m.data
        indices[pos:pos + m.nnz] = m.indices
        indptr[row + 1:row + 1 + m.shape[0]] = m.indptr[1:] + pos
        row += m.shape[0]
        pos += m.nnz
        del m
        _release_freed_memory()
    return sp.csr_matrix((data, indices, indptr), shape=(n_obs, n_vars), copy=False)


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A sample's arrays (tens of MB) come from the heap once glibc has raised its mmap threshold,
    and freeing them does not lower the process's memory: without this, copying the parts
    into the cohort matrix peaks at twice its size however early each part is freed.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
