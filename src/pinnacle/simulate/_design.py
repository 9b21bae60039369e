"""The cohort design: per-patient composition, clones and interferon levels, per-sample batch
and state levels, the planted DE genes and nulls, and the effects table of ``truth/``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._model import _Model
from ._tables import (
    _ACTIVATION_RANGE,
    _CLONE_LOG2FC,
    _COMPOSITION,
    _COMPOSITION_EFFECTS,
    _DE_NULL_TYPES,
    _DE_TYPES,
    _IFN_BASELINE,
    _IFN_LOG2FC,
    _IFN_NON_RESPONDER_SCALE,
    _IFN_RESPONDER,
    _MALIGNANT_RANGE,
    _N_DE_NULL,
    _NULL_TYPES,
    _OTHER_ARMS,
    _PATIENT_CONCENTRATION,
    _SAMPLE_CONCENTRATION,
    _STRESS_RANGE,
    _TYPES,
    CNV_EVENT_FREQUENCIES,
    CYCLING_GENES,
    HOUSEKEEPING_GENES,
    IFN_RESPONSE_GENES,
    PLANTED_PROTEINS,
    SEX_GENES,
    SIGNATURE_GENES,
    STATES,
)
from ._util import _rng


def _draw_clones(rng: np.random.Generator, pid: str) -> list[dict]:
    """Trunk clone + 1-2 subclones; each clone: dict(name, parent, events={arm: cn})."""
    events = list(CNV_EVENT_FREQUENCIES)
    freqs = np.array([CNV_EVENT_FREQUENCIES[e] for e in events])
    # subclones may also gain rarer events on other arms (weight 0.015 each), so there are
    # always two new arms to choose from
    listed = {arm for arm, _ in events}
    rare = [(a, k) for a in _OTHER_ARMS if a not in listed for k in ("gain", "loss")]
    all_events = events + rare
    all_freqs = np.r_[freqs, np.full(len(rare), 0.015)]

    def cn_of(kind):
        return 1 if kind == "loss" else (4 if rng.random() < 0.1 else 3)

    trunk: dict[str, int] = {}
    for (arm, kind), f in zip(events, freqs):
        if rng.random() < f and arm not in trunk:
            trunk[arm] = cn_of(kind)
    order = np.argsort(-freqs, kind="stable")
    for i in order:  # at least two trunk events
        if len(trunk) >= 2:
            break
        arm, kind = events[i]
        if arm not in trunk:
            trunk[arm] = cn_of(kind)
    clones = [{"name": f"{pid}_c1", "parent": "", "events": dict(trunk)}]
    n_sub = 1 + int(rng.random() < 0.5)
    used_new: set[str] = set()
    for s in range(n_sub):
        parent = clones[0] if (s == 0 or rng.random() < 0.5) else clones[-1]
        ev = dict(parent["events"])
        for _ in range(2):  # two new events on two different arms (not a gain and a loss of one arm)
            cand = [i for i, (arm, _) in enumerate(all_events) if arm not in ev and arm not in used_new]
            p = all_freqs[cand] / all_freqs[cand].sum()
            arm, kind = all_events[cand[rng.choice(len(cand), p=p)]]
            ev[arm] = cn_of(kind)
            used_new.add(arm)
        clones.append({"name": f"{pid}_c{s + 2}", "parent": parent["name"], "events": ev})
    # guarantee >= 2 differing arms between every pair
    for a in range(len(clones)):
        for b in range(a + 1, len(clones)):
            ea, eb = clones[a]["events"], clones[b]["events"]
            diff = {k for k in set(ea) | set(eb) if ea.get(k, 2) != eb.get(k, 2)}
            assert len(diff) >= 2, (clones[a], clones[b])
    return clones


def _clone_fractions(rng: np.random.Generator, n_clones: int) -> np.ndarray:
    """Baseline clone fractions; index 1 (the first subclone) is the dominant one."""
    if n_clones == 2:
        dom = rng.uniform(0.55, 0.8)
        return np.array([1 - dom, dom])
    dom = rng.uniform(0.45, 0.65)
    rest = 1 - dom
    a = rng.uniform(0.35, 0.65)
    return np.array([rest * a, dom, rest * (1 - a)])


def _design(model: _Model, samples: pd.DataFrame, patients: pd.DataFrame, seed: int,
            batch_strength: float, response_effects: bool = True,
            states: tuple[str, ...] = STATES) -> dict:
    rng = _rng(seed, 1)
    T = model.T
    ti = model.type_index
    nonmal = [t for t in _TYPES if t != "malignant"]
    mean_nonmal = np.array([_COMPOSITION[t] for t in nonmal])
    mean_nonmal /= mean_nonmal.sum()
    planted = set(_COMPOSITION_EFFECTS)
    absorbers = [t for t in nonmal if t not in planted and t not in _NULL_TYPES]

    design = {"patients": {}, "samples": {}, "effects": bool(response_effects), "states": tuple(states)}
    for p_i, prow in patients.reset_index(drop=True).iterrows():
        pid = prow["patient_id"]
        responder = prow["response"] == "responder"
        planted_here = responder and response_effects
        prng = _rng(seed, 3, p_i)
        mal = float(np.exp(prng.uniform(np.log(_MALIGNANT_RANGE[0]), np.log(_MALIGNANT_RANGE[1]))))
        nm = prng.dirichlet(_PATIENT_CONCENTRATION * mean_nonmal)
        pi_base = np.zeros(T)
        for t, v in zip(nonmal, nm):
            pi_base[ti[t]] = v * (1 - mal)
        pi_base[ti["malignant"]] = mal
        pi_res = pi_base.copy()
        if planted_here:
            for t, lfc in _COMPOSITION_EFFECTS.items():
                pi_res[ti[t]] = pi_base[ti[t]] * 2.0 ** lfc
            delta = pi_res.sum() - 1.0
            ab = np.array([ti[t] for t in absorbers])
            scale = (pi_base[ab].sum() - delta) / pi_base[ab].sum()
            if scale <= 0.05:
                raise InputError("simulate", "planted composition shift does not fit.", "Report this bug.")
            pi_res[ab] *= scale
        clones = _draw_clones(prng, pid)
        fr_base = _clone_fractions(prng, len(clones))
        fr_res = fr_base.copy()
        if planted_here:
            fr_res[1] *= 2.0 ** _CLONE_LOG2FC
            fr_res /= fr_res.sum()
        patient_mult = np.exp(prng.normal(0, 0.1, size=model.G))
        # interferon state level per timepoint, from its own stream (drawn whatever the options,
        # so that switching a state off changes nothing else)
        irng = _rng(seed, 4, p_i)
        ifn_base = float(irng.uniform(*_IFN_BASELINE))
        ifn_res = (float(irng.uniform(*_IFN_RESPONDER)) if responder
                   else _IFN_NON_RESPONDER_SCALE * float(irng.uniform()) ** 2)
        design["patients"][pid] = dict(
            index=p_i, responder=responder, sex=prow["sex"], malignant=mal,
            pi={"baseline": pi_base, "resection": pi_res}, clones=clones,
            clone_fr={"baseline": fr_base, "resection": fr_res}, mult=patient_mult,
            ifn={"baseline": ifn_base, "resection": ifn_res})

    # DE genes (patient-level trait of responders) and nulls
    expected = model.expected_counts()
    excluded = (model.programme_gene | model.is_mt | model.is_rb | model.is_hb
                | np.isin(model.symbols, list(HOUSEKEEPING_GENES) + list(SEX_GENES) + CYCLING_GENES
                          + IFN_RESPONSE_GENES + list(SIGNATURE_GENES) + list(PLANTED_PROTEINS))
                | (model.state_gene != ""))
    de: dict[str, dict[str, float]] = {}
    nulls: dict[str, list[str]] = {}
    taken: set[str] = set()
    for t, n in _DE_TYPES.items():
        pool = np.flatnonzero(~excluded & (expected[ti[t]] >= 0.5))
        pool = np.array([j for j in pool if model.symbols[j] not in taken])
        pick = rng.choice(pool, size=n, replace=False)
        lfc = rng.uniform(1.5, 2.5, size=n) * np.where(np.arange(n) < (n + 1) // 2, 1, -1)
        de[t] = {model.symbols[j]: float(v) for j, v in zip(pick, lfc)}
        taken |= set(de[t])
    for t in _DE_NULL_TYPES:
        pool = np.flatnonzero(~excluded & (expected[ti[t]] >= 0.5))
        pool = np.array([j for j in pool if model.symbols[j] not in taken])
        pick = rng.choice(pool, size=_N_DE_NULL, replace=False)
        nulls[t] = [model.symbols[j] for j in pick]
        taken |= set(nulls[t])
    design["de"] = de
    design["de_null"] = nulls

    for s_i, srow in samples.reset_index(drop=True).iterrows():
        pinfo = design["patients"][srow["patient_id"]]
        srng = _rng(seed, 2, s_i)
        tp = srow["timepoint"]
        pi = srng.dirichlet(_SAMPLE_CONCENTRATION * pinfo["pi"][tp] + 1e-3)
        design["samples"][srow["sample_id"]] = dict(
            index=s_i, patient_id=srow["patient_id"], timepoint=tp,
            response="responder" if pinfo["responder"] else "non_responder",
            pi=pi, clone_fr=pinfo["clone_fr"][tp],
            batch_mult=np.exp(srng.normal(0, batch_strength, size=model.G)) if batch_strength > 0
            else np.ones(model.G),
            lib_shift=float(np.exp(srng.normal(0, batch_strength / 2))) if batch_strength > 0 else 1.0,
            mt_shift=float(np.exp(srng.normal(0, 0.2))),
            ambient=float(srng.uniform(0.02, 0.10)),
            hb=float(srng.uniform(0.0, 0.01)),
            adt_ambient_scale=float(np.exp(srng.normal(0, 0.3))))
        strng = _rng(seed, 6, s_i)
        levels = {"interferon": pinfo["ifn"][tp], "activation": float(strng.uniform(*_ACTIVATION_RANGE)),
                  "stress": float(strng.uniform(*_STRESS_RANGE))}
        design["samples"][srow["sample_id"]]["state_level"] = {
            k: (round(v, 4) if k in design["states"] else 0.0) for k, v in levels.items()}
    design["ifn_log2fc"] = _expected_ifn_log2fc(model, design)
    return design


def _expected_ifn_log2fc(model: _Model, design: dict) -> dict[tuple[str, str, str], float]:
    """Expected log2 fold change resection / baseline of every interferon-programme gene in every
    type, per response group: the mean over the group's patients of log2 of (planted C1Q
    macrophage factor) x (1 + r (FC - 1)) / (1 + b (FC - 1)), with r and b the patient's
    interferon levels at resection and baseline (the mean of the per-cell state) and FC the
    gene's Kang fold change for the type. Ambient RNA, which dilutes it a little, is ignored."""
    on = "interferon" in design["states"]
    out: dict[tuple[str, str, str], float] = {}
    genes = list(model.symbols[model.ifn_idx])
    for group, resp in (("responder", True), ("non_responder", False)):
        pats = [p for p in design["patients"].values() if p["responder"] == resp]
        if not pats:
            continue
        b = np.array([p["ifn"]["baseline"] for p in pats]) * on
        r = np.array([p["ifn"]["resection"] for p in pats]) * on
        for t, name in enumerate(_TYPES):
            fc = model.ifn_fc[t]
            ratio = (1 + r[:, None] * (fc[None, :] - 1)) / (1 + b[:, None] * (fc[None, :] - 1))
            lfc = np.log2(ratio).mean(axis=0)
            for j, g in enumerate(genes):
                planted = (design["effects"] and resp and name == "macrophage_C1Q"
                           and g in IFN_RESPONSE_GENES)
                out[(group, name, g)] = round(float(lfc[j]) + (_IFN_LOG2FC if planted else 0.0), 4)
    return out


