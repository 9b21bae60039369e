"""The scRNA-seq cohort: per-sample files joined into one AnnData.

At trial scale (~106 samples, up to 1M cells) the full-gene cohort does not fit in memory, so
the join is done on disk with ``anndata.experimental.concat_on_disk``, which streams the sparse
matrices. This function therefore takes paths, the one exception to the AnnData-in/AnnData-out
rule of the library.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
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
        HVGs asked of scanpy (only the statistics are kept).
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


def normalise(adata: ad.AnnData, *, target_sum: float = 1e4) -> ad.AnnData:
    """Counts to ``layers['counts']``; ``X`` = log1p of counts per ``target_sum`` (float32, sparse).

    Parameters
    ----------
    adata
        Raw counts in ``X`` (or already in ``layers['counts']``, which is then kept); in place.
    target_sum
        Counts per cell after scaling.
    """
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    adata.X = adata.layers["counts"].astype(np.float32, copy=True)
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
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


def scvi_max_epochs(n_cells: int, *, cap: int = 400, batch_size: int = 1024, min_steps: int = 0) -> int:
    """scvi-tools' own heuristic (min(round(20,000 / n_cells x 400), 400)), capped by ``cap``,
    but never fewer epochs than ``min_steps`` gradient steps need: a small cohort trained for
    the cap alone sees too few minibatches to learn the batch effect.

    Parameters
    ----------
    n_cells
        Cells in the training data.
    cap
        Largest number of epochs.
    batch_size
        Minibatch size (steps per epoch = cells / batch size).
    min_steps
        Fewest gradient steps to train for.
    """
    epochs = min(round(20000 / max(n_cells, 1) * 400), 400, cap)
    steps_per_epoch = max(1, -(-n_cells // batch_size))
    floor = -(-min_steps // steps_per_epoch)
    return int(max(1, epochs, min(floor, 400)))


def run_scvi(adata: ad.AnnData, *, batch_key: str, layer: str = "counts", n_latent: int = 30,
             n_layers: int = 2, max_epochs: int | None = None, epoch_cap: int = 400,
             accelerator: str = "auto", batch_size: int = 1024, min_steps: int = 500,
             random_state: int = 0, n_threads: int | None = None, key_added: str = "X_scVI"):
    """scVI on the HVG counts; GPU when one is visible (``accelerator='auto'``), CPU otherwise.

    Returns ``(adata, model)``; the latent is ``obsm[key_added]`` and
    ``uns['scvi']`` records epochs, device and the final training loss.

    Parameters
    ----------
    adata
        The cohort; ``var['highly_variable']`` selects the genes, ``layers[layer]`` holds counts.
    batch_key
        obs column of the batch (sample).
    layer
        Layer with raw counts.
    n_latent
        Latent dimensions.
    n_layers
        Hidden layers of the encoder and decoder.
    max_epochs
        Fixed epochs; default :func:`scvi_max_epochs`.
    epoch_cap
        ``cap`` of :func:`scvi_max_epochs`.
    accelerator
        Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``).
    batch_size
        Minibatch size.
    min_steps
        ``min_steps`` of :func:`scvi_max_epochs`.
    random_state
        scvi-tools seed.
    n_threads
        CPU threads for torch (default: torch's choice).
    key_added
        obsm key of the latent.
    """
    import scvi
    import torch

    scvi.settings.seed = random_state
    if n_threads:
        torch.set_num_threads(int(n_threads))
    sub = adata[:, adata.var["highly_variable"]].copy() if "highly_variable" in adata.var else adata.copy()
    scvi.model.SCVI.setup_anndata(sub, layer=layer, batch_key=batch_key)
    model = scvi.model.SCVI(sub, n_latent=n_latent, n_layers=n_layers)
    epochs = (int(max_epochs) if max_epochs else
              scvi_max_epochs(sub.n_obs, cap=epoch_cap, batch_size=batch_size, min_steps=min_steps))
    model.train(max_epochs=epochs, accelerator=accelerator, batch_size=batch_size,
                enable_progress_bar=False, early_stopping=False)
    adata.obsm[key_added] = model.get_latent_representation().astype(np.float32)
    history = model.history.get("elbo_train")
    adata.uns["scvi"] = {
        "max_epochs": epochs, "batch_key": batch_key, "n_latent": n_latent,
        "device": str(model.device), "cuda_available": bool(torch.cuda.is_available()),
        "final_elbo_train": float(history.iloc[-1, 0]) if history is not None else float("nan"),
    }
    return adata, model


def run_harmony(adata: ad.AnnData, *, batch_key: str, basis: str = "X_pca", random_state: int = 0,
                key_added: str = "X_harmony", max_iter: int = 20) -> ad.AnnData:
    """Harmony (harmonypy) on the PCA: the CPU alternative to scVI.

    Parameters
    ----------
    adata
        The cohort with ``obsm[basis]``; the corrected embedding is added in place.
    batch_key
        obs column of the batch.
    basis
        obsm key of the embedding to correct.
    random_state
        Seed for harmonypy.
    key_added
        obsm key of the corrected embedding.
    max_iter
        Harmony iterations.
    """
    import harmonypy

    ho = harmonypy.run_harmony(adata.obsm[basis], adata.obs, [batch_key], random_state=random_state,
                               max_iter_harmony=max_iter, verbose=False)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != adata.n_obs:  # harmonypy < 0.2 returns PCs x cells
        z = z.T
    adata.obsm[key_added] = z.astype(np.float32)
    return adata


def cluster(adata: ad.AnnData, *, use_rep: str, resolutions=(0.5, 1.0), n_neighbors: int = 15,
            random_state: int = 0) -> ad.AnnData:
    """Neighbours on the chosen embedding, UMAP, Leiden at each resolution (``leiden_{res}``).

    Parameters
    ----------
    adata
        The cohort; neighbours, ``obsm['X_umap']`` and the Leiden columns are added in place.
    use_rep
        obsm key to build the neighbour graph on.
    resolutions
        Leiden resolutions; empty for UMAP only.
    n_neighbors
        Neighbours per cell.
    random_state
        Seed for neighbours, UMAP and Leiden.
    """
    sc.pp.neighbors(adata, use_rep=use_rep, n_neighbors=n_neighbors, random_state=random_state)
    sc.tl.umap(adata, random_state=random_state)
    for res in resolutions:
        sc.tl.leiden(adata, resolution=float(res), key_added=f"leiden_{res}", flavor="igraph",
                     n_iterations=2, directed=False, random_state=random_state)
    return adata


EMBEDDING_KEYS = {"none": "X_pca", "scvi": "X_scVI", "harmony": "X_harmony"}


def integrate(adata: ad.AnnData, *, method: str, compare: Sequence[str] = (), batch_key: str,
              scvi_options: dict | None = None, resolutions=(0.5, 1.0), n_neighbors: int = 15,
              random_state: int = 0, n_threads: int | None = None):
    """Run the chosen method and those to compare, then neighbours, UMAP and Leiden on the
    chosen embedding; the unintegrated PCA's UMAP is kept in ``obsm['X_umap_pca']`` for the
    before/after figure. Returns ``(adata, scvi_model or None)``.

    Parameters
    ----------
    adata
        The normalised cohort with ``obsm['X_pca']``.
    method
        ``"scvi"``, ``"harmony"`` or ``"none"`` (PCA): the embedding clustered downstream.
    compare
        Further methods run only for the metrics and figures.
    batch_key
        obs column of the batch.
    scvi_options
        Keyword options for :func:`run_scvi`.
    resolutions
        Leiden resolutions on the chosen embedding.
    n_neighbors
        Neighbours per cell.
    random_state
        Seed for every step.
    n_threads
        CPU threads for torch.
    """
    methods = [method] + [m for m in compare if m != method]
    model = None
    for m in methods:
        if m == "scvi":
            adata, model = run_scvi(adata, batch_key=batch_key, random_state=random_state, n_threads=n_threads,
                                    **(scvi_options or {}))
        elif m == "harmony":
            run_harmony(adata, batch_key=batch_key, random_state=random_state)
    cluster(adata, use_rep="X_pca", resolutions=(), n_neighbors=n_neighbors, random_state=random_state)
    adata.obsm["X_umap_pca"] = adata.obsm["X_umap"].copy()
    cluster(adata, use_rep=EMBEDDING_KEYS[method], resolutions=resolutions, n_neighbors=n_neighbors,
            random_state=random_state)
    adata.uns["integration"] = {"method": method, "batch_key": batch_key, "embedding": EMBEDDING_KEYS[method],
                                "compared": methods}
    return adata, model


def integration_metrics(adata: ad.AnnData, *, embeddings: dict[str, str], batch_key: str,
                        label_key: str, n_neighbors: int = 30, random_state: int = 0) -> pd.DataFrame:
    """Batch mixing and biological conservation per embedding (scib-metrics).

    Batch: iLISI (scaled 0-1, higher = better mixed), batch silhouette, graph connectivity.
    Bio: cLISI, label silhouette, ARI/NMI of k-means clusters vs labels. Each embedding is
    scored on the same cells, so rows compare directly (unintegrated PCA is the baseline).

    Parameters
    ----------
    adata
        The cohort with the embeddings in ``obsm``.
    embeddings
        ``{name: obsm key}``; one row each.
    batch_key
        obs column of the batch.
    label_key
        obs column of the cell labels.
    n_neighbors
        Neighbours for the kNN-based metrics.
    random_state
        Seed for the neighbour search.

    Returns
    -------
    One row per embedding: the seven metrics, ``batch_score`` and ``bio_score`` (their means).
    """
    import jax

    jax.config.update("jax_enable_x64", False)  # pertpy (if imported) turns it on; LISI needs 32-bit
    import scib_metrics
    from scib_metrics.nearest_neighbors import pynndescent

    batches = adata.obs[batch_key].astype(str).to_numpy()
    labels = adata.obs[label_key].astype(str).to_numpy()
    rows = []
    for name, key in embeddings.items():
        X = np.asarray(adata.obsm[key], dtype=np.float32)
        nn = pynndescent(X, n_neighbors=n_neighbors, random_state=random_state, n_jobs=1)
        nmi_ari = scib_metrics.nmi_ari_cluster_labels_kmeans(X, labels)
        rows.append({
            "embedding": name,
            "ilisi": float(scib_metrics.ilisi_knn(nn, batches)),
            "silhouette_batch": float(scib_metrics.silhouette_batch(X, labels, batches)),
            "graph_connectivity": float(scib_metrics.graph_connectivity(nn, labels)),
            "clisi": float(scib_metrics.clisi_knn(nn, labels)),
            "silhouette_label": float(scib_metrics.silhouette_label(X, labels)),
            "ari": float(nmi_ari["ari"]), "nmi": float(nmi_ari["nmi"]),
        })
    df = pd.DataFrame(rows)
    df["batch_score"] = df[["ilisi", "silhouette_batch", "graph_connectivity"]].mean(axis=1)
    df["bio_score"] = df[["clisi", "silhouette_label", "ari", "nmi"]].mean(axis=1)
    return df


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
    gene matrix is ever in memory. Genes a sample lacks are dropped from the cohort (logged).

    Parameters
    ----------
    samples
        Labelled per-sample AnnData objects (``obs['sample_id']``).
    genes
        The cohort genes (:func:`cohort_genes`).

    Returns
    -------
    The cohort (float32 ``X``; sample, patient, timepoint and response columns as categories).
    """
    parts = []
    genes = pd.Index(pd.unique(np.asarray(genes, dtype=str)))
    for a in samples:
        present = genes.intersection(a.var_names, sort=False)
        if len(present) < len(genes):
            log.warning("%s lacks %d cohort genes; they are dropped", a.obs["sample_id"].iloc[0],
                        len(genes) - len(present))
            genes = present
            parts = [p[:, genes].copy() for p in parts]
        parts.append(a[:, genes].copy())
    cohort = ad.concat(parts, join="inner", merge="same")
    cohort.X = cohort.X.astype(np.float32)
    for col in ("sample_id", "patient_id", "timepoint", "response"):
        if col in cohort.obs:
            cohort.obs[col] = cohort.obs[col].astype("category")
    return cohort


def plot_embeddings(adata: ad.AnnData, *, bases: dict[str, str], colors: Sequence[str]):
    """One row per embedding's UMAP, one column per obs key: before/after integration at a glance.

    Parameters
    ----------
    adata
        The cohort with the embeddings in ``obsm``.
    bases
        ``{row title: obsm key}``.
    colors
        obs columns, one column of panels each.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(bases), len(colors), figsize=(4.2 * len(colors), 4 * len(bases)),
                             squeeze=False, constrained_layout=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(adata.n_obs)
    for r, (title, key) in enumerate(bases.items()):
        xy = adata.obsm[key][order]
        for c, color in enumerate(colors):
            ax = axes[r, c]
            values = adata.obs[color].astype("category").iloc[order]
            cats = values.cat.categories
            cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
            codes = values.cat.codes.to_numpy()
            ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(i % cmap.N) for i in codes], s=1.5, linewidths=0,
                       rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}: {color}", fontsize=9)
            if len(cats) <= 20:
                for i, cat in enumerate(cats):
                    ax.scatter([], [], c=[cmap(i % cmap.N)], s=12, label=str(cat))
                ax.legend(fontsize=6, markerscale=1, loc="upper right", frameon=False, ncol=1 + len(cats) // 12)
    return fig


def plot_integration_metrics(table: pd.DataFrame):
    """Batch-mixing score against biological-conservation score, one point per embedding.

    Parameters
    ----------
    table
        :func:`integration_metrics` output.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax = axes[0]
    ax.scatter(table["batch_score"], table["bio_score"], s=60)
    for _, r in table.iterrows():
        ax.annotate(r["embedding"], (r["batch_score"], r["bio_score"]), xytext=(5, 5), textcoords="offset points")
    ax.set_xlabel("batch mixing (mean of iLISI, batch silhouette, graph connectivity)")
    ax.set_ylabel("bio conservation (cLISI, label silhouette, ARI, NMI)")
    ax.set_title("Integration: up and right is better")
    metrics = ["ilisi", "silhouette_batch", "graph_connectivity", "clisi", "silhouette_label", "ari", "nmi"]
    ax = axes[1]
    width = 0.8 / len(table)
    x = np.arange(len(metrics))
    for i, (_, r) in enumerate(table.iterrows()):
        ax.bar(x + i * width, [r[m] for m in metrics], width=width, label=r["embedding"])
    ax.set_xticks(x + 0.4 - width / 2, metrics, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Each metric (0-1, higher is better)")
    return fig
