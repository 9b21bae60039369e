"""Comparisons with patients as replicates: designs, planted effects found, nulls quiet, pairing used.

The cohort tests run the comparison functions on pseudobulks made from simulated cohorts with the
planted labels (the stage's own job; the workflow test runs it after the pipeline's annotation).
"""
import hashlib
import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pinnacle import compare, io, sheets
from pinnacle.errors import InputError
from pinnacle.simulate import simulate_cohort

RL = ["non_responder", "responder"]
TP = ["baseline", "resection"]
FDR = 0.1


def _meta(n_patients=6, n_responders=3, missing=()):
    rows = []
    for i in range(n_patients):
        pid = f"P{i + 1:02d}"
        for tp in TP:
            if (pid, tp) in missing:
                continue
            rows.append({"sample_id": f"{pid}_{tp}", "patient_id": pid, "timepoint": tp,
                         "response": "responder" if i < n_responders else "non_responder",
                         "age": str(50 + 3 * i), "sex": "female" if i % 2 else "male"})
    return compare.sample_meta(rows)


# ---------------------------------------------------------------------------------------------
# design matrices
# ---------------------------------------------------------------------------------------------
def test_baseline_design_uses_baseline_samples_and_covariates():
    d = compare.design_matrix(_meta(), "baseline", response_levels=RL, timepoints=TP,
                              covariates={"age": "numeric", "sex": "categorical"})
    assert set(d.samples) == {f"P{i:02d}_baseline" for i in range(1, 7)}
    assert list(d.X.columns) == ["Intercept", "response", "age", "sex[male]"]
    assert d.X["age"].abs().sum() > 0 and abs(d.X["age"].mean()) < 1e-9  # numeric covariates centred
    assert d.groups == {"non_responder": 3, "responder": 3}
    assert d.formula == "~ response + age + sex"


def test_paired_design_drops_incomplete_patients_and_says_so():
    meta = _meta(missing={("P02", "resection")})
    d = compare.design_matrix(meta, "on_treatment_responder", response_levels=RL, timepoints=TP, min_patients=2)
    assert set(d.X.index.str[:3]) == {"P01", "P03"}
    assert d.coef == "timepoint" and "patient[P03]" in d.X.columns
    assert d.dropped == "1 patients without both baseline and resection"
    base = compare.design_matrix(meta, "baseline", response_levels=RL, timepoints=TP)
    assert "P02_baseline" in base.samples  # P02 still counts where the design allows


def test_interaction_design_is_full_rank_and_tests_the_difference_of_changes():
    d = compare.design_matrix(_meta(), "interaction", response_levels=RL, timepoints=TP)
    assert d.coef == "timepoint:response"
    assert np.linalg.matrix_rank(d.X.to_numpy()) == d.X.shape[1]
    # response on its own is absorbed by the patient terms
    assert "response" not in d.X.columns
    assert d.groups == {"non_responder pairs": 3, "responder pairs": 3}


def test_too_few_patients_is_not_estimable_not_an_error():
    meta = _meta(n_patients=3, n_responders=1)
    with pytest.raises(compare.NotEstimable, match="responder: 1"):
        compare.design_matrix(meta, "baseline", response_levels=RL, timepoints=TP)


def test_unknown_covariate_and_design_errors_name_the_key():
    with pytest.raises(InputError, match=r"compare.covariates"):
        compare.design_matrix(_meta(), "baseline", response_levels=RL, timepoints=TP, covariates=["stage"])
    with pytest.raises(InputError, match=r"compare.designs"):
        compare.design_matrix(_meta(), "treatment", response_levels=RL, timepoints=TP)
    assert compare.design_names(["baseline", "on_treatment_by_response"], RL) == [
        "baseline", "on_treatment_non_responder", "on_treatment_responder"]


def test_squeeze_variances_recovers_the_prior():
    """limma's moment estimator: variances drawn from a scaled inverse chi-square prior
    (d0 = 8, s0^2 = 0.5), observed with 3 residual df, give back d0 and s0^2."""
    rng = np.random.default_rng(0)
    d0, s0, df, n = 8.0, 0.5, 3.0, 20000
    sigma2 = d0 * s0 / rng.chisquare(d0, n)
    s2 = sigma2 * rng.chisquare(df, n) / df
    post, d0_hat, s0_hat = compare.squeeze_variances(s2, df)
    assert d0_hat == pytest.approx(d0, rel=0.15) and s0_hat == pytest.approx(s0, rel=0.05)
    # posterior variances closer to the truth than the raw ones
    assert np.mean((np.log(post) - np.log(sigma2)) ** 2) < 0.5 * np.mean((np.log(s2) - np.log(sigma2)) ** 2)
    # no excess spread: infinite prior df, every variance the common value
    s2_equal = 0.5 * rng.chisquare(df, n) / df
    post, d0_hat, _ = compare.squeeze_variances(s2_equal, df)
    assert d0_hat > 100 and np.ptp(post) < 0.1 * post.mean()


def test_an_outlying_variance_is_not_squeezed():
    """20 types with alike spread and one (the malignant fraction) with 5 times the sd, no
    effect, 4 vs 4 patients. Squeezed towards the others' variance (plain squeezeVar), the wide
    type is called in ~16% of cohorts at p < 0.05; with limma's robust squeezeVar (both tails
    Winsorized, a prior df per type that falls with its probability of being an outlier) it keeps
    almost all of its own variance and stays near 5%, also with two wide types, and the alike
    types keep their moderation.

    Changed with the port of limma's robust=TRUE: the wide type's prior df is small but not
    exactly 0 (the old one-pass rule set it to 0 or left it whole, and was called at 7.5% with
    one wide type and 10.7% with two)."""
    from scipy import stats

    rng = np.random.default_rng(1)
    meta = pd.DataFrame({"patient_id": [f"P{i}" for i in range(8)], "timepoint": "baseline",
                         "response": RL * 4}, index=[f"P{i}_baseline" for i in range(8)])
    design = compare.design_matrix(meta, "baseline", response_levels=RL, timepoints=TP)
    X = design.X.to_numpy(dtype=float)
    j = design.X.columns.get_loc(design.coef)
    unscaled = np.linalg.inv(X.T @ X)[j, j]
    for n_wide in (1, 2):
        sd = np.r_[np.full(21 - n_wide, 0.02), np.full(n_wide, 0.10)]
        p_wide, p_plain, p_alike, d0_wide, d0_alike = [], [], [], [], []
        for _ in range(400):
            values = pd.DataFrame(rng.normal(0.3, sd, size=(8, 21)), index=meta.index)
            res = compare.ols_test(values, design)
            p_wide.extend(res["pvalue"].iloc[-n_wide:])
            p_alike.extend(res["pvalue"].iloc[:-n_wide])
            d0_wide.extend(res["df_prior"].iloc[-n_wide:])
            d0_alike.append(res["df_prior"].iloc[:-n_wide].median())
            beta, *_ = np.linalg.lstsq(X, values.loc[design.X.index].to_numpy(), rcond=None)
            s2 = ((values.loc[design.X.index].to_numpy() - X @ beta) ** 2).sum(axis=0) / 6
            post, d0_plain, _ = compare.squeeze_variances(s2, 6)
            t = beta[j, -1] / np.sqrt(post[-1] * unscaled)
            p_plain.append(2 * stats.t.sf(abs(t), 6 + min(d0_plain, 1e6)))
        # measured (one wide / two wide): robust 0.068 / 0.065, plain 0.16 / 0.135; alike types 0.044 / 0.041
        assert np.mean(np.array(p_plain) < 0.05) > (0.15 if n_wide == 1 else 0.10)
        assert np.mean(np.array(p_wide) < 0.05) < 0.09
        assert 0.03 < np.mean(np.array(p_alike) < 0.05) < 0.07
        assert np.median(d0_wide) < 1 and np.median(d0_wide) < 0.05 * np.median(d0_alike)
    s2 = np.r_[np.random.default_rng(2).chisquare(6, 20) / 6, 30.0]
    post, d0s, s0 = compare.squeeze_variances_robust(s2, 6)
    assert post[-1] == pytest.approx(s2[-1], rel=1e-6) and d0s[-1] < 1e-3 * d0s[:-1].min()
    assert s0 < 2 and (d0s[:-1] > 0).all()


