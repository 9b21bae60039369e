"""Clones from per-cell integer copy number: clustering, consensus profiles, a clone tree and
clone fractions per sample.

- Clustering (as CopyKit does, without its UMAP step): scikit-learn's HDBSCAN on a PCA of the
  cells' log2 segment ratios, which are scale-free, so cells of one clone stay together even
  when their ploidy estimates differ. Written here: clusters whose integer consensus profiles
  differ by fewer than ``min_event_bins`` bin-copies are merged (no copy-number event tells
  them apart), and HDBSCAN's noise cells join the clone they are clearly closest to (a few
  mis-called bins), else stay ``"outlier"``. Diploid cells are ``"normal"``; cells failing QC
  ``"outlier"``.
- Tree: a minimum-event distance between consensus profiles (per chromosome, the least number
  of +/-1 copy changes of contiguous segments turning one profile into the other: half the total
  variation of their difference, zero-padded at both chromosome ends; written here, as
  MEDICC2 (the allele-specific version) needs a conda-only library), and the minimum spanning
  tree over the clones and the diploid root from ``scipy.sparse.csgraph``, rooted at the
  diploid profile. Clones are observed populations, so a clone can be another's ancestor,
  which a spanning tree shows directly and neighbour-joining (leaves only) does not.

The PCA is randomised with a seed (``random_state``): the same input and seed give the same clones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
from scipy.spatial.distance import cdist

from pinnacle.errors import InputError

from .bins import combine_samples

__all__ = ["call_clones", "clone_consensus", "clone_fractions", "clone_tree", "event_distance", "process_patient"]

NORMAL = "normal"
OUTLIER = "outlier"
UNCLUSTERED = "unclustered"
_NOT_CLONES = (NORMAL, OUTLIER, UNCLUSTERED)


def _collapse(X: np.ndarray, chrom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of neighbouring bins identical in every cell; returns (columns, run lengths)."""
    same = np.r_[False, (X[:, 1:] == X[:, :-1]).all(axis=0) & (chrom[1:] == chrom[:-1])]
    start = np.flatnonzero(~same)
    return X[:, start], np.diff(np.r_[start, X.shape[1]]).astype(np.float64)


def _consensus(X: np.ndarray) -> np.ndarray:
    return np.rint(np.median(X, axis=0))


def _features(R: np.ndarray, n_pcs: int, seed: int) -> np.ndarray:
    """PCA of the per-cell centred log2 segment ratios (scale-free, so cells whose ploidy
    estimate differs still sit together)."""
    from sklearn.decomposition import PCA

    L = np.log2(np.maximum(R, 0.05))
    L -= np.median(L, axis=1, keepdims=True)
    k = int(min(n_pcs, len(L) - 1, L.shape[1]))
    if k < 1:
        return L
    return PCA(n_components=k, svd_solver="randomized", random_state=seed).fit_transform(L)


def _cluster_group(F: np.ndarray, X: np.ndarray, chrom: np.ndarray, *, min_size: int,
                   min_event_bins: float, stray_bins: float, seed: int, n_pcs: int) -> np.ndarray:
    """Cluster ids (>= 0) or -1 (outlier) for the cells (rows): HDBSCAN on the PCA of ``F``
    (segment ratios), then clusters merged and strays placed on the integer profiles ``X``."""
    from sklearn.cluster import HDBSCAN

    Xc, w = _collapse(X.astype(np.float64), chrom)
    lab = HDBSCAN(min_cluster_size=min_size, allow_single_cluster=True).fit_predict(_features(F, n_pcs, seed))
    big = {k: np.flatnonzero(lab == k) for k in np.unique(lab[lab >= 0])}
    cons = {k: _consensus(Xc[v]) for k, v in big.items()}
    while len(cons) > 1:  # merge clusters whose consensus profiles do not differ by an event
        keys = list(cons)
        dd = cdist(np.vstack([cons[k] for k in keys]), np.vstack([cons[k] for k in keys]), "minkowski", p=1, w=w)
        np.fill_diagonal(dd, np.inf)
        i, j = np.unravel_index(np.argmin(dd), dd.shape)
        if dd[i, j] >= min_event_bins:
            break
        a, b = keys[i], keys[j]
        big[a] = np.r_[big[a], big.pop(b)]
        cons.pop(b)
        cons[a] = _consensus(Xc[big[a]])
    out = np.full(len(Xc), -1)
    for k, v in big.items():
        out[v] = k
    small = np.flatnonzero(out < 0)
    if small.size and cons:
        keys = list(cons)
        dd = cdist(Xc[small], np.vstack([cons[k] for k in keys]), "minkowski", p=1, w=w)
        near = dd.argmin(axis=1)
        d1 = dd[np.arange(len(small)), near]
        d2 = np.sort(dd, axis=1)[:, 1] if dd.shape[1] > 1 else np.full(len(small), np.inf)
        # a stray cell (a few mis-called bins) joins a clone it is clearly closest to
        ok = (d1 < min_event_bins) | ((d1 <= stray_bins) & (d1 <= 0.5 * d2))
        out[small[ok]] = np.asarray(keys)[near[ok]]
    return out