def _effects_table(design: dict, proteins_null: list[str]) -> pd.DataFrame:
    rows = []

    def add(kind, contrast, group, timepoint, cell_type, feature, lfc, planted):
        if not design["effects"]:  # a null cohort: every listed effect is a null
            lfc, planted = 0.0, False
        rows.append(dict(kind=kind, contrast=contrast, group=group, timepoint=timepoint,
                         cell_type=cell_type, feature=feature, log2fc=float(lfc),
                         planted=bool(planted)))

    rvb, rvn = "resection_vs_baseline", "responder_vs_non_responder"
    for t, lfc in _COMPOSITION_EFFECTS.items():
        add("composition", rvb, "responder", "", t, "proportion", lfc, True)
        add("composition", rvb, "non_responder", "", t, "proportion", 0.0, False)
        add("composition", rvn, "", "baseline", t, "proportion", 0.0, False)
    for t in _NULL_TYPES:
        add("composition", rvb, "responder", "", t, "proportion", 0.0, False)
        add("composition", rvb, "non_responder", "", t, "proportion", 0.0, False)
        add("composition", rvn, "", "baseline", t, "proportion", 0.0, False)
    for t, genes in design["de"].items():
        for g, lfc in genes.items():
            add("de_gene", rvn, "", "baseline", t, g, lfc, True)
            # a trait of the responders, the same at both timepoints
            add("de_gene", rvb, "responder", "", t, g, 0.0, False)
    for t, genes in design["de_null"].items():
        for g in genes:
            add("de_gene", rvn, "", "baseline", t, g, 0.0, False)
            add("de_gene", rvb, "responder", "", t, g, 0.0, False)
    # interferon genes of C1Q macrophages at resection: the planted response effect (responders)
    # plus the interferon state, which rises in every type (strongly in responders, variably in
    # non-responders; kept in a null cohort): the expected total, planted wherever it is not 0
    for g in IFN_RESPONSE_GENES:
        for group in ("responder", "non_responder"):
            lfc = design["ifn_log2fc"].get((group, "macrophage_C1Q", g), 0.0)
            rows.append(dict(kind="de_gene", contrast=rvb, group=group, timepoint="",
                             cell_type="macrophage_C1Q", feature=g, log2fc=float(lfc),
                             planted=bool(lfc != 0)))
    for g, lfc in PLANTED_PROTEINS.items():
        add("protein", rvn, "", "baseline", "", g, lfc, True)
    for g in proteins_null:
        add("protein", rvn, "", "baseline", "", g, 0.0, False)
    for p in design["patients"].values():
        dom = p["clones"][1]["name"]
        fb, fr = p["clone_fr"]["baseline"][1], p["clone_fr"]["resection"][1]
        if p["responder"]:
            add("clone", rvb, "responder", "", "malignant", dom, np.log2(fr / fb), True)
        else:
            add("clone", rvb, "non_responder", "", "malignant", dom, 0.0, False)
    return pd.DataFrame(rows)
