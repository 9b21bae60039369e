"""One scRNA + CITE-seq sample: droplets, counts (block by block), empty droplets, barcodes and
the per-droplet truth; the interferon genes come from their own stream (the twin)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._model import _Model
from ._tables import (
    _ADT_AMBIENT_BASE,
    _ADT_DISPERSION,
    _ADT_NSB_SCALE,
    _BLOCK,
    _EBV_CELL_SHAPE,
    _EBV_SHARE,
    _IFN_LOG2FC,
    _STATE_CELL_SHAPE,
    _TYPES,
    CELL_TYPES,
    EBV_GENES,
    IFN_RESPONSE_GENES,
    NORMAL_EPITHELIAL,
    SEX_GENES,
    STATES,
)
from ._util import _barcodes, _rng


def _sample_profiles(model: _Model, design: dict, sinfo: dict) -> np.ndarray:
    """Non-MT expression profile of each type in this sample (rows sum to 1)."""
    pinfo = design["patients"][sinfo["patient_id"]]
    P = model.P * sinfo["batch_mult"][None, :] * pinfo["mult"][None, :]
    sym_idx = model.idx
    for g, sex in SEX_GENES.items():
        if sex != pinfo["sex"]:
            P[:, sym_idx[g]] = 0.0
    if pinfo["responder"] and design["effects"]:
        for t, genes in design["de"].items():
            for g, lfc in genes.items():
                P[model.type_index[t], sym_idx[g]] *= 2.0 ** lfc
        if sinfo["timepoint"] == "resection":
            for g in IFN_RESPONSE_GENES:
                P[model.type_index["macrophage_C1Q"], sym_idx[g]] *= 2.0 ** _IFN_LOG2FC
    P[:, model.is_mt] = 0.0
    return P / P.sum(axis=1, keepdims=True)


def _clone_factors(model: _Model, clones: list[dict]) -> np.ndarray:
    """Row 0: ones (non-malignant); row c+1: CN/2 per gene for clone c."""
    F = np.ones((len(clones) + 1, model.G))
    arms = model.genes["arm"].to_numpy()
    for c, cl in enumerate(clones):
        for arm, cn in cl["events"].items():
            F[c + 1, arms == arm] = cn / 2.0
    return F


def _simulate_sample(model: _Model, design: dict, sample_id: str, *, n_cells: int, n_empty: int,
                     doublet_rate: float, low_quality_rate: float, seed: int, twin: bool = False,
                     normal_epithelial: float = 0.0, ebv: bool = False):
    """One sample's droplets. Returns (cells, raw, cell barcodes, all barcodes, truth, empty
    libraries, cells_interferon_off); the last is None unless ``twin``: the same droplets with
    the interferon state at 0 (every gene outside the interferon programme identical: those
    genes come from their own random stream).

    Opt-in options draw from their own streams, so with both off every output is as before:
    ``normal_epithelial`` turns that share of the malignant cells into diploid normal epithelium
    (same programme, no clone factors); ``ebv`` inserts the :data:`EBV_GENES` columns after the
    human genes (malignant cells express them; every droplet gets their ambient share)."""
    sinfo = design["samples"][sample_id]
    pinfo = design["patients"][sinfo["patient_id"]]
    s_i = sinfo["index"]
    rng = _rng(seed, 10, s_i)
    T, G, K = model.T, model.G, model.K
    ti = model.type_index
    P = _sample_profiles(model, design, sinfo)
    CF = _clone_factors(model, pinfo["clones"])
    pi = sinfo["pi"]
    f_amb = sinfo["ambient"]

    # ---- droplet attributes (cells are in sorted-barcode order; identities are random)
    n_dbl = round(doublet_rate * n_cells)
    n_lq = round(low_quality_rate * n_cells)
    perm = rng.permutation(n_cells)
    is_dbl = np.zeros(n_cells, bool)
    is_dbl[perm[:n_dbl]] = True
    is_lq = np.zeros(n_cells, bool)
    is_lq[perm[n_dbl:n_dbl + n_lq]] = True
    t1 = np.repeat(np.arange(T), rng.multinomial(n_cells - n_dbl, pi))
    rng.shuffle(t1)
    type1 = np.empty(n_cells, dtype=np.int64)
    type1[~is_dbl] = t1
    type2 = np.full(n_cells, -1, dtype=np.int64)
    d_idx = np.flatnonzero(is_dbl)
    if n_dbl:
        a = rng.choice(T, size=n_dbl, p=pi)
        type1[d_idx] = a
        for j, ta in zip(d_idx, a):
            other = model.major_of != model.major_of[ta]
            q = pi * other
            type2[j] = rng.choice(T, p=q / q.sum())

    # units: one per singlet, two per doublet (the second follows its droplet)
    unit_droplet = np.concatenate([np.arange(n_cells), d_idx])
    unit_type = np.concatenate([type1, type2[d_idx]])
    order = np.argsort(unit_droplet, kind="stable")
    unit_droplet, unit_type = unit_droplet[order], unit_type[order]
    unit_first = np.r_[True, unit_droplet[1:] != unit_droplet[:-1]]
    U = len(unit_droplet)
    lib = (model.lib_median[unit_type] * sinfo["lib_shift"]
           * np.exp(rng.normal(0, 1, size=U) * model.lib_sdlog[unit_type]))
    lib[~unit_first] *= 0.9
    unit_dbl = is_dbl[unit_droplet]
    lib[unit_dbl & unit_first] *= 0.9
    mt = np.clip(model.mt_median[unit_type] * sinfo["mt_shift"] * np.exp(rng.normal(0, 0.35, size=U)),
                 0.005, 0.15)
    unit_lq = is_lq[unit_droplet]
    n_lq_u = int(unit_lq.sum())
    lib[unit_lq] *= rng.uniform(0.1, 0.3, size=n_lq_u)
    mt[unit_lq] = rng.uniform(0.2, 0.6, size=n_lq_u)
    cycling = rng.random(U) < model.cycling_rate[unit_type]
    clone = np.zeros(U, dtype=np.int64)  # 0 = none
    mal_u = unit_type == ti["malignant"]
    fr = sinfo["clone_fr"]
    clone[mal_u] = 1 + rng.choice(len(fr), size=int(mal_u.sum()), p=fr)
    normal_epi = np.zeros(U, dtype=bool)
    if normal_epithelial > 0:  # its own stream: with the option off no draw changes
        normal_epi = mal_u & (_rng(seed, 16, s_i).random(U) < normal_epithelial)
        clone[normal_epi] = 0
    cap = np.exp(rng.normal(0, 0.3, size=U))  # ADT capture
    nsb = np.exp(rng.normal(0, 0.5, size=U))  # ADT non-specific binding
    cap[unit_lq] *= 0.5
    # per-cell states from their own stream: sample level x Gamma(k)/k (always drawn, in a fixed
    # order, so that switching a state off changes no other draw)
    strng = _rng(seed, 15, s_i)
    state = {}
    for k in STATES:
        shape = _STATE_CELL_SHAPE[k]
        state[k] = sinfo["state_level"][k] * strng.standard_gamma(shape, size=U) / shape
    act = state["activation"] * model.act_types[unit_type]

    # ---- ambient profiles (expected mean of the sample's droplets)
    weights = pi * model.lib_median
    m = model.mt_median[:, None] * sinfo["mt_shift"]
    amb = (weights[:, None] * ((1 - m) * P + m * model.mt_profile[None, :])).sum(0)
    amb /= amb.sum()
    hb = np.zeros(G)
    hb[model.is_hb] = np.array([0.3, 0.3, 0.4])[: model.is_hb.sum()]
    amb = amb * (1 - sinfo["hb"]) + hb * sinfo["hb"]
    # interferon genes in the ambient RNA rise with the sample's interferon level (added on top,
    # so the ambient share of every other gene stays as without the state)
    ifn_idx = model.ifn_idx
    norm = (weights[:, None] * ((1 - m) * P + m * model.mt_profile[None, :])).sum()
    extra = (weights[:, None] * ((1 - m) * P[:, ifn_idx]) * (model.ifn_fc - 1)).sum(0) / norm
    amb_on = amb.copy()
    amb_on[ifn_idx] += extra * sinfo["state_level"]["interferon"] * (1 - sinfo["hb"])
    rest = np.ones(G, dtype=bool)
    rest[ifn_idx] = False
    rest_idx = np.flatnonzero(rest)
    adt_amb = (0.03 * (pi[:, None] * model.adt_spec).sum(0) + _ADT_AMBIENT_BASE * model.adt_base) \
        * sinfo["adt_ambient_scale"]

    # ---- counts, block by block (<= _BLOCK units per block)
    starts = np.r_[np.flatnonzero(unit_first), U]  # unit index where each droplet starts (+ end)
    bounds = [0]
    while bounds[-1] < n_cells:
        d0 = bounds[-1]
        d1 = int(np.searchsorted(starts, starts[d0] + _BLOCK, side="right")) - 1
        bounds.append(min(max(d1, d0 + 1), n_cells))
    blocks, twin_blocks = [], []
    for b, (d0, d1) in enumerate(itertools.pairwise(bounds)):
        u0, u1 = starts[d0], starts[d1]
        brng = _rng(seed, 11, s_i, b)
        ut = unit_type[u0:u1]
        n_u = u1 - u0
        E = P[ut]
        cyc = cycling[u0:u1]
        if cyc.any():
            rows = np.flatnonzero(cyc)
            E[np.ix_(rows, model.cycling_idx)] *= model.cycling_fc[None, :]
        E *= CF[clone[u0:u1]]
        mtu = mt[u0:u1, None]
        E = (1 - mtu) * E + mtu * model.mt_profile[None, :]
        L = lib[u0:u1, None]
        E *= L * (1 - f_amb)
        # activation (T and NK cells) and stress states: x (1 + s (FC - 1)) on their genes
        E[:, model.act_idx] *= 1 + act[u0:u1, None] * (model.act_fc[None, :] - 1)
        E[:, model.stress_idx] *= 1 + state["stress"][u0:u1, None] * (model.stress_fc[None, :] - 1)
        X = np.empty((n_u, G), dtype=np.int32)
        Er = E[:, rest_idx]
        Er *= brng.standard_gamma(model.gamma_shape[None, rest_idx], size=Er.shape) * model.dispersion[None, rest_idx]
        Er += L * f_amb * amb[None, rest_idx]
        X[:, rest_idx] = brng.poisson(Er)
        # interferon genes: their own stream (gamma first, then Poisson), the state x (1 + s (FC - 1))
        Ei = E[:, ifn_idx]
        mult = 1 + state["interferon"][u0:u1, None] * (model.ifn_fc[ut] - 1)
        X[:, ifn_idx] = _ifn_counts(model, (seed, 14, s_i, b), Ei * mult, L * f_amb * amb_on[None, ifn_idx])
        # antibody tags
        A = cap[u0:u1, None] * (model.adt_spec[ut] + _ADT_NSB_SCALE * nsb[u0:u1, None] * model.adt_base[None, :])
        A *= brng.standard_gamma(1 / _ADT_DISPERSION, size=A.shape) * _ADT_DISPERSION
        A += np.where(unit_first[u0:u1, None], adt_amb[None, :], 0.0)
        Y = brng.poisson(A).astype(np.int32)
        agg = sp.csr_matrix((np.ones(n_u, np.int32), (unit_droplet[u0:u1] - d0, np.arange(n_u))),
                            shape=(d1 - d0, n_u))
        block = agg @ sp.csr_matrix(np.hstack([X, Y]))
        blocks.append(block.tocsr())
        if twin:
            X[:, ifn_idx] = _ifn_counts(model, (seed, 14, s_i, b), Ei, L * f_amb * amb[None, ifn_idx])
            twin_blocks.append((agg @ sp.csr_matrix(np.hstack([X, Y]))).tocsr())
    cells = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, G + K), dtype=np.int32)
    cells.sort_indices()
    cells_off = None
    if twin:
        cells_off = (sp.vstack(twin_blocks, format="csr") if twin_blocks
                     else sp.csr_matrix((0, G + K), dtype=np.int32))
        cells_off.sort_indices()
    n_ebv = len(EBV_GENES) if ebv else 0
    if ebv:
        mal_t = ti["malignant"]
        # EBV share of the ambient profile: the malignant cells' EBV RNA in the sample's soup
        ebv_amb = (weights[mal_t] * (1 - m[mal_t, 0]) * (1 - normal_epithelial) * _EBV_SHARE / norm
                   * (1 - sinfo["hb"]))
        ebv_rng = _rng(seed, 17, s_i)
        own = np.where(mal_u & ~normal_epi, lib * (1 - f_amb) * (1 - mt) * _EBV_SHARE, 0.0)
        own *= ebv_rng.standard_gamma(_EBV_CELL_SHAPE, size=U) / _EBV_CELL_SHAPE
        share = np.array(list(EBV_GENES.values()))
        V = ebv_rng.poisson((own + lib * f_amb * ebv_amb)[:, None] * share[None, :]).astype(np.int32)
        agg = sp.csr_matrix((np.ones(U, np.int32), (unit_droplet, np.arange(U))), shape=(n_cells, U))
        V = sp.csr_matrix(agg @ V)
        cells = sp.hstack([cells[:, :G], V, cells[:, G:]], format="csr")
        if cells_off is not None:
            cells_off = sp.hstack([cells_off[:, :G], V, cells_off[:, G:]], format="csr")

    # ---- empty droplets: multinomial on the ambient profile (+ ambient antibody tags)
    erng = _rng(seed, 12, s_i)
    e_lib = np.clip(np.rint(np.exp(erng.normal(np.log(60), 0.8, size=n_empty))), 10, 300).astype(np.int64)
    total = int(e_lib.sum())
    rows = np.repeat(np.arange(n_empty), e_lib)
    cols = erng.choice(G, size=total, p=amb_on / amb_on.sum())
    Eg = sp.csr_matrix((np.ones(total, np.int32), (rows, cols)), shape=(n_empty, G))
    Eg.sum_duplicates()
    s_e = np.exp(erng.normal(0, 0.5, size=n_empty))
    Ea = erng.poisson(adt_amb[None, :] * s_e[:, None]).astype(np.int32)
    parts = [Eg, sp.csr_matrix(Ea)]
    if ebv:
        parts.insert(1, sp.csr_matrix(ebv_rng.poisson(e_lib[:, None] * ebv_amb * share[None, :]).astype(np.int32)))
    empties = sp.hstack(parts, format="csr")
    empties.sort_indices()

    # ---- barcodes: cells and empties share one sorted barcode space
    brng = _rng(seed, 13, s_i)
    all_bc = _barcodes(brng, n_cells + n_empty)
    is_cell = np.zeros(len(all_bc), bool)
    is_cell[brng.choice(len(all_bc), size=n_cells, replace=False)] = True
    cell_bc = all_bc[is_cell]
    raw_rows = np.empty(len(all_bc), dtype=np.int64)
    raw_rows[np.flatnonzero(is_cell)] = np.arange(n_cells)
    raw_rows[np.flatnonzero(~is_cell)] = n_cells + np.arange(n_empty)
    raw = sp.vstack([cells, empties], format="csr")[raw_rows]

    # ---- truth per droplet
    first_u = starts[:-1]
    gene_counts = np.asarray(cells[:, :G + n_ebv].sum(axis=1)).ravel()
    adt_counts = np.asarray(cells[:, G + n_ebv:].sum(axis=1)).ravel()
    t_first = unit_type[first_u]
    ct = np.array(_TYPES, dtype=object)[t_first]
    major = np.array([CELL_TYPES[t] for t in _TYPES], dtype=object)[t_first]
    ct[normal_epi[first_u]] = NORMAL_EPITHELIAL
    ct[is_dbl] = "doublet"
    major[is_dbl] = "doublet"
    dt1 = np.where(is_dbl, np.array(_TYPES, dtype=object)[type1], "")
    dt2 = np.where(is_dbl, np.array(_TYPES + [""], dtype=object)[type2], "")
    clone_names = np.array([""] + [c["name"] for c in pinfo["clones"]], dtype=object)
    cl = clone_names[clone[first_u]]
    cl[is_dbl] = ""
    lib_droplet = np.bincount(unit_droplet, weights=lib, minlength=n_cells)
    truth = pd.DataFrame({
        "cell_id": [f"{sample_id}:{b}" for b in cell_bc],
        "sample_id": sample_id, "patient_id": sinfo["patient_id"],
        "timepoint": sinfo["timepoint"], "response": sinfo["response"],
        "cell_type": ct, "cell_type_major": major,
        "is_doublet": is_dbl, "is_low_quality": is_lq, "clone": cl,
        "doublet_type_1": dt1, "doublet_type_2": dt2,
        "cycling": cycling[first_u] & ~is_dbl,
        "expected_library": np.round(lib_droplet, 1),
        "mt_fraction_expected": np.round(mt[first_u], 4),
        "adt_nsb": np.round(nsb[first_u], 4),
        "n_counts": gene_counts, "n_adt_counts": adt_counts,
        "ifn_state": np.round(state["interferon"][first_u], 4),
        "activation_state": np.round(act[first_u], 4),
        "stress_state": np.round(state["stress"][first_u], 4),
    })
    if ebv:
        truth["ebv_counts"] = np.asarray(cells[:, G:G + n_ebv].sum(axis=1)).ravel()
    return cells, raw, cell_bc, all_bc, truth, e_lib, cells_off


def _ifn_counts(model: _Model, key: tuple, mean: np.ndarray, ambient: np.ndarray) -> np.ndarray:
    """Counts of the interferon-programme genes from their own stream ``key``: the gamma draws
    come first (the same for any mean), then Poisson, so a twin with another mean shares the
    cells' gamma factors and no other gene's draws depend on these."""
    irng = _rng(*key)
    idx = model.ifn_idx
    g = irng.standard_gamma(model.gamma_shape[None, idx], size=mean.shape) * model.dispersion[None, idx]
    return irng.poisson(mean * g + ambient)