def call_clones(adata: ad.AnnData, *, layer: str = "copy_number", features_layer: str = "segment_ratio",
                groupby: str | None = "patient_id",
                diploid_key: str = "cnv_diploid", qc_key: str | None = "cnv_qc_pass",
                min_cells: int = 5, min_fraction: float = 0.01, min_event_bins: float = 10,
                stray_fraction: float = 0.05, n_pcs: int = 20, random_state: int = 0,
                key_added: str = "clone") -> ad.AnnData:
    """Clones per patient from the cells' integer copy-number profiles.

    Parameters
    ----------
    adata
        Cells x bins with integer copy number in ``layer`` (:func:`call_copy_number`), the samples
        of a patient (or of several, split by ``groupby``). Changed in place.
    layer
        Layer of the integer copy number (consensus profiles, merging, stray cells).
    features_layer
        Layer clustered: segment ratios (``call_copy_number``'s HMM segment means; for a table
        that is already segmented, e.g. CopyKit's, its ratios, ``"ratio"``).
    groupby
        obs column of the patient; clones are called per patient and named
        ``{patient}_C1, _C2, ...`` by decreasing size. All cells together when absent.
    diploid_key
        obs boolean column of diploid cells (``"normal"``, not clustered).
    qc_key
        obs boolean column of QC-passing cells; failing cells are ``"outlier"``. Ignored when absent.
    min_cells, min_fraction
        A clone has at least ``max(min_cells, min_fraction * aneuploid cells)`` cells.
    min_event_bins
        Smallest difference (bins x copies) between two clones' consensus profiles; a cell of a
        cluster too small to be a clone joins the nearest clone within this distance.
    stray_fraction
        Such a cell also joins the nearest clone when it differs from its consensus in at most
        this fraction of the bins (in bin-copies) and is at most half as far from it as from
        any other clone; otherwise it is ``"outlier"``.
    n_pcs
        Principal components of the log2 segment ratios that HDBSCAN clusters.
    random_state
        Seed of the randomised PCA.
    key_added
        obs column of the clone label (``"normal"``, ``"outlier"``, ``"unclustered"`` or a clone).
        ``uns['cnv_clones']`` holds one status line per patient; a patient with fewer aneuploid
        cells than ``min_cells`` gets status ``"too_few_cells"`` and its aneuploid cells
        ``"unclustered"``, not an error.
    """
    if layer not in adata.layers:
        raise InputError("call_clones", f"layer {layer!r} not found.", "run call_copy_number first.")
    if diploid_key not in adata.obs:
        raise InputError("call_clones", f"obs has no {diploid_key!r} column.", "run call_copy_number first.")
    if features_layer not in adata.layers:
        raise InputError("call_clones", f"layer {features_layer!r} not found.",
                         "run call_copy_number first (it writes layers['segment_ratio']), or name a ratio layer.")
    CN = np.asarray(adata.layers[layer])
    F = np.asarray(adata.layers[features_layer], dtype=np.float64)
    chrom = adata.var["chrom"].astype(str).to_numpy() if "chrom" in adata.var else np.zeros(adata.n_vars, str)
    diploid = adata.obs[diploid_key].to_numpy(dtype=bool)
    qc = adata.obs[qc_key].to_numpy(dtype=bool) if qc_key and qc_key in adata.obs else np.ones(adata.n_obs, bool)
    groups = adata.obs[groupby].astype(str).to_numpy() if groupby and groupby in adata.obs else \
        np.full(adata.n_obs, "", dtype=object)
    labels = np.full(adata.n_obs, OUTLIER, dtype=object)
    labels[qc & diploid] = NORMAL
    status = {}
    for g in pd.unique(groups):
        tum = np.flatnonzero((groups == g) & qc & ~diploid)
        prefix = f"{g}_" if g else ""
        need = max(int(min_cells), int(np.ceil(min_fraction * len(tum))))
        if len(tum) < max(int(min_cells), 1):
            labels[tum] = UNCLUSTERED
            status[g or "all"] = {"status": "too_few_cells", "n_aneuploid": len(tum), "n_clones": 0,
                                  "message": f"{len(tum)} aneuploid cell(s); clones need at least {min_cells}."}
            continue
        cl = _cluster_group(F[tum], CN[tum], chrom, min_size=need, min_event_bins=float(min_event_bins),
                            stray_bins=max(float(min_event_bins), stray_fraction * adata.n_vars),
                            seed=random_state, n_pcs=n_pcs)
        ids, counts = np.unique(cl[cl >= 0], return_counts=True)
        order = ids[np.argsort(-counts, kind="stable")]
        name = {k: f"{prefix}C{i + 1}" for i, k in enumerate(order)}
        labels[tum] = [name.get(k, OUTLIER) for k in cl]
        status[g or "all"] = {"status": "ok", "n_aneuploid": len(tum), "n_clones": len(order),
                              "n_outliers": int((cl < 0).sum()), "min_clone_cells": need}
    adata.obs[key_added] = pd.Categorical(labels)
    adata.uns["cnv_clones"] = status
    return adata


