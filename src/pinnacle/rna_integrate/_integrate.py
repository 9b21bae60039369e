"""Integration (scVI, Harmony), neighbours, UMAP and Leiden, and the integration metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from pinnacle import progress

log = logging.getLogger(__name__)

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
                enable_progress_bar=False, early_stopping=False,
                callbacks=[progress.epoch_logger("scVI", epochs, logger=log)])
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
    log.info("neighbours on %s (%d cells)", use_rep, adata.n_obs)
    sc.pp.neighbors(adata, use_rep=use_rep, n_neighbors=n_neighbors, random_state=random_state)
    log.info("UMAP")
    sc.tl.umap(adata, random_state=random_state)
    for res in resolutions:
        log.info("Leiden at resolution %s", res)
        sc.tl.leiden(adata, resolution=float(res), key_added=f"leiden_{res}", flavor="igraph",
                     n_iterations=2, directed=False, random_state=random_state)
    return adata


EMBEDDING_KEYS = {"none": "X_pca", "scvi": "X_scVI", "harmony": "X_harmony"}


def integrate(adata: ad.AnnData, *, method: str, compare: Sequence[str] = (), batch_key: str,
              scvi_options: dict | None = None, resolutions=(0.5, 1.0), n_neighbors: int = 15,
              random_state: int = 0, n_threads: int | None = None, unintegrated_cells: int = 0):
    """Run the chosen method and those to compare, then neighbours, UMAP and Leiden on the
    chosen embedding; the unintegrated PCA's UMAP (of a subsample at scale) is kept in
    ``obsm['X_umap_pca']`` for the before/after figure. Returns ``(adata, scvi_model or None)``.

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
    unintegrated_cells
        Cells in the unintegrated UMAP (:func:`unintegrated_umap`; 0: all).
    """
    methods = [method] + [m for m in compare if m != method]
    model = None
    for m in methods:
        if m == "scvi":
            adata, model = run_scvi(adata, batch_key=batch_key, random_state=random_state, n_threads=n_threads,
                                    **(scvi_options or {}))
        elif m == "harmony":
            log.info("Harmony on %d cells", adata.n_obs)
            run_harmony(adata, batch_key=batch_key, random_state=random_state)
    log.info("unintegrated UMAP for the before/after figure")
    adata.obsm["X_umap_pca"] = unintegrated_umap(adata, batch_key=batch_key, max_cells=unintegrated_cells,
                                                 n_neighbors=n_neighbors, random_state=random_state)
    cluster(adata, use_rep=EMBEDDING_KEYS[method], resolutions=resolutions, n_neighbors=n_neighbors,
            random_state=random_state)
    adata.uns["integration"] = {"method": method, "batch_key": batch_key, "embedding": EMBEDDING_KEYS[method],
                                "compared": methods}
    return adata, model


def stratified_subsample(groups, n: int, *, random_state: int = 0) -> np.ndarray:
    """Sorted positions of about ``n`` cells drawn from each group in proportion to its size
    (at least one per group), so a subsample keeps every batch; all cells when ``n`` is 0 or at
    least their number.

    Parameters
    ----------
    groups
        One group label per cell (e.g. the batch).
    n
        Cells wanted.
    random_state
        Seed of the draw.
    """
    groups = pd.Series(np.asarray(groups)).astype(str)
    if n <= 0 or n >= len(groups):
        return np.arange(len(groups))
    rng = np.random.default_rng(random_state)
    frac = n / len(groups)
    picked = [rng.choice(pos, size=max(1, round(frac * len(pos))), replace=False)
              for _, pos in sorted(groups.groupby(groups).indices.items())]
    return np.sort(np.concatenate(picked))


def unintegrated_umap(adata: ad.AnnData, *, batch_key: str, max_cells: int = 0, n_neighbors: int = 15,
                      random_state: int = 0) -> np.ndarray:
    """The UMAP of the unintegrated PCA, shown only in the before/after figure: on a subsample
    stratified by batch when the cohort has more than ``max_cells`` cells (at a million cells a
    second full neighbour graph and UMAP would cost as much as the integration), NaN for the
    cells left out.

    Parameters
    ----------
    adata
        The cohort with ``obsm['X_pca']``; not modified.
    batch_key
        obs column the subsample is stratified by.
    max_cells
        Cells embedded at most (0: all).
    n_neighbors, random_state
        As :func:`cluster`.
    """
    rows = stratified_subsample(adata.obs[batch_key], max_cells, random_state=random_state)
    light = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[rows]),
                       obsm={"X_pca": np.asarray(adata.obsm["X_pca"])[rows]})
    cluster(light, use_rep="X_pca", resolutions=(), n_neighbors=n_neighbors, random_state=random_state)
    out = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    out[rows] = light.obsm["X_umap"]
    return out


def integration_metrics(adata: ad.AnnData, *, embeddings: dict[str, str], batch_key: str,
                        label_key: str, n_neighbors: int = 30) -> pd.DataFrame:
    """Batch mixing and biological conservation per embedding (scib-metrics).

    Batch: iLISI (scaled 0-1, higher = better mixed), batch silhouette, graph connectivity.
    Bio: cLISI, label silhouette, ARI/NMI of k-means clusters vs labels. Each embedding is
    scored on the same cells, so rows compare directly (unintegrated PCA is the baseline).
    The kNN graph is exact (scikit-learn, brute force) rather than scib-metrics' pynndescent:
    on the subsample the metrics run on (``integration.metrics_cells``) it takes seconds,
    where pynndescent's numba compilation alone took ~40 s per run. The silhouettes are
    quadratic in cells, which is what bounds the subsample.

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

    Returns
    -------
    One row per embedding: the seven metrics, ``batch_score`` and ``bio_score`` (their means).
    """
    import jax

    jax.config.update("jax_enable_x64", False)  # pertpy (if imported) turns it on; LISI needs 32-bit
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    batches = adata.obs[batch_key].astype(str).to_numpy()
    labels = adata.obs[label_key].astype(str).to_numpy()
    rows = []
    for name, key in embeddings.items():
        X = np.asarray(adata.obsm[key], dtype=np.float32)
        # each cell is its own first neighbour, as in pynndescent's graph that scib-metrics expects
        dist, idx = NearestNeighbors(n_neighbors=min(n_neighbors, len(X)), algorithm="brute").fit(X).kneighbors(X)
        nn = NeighborsResults(indices=idx, distances=dist)
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
