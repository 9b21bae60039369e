"""The expression model of the cohort (:class:`_Model`): type profiles with markers calibrated
on real cells, gene-wise dispersions, state programmes and the antibody-tag panel."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._calibration import (
    _AMBIENT_MEAN,
    _BLOOD_SHARE,
    _BLOOD_TYPES,
    _DISPERSION_CLIP,
    _KANG_TYPE,
    _MARKER_FC_QUANTILES,
    _MAX_DETECTION_SOLVED,
    _PLASMA_IG,
    _PLASMA_IG_MAX,
    _REAL_TYPE,
    _carriers,
    _lineage_level,
    _own_real_types,
    _RealTables,
    _solve_fraction,
)
from ._tables import (
    _COMPOSITION,
    _GENE_DISPERSION,
    _HIGH,
    _MALIGNANT_RANGE,
    _MT_WEIGHTS,
    _PANEL_IFN_LEVEL,
    _PROGRAMMES,
    _SEX_LEVEL,
    _TYPE_SETTINGS,
    _TYPES,
    ACTIVATION_PROGRAMME,
    ADT_PANEL,
    CELL_TYPES,
    CYCLING_GENES,
    HAEMOGLOBIN_GENES,
    HOUSEKEEPING_GENES,
    INTERFERON_PROGRAMME,
    SEX_GENES,
    STRESS_PROGRAMME,
)


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
    def _state_programmes(self, real: _RealTables) -> None:
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
    def _calibrate(self, real: _RealTables, rng: np.random.Generator) -> None:
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
