"""Bulk proteomics of the cohort, as a MaxQuant ``proteinGroups.txt`` (with decoys,
contaminants and only-by-site rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._model import _Model
from ._tables import _CONTAMINANTS, _N_PROTEINS, PLANTED_PROTEINS
from ._util import _rng


def _simulate_proteomics(model: _Model, design: dict, samples: pd.DataFrame, seed: int):
    rng = _rng(seed, 30)
    sym = model.symbols
    pc = model.genes.get("gene_type", pd.Series(["protein_coding"] * model.G)).to_numpy() == "protein_coding"
    ok = pc & (model.genes["chrom"].to_numpy() != "chrY") & ~model.is_mt
    pool = [g for g in sym[ok] if g not in PLANTED_PROTEINS]
    n_rand = _N_PROTEINS - len(PLANTED_PROTEINS)
    chosen = list(rng.choice(pool, size=n_rand + 10, replace=False))
    targets, site_only = list(PLANTED_PROTEINS) + chosen[:n_rand], chosen[n_rand:]
    rev_genes = list(rng.choice(pool, size=10, replace=False))
    nulls = list(rng.choice(chosen[:n_rand], size=20, replace=False))

    rows = []
    for g in targets:
        rows.append(dict(protein_id=f"SIM_{g}", gene=g, protein_name=f"Simulated protein {g}",
                         kind="target", base=rng.normal(25, 2), planted_log2fc=PLANTED_PROTEINS.get(g, 0.0)))
    for g in site_only:
        rows.append(dict(protein_id=f"SIM_{g}", gene=g, protein_name=f"Simulated protein {g}",
                         kind="only_by_site", base=rng.normal(21.5, 1), planted_log2fc=0.0))
    for g in rev_genes:
        rows.append(dict(protein_id=f"REV__SIM_{g}", gene="", protein_name="",
                         kind="reverse", base=rng.normal(21, 1), planted_log2fc=0.0))
    for g in _CONTAMINANTS:
        rows.append(dict(protein_id=f"CON__SIM_{g}", gene=g, protein_name=f"Contaminant {g}",
                         kind="contaminant", base=rng.normal(26, 2), planted_log2fc=0.0))
    prot = pd.DataFrame(rows)
    n_p = len(prot)
    sids = samples["sample_id"].tolist()
    S = len(sids)
    loading = rng.normal(0, 0.3, size=S)
    pat_ids = samples["patient_id"].tolist()
    upat = list(dict.fromkeys(pat_ids))
    pat_eff = rng.normal(0, 0.3, size=(n_p, len(upat)))
    log2 = np.empty((n_p, S))
    for j, (_s, p) in enumerate(zip(sids, pat_ids)):
        resp = design["patients"][p]["responder"] and design["effects"]
        log2[:, j] = (prot["base"].to_numpy() + pat_eff[:, upat.index(p)] + rng.normal(0, 0.2, size=n_p)
                      + (prot["planted_log2fc"].to_numpy() if resp else 0.0) + loading[j])
    # missing not at random: low intensities drop out (plus 1% at random)
    p_miss = 1 / (1 + np.exp((log2 - 22.0) / 0.6)) + 0.01
    missing = rng.random(log2.shape) < p_miss
    inten = np.where(missing, 0.0, np.rint(2.0 ** log2))
    lfq = np.where(missing, 0.0, np.rint(2.0 ** (log2 - loading[None, :] + rng.normal(0, 0.05, size=log2.shape))))
    msms = np.where(missing, 0, rng.poisson(np.clip(2.0 ** ((log2 - 21) / 1.5), 0.5, 500)) + 1)
    peptides = rng.poisson(np.clip((prot["base"].to_numpy() - 19) * 1.5, 1, None)) + 1
    peptides[prot["kind"].isin(["only_by_site", "reverse"]).to_numpy()] = 1
    ann = pd.DataFrame({
        "protein_id": prot["protein_id"], "gene": prot["gene"], "protein_name": prot["protein_name"],
        "reverse": prot["kind"] == "reverse", "contaminant": prot["kind"] == "contaminant",
        "only_by_site": prot["kind"] == "only_by_site", "peptides": peptides})
    order = np.argsort(ann["protein_id"].to_numpy(), kind="stable")
    ann = ann.iloc[order].reset_index(drop=True)
    inten_df = pd.DataFrame(inten[order], columns=sids)
    lfq_df = pd.DataFrame(lfq[order], columns=sids)
    msms_df = pd.DataFrame(msms[order], columns=sids)
    truth = prot.iloc[order].reset_index(drop=True).rename(columns={"base": "base_log2_intensity"})
    truth["base_log2_intensity"] = truth["base_log2_intensity"].round(3)
    truth["n_missing"] = missing[order].sum(axis=1)
    return ann, inten_df, lfq_df, msms_df, truth, nulls
