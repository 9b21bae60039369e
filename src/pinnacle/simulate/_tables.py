"""The hand-written biology of the simulated trial: cell types, their marker programmes, the
state programmes, the CITE-seq panel, per-type settings, composition, planted effect sizes and
the state levels (see the package docstring for where each comes from)."""

from __future__ import annotations

from pinnacle.io.cohort_layout import TIMEPOINTS  # noqa: F401  (the sheets' contract)

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
# type (or lineage), subtype programmes by one type. Markers from the marker list of the
# recurrent-NPC single-cell/spatial study (Nature Genetics 2025; code
# github.com/zhanglabtools/NPC_scRNA_Spatial_code) and general immunology (exhaustion,
# activated-Treg, TAM and TLS genes, without a checked source).
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
    ("mono_classical", ["mono_classical"], ["CD14", "S100A8", "S100A9", "VCAN", "FCN1", "LYZ", "CD36"]),
    ("mono_nonclassical", ["mono_nonclassical"], ["FCGR3A", "MS4A7", "CDKN1C", "LST1", "VMO1"]),
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

#: arm-level copy-number events of NPC with their frequencies (CGH of 51 NPC: Chen YJ et al.,
#: Genes Chromosomes Cancer 25:169, 1999; 16q from 30 primaries: Cancer Genet Cytogenet 126:63,
#: 2001).
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
# NPC-like composition of the non-malignant compartment (percent of all cells). A prior from
# general knowledge, not a published table: T/NK 40-65%, B + plasma 10-30% (NPC, a
# lymphoepithelial carcinoma, is unusually B-cell rich), myeloid 5-15%, mast < 2%, stroma < 5%
# (under-captured by dissociation).
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
# Antibody background, calibrated to real CITE-seq (dsb_citeseq_tsang: 2,872 PBMC, 8,005 empty
# droplets). Empty droplets hold per tag a mean of 0.7-12.6 counts (median 3.2): the ambient level
# is _ADT_AMBIENT_BASE x each tag's base (2-8). Cells hold isotype controls at 0.8-1.2x the empty
# droplets' level and non-carrier lineage tags at 1.0-1.7x (CD19 in CD3-high cells 0.99x, 6.6%
# zeros; CD3 in CD19-high 1.44x; CD14 in CD3-high 1.69x): their unspecific binding adds
# _ADT_NSB_SCALE x base. With 0.5 and 1.0 (before) cells held ~3x the empties' isotypes and DSB
# left isotypes ~2 SD above 0; with 1.0 and 0.2 isotypes sit at ~1.1x.
_ADT_AMBIENT_BASE = 1.0
_ADT_NSB_SCALE = 0.2
_MT_WEIGHTS = {"MT-CO1": 8, "MT-CO2": 6, "MT-CO3": 7, "MT-ATP6": 7, "MT-ATP8": 1.5,
               "MT-CYB": 5, "MT-ND1": 3, "MT-ND2": 3, "MT-ND3": 2.5, "MT-ND4": 5,
               "MT-ND4L": 1.2, "MT-ND5": 1.5, "MT-ND6": 0.6}
_BLOCK = 1000

# ---- state programmes: names and levels
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

# ---- opt-in tumour options (off by default: every output is then as without them)
#: ``cell_type`` of diploid normal epithelium (``normal_epithelial`` > 0): the malignant programme's
#: genes and library, major type "malignant/epithelial", no clone and no copy-number factors.
NORMAL_EPITHELIAL = "epithelial_normal"
#: Epstein-Barr virus transcripts of NPC's latency II (``ebv=True``), as a Cell Ranger reference with
#: the EBV genome as contig ``chrEBV`` reports them: name -> share of a cell's EBV UMIs. The
#: BamHI-A rightward transcripts (BARTs: RPMS1 the most abundant) dominate, then LMP2A, EBNA1,
#: LMP1 and BARF1; EBERs are not polyadenylated and so absent from 10x 3' data [general knowledge].
EBV_GENES: dict[str, float] = {"RPMS1": 0.5, "LMP2A": 0.2, "EBNA1": 0.12, "LMP1": 0.1, "BARF1": 0.08}
EBV_CONTIG = "chrEBV"
_EBV_SHARE = 4e-4  # mean share of a malignant cell's UMIs from EBV (~5 UMIs at 12,000)
_EBV_CELL_SHAPE = 2.0  # per-cell Gamma(shape)/shape spread of that share


def required_genes() -> list[str]:
    """Every gene the simulator's programmes and effects name (the gene table must hold them)."""
    genes: list[str] = []
    for _, _, g in _PROGRAMMES:
        genes += g
    genes += CYCLING_GENES + list(HOUSEKEEPING_GENES) + list(SEX_GENES) + HAEMOGLOBIN_GENES
    genes += IFN_RESPONSE_GENES + list(SIGNATURE_GENES) + list(PLANTED_PROTEINS)
    genes += list(INTERFERON_PROGRAMME) + list(ACTIVATION_PROGRAMME) + list(STRESS_PROGRAMME)
    return list(dict.fromkeys(genes))