# ---------------------------------------------------------------------------------------------
# pairing: an effect visible only within patient
# ---------------------------------------------------------------------------------------------
def _paired_counts(seed=1, n_patients=5, n_genes=400, n_effect=40, lfc=1.0, patient_sd=1.0):
    """Pseudobulk counts where patients differ far more than the on-treatment change."""
    rng = np.random.default_rng(seed)
    meta = _meta(n_patients=n_patients, n_responders=n_patients)
    mu = rng.lognormal(5, 1, n_genes)
    patient = {p: rng.normal(0, patient_sd, n_genes) for p in meta["patient_id"].unique()}
    effect = np.zeros(n_genes)
    effect[:n_effect] = lfc * np.log(2)
    rows = []
    for s, r in meta.iterrows():
        m = mu * np.exp(patient[r["patient_id"]] + (r["timepoint"] == "resection") * effect
                        + rng.normal(0, 0.1, n_genes))
        rows.append(rng.negative_binomial(20, 20 / (20 + m)))
    genes = [f"G{i}" for i in range(n_genes)]
    X = sp.csr_matrix(np.array(rows, dtype=np.float32))
    obs = pd.DataFrame({"sample_id": meta.index, "cell_type": "T", "n_cells": 100, "n_counts": X.sum(1).A1})
    pb = ad.AnnData(X=X, obs=obs.set_index(obs["sample_id"] + "|T"), var=pd.DataFrame(index=genes))
    return pb, meta, set(genes[:n_effect])


