"""Simulated PINNACLE trial cohort: the pipeline's embedded demo and the test bed of every stage.

Why
---
The pipeline must run with no edits (``snakemake --cores all``) and every stage needs data with a
known answer. This package writes a small trial - patients x (baseline, resection), responders
and non-responders, all three modalities - in the file formats real data arrive in (Cell Ranger
h5, a wide scDNA bin table, MaxQuant ``proteinGroups.txt``), together with a ``truth/`` folder
that records what was planted (its file names: :mod:`pinnacle.io.cohort_layout`). Only the
truth-check of the workflow reads ``truth/``; no analysis module imports this package, and this
package imports no analysis module (only :mod:`pinnacle.writers`, :mod:`pinnacle.errors` and
:mod:`pinnacle.io.cohort_layout`), so
a stage cannot peek at the answer.

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
- Normal epithelium (opt-in, ``normal_epithelial``: a share of the epithelial cells): diploid
  cells with the malignant programme and library but no copy-number factors (``cell_type``
  ``epithelial_normal``, major type ``malignant/epithelial``, no clone), so calling malignant
  cells needs copy number, not markers. Drawn from its own stream.
- Epstein-Barr virus (opt-in, ``ebv=True``): malignant cells express EBV latency II
  transcripts (:data:`EBV_GENES`: RPMS1 and the other BARTs most, LMP2A, EBNA1, LMP1, BARF1;
  EBERs are not polyadenylated) at ~0.04% of their UMIs (per-cell Gamma spread, shape 2;
  detected in most malignant cells), written as gene features ``EBV_<name>`` after the human
  genes, as Cell Ranger reports a reference with the EBV genome as contig ``chrEBV``; other
  cells and empty droplets get them only from the ambient RNA. Own stream; per-cell counts in
  ``truth/cells.tsv.gz`` (``ebv_counts``).
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
- Composition: per-patient Dirichlet around NPC-like means (a general-knowledge prior, not a
  published table: B-cell-rich lymphoepithelial tumours; see ``_tables._COMPOSITION``) with a
  per-patient malignant fraction (log-uniform 5-35%); per-sample Dirichlet around the patient's
  expectation.
- Copy number: per patient a trunk clone and 1-2 subclones with arm-level events drawn with NPC
  CGH frequencies (Chen YJ et al., Genes Chromosomes Cancer 25:169, 1999; 16q: Cancer Genet
  Cytogenet 126:63, 2001); expression of altered-arm genes in malignant cells x CN/2 (exactly).
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

Modules (private, behind this public namespace): ``_tables`` (cell types, programmes, ADT panel,
per-type settings, composition, effect sizes, state levels), ``_calibration`` (the real tables and
the mapping onto them, the detection-share solver), ``_model`` (the cohort's expression model),
``_design`` (composition, clones, states, DE genes, ``effects.tsv``), ``_rna`` (one scRNA +
CITE-seq sample), ``_dna`` (one scDNA sample), ``_proteomics``, ``_cohort`` (sheets, gene panel,
:func:`simulate_cohort`, which writes every file), ``_cli``, ``_resources`` (the reference tables
in ``resources/``), ``_util`` (random streams, checks, barcodes); ``layout`` (public) names the
files of ``truth/`` for the simulator and every reader of the truth.

CLI: ``python -m pinnacle.simulate --out DIR --patients 6 --cells 1000 --seed 0``
(``--states``, ``--interferon-twin``, ``--panel-genes N|FILE``, ``--no-mito-genes``,
``--normal-epithelial FRACTION``, ``--ebv``). With both tumour options off (the default) every
file is byte-identical to a cohort written without them.
See docs/simulator.md for the measured simulator-vs-real table.
"""

from __future__ import annotations

from pinnacle.io import cohort_layout as layout  # noqa: F401  (the truth files' names)
from pinnacle.io.cohort_layout import cohort_sheets

from ._calibration import _REAL_TYPE as _REAL_TYPE
from ._calibration import _carriers as _carriers
from ._calibration import _lineage_level as _lineage_level
from ._calibration import _own_real_types as _own_real_types
from ._cli import main
from ._cohort import simulate_cohort
from ._tables import _COMPOSITION_EFFECTS as _COMPOSITION_EFFECTS
from ._tables import (
    ACTIVATION_PROGRAMME,
    ADT_PANEL,
    CELL_TYPES,
    CNV_EVENT_FREQUENCIES,
    CYCLING_GENES,
    EBV_GENES,
    HAEMOGLOBIN_GENES,
    HOUSEKEEPING_GENES,
    IFN_RESPONSE_GENES,
    INTERFERON_PROGRAMME,
    MARKER_PROGRAMMES,
    NORMAL_EPITHELIAL,
    PLANTED_PROTEINS,
    SEX_GENES,
    SIGNATURE_GENES,
    STATES,
    STRESS_PROGRAMME,
    TIMEPOINTS,
    required_genes,
)

__all__ = [
    "CELL_TYPES", "MARKER_PROGRAMMES", "ADT_PANEL", "CYCLING_GENES", "HOUSEKEEPING_GENES",
    "SEX_GENES", "HAEMOGLOBIN_GENES", "IFN_RESPONSE_GENES", "SIGNATURE_GENES",
    "INTERFERON_PROGRAMME", "ACTIVATION_PROGRAMME", "STRESS_PROGRAMME", "STATES",
    "PLANTED_PROTEINS", "CNV_EVENT_FREQUENCIES", "TIMEPOINTS", "EBV_GENES", "NORMAL_EPITHELIAL",
    "cohort_sheets", "simulate_cohort", "required_genes", "main",
]