def clone_consensus(adata: ad.AnnData, *, clone_key: str = "clone", layer: str = "copy_number",
                    exclude: tuple[str, ...] = (OUTLIER, UNCLUSTERED)) -> pd.DataFrame:
    """Consensus profile of each clone (and of ``"normal"``): the median integer copy number.

    Parameters
    ----------
    adata
        One patient's cells with ``obs[clone_key]`` and integer copy number in ``layer``.
    clone_key
        obs column of the clone labels.
    layer
        Layer of the integer copy number.
    exclude
        Labels without a profile.

    Returns
    -------
    Clones x bins (int8), columns the bin names (``chrom:start-end``); ``n_cells`` per clone in
    ``attrs['n_cells']``.
    """
    if clone_key not in adata.obs or layer not in adata.layers:
        raise InputError("clone_consensus", f"needs obs[{clone_key!r}] and layers[{layer!r}].",
                         "run call_copy_number and call_clones first.")
    lab = adata.obs[clone_key].astype(str).to_numpy()
    CN = np.asarray(adata.layers[layer])
    names = [c for c in pd.unique(lab) if c not in exclude]
    names = sorted(names, key=lambda c: (c != NORMAL, c))
    rows = [_consensus(CN[lab == c]).astype(np.int8) for c in names]
    out = pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, adata.n_vars), np.int8),
                       index=pd.Index(names, name="clone"), columns=adata.var_names.copy())
    out.attrs["n_cells"] = {c: int((lab == c).sum()) for c in names}
    return out


def _chroms_of(columns) -> np.ndarray:
    pat = re.compile(r"^(.+?):\d+-\d+$")
    out = []
    for c in map(str, columns):
        m = pat.match(c)
        out.append(m.group(1) if m else "")
    return np.asarray(out, dtype=object)


def event_distance(a, b, chrom=None) -> int:
    """Least number of +/-1 copy changes of contiguous segments (within chromosomes) that turn
    profile ``a`` into ``b``: half the total variation of ``b - a`` padded with zeros.

    Parameters
    ----------
    a, b
        Integer copy-number profiles over the same bins.
    chrom
        Chromosome of each bin (segments do not cross chromosomes); None: one sequence.
    """
    d = np.asarray(b, dtype=np.int64) - np.asarray(a, dtype=np.int64)
    if chrom is None:
        chrom = np.zeros(len(d))
    chrom = np.asarray(chrom)
    tv = 0
    for c in pd.unique(chrom):
        x = d[chrom == c]
        tv += int(np.abs(np.diff(np.r_[0, x, 0])).sum())
    return tv // 2