def test_pairing_finds_a_within_patient_effect_that_the_unpaired_test_misses():
    pb, meta, planted = _paired_counts()
    kw = dict(design="on_treatment_responder", response_levels=RL, timepoints=TP, min_counts=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paired, _ = compare.pseudobulk_de(pb, meta, paired=True, **kw)
        unpaired, _ = compare.pseudobulk_de(pb, meta, paired=False, **kw)
    hits_p = set(paired.loc[paired["padj"] < FDR, "gene"])
    hits_u = set(unpaired.loc[unpaired["padj"] < FDR, "gene"])
    # a 2-fold change against patient differences of sd 1 (natural log): pairing removes them
    assert len(hits_p & planted) >= 0.8 * len(planted)
    assert len(hits_p - planted) <= 0.2 * max(len(hits_p), 1)  # FDR is for the null-cohort test
    assert len(hits_u & planted) <= 0.25 * len(planted)
    assert paired["formula"].iloc[0] == "~ patient + timepoint" and unpaired["formula"].iloc[0] == "~ timepoint"


def test_pairing_matters_for_composition_too():
    rng = np.random.default_rng(3)
    meta = _meta(n_patients=5, n_responders=5)
    rows = {}
    for s, r in meta.iterrows():
        base = {"P01": 0.02, "P02": 0.05, "P03": 0.10, "P04": 0.2, "P05": 0.3}[r["patient_id"]]
        frac = base * (1.6 if r["timepoint"] == "resection" else 1.0)
        n_a = rng.binomial(2000, frac)
        rows[s] = {"A": n_a, "B": 2000 - n_a - 400, "C": 400}
    counts = pd.DataFrame(rows).T
    kw = dict(design="on_treatment_responder", response_levels=RL, timepoints=TP)
    paired = compare.composition_test(counts, meta, **kw).set_index("cell_type")
    unpaired = compare.composition_test(counts, meta, paired=False, **kw).set_index("cell_type")
    assert paired.loc["A", "padj"] < 0.05 and paired.loc["A", "estimate"] > 0
    assert unpaired.loc["A", "padj"] > 0.1


# ---------------------------------------------------------------------------------------------
# one DE job per design x cell type
# ---------------------------------------------------------------------------------------------
def _typed_pseudobulks(n_cells: dict, seed=5, n_patients=6, n_genes=150):
    """Pseudobulks of several types (CellTypist-style names) over the same samples: a 2-fold
    on-treatment change in the first 15 genes of every type, ``n_cells`` cells per pseudobulk."""
    rng = np.random.default_rng(seed)
    meta = _meta(n_patients=n_patients, n_responders=n_patients // 2)
    genes = [f"G{i}" for i in range(n_genes)]
    rows, obs = [], []
    for ct, cells in n_cells.items():
        mu = rng.lognormal(4, 1, n_genes)
        patient = {p: rng.normal(0, 0.5, n_genes) for p in meta["patient_id"].unique()}
        for s, r in meta.iterrows():
            effect = np.r_[np.full(15, np.log(2)), np.zeros(n_genes - 15)] * (r["timepoint"] == "resection")
            m = mu * np.exp(patient[r["patient_id"]] + effect + rng.normal(0, 0.1, n_genes))
            rows.append(rng.negative_binomial(20, 20 / (20 + m)))
            obs.append({"sample_id": s, "cell_type": ct, "n_cells": cells})
    X = sp.csr_matrix(np.array(rows, dtype=np.float32))
    obs = pd.DataFrame(obs).assign(n_counts=X.sum(1).A1)
    pb = ad.AnnData(X=X, obs=obs.set_index(obs["sample_id"] + "|" + obs["cell_type"]), var=pd.DataFrame(index=genes))
    return pb, meta


def test_de_split_per_cell_type_gives_the_tables_of_one_call(tmp_path):
    """The workflow fits each design x cell type in its own job and joins the parts: the joined
    tables must be those of one call on all the types, row for row and column for column,
    including a type with too few cells and a listed type with no pseudobulks (status rows only)."""
    pb, meta = _typed_pseudobulks({"CD4+ T cells": 200, "Tem/Effector helper T cells": 5, "B cells": 80})
    types = ["Tem/Effector helper T cells", "CD4+ T cells", "B cells", "gamma-delta T cells"]
    kw = dict(design="on_treatment", response_levels=RL, timepoints=TP, min_counts=0, n_cpus=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole, whole_status = compare.pseudobulk_de(pb, meta, cell_types=types, **kw)
        # the per-type jobs open the cohort file backed and read one type's rows
        pb.write_h5ad(tmp_path / "pb.h5ad", compression="gzip")
        backed = ad.read_h5ad(tmp_path / "pb.h5ad", backed="r")
        parts = []
        for name in compare.cell_type_file_names(compare.de_cell_types(backed.obs["cell_type"], types)).values():
            ct = compare.cell_type_from_file_name(name, compare.de_cell_types(backed.obs["cell_type"], types))
            parts.append(compare.pseudobulk_de(compare.cell_type_pseudobulks(backed, ct), meta, cell_types=[ct], **kw))
    assert list(whole_status["status"].str[:10]) == ["not tested", "tested", "tested", "not tested"]
    assert list(dict.fromkeys(whole["cell_type"])) == ["CD4+ T cells", "B cells"]
    assert (whole.groupby("cell_type")["padj"].apply(lambda q: (q < FDR).sum()) >= 10).all()
    res, status = compare.combine_de([r for r, _ in parts], [s for _, s in parts])
    # padj: BH within each type (the parts' own); padj_design: BH across the design's types
    assert (parts[1][0]["padj"].dropna().to_numpy() == res.loc[res["cell_type"] == "CD4+ T cells", "padj"]
            .dropna().to_numpy()).all()
    tested = res["padj"].notna()
    np.testing.assert_allclose(res.loc[tested, "padj_design"], compare.bh(res.loc[tested, "pvalue"].to_numpy()))
    pd.testing.assert_frame_equal(res, whole)
    pd.testing.assert_frame_equal(status, whole_status)
    assert res.to_csv(sep="\t", index=False) == whole.to_csv(sep="\t", index=False)
    assert status.to_csv(sep="\t", index=False) == whole_status.to_csv(sep="\t", index=False)
    # the join keeps the order it is given, and refuses a type twice
    swapped, _ = compare.combine_de([r for r, _ in parts[::-1]], [s for _, s in parts[::-1]])
    assert list(dict.fromkeys(swapped["cell_type"])) == ["B cells", "CD4+ T cells"]
    with pytest.raises(ValueError, match="twice"):
        compare.combine_de([parts[1][0]] * 2, [parts[1][1]] * 2)
    # the report's short table: padj below the FDR only, by type then padj
    sig = compare.significant(res, fdr=FDR)
    assert len(sig) == int((res["padj"] < FDR).sum()) > 0 and (sig["padj"] < FDR).all()
    assert list(sig.columns) == list(res.columns)
    for _, g in sig.groupby("cell_type", sort=False):
        assert g["padj"].is_monotonic_increasing


def test_cell_type_file_names_are_safe_distinct_and_stable():
    names = ["CD4+ T cells", "CD4- T cells", "Tem/Effector helper T cells", "B_naive", "NA", "../etc", "Ünïcode  T"]
    files = compare.cell_type_file_names(names)
    # the same pattern as CELL_TYPE_FILE_NAME in workflow/rules/common.smk
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", f) for f in files.values()), files
    assert len(set(files.values())) == len(names)
    assert files["B_naive"] == "B_naive" and files["NA"] == "NA"  # safe names are kept
    assert files["CD4+ T cells"].startswith("CD4_T_cells-") and files["CD4- T cells"].startswith("CD4-_T_cells-")
    # stable across runs and machines (SHA-1, never Python's salted hash)
    assert files["CD4+ T cells"] == "CD4_T_cells-" + hashlib.sha1(b"CD4+ T cells").hexdigest()[:8]
    assert all(compare.cell_type_from_file_name(f, names) == ct for ct, f in files.items())
    with pytest.raises(InputError, match="share the file name"):
        compare.cell_type_file_names(["Treg", "treg"])
    with pytest.raises(InputError, match="names none"):
        compare.cell_type_from_file_name("CD8_T", names)
    # listed types in their order (once each); otherwise every type present, sorted
    assert compare.de_cell_types(["b", "a", "a"], ["z", "a", "z"]) == ["z", "a"]
    assert compare.de_cell_types(pd.Series(["b", "a", "a"])) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# simulated cohorts
# ---------------------------------------------------------------------------------------------
def _cohort_pseudobulks(root):
    """Pseudobulks from a simulated cohort's planted labels (singlets of good quality only)."""
    truth = pd.read_csv(f"{root}/truth/cells.tsv.gz", sep="\t", index_col="cell_id")
    clean = truth[~truth["is_doublet"] & ~truth["is_low_quality"]]
    samples = pd.read_csv(f"{root}/samples.tsv", sep="\t", index_col="sample_id")
    patients = pd.read_csv(f"{root}/patients.tsv", sep="\t").set_index("patient_id", drop=False)
    meta = sheets.annotate_samples(samples, patients, response_column="response")
    parts = []
    for s in samples.index:
        a, _ = io.split_features(io.read_rna(samples.loc[s, "rna"], sample_id=s))
        a.obs["sample_id"] = s
        parts.append(compare.pseudobulk_sample(a, clean))
    return compare.concat_pseudobulks(parts), meta[["patient_id", "timepoint", "response"]]


@pytest.fixture(scope="module")
def planted_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    simulate_cohort(root, n_patients=8, n_responders=4, cells_per_sample=700, dna_cells_per_sample=0, seed=11)
    pb, meta = _cohort_pseudobulks(root)
    return pb, meta, pd.read_csv(root / "truth" / "effects.tsv", sep="\t")


def test_pseudobulk_sums_every_kept_cell_once(planted_cohort):
    pb, meta, _ = planted_cohort
    assert set(pb.obs["sample_id"]) == set(meta.index)
    assert (pb.obs["n_cells"] > 0).all()
    assert np.allclose(np.asarray(pb.X.sum(axis=1)).ravel(), pb.obs["n_counts"])
    # every gene of the simulator's gene table (3,018 since the table was regenerated in 10986ca)
    assert pb.n_vars == len(pd.read_csv("resources/genes_grch38.tsv", sep="\t")) and sp.issparse(pb.X)


def test_planted_composition_shifts_found_and_nulls_quiet(planted_cohort):
    pb, meta, effects = planted_cohort
    counts = pb.obs.pivot_table(index="sample_id", columns="cell_type", values="n_cells", fill_value=0)
    res = {d: compare.composition_test(counts, meta, design=d, response_levels=RL, timepoints=TP).set_index("cell_type")
           for d in ["baseline", "on_treatment_responder", "on_treatment_non_responder"]}
    comp = effects[effects["kind"] == "composition"]
    planted = comp[comp["planted"]]
    found = [res["on_treatment_responder"].loc[t, "padj"] < FDR
             and np.sign(res["on_treatment_responder"].loc[t, "estimate"]) == np.sign(lfc)
             for t, lfc in zip(planted["cell_type"], planted["log2fc"])]
    assert all(found), planted.assign(found=found)
    nulls = comp[~comp["planted"]]
    design = np.where(nulls["contrast"] == "responder_vs_non_responder", "baseline", "on_treatment_" + nulls["group"])
    false = [res[d].loc[t, "padj"] < FDR for d, t in zip(design, nulls["cell_type"])]
    # Measured over seeds 11-14 of this cohort: 1, 0, 2 and 0 of the 21 listed nulls called, each
    # a chance pattern of 4 pairs, e.g. a rare type with 0-15 cells per sample that rose in all 4
    # non-responders (cDC2, seed 11); docs/statistics.md. At most one here.
    assert sum(false) <= 1, nulls.assign(called=false)
    # the estimate is the planted shift on the log-odds scale: +1.3 log2 for the CD8 types
    assert 0.6 < res["on_treatment_responder"].loc["CD8_exhausted", "log2_ratio"] < 2.0


@pytest.fixture(scope="module")
def planted_fits(planted_cohort):
    """Design -> DE table, and design -> camera table of the shipped signatures (the same fits)."""
    pb, meta, _ = planted_cohort
    sigs = compare.load_signatures("resources/signatures.yaml")
    de, cam = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for d, types in (("baseline", ["CD8_exhausted", "macrophage_C1Q", "CD4_helper", "B_naive"]),
                         ("on_treatment_responder", ["macrophage_C1Q", "CD8_exhausted", "CD4_helper", "B_naive"])):
            de[d], _, cam[d] = compare.pseudobulk_de(pb, meta, design=d, response_levels=RL, timepoints=TP,
                                                     cell_types=types, n_cpus=2, signatures=sigs)
    return de, cam


@pytest.fixture(scope="module")
def planted_de(planted_fits):
    return planted_fits[0]


def _de_calls(de, effects, design, contrast, group=None):
    e = effects[(effects["kind"] == "de_gene") & (effects["contrast"] == contrast)]
    if group:
        e = e[e["group"] == group]
    j = e.merge(de[design], left_on=["cell_type", "feature"], right_on=["cell_type", "gene"], how="left")
    called = (j["padj"] < FDR).fillna(False)
    right = np.sign(j["log2fc_y"].fillna(0)) == np.sign(j["log2fc_x"])
    return j, np.where(j["planted"], called & right, called)


def test_planted_baseline_de_genes_found_and_null_genes_quiet(planted_de, planted_cohort):
    j, called = _de_calls(planted_de, planted_cohort[2], "baseline", "responder_vs_non_responder")
    recall = called[j["planted"]].mean()
    false = called[~j["planted"]].sum()
    # 4 vs 4 patients (C1Q macrophages: 5 samples reach 10 cells), log2 fold changes 1.5-2.5
    # against between-sample noise of sdlog 0.3: at least half (measured 0.6: 15 of 15 in CD8
    # exhausted, 3 of 15 in the macrophages); every listed null gene must stay quiet
    assert recall >= 0.5, recall
    assert false <= 1, j[~j["planted"] & called]
    # shrunken fold changes are never further from zero than the MLE
    de = planted_de["baseline"].dropna(subset=["log2fc_shrunk"])
    assert (de["log2fc_shrunk"].abs() <= de["log2fc"].abs() + 1e-6).mean() > 0.99


def test_planted_ifn_programme_found_on_treatment_in_responders(planted_de, planted_cohort):
    j, called = _de_calls(planted_de, planted_cohort[2], "on_treatment_responder", "resection_vs_baseline", "responder")
    ifn = j["planted"].to_numpy()
    # 4 pairs, a 4-fold rise in ~20-50 macrophages per sample: at least half of the 12 genes
    assert called[ifn].mean() >= 0.5, j[ifn][["feature", "log2fc_y", "padj"]]
    # the responder traits present at both timepoints are nulls of this paired contrast
    assert called[~ifn].sum() <= 1


def test_signature_scores_and_enrichment_find_the_ifn_programme(planted_fits, planted_cohort):
    pb, meta, _ = planted_cohort
    planted_de, planted_camera = planted_fits
    sigs = compare.load_signatures("resources/signatures.yaml")
    enr = compare.signature_enrichment(planted_de["on_treatment_responder"].assign(design="on_treatment_responder"), sigs)
    hit = enr.set_index(["cell_type", "signature"]).loc[("macrophage_C1Q", "IFN_gamma_response")]
    assert hit["score"] > 0 and hit["padj"] < FDR
    # camera in the DE's own fit: the same statistics, the inter-gene correlation from the residuals
    # of the same design on the same samples' log-CPM; the FDR across the design's types added after
    de = planted_de["on_treatment_responder"].assign(design="on_treatment_responder")
    cam = compare.combine_camera([planted_camera["on_treatment_responder"]])
    row = cam.set_index(["cell_type", "signature"]).loc[("macrophage_C1Q", "IFN_gamma_response")]
    # the planted IFN programme is co-regulated (correlation ~0.3), so camera is far more cautious
    # than ulm (seed 11: p 0.002 against ulm's 0) and still finds it
    assert row["camera_direction"] == "Up" and row["camera_correlation"] > 0
    assert hit["pvalue"] < row["camera_pvalue"] < 0.05
    assert set(cam["cell_type"]) == set(de["cell_type"]) and cam["camera_fdr"].between(0, 1).all()
    scores = compare.score_pseudobulks(pb, sigs)
    tests = compare.signature_tests(scores, meta, design="on_treatment_responder", response_levels=RL, timepoints=TP)
    t = tests.set_index(["cell_type", "signature"]).loc[("macrophage_C1Q", "IFN_gamma_response")]
    # The per-pseudobulk score: with 4 pairs of ~17-cell macrophage pseudobulks it was
    # underpowered while each type's 6 signatures shared one variance prior (padj 0.03-0.84 over
    # seeds 11-14); moderated per signature across the 17 types it is called in every seed
    # (padj < 0.001 over seeds 11-14, estimate 1.1-1.8), as the enrichment above is.
    assert t["estimate"] > 0 and t["padj"] < FDR
    # a signature whose genes were not planted stays quiet in an unrelated type
    assert tests.set_index(["cell_type", "signature"]).loc[("B_naive", "proliferation"), "padj"] > FDR


def test_signature_file_errors_name_the_signature(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("inflamed:\n  genes: [CXCL9, CXCL10]\n")
    with pytest.raises(InputError, match=r"signature 'inflamed'.*no source"):
        compare.load_signatures(p)
    p.write_text("inflamed:\n  source: x\n")
    with pytest.raises(InputError, match="no list of genes"):
        compare.load_signatures(p)


def test_shipped_signatures_have_sources_and_known_genes():
    sigs = compare.load_signatures("resources/signatures.yaml")
    genes = set(pd.read_csv("resources/genes_grch38.tsv", sep="\t")["gene_symbol"])
    assert len(sigs["T_cell_inflamed_GEP"]["genes"]) == 18
    for name, s in sigs.items():
        assert set(s["genes"]) <= genes, (name, set(s["genes"]) - genes)


# ---------------------------------------------------------------------------------------------
# null cohorts: no planted response effect
# ---------------------------------------------------------------------------------------------
def test_null_cohorts_give_no_more_false_discoveries_than_fdr_allows(tmp_path):
    """Three null cohorts (same simulator, no planted response effect), 6 patients each.

    Composition: under the complete null BH at q = 0.1 makes a discovery in a family with
    probability at most 0.1; 12 families (4 designs x 3 cohorts) expect at most 1.2; we allow 3
    (the binomial 95% bound). DE (2 types x 2 designs x 3 cohorts, ~1,500 genes each): the
    p-values must be calibrated (share below 0.01 at most 0.015, below 0.001 at most 0.003) and no
    family may call more than 2 genes. pydeseq2 with 3 vs 3 patients does call a single gene now
    and then (measured: 3 of 8 families, each one gene whose samples split by chance, e.g. RPS7),
    because the dispersion of a gene with large between-sample variance is shrunk towards the
    trend; the report says so.
    """
    composition, de_families, p01, p001 = {}, {}, [], []
    for seed in (21, 22, 23):
        root = tmp_path / str(seed)
        # states off too: a changing state is a real (planted) change of expression; the
        # state-only cohort is tested in test_annotate_states.py
        simulate_cohort(root, n_patients=6, n_responders=3, cells_per_sample=400, dna_cells_per_sample=0,
                        seed=seed, response_effects=False, states=None)
        effects = pd.read_csv(root / "truth" / "effects.tsv", sep="\t")
        assert not effects["planted"].any()
        pb, meta = _cohort_pseudobulks(root)
        counts = pb.obs.pivot_table(index="sample_id", columns="cell_type", values="n_cells", fill_value=0)
        for d in ["baseline", "on_treatment_responder", "on_treatment_non_responder", "interaction"]:
            res = compare.composition_test(counts, meta, design=d, response_levels=RL, timepoints=TP)
            composition[(seed, d)] = res.loc[res["padj"] < FDR, "cell_type"].tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for d in ["baseline", "on_treatment"]:
                de, status = compare.pseudobulk_de(pb, meta, design=d, response_levels=RL, timepoints=TP,
                                                   cell_types=["CD4_helper", "B_naive"], shrink=False, n_cpus=2)
                assert (status["status"] == "tested").all(), status
                for ct, g in de.groupby("cell_type"):
                    de_families[(seed, ct, d)] = g.loc[g["padj"] < FDR, "gene"].tolist()
                    p = g["pvalue"].dropna()
                    p01.append((p < 0.01).mean())
                    p001.append((p < 0.001).mean())
    assert sum(bool(v) for v in composition.values()) <= 3, composition
    assert len(de_families) == 12 and max(len(v) for v in de_families.values()) <= 2, de_families
    assert np.mean(p01) <= 0.015 and np.mean(p001) <= 0.003, (np.mean(p01), np.mean(p001))


def test_truth_rows_judge_calls_by_design_and_sign():
    from pinnacle import truth_check as tc

    effects = pd.DataFrame([
        dict(kind="composition", contrast="resection_vs_baseline", group="responder", timepoint="",
             cell_type="A", feature="proportion", log2fc=1.3, planted=True),
        dict(kind="composition", contrast="resection_vs_baseline", group="responder", timepoint="",
             cell_type="B", feature="proportion", log2fc=-2.0, planted=True),
        dict(kind="composition", contrast="resection_vs_baseline", group="responder", timepoint="",
             cell_type="N", feature="proportion", log2fc=0.0, planted=False),
        dict(kind="composition", contrast="responder_vs_non_responder", group="", timepoint="baseline",
             cell_type="A", feature="proportion", log2fc=0.0, planted=False)])
    tests = pd.DataFrame({"design": ["on_treatment_responder"] * 3, "cell_type": ["A", "B", "N"],
                          "estimate": [0.5, 0.4, 0.1], "padj": [0.01, 0.02, 0.5]})
    rows = {r["metric"]: r for r in tc.check_composition(tests, effects)}
    # B is significant with the wrong sign: not found; the baseline design was not run: no rows for it
    assert rows["composition_recall"]["value"] == 0.5 and not rows["composition_recall"]["pass"]
    assert rows["composition_false_discovery_proportion"]["value"] == 0.0
    assert tc.check_composition(tests.assign(design="baseline"), effects[effects["planted"]]) == []


def test_proteomics_planted_proteins_found_and_nulls_quiet(tmp_path):
    """The simulator's MaxQuant table (6 patients): the quantified planted proteins are found at
    baseline, no null protein is called, and the paired designs (no planted change) stay quiet."""
    simulate_cohort(tmp_path, n_patients=6, n_responders=3, cells_per_sample=50, dna_cells_per_sample=0, seed=5)
    prot = io.read_proteomics(tmp_path / "proteomics" / "proteinGroups.txt", format="maxquant",
                              quantity="LFQ intensity")
    samples = pd.read_csv(tmp_path / "samples.tsv", sep="\t")
    prot = sheets.attach_sample_meta(prot, samples.assign(response=np.where(
        samples["patient_id"].isin(["P01", "P02", "P03"]), "responder", "non_responder")), where="test")
    meta = prot.obs[["patient_id", "timepoint", "response"]]
    effects = pd.read_csv(tmp_path / "truth" / "effects.tsv", sep="\t")
    planted = set(effects.loc[(effects["kind"] == "protein") & effects["planted"], "feature"])
    base = compare.protein_test(prot, meta, design="baseline", response_levels=RL, timepoints=TP)
    assert base.loc[base["status"] != "tested", "status"].str.startswith("not tested: quantified in").all()
    base = base[base["status"] == "tested"]
    hits = set(base.loc[base["padj"] < FDR, "gene"])
    tested_planted = planted & set(base["gene"])
    assert len(tested_planted) >= 3 and len(hits & tested_planted) >= 0.75 * len(tested_planted), base[base["gene"].isin(planted)]
    assert hits <= planted
    assert (base["log2fc"].abs() < 10).all()  # log2 scale, not linear intensities
    for d in ("on_treatment", "interaction"):
        res = compare.protein_test(prot, meta, design=d, response_levels=RL, timepoints=TP)
        assert (res["padj"] < FDR).sum() <= 1


def test_composition_interaction_describes_the_paired_changes_with_the_estimates_sign():
    """Issue 16 item 4: the interaction's plain-scale columns are the mean paired change per
    response group and their difference, so they share the estimate's sign (mean proportions of
    responder-resection samples against all others need not)."""
    rng = np.random.default_rng(3)
    rows, meta = {}, []
    for i in range(8):
        pid, resp = f"P{i}", ("responder" if i % 2 else "non_responder")
        base = rng.dirichlet([20, 20, 20]) * 1000
        for tp in TP:
            c = base.copy()
            if tp == TP[1]:
                c[0] *= 0.5 if resp == "responder" else 1.6  # falls in responders, rises in non-responders
            rows[f"{pid}_{tp}"] = rng.poisson(c)
            meta.append({"sample_id": f"{pid}_{tp}", "patient_id": pid, "timepoint": tp, "response": resp})
    counts = pd.DataFrame(rows, index=["A", "B", "C"]).T
    meta = pd.DataFrame(meta).set_index("sample_id")
    res = compare.composition_test(counts, meta, design="interaction", response_levels=RL, timepoints=TP)
    a = res.set_index("cell_type").loc["A"]
    assert a["estimate"] < 0 and a["mean_change_responder"] < 0 < a["mean_change_non_responder"]
    assert np.isclose(a["change_difference"], a["mean_change_responder"] - a["mean_change_non_responder"])
    assert np.sign(res["change_difference"]).tolist() == np.sign(res["estimate"]).tolist()
    assert "mean_prop_test" not in res
    props = counts.div(counts.sum(axis=1), axis=0)
    first, second = props.loc[[f"P{i}_{TP[0]}" for i in range(8)]], props.loc[[f"P{i}_{TP[1]}" for i in range(8)]]
    change = second.to_numpy() - first.to_numpy()
    assert np.isclose(a["mean_change_responder"], change[1::2, 0].mean())


def test_proteomics_paired_protein_missing_in_one_patient_is_still_tested():
    """Issue 16 item 5: a patient with neither sample quantified gives an all-zero patient
    column; the protein used to drop out of the paired designs without a word. As limma does per
    gene, the column is dropped and the df counts what is left; a protein whose tested
    coefficient cannot be estimated gets a status row saying why."""
    rng = np.random.default_rng(0)
    rows, Y = [], []
    for i in range(8):
        for tp in TP:
            rows.append({"sample_id": f"P{i}_{tp}", "patient_id": f"P{i}", "timepoint": tp,
                         "response": RL[i % 2]})
    meta = pd.DataFrame(rows).set_index("sample_id")
    patient = rng.normal(20, 1, size=(8, 40))
    Y = np.repeat(patient, 2, axis=0) + rng.normal(0, 0.3, size=(16, 40))
    Y[1::2, 0] += 1.5  # protein 0 rises on treatment in every patient
    Y[[0, 1], 0] = np.nan  # ... and patient P0 has neither sample quantified (14 of 16 = 88%)
    Y[1::2, 1] = np.nan  # protein 1 is never quantified at resection: its change cannot be estimated
    prot = ad.AnnData(2.0 ** Y, obs=pd.DataFrame(index=meta.index),
                      var=pd.DataFrame({"protein_id": [f"prot{k}" for k in range(40)],
                                        "gene": [f"G{k}" for k in range(40)]}).set_index("protein_id", drop=False))
    prot.uns["proteomics"] = {"scale": "linear"}
    res = compare.protein_test(prot, meta, design="on_treatment", response_levels=RL, timepoints=TP, min_valid=0.4)
    r0 = res.set_index("protein_id").loc["prot0"]
    assert r0["status"] == "tested" and r0["n_samples"] == 14 and r0["df_resid"] == 14 - 8
    assert r0["log2fc"] > 1 and r0["padj"] < 0.01
    r1 = res.set_index("protein_id").loc["prot1"]
    assert r1["status"].startswith("not tested: the tested coefficient is not estimable")
    assert (res["status"] == "tested").sum() == 39


def test_composition_immune_denominator_is_not_moved_by_the_tumour():
    """Issue 16 item 9: when the malignant fraction falls on treatment, every immune type's share
    of all cells rises; among immune cells alone nothing changes, and the immune-only rows say so."""
    rng = np.random.default_rng(5)
    rows, meta = {}, []
    for i in range(8):
        pid = f"P{i}"
        base = rng.dirichlet([30, 30, 30]) * 600
        for tp in TP:
            mal = 1500 if tp == TP[0] else 150  # the tumour shrinks tenfold in every patient
            rows[f"{pid}_{tp}"] = np.r_[rng.poisson(base), rng.poisson(mal)]
            meta.append({"sample_id": f"{pid}_{tp}", "patient_id": pid, "timepoint": tp, "response": RL[i % 2]})
    counts = pd.DataFrame(rows, index=["T", "B", "mono", "malignant"]).T
    meta = pd.DataFrame(meta).set_index("sample_id")
    markers = {"T/NK": {"subtypes": {"T": {}}}, "malignant/epithelial": {"subtypes": {"malignant": {}}}}
    non_immune = compare.non_immune_types(markers)
    assert {"malignant", "malignant/epithelial", "epithelial_normal"} <= set(non_immune) and "T" not in non_immune
    res = compare.composition_tests(counts, meta, designs=["on_treatment"], non_immune=non_immune,
                                    response_levels=RL, timepoints=TP)
    all_cells = res[res["denominator"] == "all cells"].set_index("cell_type")
    immune = res[res["denominator"] == "immune cells"].set_index("cell_type")
    assert set(immune.index) == {"T", "B", "mono"} and "malignant" in all_cells.index
    assert (all_cells.loc[["T", "B", "mono"], "padj"] < 0.01).all()  # moved by the tumour alone
    assert (immune["padj"] > 0.05).all()
    assert res.columns[0] == "denominator" and {"design", "cell_type", "estimate", "padj"} <= set(res.columns)


# ---------------------------------------------------------------------------------------------
# issue 16 item 8: a DE call one patient drives is flagged (leave one patient out)
# ---------------------------------------------------------------------------------------------
def _one_patient_counts(seed=1, n_patients=6, n_genes=300, driver="P03", base=0.5, spike=2.0):
    """Paired pseudobulks: genes 0-19 rise 2^1.5-fold in every patient; genes 20-39 rise
    2^``base``-fold in every patient and 2^``spike``-fold more in ``driver`` alone (the pattern
    that makes a call when one patient's change is extreme); the rest are null."""
    rng = np.random.default_rng(seed)
    meta = _meta(n_patients=n_patients, n_responders=n_patients // 2)
    mu = rng.lognormal(5, 1, n_genes)
    patient = {p: rng.normal(0, 0.5, n_genes) for p in meta["patient_id"].unique()}
    consistent, shared, extra = (np.zeros(n_genes) for _ in range(3))
    consistent[:20], shared[20:40], extra[20:40] = 1.5 * np.log(2), base * np.log(2), spike * np.log(2)
    rows = []
    for _, r in meta.iterrows():
        on = r["timepoint"] == TP[1]
        eff = on * (consistent + shared + (r["patient_id"] == driver) * extra)
        m = mu * np.exp(patient[r["patient_id"]] + eff + rng.normal(0, 0.1, n_genes))
        rows.append(rng.negative_binomial(20, 20 / (20 + m)))
    genes = [f"G{i}" for i in range(n_genes)]
    X = sp.csr_matrix(np.array(rows, dtype=np.float32))
    obs = pd.DataFrame({"sample_id": meta.index, "cell_type": "T", "n_cells": 100, "n_counts": X.sum(1).A1})
    pb = ad.AnnData(X=X, obs=obs.set_index(obs["sample_id"] + "|T"), var=pd.DataFrame(index=genes))
    return pb, meta, genes[:20], genes[20:40]


def test_leave_one_patient_out_flags_a_call_one_patient_drives():
    """With patient terms no design row repeats, so pydeseq2's Cook's outlier replacement never
    acts. The leave-one-patient-out refit names the patient without whom a call is lost: the
    driver (P03), first, for every called gene of the driven set that a removal loses; a gene
    that changes in every patient keeps its call whoever is left out."""
    pb, meta, consistent, driven = _one_patient_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, status = compare.pseudobulk_de(pb, meta, design="on_treatment", response_levels=RL, timepoints=TP,
                                            min_counts=0, shrink=False)
        off, _ = compare.pseudobulk_de(pb, meta, design="on_treatment", response_levels=RL, timepoints=TP,
                                       min_counts=0, shrink=False, leave_one_out=False)
    r = res.set_index("gene")
    cons = r.loc[consistent]
    assert (cons["padj"] < FDR).all() and (cons["loo_n_lost"] == 0).all() and (cons["loo_driven_by"] == "").all()
    assert (cons["loo_n_refits"] == 6).all()
    d = r.reindex(driven)
    called = d[d["padj"] < FDR]
    flagged = called[called["loo_n_lost"] > 0]
    # measured (seed 1): 8 of the 20 driven genes called, 6 flagged, P03 named first in all 6
    assert len(called) >= 4 and len(flagged) >= 0.5 * len(called), called
    assert (flagged["loo_driven_by"].str.split(";").str[0] == "P03").all(), flagged
    assert (flagged["loo_max_pvalue"] > flagged["pvalue"]).all()
    # genes not called are not checked; the status counts the flagged calls
    assert r.loc[r["padj"].ge(FDR) | r["padj"].isna(), "loo_n_refits"].isna().all()
    st = status.iloc[0]
    assert st["n_loo_flagged"] == int((r["loo_driven_by"] != "").sum()) > 0
    assert st["leave_one_out"].startswith("leave-one-patient-out: 6 refits of")
    # the check changes no estimate, p-value or call
    pd.testing.assert_frame_equal(off.drop(columns=list(compare.LOO_COLUMNS)),
                                  res.drop(columns=list(compare.LOO_COLUMNS)))
    assert off["loo_n_refits"].isna().all()


def test_leave_one_out_on_two_pairs_is_a_note_not_a_failure():
    """The tiny demo (2 pairs, min_patients 2): one pair left has no residual df, so no refit
    can be made; the calls stand, unchecked, and the status says so."""
    pb, meta, consistent, _ = _one_patient_counts(n_patients=2, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, status = compare.pseudobulk_de(pb, meta, design="on_treatment", response_levels=RL, timepoints=TP,
                                            min_counts=0, shrink=False, min_patients=2)
    assert status["status"].iloc[0] == "tested"
    assert status["leave_one_out"].iloc[0].startswith("leave-one-patient-out not run: P01 (design")
    assert res["loo_n_refits"].isna().all() and (res["loo_driven_by"] == "").all()
    # with the default min_patients (3) two pairs are not tested at all, with a status row
    _, status3 = compare.pseudobulk_de(pb, meta, design="on_treatment", response_levels=RL, timepoints=TP,
                                       min_counts=0, shrink=False)
    assert status3["status"].iloc[0] == "not tested: too few patients (all pairs: 2; need 3 per group)"


# ---------------------------------------------------------------------------------------------
# issue 16 item 10: patients without a response stay in the designs that do not use it
# ---------------------------------------------------------------------------------------------
def _meta_unassessed(n_patients=8, unassessed=("P07", "P08")):
    """Four responders, two non-responders and two patients without a response (blank)."""
    meta = _meta(n_patients=n_patients, n_responders=4)
    meta.loc[meta["patient_id"].isin(unassessed), "response"] = ""
    return meta


def test_patients_without_a_response_stay_in_on_treatment_only():
    meta = _meta_unassessed()
    kw = dict(response_levels=RL, timepoints=TP, min_patients=2)
    on = compare.design_matrix(meta, "on_treatment", **kw)
    assert on.groups == {"all pairs": 8} and on.dropped == "" and "patient[P08]" in on.X.columns
    base = compare.design_matrix(meta, "baseline", **kw)
    assert base.groups == {"non_responder": 2, "responder": 4} and base.dropped == "2 patients without a response"
    inter = compare.design_matrix(meta, "interaction", **kw)
    assert not inter.X.index.str.startswith(("P07", "P08")).any()
    assert inter.dropped == "2 patients without a response"
    per_level = compare.design_matrix(meta.drop("P01_resection"), "on_treatment_responder", **kw)
    assert per_level.dropped == "2 patients without a response; 1 patients without both baseline and resection"
    # a third configured level is in no two-level test, and the table says so
    three = meta.assign(response=meta["response"].replace("", "stable"))
    assert compare.design_matrix(three, "baseline", response_levels=[*RL, "stable"], timepoints=TP,
                                 min_patients=2).dropped == "2 patients of other response levels"
    # a design left with too few patients says who was left out
    with pytest.raises(compare.NotEstimable, match=re.escape("non_responder: 2; need 3 per group); left out: "
                                                             "2 patients without a response")):
        compare.design_matrix(meta, "baseline", response_levels=RL, timepoints=TP)


def test_every_comparison_keeps_unassessed_patients_on_treatment():
    """Composition, DE, signature and proteomics tests all build their designs with
    design_matrix: the unassessed patients' pairs count in on_treatment and nowhere else."""
    meta = _meta_unassessed()
    rng = np.random.default_rng(4)
    counts = pd.DataFrame(rng.poisson(200, size=(len(meta), 4)), index=meta.index, columns=list("ABCD"))
    comp = compare.composition_test(counts, meta, design="on_treatment", response_levels=RL, timepoints=TP)
    assert (comp["patients"] == "all pairs: 8").all() and (comp["status"] == "tested").all()
    comp_i = compare.composition_test(counts, meta, design="interaction", response_levels=RL, timepoints=TP)
    assert comp_i["status"].str.startswith("not tested: too few patients (non_responder pairs: 2").all()
    assert comp_i["status"].str.endswith("left out: 2 patients without a response").all()
    scores = pd.DataFrame([{"sample_id": s, "cell_type": ct, "signature": sig, "score": rng.normal()}
                           for s in meta.index for ct in ("T", "B", "M") for sig in ("ifn", "cyto")])
    sig = compare.signature_tests(scores, meta, design="on_treatment", response_levels=RL, timepoints=TP)
    assert (sig["patients"] == "all pairs: 8").all()
    prot = ad.AnnData(2.0 ** rng.normal(20, 1, size=(len(meta), 30)), obs=pd.DataFrame(index=meta.index),
                      var=pd.DataFrame(index=[f"p{k}" for k in range(30)]))
    prot.uns["proteomics"] = {"scale": "linear"}
    pt = compare.protein_test(prot, meta, design="on_treatment", response_levels=RL, timepoints=TP)
    assert (pt["patients"] == "all pairs: 8").all() and (pt["status"] == "tested").all()
    base = compare.protein_test(prot, meta, design="baseline", response_levels=RL, timepoints=TP, min_patients=2)
    assert (base["dropped"] == "2 patients without a response").all() and (base["n_samples"] == 6).all()
    pb, _, _, _ = _one_patient_counts(n_patients=8, n_genes=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, status = compare.pseudobulk_de(pb, meta, design="on_treatment", response_levels=RL, timepoints=TP,
                                          min_counts=0, shrink=False, leave_one_out=False)
    assert status["n_samples"].iloc[0] == 16 and status["patients"].iloc[0] == "all pairs: 8"


def test_blank_response_is_allowed_only_when_configured():
    patients = pd.DataFrame({"patient_id": ["P01", "P02", "P03"], "response": ["responder", "", "non_responder"]})
    with pytest.raises(InputError, match=r"response\.allow_missing"):
        sheets.check_patients(patients, response_column="response", response_levels=RL)
    ok = sheets.check_patients(patients, response_column="response", response_levels=RL, allow_missing=True)
    assert ok.loc["P02", "response"] == ""
    with pytest.raises(InputError, match="'maybe', not one of"):  # a value must still be a level
        sheets.check_patients(patients.replace("", "maybe"), response_column="response", response_levels=RL,
                              allow_missing=True)


def test_enrichment_uses_only_the_genes_tested_in_the_type():
    """Issue 16 item 2 (part): a gene filtered out in a type is not a statistic of 0 there. Type B
    tested none of the signature's genes: it gets no enrichment row (it used to get one from
    zeros); in type A the rows say how many of the signature's genes were tested."""
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(200)]
    stat_a = rng.normal(size=200)
    stat_a[:10] += 3  # the signature's genes rise in A
    de = pd.concat([pd.DataFrame({"design": "on_treatment", "cell_type": "A", "gene": genes, "stat": stat_a}),
                    pd.DataFrame({"design": "on_treatment", "cell_type": "B", "gene": genes[20:],
                                  "stat": rng.normal(size=180)})])
    sigs = {"up": {"genes": genes[:10]}, "other": {"genes": genes[30:45]}}
    enr = compare.signature_enrichment(de, sigs).set_index(["cell_type", "signature"])
    assert ("B", "up") not in enr.index and ("B", "other") in enr.index
    assert enr.loc[("A", "up"), "n_genes"] == 10 and enr.loc[("A", "up"), "score"] > 0
    assert enr.loc[("A", "up"), "padj"] < 0.01
    assert enr["test"].str.startswith("exploratory").all()


CAMERA_FIX = Path(__file__).parent / "fixtures" / "camera"


def _camera_fixture():
    y = pd.read_csv(CAMERA_FIX / "expression.tsv", sep="\t", index_col="gene")
    x = pd.read_csv(CAMERA_FIX / "design.tsv", sep="\t", index_col="sample").loc[y.columns].to_numpy(dtype=float)
    sets = pd.read_csv(CAMERA_FIX / "sets.tsv", sep="\t").groupby("set", sort=False)["gene"].apply(list).to_dict()
    stat = pd.read_csv(CAMERA_FIX / "stat.tsv", sep="\t", index_col="gene")["stat"]
    want = pd.read_csv(CAMERA_FIX / "camera.tsv", sep="\t", keep_default_na=False, na_values=[""])
    return y, x, sets, stat, want


def test_camera_reproduces_limma():
    """Issue 16 item 2: camera's set correlation, direction and p-value (estimated and fixed
    inter-gene correlation) from limma's statistics and our own residuals, to 1e-6 relative."""
    y, x, sets, stat, want = _camera_fixture()
    beta = np.linalg.lstsq(x, y.to_numpy().T, rcond=None)[0]
    resid = pd.DataFrame(y.to_numpy() - (x @ beta).T, index=y.index, columns=y.columns)
    df_res = x.shape[0] - np.linalg.matrix_rank(x)
    for cor, w in want.groupby("inter_gene_cor", sort=False):
        fixed = None if cor == "NA" else float(cor)
        got = compare.camera(stat, sets, residuals=resid, df_residual=df_res, inter_gene_cor=fixed)
        got = got.set_index("gene_set").loc[w["set"]]
        assert got["n_genes"].tolist() == w["NGenes"].tolist()
        assert got["direction"].tolist() == w["Direction"].tolist()
        for ours, theirs in [("correlation", "Correlation"), ("pvalue", "PValue"), ("fdr", "FDR")]:
            np.testing.assert_allclose(got[ours].to_numpy(), w[theirs].to_numpy(dtype=float), rtol=1e-6)
    # the estimated correlation of the co-regulated set is positive and inflates its variance
    est = compare.camera(stat, sets, residuals=resid, df_residual=df_res).set_index("gene_set")
    assert est.loc["A", "correlation"] > 0.1


def test_camera_statistics_are_limmas_moderated_t_as_z():
    """The statistics camera tests: our squeezeVar port and Hill's t-to-z give limma's to 1e-6."""
    y, x, _, stat, _ = _camera_fixture()
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = xtx_inv @ x.T @ y.to_numpy().T
    df_res = x.shape[0] - x.shape[1]
    s2 = np.sum((y.to_numpy().T - x @ beta) ** 2, axis=0) / df_res
    s2_post, d0, _ = compare.squeeze_variances(s2, df_res)
    modt = beta[-1] / np.sqrt(xtx_inv[-1, -1] * s2_post)
    z = compare.zscore_t(modt, min(df_res + d0, len(s2) * df_res))
    np.testing.assert_allclose(z, stat.loc[y.index].to_numpy(), rtol=1e-6)


def test_camera_is_more_cautious_than_independent_genes_for_a_correlated_set():
    """A co-regulated set (shared per-sample factor, no true shift beyond noise) gets a larger
    p-value with its estimated correlation than with camera's fixed 0.01; errors name the problem."""
    rng = np.random.default_rng(3)
    genes = [f"G{i}" for i in range(300)]
    resid = rng.normal(size=(300, 10))
    resid[:30] += rng.normal(size=10)  # strongly correlated set
    stat = pd.Series(rng.normal(size=300), index=genes)
    stat.iloc[:30] += 0.6
    sets = {"corr": genes[:30], "tiny": genes[40:41], "absent": ["nope"]}
    res = pd.DataFrame(resid, index=genes)
    est = compare.camera(stat, sets, residuals=res, df_residual=8).set_index("gene_set")
    fixed = compare.camera(stat, sets, inter_gene_cor=0.01).set_index("gene_set")
    assert "absent" not in est.index and np.isnan(est.loc["tiny", "correlation"])
    assert est.loc["corr", "correlation"] > 0.3
    assert est.loc["corr", "pvalue"] > fixed.loc["corr", "pvalue"]
    with pytest.raises(ValueError, match="residuals"):
        compare.camera(stat, sets)
    with pytest.raises(ValueError, match="no residuals"):
        compare.camera(stat, sets, residuals=res.iloc[5:], df_residual=8)


def test_per_type_camera_skips_without_residual_df_and_fdr_is_per_design():
    """camera of one type (what pseudobulk_de runs on its fit): no rows with fewer than 2 residual
    df or no signature with enough tested genes; combine_camera's FDR is BH within each design."""
    from pinnacle.compare._camera import _cell_type_camera

    rng = np.random.default_rng(7)
    genes = [f"G{i}" for i in range(60)]
    sigs = {"a": {"genes": genes[:8]}, "b": {"genes": genes[10:14] + ["absent"]}, "c": {"genes": genes[20:22]}}

    def run(n_patients, min_genes=3):
        d = compare.design_matrix(_meta(n_patients), "on_treatment", response_levels=RL, timepoints=TP, min_patients=1)
        counts = pd.DataFrame(rng.poisson(50, size=(len(d.samples), 60)), index=d.samples, columns=genes)
        stat = pd.Series(rng.normal(size=60), index=genes)
        return _cell_type_camera(counts, d, stat, sigs, cell_type="T", min_genes=min_genes)

    four = run(4)  # 8 samples, rank 5: 3 residual df
    assert list(four.columns) == compare.CAMERA_TABLE_COLUMNS and list(four["signature"]) == ["a", "b"]
    assert (four["design"] == "on_treatment").all() and four["camera_pvalue"].between(0, 1).all()
    assert run(2).empty and run(4, min_genes=9).empty  # 1 residual df; no set with 9 tested genes
    parts = [four, four.assign(cell_type="U"), four.assign(design="baseline"), run(2)]
    cam = compare.combine_camera(parts)
    assert len(cam) == 6 and list(cam.columns) == [*compare.CAMERA_TABLE_COLUMNS, "camera_fdr"]
    for _, g in cam.groupby("design"):
        assert np.allclose(g["camera_fdr"], compare.bh(g["camera_pvalue"].to_numpy()))
    assert compare.combine_camera([run(2)]).empty


def test_workflow_runs_camera_in_the_per_type_de_jobs():
    """The per-type DE job writes the camera part; signature_enrichment reads those parts (of every
    design), not the pseudobulks; pseudobulk_de joins only the DE parts."""
    rules = (Path(__file__).parents[1] / "workflow" / "rules" / "compare.smk").read_text()
    common = (Path(__file__).parents[1] / "workflow" / "rules" / "common.smk").read_text()

    def rule(name):
        return re.search(rf"^rule {name}:\n(.*?)(?=^\S)", rules, re.S | re.M).group(1)

    per_type, joined, enrichment = rule("pseudobulk_de_cell_type"), rule("pseudobulk_de"), rule("signature_enrichment")
    assert 'camera="results/compare/de/{design}/{cell_type}.camera.tsv"' in per_type
    assert 'signatures=CFG["compare"]["signatures"]' in per_type
    assert "pseudobulk.h5ad" not in enrichment and "camera=de_camera_parts" in enrichment
    assert "camera" not in joined
    parts = re.search(r"^def de_camera_parts\(.*?(?=^\S)", common, re.S | re.M).group(0)
    assert 'results/compare/de/{design}/{n}.camera.tsv" for design in RUN.designs' in parts
    script = (Path(__file__).parents[1] / "workflow" / "scripts" / "signature_enrichment.py").read_text()
    assert "combine_camera" in script and "read_h5ad" not in script
