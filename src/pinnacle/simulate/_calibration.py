"""Calibration against real cells: the mapping of simulated types onto published blood types
(``resources/marker_detection_pbmc.tsv``) and Kang's interferon types
(``resources/interferon_response_pbmc.tsv``), lookups into both tables, and the detection-share
solver the model's marker levels come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._tables import _B, _CD4, _CD8, _PROGRAMMES
from ._util import _check

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
