"""The link between the assays: scRNA malignant cells assigned to the patient's scDNA clones, clone
fractions from both assays, and clone-level expression.

Why: the scDNA clones carry the copy number, the scRNA cells the expression; a cell's expression
of a gene scales with the gene's copy number in its clone (clonealign, Campbell et al. 2019), so
the genes in regions where the clones' consensus profiles differ tell which clone a cell is from.

The model (written here): counts ``y[n, g]`` of cell ``n`` over the informative genes are negative
binomial with mean ``lib[n] * b[g] * k[c, g] / D[c]``, where ``lib`` is the cell's counts over the
genes that lie in a bin (no chrM), ``b`` the gene's diploid baseline, ``k = CN / 2`` the clone's
copy number over the gene's bin and ``D[c]`` the clone's library scale (``k`` averaged over those
genes, weighted by their expression). A gene is informative where two clones' relative copy numbers
``k / D`` differ by at least 15% (a whole-genome doubling alone is no contrast expression can see).
The baselines are not known for tumour genes (no cell of known copy number expresses them), so, as
clonealign does, they are estimated jointly with the assignments: EM over the clone
responsibilities, the baselines (closed-form update), per-gene dispersions (moments) and a fitted
clone prior, started from the scDNA clone sizes (or a uniform prior).

Free baselines let a wrong model fit too: a clone mixture fitted to cells without the predicted
copy-number contrast (cells of one clone, a shuffled or another patient's consensus) splits them
by their noise or puts them all in one clone, with confident-looking posteriors. A check guards
against it: the informative genes are split into two interleaved halves (every differing segment
is in both) and each half picks each cell's clone by its likelihood alone; the halves must agree
beyond chance (Cohen's kappa >= ``min_agreement`` and 3 standard errors above chance agreement),
else every cell of the patient is ``"unassigned"`` with status ``"inconsistent"``. Clones with
identical profiles, a single clone, or too few informative genes are statuses too, never a crash.

Why written here: clonealign (the method) is R on TensorFlow and no longer maintained; no Python
library assigns cells to copy-number clones. From libraries: ``scipy.special.logsumexp`` (posteriors)
and scipy.sparse (counts, pseudobulk sums). Nothing is random: the same input gives the same output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import logsumexp

from pinnacle.errors import InputError

from .clones import _NOT_CLONES, NORMAL, clone_fractions

__all__ = ["UNASSIGNED", "assign_clones", "clone_fractions_from_rna", "clone_pseudobulk", "genes_to_bins"]

#: label of a malignant cell that no clone explains clearly
UNASSIGNED = "unassigned"
_BIN = re.compile(r"^(.+?):(\d+)-(\d+)$")
#: the halves' agreement must also beat chance by this many standard errors
_MIN_Z = 3.0
#: a gene is informative where two clones' relative copy numbers differ at least this much (6 vs 5 copies)
_MIN_RATIO = 1.15


# ---------------------------------------------------------------------------------------------
# genes -> bins
# ---------------------------------------------------------------------------------------------
def _chrom_key(values) -> np.ndarray:
    """Chromosome names comparable across tables: ``chr1`` and ``1`` are the same."""
    return np.asarray([str(v).removeprefix("chr").removeprefix("Chr").upper() for v in values], dtype=object)


def _bin_table(bins, where: str) -> pd.DataFrame:
    """chrom / start / end per bin, indexed by bin name, from a table with those columns or from
    ``chrom:start-end`` names (a consensus's columns, a list)."""
    if isinstance(bins, pd.DataFrame) and {"chrom", "start", "end"} <= set(bins.columns):
        t = bins[["chrom", "start", "end"]].copy()
        t.index = bins.index.astype(str)
        return t
    names = list(map(str, bins.columns if isinstance(bins, pd.DataFrame) else bins))
    rows = [_BIN.match(n) for n in names]
    bad = [n for n, m in zip(names, rows) if m is None]
    if bad:
        raise InputError(where, f"{len(bad)} bin name(s) are not chrom:start-end, e.g. {bad[0]!r}.",
                         "give the bins as a table with chrom, start and end columns (the scDNA AnnData's var).")
    return pd.DataFrame({"chrom": [m.group(1) for m in rows], "start": [int(m.group(2)) for m in rows],
                         "end": [int(m.group(3)) for m in rows]}, index=pd.Index(names))


def genes_to_bins(genes: pd.DataFrame, bins, *, max_distance: int = 0) -> pd.Series:
    """The copy-number bin of each gene: the bin containing the gene's midpoint.

    Parameters
    ----------
    genes
        Gene positions: ``gene_symbol`` (else the index), ``chrom``, ``start``, ``end``
        (``resources/genes_grch38.tsv``). A symbol listed twice keeps its first row.
    bins
        Bins as a table with ``chrom``, ``start``, ``end`` (index: bin names; the scDNA AnnData's
        ``var``), or bin names ``chrom:start-end`` (a :func:`clone_consensus`'s columns). ``chr1``
        and ``1`` name the same chromosome.
    max_distance
        A gene whose midpoint lies in no bin (a bin filtered out) takes the nearest bin of its
        chromosome within this many bases; 0: only the containing bin.

    Returns
    -------
    Bin name per gene symbol (NaN: no bin), named ``"bin"``.
    """
    where = "genes_to_bins"
    need = {"chrom", "start", "end"} - set(genes.columns)
    if need:
        raise InputError(where, f"the gene table has no {', '.join(sorted(need))} column(s).",
                         "give gene positions with chrom, start and end (resources/genes_grch38.tsv).")
    g = genes.dropna(subset=["chrom", "start", "end"]).copy()
    g.index = (g["gene_symbol"] if "gene_symbol" in g else g.index.to_series()).astype(str).to_numpy()
    g = g[~g.index.duplicated()]
    b = _bin_table(bins, where)
    gchrom, bchrom = _chrom_key(g["chrom"]), _chrom_key(b["chrom"])
    mid = ((g["start"].to_numpy(np.int64) + g["end"].to_numpy(np.int64)) // 2)
    out = np.full(len(g), np.nan, dtype=object)
    names = b.index.to_numpy()
    for c in pd.unique(bchrom):
        on = np.flatnonzero(bchrom == c)
        on = on[np.argsort(b["start"].to_numpy()[on], kind="stable")]
        bs, be = b["start"].to_numpy(np.int64)[on], b["end"].to_numpy(np.int64)[on]
        gi = np.flatnonzero(gchrom == c)
        if not gi.size:
            continue
        m = mid[gi]
        j = np.clip(np.searchsorted(bs, m, side="right") - 1, 0, len(on) - 1)
        inside = (m >= bs[j]) & (m < be[j])
        dist = np.where(inside, 0, np.minimum(np.abs(m - bs[j]), np.abs(m - be[j] + 1)))
        nxt = np.minimum(j + 1, len(on) - 1)  # the next bin may be nearer (midpoint in a gap)
        d2 = np.abs(bs[nxt] - m)
        use_next = ~inside & (d2 < dist)
        j = np.where(use_next, nxt, j)
        dist = np.where(use_next, d2, dist)
        ok = dist <= max_distance
        out[gi[ok]] = names[on[j[ok]]]
    return pd.Series(out, index=pd.Index(g.index, name="gene_symbol"), name="bin")


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def _chunk(n_genes: int) -> int:
    return max(64, (1 << 22) // max(n_genes, 1))  # cells per dense block: ~4 M values


def _loglik(Y: sp.csr_matrix, lib: np.ndarray, b: np.ndarray, Q: np.ndarray, phi: np.ndarray,
            half: np.ndarray) -> np.ndarray:
    """Negative binomial log-likelihood (its clone-dependent part) per half x cell x clone;
    ``Q[c, g] = k[c, g] / D[c]``, the clone's relative copy number of the gene."""
    r = 1.0 / phi
    logq = np.log(Q)
    out = np.zeros((2, Y.shape[0], Q.shape[0]))
    step = _chunk(Y.shape[1])
    for h in (0, 1):
        on = half == h
        out[h] = Y[:, on] @ logq[:, on].T  # sum_g y log mu: only log q varies with the clone
        for s in range(0, Y.shape[0], step):
            Yd = Y[s:s + step][:, on].toarray()
            yr = Yd + r[None, on]
            for c in range(Q.shape[0]):
                mu = lib[s:s + step, None] * (b[on] * Q[c, on])[None, :]
                out[h, s:s + step, c] -= (yr * np.log1p(mu / r[None, on])).sum(axis=1)
    return out


def _m_step(Y: sp.csr_matrix, lib: np.ndarray, R: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baselines (Poisson score equation: observed = expected counts per gene) and dispersions
    (moments of the residuals around the responsibility-weighted means)."""
    expo = (lib[:, None] * R).sum(axis=0) @ Q  # sum_n lib_n sum_c R_nc q_cg
    b = np.asarray(Y.sum(axis=0)).ravel() / np.maximum(expo, 1e-12)
    num = np.zeros(Y.shape[1])
    den = np.zeros(Y.shape[1])
    step = _chunk(Y.shape[1])
    for s in range(0, Y.shape[0], step):
        mu = lib[s:s + step, None] * (R[s:s + step] @ Q) * b[None, :]
        Yd = Y[s:s + step].toarray()
        num += ((Yd - mu) ** 2 - mu).sum(axis=0)
        den += (mu ** 2).sum(axis=0)
    phi = np.clip(num / np.maximum(den, 1e-12), 1e-3, 20.0)
    return b, phi


def _posterior(L: np.ndarray, log_pi: np.ndarray) -> np.ndarray:
    lp = L + log_pi[None, :]
    return np.exp(lp - logsumexp(lp, axis=1, keepdims=True))


def _kappa(a: np.ndarray, b: np.ndarray, n: int) -> tuple[float, float]:
    """Cohen's kappa of two labelings and the z-score of their agreement against chance
    (independent labelings with these margins); both 0 when one label takes every cell."""
    if not len(a):
        return 0.0, 0.0
    po = float(np.mean(a == b))
    pe = float((np.bincount(a, minlength=n) / len(a)) @ (np.bincount(b, minlength=n) / len(b)))
    if pe >= 1 - 1e-9:
        return 0.0, 0.0
    return (po - pe) / (1 - pe), float((po - pe) / np.sqrt(pe * (1 - pe) / len(a)))


def _fit(Y: sp.csr_matrix, lib: np.ndarray, Q: np.ndarray, half: np.ndarray, pi0: np.ndarray, *,
         fit_prior: bool, max_iter: int, tol: float) -> dict:
    """EM over responsibilities, baselines, dispersions and (optionally) the clone prior."""
    pi = pi0 / pi0.sum()
    R = np.tile(pi, (Y.shape[0], 1))  # start: every cell the DNA's mixture
    b, phi = _m_step(Y, lib, R, Q)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter reported)
        L = _loglik(Y, lib, b, Q, phi, half)
        new = _posterior(L.sum(axis=0), np.log(pi))
        delta = float(np.abs(new - R).max())
        R = new
        if fit_prior:
            pi = np.maximum(R.mean(axis=0), 1e-3)
            pi /= pi.sum()
        b, phi = _m_step(Y, lib, R, Q)
        if delta < tol:
            break
    L = _loglik(Y, lib, b, Q, phi, half)
    return {"L": L, "pi": pi, "b": b, "phi": phi, "n_iter": n_iter}


# ---------------------------------------------------------------------------------------------
# assign_clones
# ---------------------------------------------------------------------------------------------
def _counts(adata: ad.AnnData, layer: str | None, where: str) -> sp.csr_matrix:
    if layer is not None and layer not in adata.layers:
        raise InputError(where, f"layer {layer!r} not found (layers: {list(adata.layers)}).",
                         "name the layer of raw counts, or pass layer=None to use X.")
    X = adata.X if layer is None else adata.layers[layer]
    X = sp.csr_matrix(X, dtype=np.float64)
    if X.nnz and (X.data.min() < 0 or not np.allclose(X.data, np.rint(X.data))):
        raise InputError(where, "the counts are not non-negative integers (normalised or log values?).",
                         "give raw UMI counts (layer='counts').")
    return X


def _profiles(consensus: pd.DataFrame, exclude: Sequence[str], where: str) -> pd.DataFrame:
    if not isinstance(consensus, pd.DataFrame):
        raise InputError(where, f"the consensus is a {type(consensus).__name__}, not a clones x bins table.",
                         "pass clone_consensus(...)'s DataFrame (or a dict of them by patient).")
    prof = consensus.loc[[c for c in consensus.index.astype(str) if c not in set(exclude)]]
    prof.index = prof.index.astype(str)
    return prof


def _group_prior(consensus: pd.DataFrame, clones: list[str]) -> np.ndarray:
    n = consensus.attrs.get("n_cells", {}) if hasattr(consensus, "attrs") else {}
    pi = np.asarray([float(n.get(c, 0)) for c in clones])
    return pi + 1.0 if pi.sum() > 0 else np.ones(len(clones))


def _assign_group(X: sp.csr_matrix, gene_bin: pd.Series, var_names: pd.Index, consensus: pd.DataFrame, *,
                  exclude, min_genes: int, min_mean: float, min_cells: int, min_agreement: float, prior: str,
                  max_iter: int, tol: float) -> dict:
    """One patient: per-cell posteriors over its clones and a status line."""
    n = X.shape[0]
    prof = _profiles(consensus, exclude, "assign_clones")
    clones = list(prof.index)
    res = {"clones": clones, "post": np.full((n, len(clones)), np.nan), "n_genes": np.zeros(n, int),
           "status": {"n_cells": n, "n_clones": len(clones)}, "post_ok": False}
    st = res["status"]
    if len(clones) < 2:
        st.update(status="too_few_clones", message=f"{len(clones)} clone(s) in the consensus: nothing to tell apart.")
        return res
    col = {b: i for i, b in enumerate(map(str, prof.columns))}
    bi = np.asarray([col.get(b, -1) if isinstance(b, str) else -1 for b in gene_bin.reindex(var_names)])
    mapped = np.flatnonzero(bi >= 0)
    if not mapped.size:
        raise InputError("assign_clones", "no gene of the matrix lies in a bin of the consensus.",
                         "check that the gene table and the scDNA bins use the same genome build and "
                         "chromosome names, and that the matrix's genes are gene symbols.")
    Xm, bi = X[:, mapped].tocsr(), bi[mapped]  # genes with a position in a bin (no chrM)
    CN = prof.to_numpy(np.float64)[:, bi]
    K = np.maximum(CN, 0.5) / 2.0  # a deleted gene keeps ambient reads
    w = np.asarray(Xm.sum(axis=0)).ravel()
    lib = np.asarray(Xm.sum(axis=1)).ravel()
    # each clone's library scale: its copy number averaged over the genes, weighted by their expression;
    # a gene is informative where the clones' relative copy numbers differ (a whole-genome doubling is not)
    Q = K / (K @ w / max(w.sum(), 1e-12))[:, None]
    differs = (np.ptp(CN, axis=0) > 0) & (np.ptp(np.log(Q), axis=0) > np.log(_MIN_RATIO))
    same = [f"{a}={b}" for i, a in enumerate(clones) for j, b in enumerate(clones) if j > i
            and not (np.ptp(np.log(Q[[i, j]]), axis=0) > np.log(_MIN_RATIO)).any()]
    if same:
        st["indistinguishable_clones"] = same
    inf = np.flatnonzero(differs & (w / max(n, 1) >= min_mean))
    st["n_informative_genes"] = len(inf)
    if not differs.any():
        st.update(status="indistinguishable",
                  message="the clones' relative copy-number profiles do not differ over any gene of the matrix: "
                          "they cannot be told apart from expression.")
        return res
    Y = Xm[:, inf].tocsr()
    res["n_genes"] = np.diff((Y > 0).tocsr().indptr)
    if len(inf) < min_genes:
        st.update(status="too_few_genes", message=f"{len(inf)} informative gene(s) expressed, fewer than "
                                                  f"min_genes={min_genes}.")
        return res
    use = res["n_genes"] >= min_genes
    if use.sum() < min_cells:
        st.update(status="too_few_cells", message=f"{int(use.sum())} cell(s) with >= {min_genes} informative "
                                                  f"genes detected; the fit needs {min_cells}.")
        return res
    half = np.zeros(len(inf), int)
    half[np.argsort(bi[inf], kind="stable")[1::2]] = 1  # interleaved in genome (bin) order
    Q = Q[:, inf]
    pi0 = _group_prior(consensus, clones) if prior == "fit" else np.ones(len(clones))
    fit = _fit(Y[use], lib[use], Q, half, pi0, fit_prior=prior == "fit", max_iter=max_iter, tol=tol)
    L = _loglik(Y, lib, fit["b"], Q, fit["phi"], half)
    res["post"] = _posterior(L.sum(axis=0), np.log(fit["pi"]))
    # each half's choice from its likelihood alone (with the prior, both halves would pick the big clone)
    kappa, z = _kappa(L[0].argmax(axis=1)[use], L[1].argmax(axis=1)[use], len(clones))
    st.update(n_fitted_cells=int(use.sum()), n_iter=fit["n_iter"], halves_kappa=round(kappa, 4),
              halves_z=round(z, 2), prior={c: round(float(p), 4) for c, p in zip(clones, fit["pi"])})
    if kappa < min_agreement or z < _MIN_Z:
        st.update(status="inconsistent",
                  message=f"two halves of the informative genes agree on the clones with kappa={kappa:.2f} "
                          f"(z={z:.1f} against chance; needed: kappa >= {min_agreement}, z >= {_MIN_Z:g}): the RNA "
                          "does not show the clones' copy-number contrast, so no cell is assigned.")
        return res
    st.update(status="ok")
    res["post_ok"] = True
    return res


def assign_clones(rna: ad.AnnData, consensus: pd.DataFrame | Mapping[str, pd.DataFrame], *, genes: pd.DataFrame,
                  layer: str | None = "counts", groupby: str = "patient_id", exclude: Sequence[str] = (NORMAL,),
                  min_genes: int = 10, min_mean: float = 0.02, min_cells: int = 10, min_posterior: float = 0.9,
                  min_agreement: float = 0.1, prior: str = "fit", max_iter: int = 100, tol: float = 1e-4,
                  key_added: str = "clone") -> ad.AnnData:
    """Assign scRNA malignant cells to their patient's scDNA clones from the expression of genes
    in regions where the clones' copy number differs (clonealign's model; module docstring).

    Parameters
    ----------
    rna
        Malignant cells x genes (gene symbols as var names) with raw counts in ``layer``. Changed
        in place. Antibody-capture features (``var['feature_types']``) are left out.
    consensus
        Clones x bins integer copy number of one patient (:func:`clone_consensus`; its
        ``attrs['n_cells']`` starts the clone prior), or a mapping patient -> such a table with
        the patients in ``obs[groupby]``.
    genes
        Gene positions (``gene_symbol``, ``chrom``, ``start``, ``end``); a gene takes the copy
        number of the bin containing its midpoint (:func:`genes_to_bins`).
    layer
        Layer of the raw counts; None: ``X``.
    groupby
        obs column of the patient, used when ``consensus`` is a mapping.
    exclude
        Consensus rows that are not candidate clones (the diploid ``"normal"`` profile).
    min_genes
        A cell needs this many informative genes detected to be assigned (and fitted); a
        patient needs this many informative genes.
    min_mean
        Informative genes have at least this mean count over the patient's cells.
    min_cells
        Cells (with ``min_genes``) needed to fit the baselines.
    min_posterior
        Smallest posterior of the best clone for an assignment; below it the cell is
        ``"unassigned"``.
    min_agreement
        Smallest Cohen's kappa between the clones that two interleaved halves of the
        informative genes give the cells (their agreement must also be 3 standard errors above
        chance); below it no cell of the patient is assigned (status ``"inconsistent"``).
    prior
        ``"fit"``: a clone prior fitted by EM (started from the scDNA clone sizes); ``"uniform"``.
    max_iter, tol
        EM stops after ``max_iter`` rounds or when no responsibility moves more than ``tol``.
    key_added
        obs column of the clone (or ``"unassigned"``). Also written: ``{key_added}_best`` (most
        likely clone, assigned or not), ``{key_added}_posterior`` (its posterior under the fitted
        model, which an ``"inconsistent"`` patient's status disowns; NaN where no fit ran),
        ``{key_added}_n_genes`` (informative genes detected), ``obsm[{key_added}_posteriors]``
        (cells x clones of all patients) and ``uns[{key_added}_assignment]`` (per patient: status
        ``ok``, ``inconsistent``, ``indistinguishable``, ``too_few_clones``, ``too_few_genes``,
        ``too_few_cells`` or ``no_consensus``, a message, ``n_informative_genes``, the halves'
        kappa and z, the fitted prior, ``assigned`` and ``assignment_rate``).
    """
    where = "assign_clones"
    if prior not in ("fit", "uniform"):
        raise InputError(where, f"prior={prior!r} is not known.", "use 'fit' or 'uniform'.")
    if not 0 < min_posterior <= 1:
        raise InputError(where, f"min_posterior={min_posterior} is outside (0, 1].", "use e.g. 0.9.")
    X = _counts(rna, layer, where)
    gex = np.ones(rna.n_vars, bool)
    if "feature_types" in rna.var:
        gex = (rna.var["feature_types"].astype(str) != "Antibody Capture").to_numpy()
    X, var_names = X[:, gex], rna.var_names[gex]
    sym = set((genes["gene_symbol"] if "gene_symbol" in genes else genes.index.to_series()).astype(str))
    if not var_names.isin(list(sym)).any():
        raise InputError(where, "no gene of the matrix is in the gene table.",
                         "give gene positions keyed by the matrix's gene symbols (resources/genes_grch38.tsv).")
    if isinstance(consensus, Mapping):
        if groupby not in rna.obs:
            raise InputError(where, f"obs has no {groupby!r} column to match cells to the consensus tables.",
                             "add the patient column, or pass one patient's consensus table.")
        groups = rna.obs[groupby].astype(str).to_numpy()
        tables = {str(k): v for k, v in consensus.items()}
    else:
        groups = np.full(rna.n_obs, "all", dtype=object)
        tables = {"all": consensus}
    all_bins = pd.Index([])
    for t in tables.values():
        all_bins = all_bins.union(pd.Index(map(str, _profiles(t, exclude, where).columns)))
    gene_bin = genes_to_bins(genes, list(all_bins)) if len(all_bins) else pd.Series(dtype=object)

    label = np.full(rna.n_obs, UNASSIGNED, dtype=object)
    best = np.full(rna.n_obs, "", dtype=object)
    p_best = np.full(rna.n_obs, np.nan)
    n_genes = np.zeros(rna.n_obs, int)
    post_cols: list[str] = []
    blocks = []
    status = {}
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        if g not in tables:
            status[g] = {"status": "no_consensus", "n_cells": len(idx), "assigned": 0, "assignment_rate": 0.0,
                         "message": "no clone consensus for this patient."}
            continue
        r = _assign_group(X[idx], gene_bin, var_names, tables[g], exclude=exclude, min_genes=min_genes,
                          min_mean=min_mean, min_cells=min_cells, min_agreement=min_agreement, prior=prior,
                          max_iter=max_iter, tol=tol)
        st = r["status"]
        n_genes[idx] = r["n_genes"]
        post = r["post"]
        if np.isfinite(post).all() and post.size:
            k = post.argmax(axis=1)
            best[idx] = np.asarray(r["clones"], dtype=object)[k]
            p_best[idx] = post[np.arange(len(idx)), k]
            if r.get("post_ok"):
                ok = (p_best[idx] >= min_posterior) & (r["n_genes"] >= min_genes)
                label[idx[ok]] = best[idx[ok]]
                st["assigned"] = int(ok.sum())
                st["assignment_rate"] = round(float(ok.mean()), 4)
        st.setdefault("assigned", 0)
        st.setdefault("assignment_rate", 0.0)
        status[g] = st
        post_cols += [c for c in r["clones"] if c not in post_cols]
        blocks.append((idx, r["clones"], post))
    P = pd.DataFrame(0.0, index=rna.obs_names, columns=pd.Index(post_cols, dtype=object))
    for idx, cl, post in blocks:
        if np.isfinite(post).all():
            P.iloc[idx, [post_cols.index(c) for c in cl]] = post
    cats = sorted(set(label) - {UNASSIGNED}) + [UNASSIGNED]
    rna.obs[key_added] = pd.Categorical(label, categories=cats)
    rna.obs[f"{key_added}_best"] = best
    rna.obs[f"{key_added}_posterior"] = p_best
    rna.obs[f"{key_added}_n_genes"] = n_genes
    rna.obsm[f"{key_added}_posteriors"] = P
    rna.uns[f"{key_added}_assignment"] = status
    return rna


# ---------------------------------------------------------------------------------------------
# fractions and pseudobulk
# ---------------------------------------------------------------------------------------------
def clone_fractions_from_rna(obs: pd.DataFrame, *, sample_key: str = "sample_id", clone_key: str = "clone",
                             dna: pd.DataFrame | None = None) -> pd.DataFrame:
    """Clone fractions per sample from the assigned scRNA cells, in :func:`clone_fractions`'s
    long format, optionally stacked with the scDNA's.

    Parameters
    ----------
    obs
        The assigned malignant cells' table (:func:`assign_clones`'s ``rna.obs``).
    sample_key, clone_key
        Column names.
    dna
        The scDNA cells' table (``obs`` after :func:`call_clones`, same column names): its
        fractions are added with ``assay = "scDNA"``.

    Returns
    -------
    Long table: sample, clone, ``n_cells``, ``fraction`` (of the sample's malignant cells),
    ``fraction_of_tumour`` (of its cells in clones: assigned cells for scRNA; NaN for
    ``"unassigned"``, ``"normal"``, ``"outlier"``), ``assay`` and, per sample,
    ``assignment_rate`` (assigned / malignant scRNA cells; NaN for scDNA).
    """
    rna = clone_fractions(obs, sample_key=sample_key, clone_key=clone_key, exclude=(*_NOT_CLONES, UNASSIGNED))
    assigned = rna["n_cells"].where(rna[clone_key] != UNASSIGNED, 0).groupby(rna[sample_key]).transform("sum")
    rna["assignment_rate"] = assigned / rna.groupby(sample_key)["n_cells"].transform("sum")
    rna.insert(0, "assay", "scRNA")
    if dna is None:
        return rna
    d = clone_fractions(dna, sample_key=sample_key, clone_key=clone_key)
    d.insert(0, "assay", "scDNA")
    d["assignment_rate"] = np.nan
    return pd.concat([rna, d], ignore_index=True)


def clone_pseudobulk(rna: ad.AnnData, *, clone_key: str = "clone", sample_key: str = "sample_id",
                     patient_key: str = "patient_id", layer: str | None = "counts", min_cells: int = 10,
                     exclude: Sequence[str] = (UNASSIGNED, *_NOT_CLONES)) -> ad.AnnData:
    """Summed counts per (sample, clone) with at least ``min_cells`` assigned cells.

    Parameters
    ----------
    rna
        Cells with ``obs[clone_key]`` (:func:`assign_clones`) and raw counts in ``layer``.
    clone_key, sample_key, patient_key
        obs columns (``patient_key`` is carried along when present).
    layer
        Layer of the raw counts; None: ``X``.
    min_cells
        Smallest number of cells of a pseudobulk sample.
    exclude
        Labels that are not clones.

    Returns
    -------
    (sample, clone) x genes, ``X`` the sparse (CSR) sums; obs ``sample_id``, ``patient_id``,
    ``clone``, ``n_cells`` (the given column names), named ``{sample}|{clone}``; ``uns
    ['clone_pseudobulk']['dropped']`` lists the groups below ``min_cells``.
    """
    where = "clone_pseudobulk"
    for c in (clone_key, sample_key):
        if c not in rna.obs:
            raise InputError(where, f"obs has no {c!r} column.", "run assign_clones first.")
    X = _counts(rna, layer, where)
    s = rna.obs[sample_key].astype(str).to_numpy()
    c = rna.obs[clone_key].astype(str).to_numpy()
    pat = rna.obs[patient_key].astype(str).to_numpy() if patient_key in rna.obs else np.full(rna.n_obs, "")
    keys = pd.DataFrame({"s": s, "c": c, "p": pat})
    keys = keys[~keys["c"].isin(list(exclude))]
    size = keys.groupby(["s", "c"], sort=True).size()
    keep = size[size >= min_cells]
    dropped = [f"{a}|{b} ({n} cells)" for (a, b), n in size[size < min_cells].items()]
    names = [f"{a}|{b}" for a, b in keep.index]
    row = {k: i for i, k in enumerate(keep.index)}
    cells = np.flatnonzero(~pd.Series(c).isin(list(exclude)).to_numpy())
    cells = np.asarray([i for i in cells if (s[i], c[i]) in row], dtype=np.int64)
    A = sp.csr_matrix((np.ones(len(cells)), ([row[(s[i], c[i])] for i in cells], cells)),
                      shape=(len(keep), rna.n_obs))
    first = {(s[i], c[i]): pat[i] for i in cells[::-1]}
    obs = pd.DataFrame({sample_key: [a for a, _ in keep.index], patient_key: [first[k] for k in keep.index],
                        clone_key: [b for _, b in keep.index], "n_cells": keep.to_numpy(dtype=np.int64)},
                       index=pd.Index(names, dtype=object))
    out = ad.AnnData(sp.csr_matrix(A @ X), obs=obs, var=rna.var.copy())
    out.uns["clone_pseudobulk"] = {"min_cells": int(min_cells), "dropped": dropped}
    return out