def clone_tree(consensus: pd.DataFrame, *, chrom=None, root: str = NORMAL) -> pd.DataFrame:
    """Clone tree: minimum spanning tree of the minimum-event distances, rooted at the diploid
    profile.

    Parameters
    ----------
    consensus
        Clones x bins integer profiles (:func:`clone_consensus`); a ``root`` row is used as the
        root, otherwise a profile of 2 copies everywhere is added (then, in a male patient,
        chrX counts as one trunk event).
    chrom
        Chromosome of each column; default: parsed from ``chrom:start-end`` column names.
    root
        Name of the root row.

    Returns
    -------
    One row per clone: ``clone``, ``parent``, ``events`` (from the parent), ``events_from_root``,
    ``depth``; ``attrs['newick']`` the tree in Newick format with event counts as lengths.
    """
    if consensus.shape[0] == 0 or not (consensus.index != root).any():
        return pd.DataFrame(columns=["clone", "parent", "events", "events_from_root", "depth"])
    chrom = _chroms_of(consensus.columns) if chrom is None else np.asarray(chrom)
    prof = consensus.to_numpy(dtype=np.int64)
    names = list(map(str, consensus.index))
    if root not in names:
        prof = np.vstack([np.full(prof.shape[1], 2), prof])
        names = [root] + names
    n = len(names)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = event_distance(prof[i], prof[j], chrom)
    # csgraph reads 0 as "no edge": identical profiles get a tiny weight; ties broken by order
    W = np.triu(dist + 1e-6 + 1e-9 * np.arange(n)[None, :], 1)
    mst = minimum_spanning_tree(W)
    sym = mst + mst.T
    r = names.index(root)
    order, pred = breadth_first_order(sym, r, directed=False, return_predecessors=True)
    depth = np.zeros(n, int)
    for k in order[1:]:
        depth[k] = depth[pred[k]] + 1
    rows = [{"clone": names[k], "parent": names[pred[k]], "events": int(dist[k, pred[k]]),
             "events_from_root": int(dist[k, r]), "depth": int(depth[k])} for k in order[1:]]
    out = pd.DataFrame(rows)
    children = {i: [k for k in order[1:] if pred[k] == i] for i in range(n)}

    def newick(i):
        sub = ",".join(f"{newick(k)}:{int(dist[k, i])}" for k in children[i])
        return f"({sub}){names[i]}" if sub else names[i]

    out.attrs["newick"] = newick(r) + ";"
    return out


def clone_fractions(obs: pd.DataFrame, *, sample_key: str = "sample_id", clone_key: str = "clone",
                    exclude: tuple[str, ...] = _NOT_CLONES) -> pd.DataFrame:
    """Cells of each clone per sample, as counts and fractions.

    Parameters
    ----------
    obs
        Cell table with ``sample_key`` and ``clone_key`` columns (``adata.obs``).
    sample_key, clone_key
        Column names.
    exclude
        Labels that are not tumour clones (``fraction_of_tumour`` is NaN for them).

    Returns
    -------
    Long table: sample, clone, ``n_cells``, ``fraction`` (of the sample's cells),
    ``fraction_of_tumour`` (of the sample's cells in clones).
    """
    for c in (sample_key, clone_key):
        if c not in obs:
            raise InputError("clone_fractions", f"obs has no {c!r} column.", "run call_clones first.")
    tab = obs.groupby([obs[sample_key].astype(str), obs[clone_key].astype(str)], observed=True).size()
    tab = tab.rename("n_cells").reset_index()
    tab.columns = [sample_key, clone_key, "n_cells"]
    tot = tab.groupby(sample_key)["n_cells"].transform("sum")
    tumour = tab[clone_key].isin(exclude)
    tum_tot = tab["n_cells"].where(~tumour, 0).groupby(tab[sample_key]).transform("sum")
    tab["fraction"] = tab["n_cells"] / tot
    share = tab["n_cells"] / tum_tot.where(tum_tot > 0, 1)
    tab["fraction_of_tumour"] = np.where(~tumour & (tum_tot > 0), share, np.nan)
    return tab.sort_values([sample_key, clone_key]).reset_index(drop=True)


def process_patient(samples: Mapping[str, ad.AnnData] | Sequence[ad.AnnData], *, clone_options: dict | None = None,
                    random_state: int = 0) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """One patient's scDNA samples from copy number to clones (the per-patient rule's work).

    Parameters
    ----------
    samples
        The patient's samples as :func:`pinnacle.cnv.process_sample` returns them (obs
        ``sample_id`` and ``patient_id``), on the same bins.
    clone_options
        Keyword options of :func:`call_clones` (``min_cells``, ``min_fraction``, ...).
    random_state
        Seed of the clustering.

    Returns
    -------
    The joined cells with ``obs['clone']``, the consensus profiles (clones x bins), the clone
    tree, the clone fractions per sample, and the clone-calling status of the patient.
    """
    adata = combine_samples(samples)
    call_clones(adata, random_state=random_state, **(clone_options or {}))
    consensus = clone_consensus(adata)
    tree = clone_tree(consensus, chrom=adata.var["chrom"].astype(str).to_numpy())
    fractions = clone_fractions(adata.obs)
    status = next(iter(adata.uns["cnv_clones"].values()), {"status": "no cells"})
    return adata, consensus, tree, fractions, status
