"""Tests of the simulated trial cohort (pinnacle.simulate) and the file writers (pinnacle.writers).

Outputs are read back with scanpy.read_10x_h5 and pandas, never with pinnacle.io, so the
simulator is checked independently of the readers it feeds.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from pinnacle import simulate, writers
from pinnacle.errors import InputError

N_CELLS = 500
ROOT = Path(simulate.__file__).resolve().parents[3]  # src/pinnacle/simulate/__init__.py
RESOURCES = ROOT / "resources"


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "demo"
    res = simulate.simulate_cohort(out, n_patients=2, cells_per_sample=N_CELLS,
                                   empty_droplets_per_sample=600, dna_cells_per_sample=80, seed=3)
    return out, res


@pytest.fixture(scope="module")
def truth(cohort):
    out, _ = cohort
    return pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False)


@pytest.fixture(scope="module")
def rna(cohort):
    """Filtered matrices of every sample, cells x genes (gex only) plus antibody tags."""
    out, _ = cohort
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    mats = {}
    for _, r in samples.iterrows():
        mats[r["sample_id"]] = sc.read_10x_h5(r["rna"], gex_only=False)
    return mats


@pytest.fixture(scope="module")
def pooled(rna, truth):
    """All samples' gene counts stacked (cells in truth order) with the truth table aligned."""
    blocks, ids = [], []
    for sid, a in rna.items():
        g = a[:, a.var["feature_types"] == "Gene Expression"]
        blocks.append(g.X.tocsr())
        ids += [f"{sid}:{b}" for b in g.obs_names]
    X = sp.vstack(blocks, format="csr")
    tr = truth.set_index("cell_id").loc[ids].reset_index()
    genes = next(iter(rna.values())).var_names[next(iter(rna.values())).var["feature_types"] == "Gene Expression"]
    return X, tr, pd.Index(genes)


def _good(tr):
    return (~tr["is_doublet"].astype(bool) & ~tr["is_low_quality"].astype(bool)).to_numpy()


def _cp10k(X):
    lib = np.asarray(X.sum(axis=1)).ravel()
    return sp.diags(1e4 / np.maximum(lib, 1)) @ X


def _md5_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------
# sheets and layout
# ------------------------------------------------------------------------------------------
def test_cohort_sheets_pure_and_shaped():
    samples, patients = simulate.cohort_sheets("demo", n_patients=6)
    assert list(samples.columns) == ["sample_id", "patient_id", "timepoint", "rna", "rna_raw", "dna"]
    assert list(patients.columns) == ["patient_id", "response", "age", "sex"]
    assert len(samples) == 12 and samples["sample_id"].is_unique
    assert patients["patient_id"].tolist() == [f"P0{i}" for i in range(1, 7)]
    assert patients["response"].tolist() == ["responder"] * 3 + ["non_responder"] * 3
    assert samples.loc[0, "rna"] == "demo/rna/P01_baseline/filtered_feature_bc_matrix.h5"
    assert samples.loc[1, "rna_raw"] == "demo/rna/P01_resection/raw_feature_bc_matrix.h5"
    assert samples.loc[0, "dna"] == "demo/dna/P01_baseline.bins.tsv.gz"
    assert set(samples["timepoint"]) == {"baseline", "resection"}
    assert set(patients["sex"]) <= {"male", "female"}
    s2, _ = simulate.cohort_sheets("x", n_patients=5, n_responders=2)
    assert s2["patient_id"].nunique() == 5
    assert not Path("demo").exists()


@pytest.mark.parametrize("kwargs", [dict(n_patients=1), dict(n_patients=4, n_responders=4),
                                    dict(n_patients=4, n_responders=0)])
def test_cohort_sheets_rejects_bad_design(kwargs):
    with pytest.raises(InputError):
        simulate.cohort_sheets("demo", **kwargs)


@pytest.mark.parametrize("kwargs", [dict(doublet_rate=0.7), dict(cells_per_sample=5),
                                    dict(batch_strength=-1.0), dict(seed=-2),
                                    dict(gene_table="/nonexistent/genes.tsv")])
def test_simulate_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(InputError):
        simulate.simulate_cohort(tmp_path / "x", n_patients=2, **kwargs)


def test_output_layout(cohort):
    out, res = cohort
    for rel in ["samples.tsv", "patients.tsv", "proteomics/proteinGroups.txt", "truth/cells.tsv.gz",
                "truth/samples.tsv", "truth/effects.tsv", "truth/clones.tsv", "truth/dna_cells.tsv.gz",
                "truth/proteins.tsv", "truth/protein_rows.tsv", "truth/params.json", "truth/composition.tsv",
                "truth/clone_fractions.tsv", "truth/genes.tsv"]:
        assert (out / rel).is_file(), rel
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    for col in ("rna", "rna_raw", "dna"):
        assert all(Path(p).is_file() for p in samples[col])
    params = json.loads((out / "truth" / "params.json").read_text())
    assert params["seed"] == 3 and params["cells_per_sample"] == N_CELLS
    assert res["n_cells"] == 4 * N_CELLS


def test_shapes_and_integer_counts(cohort, rna, truth):
    out, res = cohort
    genes = pd.read_csv(out / "truth" / "genes.tsv", sep="\t")
    for sid, a in rna.items():
        assert a.n_obs == N_CELLS
        gex = (a.var["feature_types"] == "Gene Expression").sum()
        adt = (a.var["feature_types"] == "Antibody Capture").sum()
        assert gex == len(genes) and adt == len(simulate.ADT_PANEL)
        assert np.all(a.X.data == np.round(a.X.data)) and a.X.data.min() >= 1
        assert a.obs_names.is_unique and a.obs_names.str.fullmatch(r"[ACGT]{16}-1").all()
    assert truth["cell_id"].is_unique and len(truth) == 4 * N_CELLS
    import h5py
    first = pd.read_csv(out / "samples.tsv", sep="\t")["rna"].iloc[0]
    with h5py.File(first) as f:
        assert f["matrix/data"].dtype == np.int32
        assert list(f["matrix/shape"][()]) == [len(genes) + len(simulate.ADT_PANEL), N_CELLS]
        assert list(f["matrix/features/_all_tag_keys"][()]) == [b"genome"]


def test_truth_columns_and_counts(truth, pooled):
    X, tr, _ = pooled
    for col in ["cell_id", "sample_id", "patient_id", "timepoint", "response", "cell_type",
                "cell_type_major", "is_doublet", "is_low_quality", "clone", "n_counts",
                "doublet_type_1", "doublet_type_2"]:
        assert col in truth.columns, col
    assert np.array_equal(np.asarray(X.sum(axis=1)).ravel(), tr["n_counts"].to_numpy())
    mal = tr["cell_type"] == "malignant"
    assert tr.loc[mal, "clone"].str.match(r"P\d+_c\d").all()
    assert (tr.loc[~mal, "clone"] == "").all()
    assert set(tr["cell_type"]) - {"doublet"} <= set(simulate.CELL_TYPES)
    dbl = tr["is_doublet"].astype(bool)
    assert (tr.loc[dbl, "cell_type"] == "doublet").all()
    maj = simulate.CELL_TYPES
    assert all(maj[a] != maj[b] for a, b in zip(tr.loc[dbl, "doublet_type_1"], tr.loc[dbl, "doublet_type_2"]))


# ------------------------------------------------------------------------------------------
# reproducibility
# ------------------------------------------------------------------------------------------
def test_same_seed_identical_files_and_different_seed_differs(tmp_path, monkeypatch):
    kw = dict(n_patients=2, cells_per_sample=60, empty_droplets_per_sample=50, dna_cells_per_sample=10,
              interferon_twin=True)
    trees = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        simulate.simulate_cohort("demo", seed=seed, **kw)
        trees[name] = _md5_tree(tmp_path / name / "demo")
    assert trees["a"] == trees["b"]
    assert len(trees["a"]) >= 22
    assert "truth/interferon_off/P01_resection/filtered_feature_bc_matrix.h5" in trees["a"]
    differ = [k for k in trees["a"] if trees["a"][k] != trees["c"].get(k)]
    assert "rna/P01_baseline/filtered_feature_bc_matrix.h5" in differ
    assert "truth/cells.tsv.gz" in differ and "proteomics/proteinGroups.txt" in differ


def test_cli(tmp_path, capsys):
    rc = simulate.main(["--out", str(tmp_path / "cli"), "--patients", "2", "--cells", "40",
                        "--empty", "20", "--dna-cells", "5", "--seed", "1", "--quiet"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["n_cells"] == 160
    assert simulate.main(["--out", str(tmp_path / "bad"), "--patients", "1", "--quiet"]) == 2


def test_no_scdna(tmp_path):
    simulate.simulate_cohort(tmp_path / "nodna", n_patients=2, cells_per_sample=30,
                             empty_droplets_per_sample=0, dna_cells_per_sample=0)
    samples = pd.read_csv(tmp_path / "nodna" / "samples.tsv", sep="\t", keep_default_na=False)
    assert (samples["dna"] == "").all() and not (tmp_path / "nodna" / "dna").exists()
    raw = sc.read_10x_h5(samples["rna_raw"].iloc[0], gex_only=False)
    assert raw.n_obs == 30


# ------------------------------------------------------------------------------------------
# realism of the counts
# ------------------------------------------------------------------------------------------
def test_markers_highest_in_their_type(pooled):
    """Markers the real PBMC table does not measure keep the model's levels: highest in their
    type. Measured markers follow the real table instead (LTB is higher in B than in CD4 T
    cells, CX3CR1 in NK than in CD8 T): see test_simulator_vs_real_table."""
    X, tr, genes = pooled
    measured = set(pd.read_csv(RESOURCES / "marker_detection_pbmc.tsv", sep="\t")["gene"])
    good = _good(tr)
    N = _cp10k(X[good])
    types = tr.loc[good, "cell_type"].to_numpy()
    present = [t for t in simulate.CELL_TYPES if (types == t).sum() >= 8]
    means = np.vstack([np.asarray(N[types == t].mean(axis=0)).ravel() for t in present])
    count = pd.Series([g for gs in simulate.MARKER_PROGRAMMES.values() for g in gs]).value_counts()
    checked, wrong = 0, []
    for t in present:
        for g in simulate.MARKER_PROGRAMMES[t]:
            if count[g] != 1 or g in measured:
                continue
            j = genes.get_loc(g)
            checked += 1
            if present[int(np.argmax(means[:, j]))] != t:
                wrong.append((t, g))
    assert checked >= 25
    assert len(wrong) <= 0.05 * checked, wrong


def test_overdispersion_and_library_cv_within_type(pooled):
    X, tr, _ = pooled
    good = _good(tr)
    sub = tr.loc[good]
    biggest = sub.groupby(["sample_id", "cell_type"]).size().sort_values().index[-1]
    m = good & (tr["sample_id"] == biggest[0]).to_numpy() & (tr["cell_type"] == biggest[1]).to_numpy()
    A = X[m].astype(np.float64)
    n = A.shape[0]
    assert n >= 60
    mu = np.asarray(A.mean(axis=0)).ravel()
    var = (np.asarray(A.multiply(A).mean(axis=0)).ravel() - mu ** 2) * n / (n - 1)
    sel = mu > 0.5
    assert sel.sum() > 100
    assert np.mean(var[sel] > mu[sel]) > 0.85
    # library CV within types (good singlets of one sample, types with >= 30 cells)
    cvs = []
    for (sid, t), grp in sub.groupby(["sample_id", "cell_type"]):
        if len(grp) >= 30:
            lib = grp["n_counts"].to_numpy(float)
            cvs.append(lib.std() / lib.mean())
    assert len(cvs) >= 4
    assert 0.3 <= np.median(cvs) <= 0.7 and min(cvs) > 0.2 and max(cvs) < 0.8


def test_mt_and_ribosomal_fractions(pooled):
    X, tr, genes = pooled
    lib = np.asarray(X.sum(axis=1)).ravel()
    mt = np.asarray(X[:, genes.str.startswith("MT-")].sum(axis=1)).ravel() / lib
    rb = np.asarray(X[:, genes.str.match(r"^RP[LS]\d")].sum(axis=1)).ravel() / lib
    good = _good(tr)
    lq = tr["is_low_quality"].astype(bool).to_numpy()
    assert 0.02 <= np.median(mt[good]) <= 0.08
    assert np.median(mt[lq]) > 0.15 and np.median(mt[lq]) > 4 * np.median(mt[good])
    assert np.median(lib[lq]) < 0.4 * np.median(lib[good])
    major = tr["cell_type_major"].to_numpy()
    assert np.median(rb[good & (major == "T/NK")]) > 1.5 * np.median(rb[good & (major == "myeloid")])
    # library medians: lymphocytes lower than myeloid / malignant
    assert np.median(lib[good & (major == "T/NK")]) < 0.6 * np.median(lib[good & (major == "malignant/epithelial")])


def test_doublets_have_about_1_8x_library(pooled):
    X, tr, _ = pooled
    good = _good(tr)
    med = tr.loc[good].groupby("cell_type")["n_counts"].median()
    dbl = tr[tr["is_doublet"].astype(bool)]
    dbl = dbl[dbl["doublet_type_1"].isin(med.index) & dbl["doublet_type_2"].isin(med.index)]
    assert len(dbl) >= 20
    ratio = dbl["n_counts"].to_numpy() / (0.5 * (med[dbl["doublet_type_1"]].to_numpy()
                                                 + med[dbl["doublet_type_2"]].to_numpy()))
    assert 1.4 < np.median(ratio) < 2.3


def test_copy_number_visible_in_malignant_expression(cohort, pooled):
    out, _ = cohort
    X, tr, genes = pooled
    clones = pd.read_csv(out / "truth" / "clones.tsv", sep="\t")
    gt = pd.read_csv(out / "truth" / "genes.tsv", sep="\t", keep_default_na=False).set_index("gene_symbol")
    arm = gt.loc[genes, "arm"].to_numpy()
    good = _good(tr) & (tr["cell_type"] == "malignant").to_numpy()
    N = _cp10k(X[good])
    ctr = tr.loc[good].reset_index(drop=True)
    checked = 0
    for pid, pc in clones.groupby("patient_id"):
        cn = {c: dict(zip(g["arm"], g["copy_number"])) for c, g in pc.groupby("clone")}
        names = [c for c in cn if (ctr["clone"] == c).sum() >= 5]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for a_arm in set(cn[a]) | set(cn[b]):
                    ca, cb = cn[a].get(a_arm, 2), cn[b].get(a_arm, 2)
                    if ca == cb:
                        continue
                    cols = np.flatnonzero(arm == a_arm)
                    ea = N[(ctr["clone"] == a).to_numpy()][:, cols].sum(axis=1).mean()
                    eb = N[(ctr["clone"] == b).to_numpy()][:, cols].sum(axis=1).mean()
                    ratio, expected = ea / eb, ca / cb
                    assert (ratio > 1.1) if expected > 1 else (ratio < 0.9), (pid, a, b, a_arm, ratio)
                    assert abs(np.log(ratio) - np.log(expected)) < 0.35, (pid, a, b, a_arm, ratio, expected)
                    checked += 1
    assert checked >= 2


def test_clone_design(cohort):
    out, _ = cohort
    clones = pd.read_csv(out / "truth" / "clones.tsv", sep="\t", keep_default_na=False)
    assert list(clones.columns) == ["patient_id", "clone", "chrom", "arm", "start", "end",
                                    "copy_number", "parent"]
    assert set(clones["copy_number"]) <= {1, 3, 4}
    for pid, pc in clones.groupby("patient_id"):
        cn = {c: dict(zip(g["arm"], g["copy_number"])) for c, g in pc.groupby("clone")}
        assert 2 <= len(cn) <= 3
        names = list(cn)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                arms = set(cn[a]) | set(cn[b])
                assert sum(cn[a].get(x, 2) != cn[b].get(x, 2) for x in arms) >= 2
    npc = {arm for arm, _ in simulate.CNV_EVENT_FREQUENCIES}
    assert clones["arm"].isin(npc).mean() >= 0.6
    assert clones["arm"].str.fullmatch(r"\d{1,2}[pq]").all()
    trunk = clones[clones["clone"].str.endswith("_c1")]
    assert (trunk["parent"] == "").all() and trunk["arm"].isin(npc).all()


# ------------------------------------------------------------------------------------------
# droplets: raw file, ambient, antibody tags
# ------------------------------------------------------------------------------------------
def test_raw_has_empty_droplets_with_antibody_counts(cohort, rna):
    out, _ = cohort
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    r = samples.iloc[0]
    raw = sc.read_10x_h5(r["rna_raw"], gex_only=False)
    filt = rna[r["sample_id"]]
    assert raw.n_obs == N_CELLS + 600
    assert set(filt.obs_names) <= set(raw.obs_names)
    assert list(raw.obs_names) == sorted(raw.obs_names)
    empty = ~raw.obs_names.isin(filt.obs_names)
    gex = (raw.var["feature_types"] == "Gene Expression").to_numpy()
    e_counts = np.asarray(raw.X[empty][:, gex].sum(axis=1)).ravel()
    e_adt = np.asarray(raw.X[empty][:, ~gex].sum(axis=1)).ravel()
    assert e_counts.min() >= 10 and e_counts.max() <= 300
    assert np.mean(e_adt > 0) > 0.9
    # filtered barcodes carry identical counts in raw
    sub = raw[filt.obs_names]
    assert (sub.X != filt.X).nnz == 0
    # haemoglobin reaches droplets only through ambient RNA (lysed red cells)
    st = pd.read_csv(out / "truth" / "samples.tsv", sep="\t").set_index("sample_id")
    hbb = np.asarray(raw.X[empty][:, raw.var_names.get_loc("HBB")].sum())
    if st.loc[r["sample_id"], "haemoglobin_ambient"] > 0.002:
        assert hbb > 0


def test_isotype_and_non_carrier_counts_in_cells_are_near_the_empty_droplets_as_in_real_citeseq(cohort, rna):
    """Calibration to dsb_citeseq_tsang (2,872 PBMC, 8,005 empties): isotype controls in cells at
    0.8-1.2x the empty droplets' mean, non-carrier lineage tags at 1.0-1.7x, CD19 in T cells 6.6%
    zeros. Bars: isotypes 0.8-1.6x, CD19 in T cells 0.8-2.0x and < 15% zeros (a DSB-normalised
    isotype then centres near 0; a zero-heavy background looks bimodal to a mixture)."""
    out, _ = cohort
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False).set_index("cell_id")
    for _, r in samples.iterrows():
        raw = sc.read_10x_h5(r["rna_raw"], gex_only=False)
        cells = raw.obs_names.isin(rna[r["sample_id"]].obs_names)
        t = truth.loc[[f"{r['sample_id']}:{b}" for b in raw.obs_names[cells]]]
        single = ~t["is_doublet"].astype(bool).to_numpy()
        X = raw.X.tocsc()
        iso = raw.var_names.str.contains("control")
        ratio = np.asarray(X[cells][:, iso].mean(axis=0)).ravel() / np.asarray(X[~cells][:, iso].mean(axis=0)).ravel()
        assert ((ratio > 0.8) & (ratio < 1.6)).all(), (r["sample_id"], ratio)
        j = raw.var_names.get_loc("CD19_TotalSeqB")
        tcell = single & (t["cell_type_major"] == "T/NK").to_numpy()
        cd19 = np.asarray(X[cells][:, j].todense()).ravel()[tcell].mean() / X[~cells][:, j].mean()
        assert 0.8 < cd19 < 2.0, (r["sample_id"], cd19)
        zeros = (np.asarray(X[cells][:, j].todense()).ravel()[tcell] == 0).mean()
        assert zeros < 0.15, (r["sample_id"], zeros)  # real: 6.6% (a zero-heavy tag looks bimodal)


def test_antibody_tags_positive_populations_and_isotypes(rna, truth):
    tr = truth.set_index("cell_id")
    pos_ratio = []
    for sid, a in rna.items():
        t = tr.loc[[f"{sid}:{b}" for b in a.obs_names]]
        good = (~t["is_doublet"].astype(bool) & ~t["is_low_quality"].astype(bool)).to_numpy()
        names = a.var_names
        for tag in ["CD3", "CD19", "CD14", "EpCAM"]:
            j = names.get_loc(f"{tag}_TotalSeqB")
            x = np.asarray(a.X[:, j].todense()).ravel()
            pos = good & t["cell_type"].isin(simulate.ADT_PANEL[tag]["positive"]).to_numpy()
            neg = good & ~t["cell_type"].isin(simulate.ADT_PANEL[tag]["positive"]).to_numpy()
            if pos.sum() >= 5:
                pos_ratio.append(np.median(x[pos]) / max(np.median(x[neg]), 1))
        # isotype counts track the non-specific-binding factor, but only a little: in real
        # CITE-seq cells hold about as much isotype as empty droplets (below)
        iso = np.asarray(a.X[:, names.str.contains("control")].sum(axis=1)).ravel()
        assert np.corrcoef(np.log1p(iso[good]), np.log(t["adt_nsb"].to_numpy()[good]))[0, 1] > 0.1
    assert len(pos_ratio) >= 8 and min(pos_ratio) > 5
    assert sum(v["is_isotype"] for v in simulate.ADT_PANEL.values()) == 3


# ------------------------------------------------------------------------------------------
# planted response biology
# ------------------------------------------------------------------------------------------
def test_effects_table(cohort):
    out, _ = cohort
    eff = pd.read_csv(out / "truth" / "effects.tsv", sep="\t", keep_default_na=False)
    assert list(eff.columns) == ["kind", "contrast", "group", "timepoint", "cell_type", "feature",
                                 "log2fc", "planted"]
    assert set(eff["kind"]) == {"composition", "de_gene", "protein", "clone"}
    comp = eff[(eff["kind"] == "composition")]
    nulls = comp.loc[~comp["planted"], "cell_type"]
    assert len(set(nulls) - set(simulate._COMPOSITION_EFFECTS)) >= 4
    de = eff[(eff["kind"] == "de_gene") & eff["planted"] & (eff["contrast"] == "responder_vs_non_responder")]
    assert set(de["cell_type"]) == {"CD8_exhausted", "macrophage_C1Q"}
    assert de["log2fc"].abs().between(1.5, 2.5).all()
    assert (de["log2fc"] > 0).sum() >= 14 and (de["log2fc"] < 0).sum() >= 14
    marker_genes = {g for gs in simulate.MARKER_PROGRAMMES.values() for g in gs}
    assert not set(de["feature"]) & marker_genes
    prot = eff[(eff["kind"] == "protein") & eff["planted"]]
    assert set(prot["feature"]) == set(simulate.PLANTED_PROTEINS)
    assert (~eff.loc[eff["kind"] == "protein", "planted"]).sum() >= 10
    # C1Q macrophage interferon genes at resection: planted x4 plus the interferon state (which
    # rises in both groups), so every row is planted and the responders' is above 2
    ifn = eff[(eff["contrast"] == "resection_vs_baseline") & eff["feature"].isin(simulate.IFN_RESPONSE_GENES)]
    assert len(ifn) == 2 * len(simulate.IFN_RESPONSE_GENES) and ifn["planted"].all()
    assert (ifn.loc[ifn["group"] == "responder", "log2fc"] > 2.0).all()
    assert (ifn.loc[ifn["group"] == "non_responder", "log2fc"] >= 0).all()
    # no gene of a state programme is a listed null (a state can move it in any contrast)
    state = set(simulate.INTERFERON_PROGRAMME) | set(simulate.ACTIVATION_PROGRAMME) | set(simulate.STRESS_PROGRAMME)
    de_nulls = eff[(eff["kind"] == "de_gene") & ~eff["planted"]]
    assert not set(de_nulls["feature"]) & state


def test_planted_composition_shift_in_truth_counts(cohort, truth):
    out, _ = cohort
    patients = pd.read_csv(out / "patients.tsv", sep="\t")
    comp = pd.read_csv(out / "truth" / "composition.tsv", sep="\t")
    n = comp.pivot_table(index="cell_type", columns="sample_id", values="n_cells")
    for _, p in patients.iterrows():
        b, r = n[f"{p.patient_id}_baseline"], n[f"{p.patient_id}_resection"]
        cd8 = (r["CD8_exhausted"] + r["CD8_effector_memory"] + 1) / (b["CD8_exhausted"] + b["CD8_effector_memory"] + 1)
        mal = (r["malignant"] + 1) / (b["malignant"] + 1)
        # counts of a 500-cell sample are noisy (a 2% type is ~10 cells): loose bounds here,
        # the exact planted values are checked on the expected fractions below
        if p.response == "responder":
            assert cd8 > 1.4 and mal < 0.8
        else:
            assert 0.6 < cd8 < 1.6 and 0.6 < mal < 1.6
    # expected fractions follow the planted log2fc closely in the responder
    ex = comp.pivot_table(index="cell_type", columns="sample_id", values="expected_fraction")
    resp = patients.loc[patients["response"] == "responder", "patient_id"].iloc[0]
    lfc = np.log2(ex[f"{resp}_resection"] / ex[f"{resp}_baseline"])
    assert abs(lfc["malignant"] + 2.0) < 0.6 and abs(lfc["CD8_exhausted"] - 1.3) < 0.6
    assert (truth.groupby("sample_id").size() == N_CELLS).all()


def test_de_genes_shift_in_responders(cohort, pooled):
    out, _ = cohort
    X, tr, genes = pooled
    eff = pd.read_csv(out / "truth" / "effects.tsv", sep="\t", keep_default_na=False)
    de = eff[(eff["kind"] == "de_gene") & eff["planted"] & (eff["cell_type"] == "CD8_exhausted")]
    good = _good(tr) & (tr["cell_type"] == "CD8_exhausted").to_numpy()
    N = _cp10k(X[good])
    resp = (tr.loc[good, "response"] == "responder").to_numpy()
    cols = [genes.get_loc(g) for g in de["feature"]]
    m_r = np.asarray(N[resp][:, cols].mean(axis=0)).ravel()
    m_n = np.asarray(N[~resp][:, cols].mean(axis=0)).ravel()
    obs = np.log2((m_r + 1e-3) / (m_n + 1e-3))
    # one patient per group: batch noise is large, but the direction must mostly agree
    assert np.mean(np.sign(obs) == np.sign(de["log2fc"].to_numpy())) >= 0.75


def test_proteomics_file(cohort):
    out, _ = cohort
    pg = pd.read_csv(out / "proteomics" / "proteinGroups.txt", sep="\t", keep_default_na=False)
    samples = pd.read_csv(out / "samples.tsv", sep="\t")["sample_id"]
    for s in samples:
        for pre in ("Intensity ", "LFQ intensity ", "MS/MS count "):
            assert f"{pre}{s}" in pg.columns
    for c in ["Protein IDs", "Majority protein IDs", "Protein names", "Gene names", "Peptides",
              "Intensity", "Only identified by site", "Reverse", "Potential contaminant", "id"]:
        assert c in pg.columns
    rev = pg["Reverse"] == "+"
    con = pg["Potential contaminant"] == "+"
    site = pg["Only identified by site"] == "+"
    assert rev.sum() >= 5 and con.sum() >= 5 and site.sum() >= 5
    assert pg.loc[rev, "Protein IDs"].str.startswith("REV__").all()
    assert pg.loc[con, "Protein IDs"].str.startswith("CON__").all()
    assert set(pg.loc[~rev & ~con & ~site, "Protein IDs"].str[:4]) == {"SIM_"}
    assert (~rev & ~con & ~site).sum() == 500
    lfq = pg[[f"LFQ intensity {s}" for s in samples]]
    assert (lfq == 0).to_numpy().mean() > 0.02  # missing values exist, as zeros
    # missing not at random: proteins with missing values are the low-abundance ones
    target = pg.loc[~rev & ~con & ~site]
    tl = target[[f"LFQ intensity {s}" for s in samples]]
    any_missing = (tl == 0).any(axis=1)
    med = np.log2(tl.replace(0, np.nan)).median(axis=1)
    assert med[any_missing].median() < med[~any_missing].median() - 1
    assert pg["id"].tolist() == list(range(len(pg)))
    truth = pd.read_csv(out / "truth" / "proteins.tsv", sep="\t")
    assert set(truth["protein_id"]) == set(target["Protein IDs"])
    rows = pd.read_csv(out / "truth" / "protein_rows.tsv", sep="\t")
    assert set(rows["protein_id"]) == set(pg["Protein IDs"])
    planted = truth[truth["planted_log2fc"] != 0]
    assert set(planted["gene"]) == set(simulate.PLANTED_PROTEINS)


# ------------------------------------------------------------------------------------------
# scDNA
# ------------------------------------------------------------------------------------------
def test_scdna_bins_and_copy_number(cohort):
    out, _ = cohort
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    dcells = pd.read_csv(out / "truth" / "dna_cells.tsv.gz", sep="\t")
    clones = pd.read_csv(out / "truth" / "clones.tsv", sep="\t")
    patients = pd.read_csv(out / "patients.tsv", sep="\t").set_index("patient_id")
    arms = pd.read_csv(RESOURCES / "chromosome_arms_grch38.tsv", sep="\t")
    mid = dict(zip(arms["chrom"], (arms["centromere_start"] + arms["centromere_end"]) // 2))
    ratios = []
    for _, r in samples.iterrows():
        t = pd.read_csv(r["dna"], sep="\t")
        assert list(t.columns[:3]) == ["chrom", "start", "end"]
        assert t.shape[1] - 3 == 80 and len(t) > 2500
        assert set(t["chrom"]) == {f"chr{i}" for i in range(1, 23)} | {"chrX"}
        reads = t.iloc[:, 3:]
        assert np.issubdtype(reads.dtypes.iloc[0], np.integer)
        assert 40 < reads.to_numpy().mean() < 200
        arm = t["chrom"].str[3:] + np.where((t["start"] + t["end"]) // 2 < t["chrom"].map(mid), "p", "q")
        truth = dcells[dcells["sample_id"] == r["sample_id"]].set_index("cell_id")
        assert len(truth) == 80
        for bc in reads.columns:
            clone = truth.loc[f"{r['sample_id']}:{bc}", "clone"]
            if clone == "normal":
                continue
            ev = clones[clones["clone"] == clone]
            altered = set(ev["arm"])
            diploid = ~arm.isin(altered) & (t["chrom"] != "chrX")
            for a, cn in zip(ev["arm"], ev["copy_number"]):
                if cn == 1:
                    ratios.append(reads.loc[arm == a, bc].mean() / reads.loc[diploid, bc].mean())
        # chrX: one copy in male cells, two in female cells
        normal = truth.index[truth["clone"] == "normal"].str.split(":").str[1]
        sex = patients.loc[r["patient_id"], "sex"]
        x_ratio = reads.loc[t["chrom"] == "chrX", normal].to_numpy().mean() / \
            reads.loc[t["chrom"] != "chrX", normal].to_numpy().mean()
        assert (0.4 < x_ratio < 0.6) if sex == "male" else (0.85 < x_ratio < 1.15), (sex, x_ratio)
    assert len(ratios) >= 10
    assert 0.4 < np.median(ratios) < 0.6


# ------------------------------------------------------------------------------------------
# resources and writers
# ------------------------------------------------------------------------------------------
def test_gene_table_resource():
    root = RESOURCES
    g = pd.read_csv(root / "genes_grch38.tsv", sep="\t")
    assert list(g.columns) == ["gene_symbol", "chrom", "start", "end", "strand", "gene_type"]
    assert 2500 <= len(g) <= 3500 and g["gene_symbol"].is_unique
    assert (g["gene_symbol"].str.startswith("MT-")).sum() == 13
    assert 70 <= g["gene_symbol"].str.match(r"^RP[LS]").sum() <= 100
    assert set(simulate.required_genes()) <= set(g["gene_symbol"])
    assert {"HBA1", "HBA2", "HBB"} <= set(g["gene_symbol"])
    arms = pd.read_csv(root / "chromosome_arms_grch38.tsv", sep="\t")
    assert len(arms) == 24
    mid = dict(zip(arms["chrom"], (arms["centromere_start"] + arms["centromere_end"]) // 2))
    g = g[g["chrom"].isin([f"chr{i}" for i in range(1, 23)] + ["chrX"])]
    arm = g["chrom"] + np.where(g["start"] < g["chrom"].map(mid), "p", "q")
    counts = arm.value_counts()
    big_arms = [a for a in counts.index if a not in {"chr13p", "chr14p", "chr15p", "chr21p", "chr22p"}]
    assert counts[big_arms].min() >= 20 and len(big_arms) == 41
    bins = pd.read_csv(root / "bins_1mb_grch38.tsv.gz", sep="\t")
    assert list(bins.columns) == ["chrom", "start", "end", "gc", "blacklist"]
    assert 2900 < len(bins) < 3200


def test_write_10x_h5_roundtrip_with_scanpy(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(40, 12, density=0.3, format="csr", random_state=1)
    X.data = np.ceil(X.data * 20)
    var = pd.DataFrame({"gene_ids": [f"G{i}" for i in range(10)] + ["ADT_CD3", "ADT_IgG1_control"],
                        "feature_types": ["Gene Expression"] * 10 + ["Antibody Capture"] * 2},
                       index=[f"GENE{i}" for i in range(10)] + ["CD3_TotalSeqB", "IgG1_control_TotalSeqB"])
    bcs = [f"{''.join(rng.choice(list('ACGT'), 16))}-1" for _ in range(40)]
    a = ad.AnnData(X, obs=pd.DataFrame(index=bcs), var=var)
    writers.write_10x_h5(a, tmp_path / "m.h5")
    b = sc.read_10x_h5(tmp_path / "m.h5", gex_only=False)
    assert (b.X != a.X).nnz == 0 and b.shape == a.shape
    assert list(b.obs_names) == bcs and list(b.var_names) == list(a.var_names)
    assert list(b.var["gene_ids"]) == list(var["gene_ids"])
    assert list(b.var["feature_types"]) == list(var["feature_types"])
    assert list(b.var["genome"]) == ["GRCh38"] * 10 + ["", ""]
    assert sc.read_10x_h5(tmp_path / "m.h5").n_vars == 10
    writers.write_10x_h5(a, tmp_path / "m2.h5")
    assert (tmp_path / "m.h5").read_bytes() == (tmp_path / "m2.h5").read_bytes()
    with pytest.raises(InputError):
        writers.write_10x_h5(ad.AnnData(X), tmp_path / "bad.h5")
    bad = a.copy()
    bad.X = bad.X * 0.5
    with pytest.raises(InputError):
        writers.write_10x_h5(bad, tmp_path / "bad.h5")


def test_write_scdna_wide_and_maxquant(tmp_path):
    var = pd.DataFrame({"chrom": ["chr1", "chr1", "chr2"], "start": [0, 1_000_000, 0],
                        "end": [1_000_000, 2_000_000, 1_000_000]}, index=["b1", "b2", "b3"])
    a = ad.AnnData(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32),
                   obs=pd.DataFrame(index=["AAAA-1", "CCCC-1"]), var=var)
    writers.write_scdna_wide(a, tmp_path / "x.bins.tsv.gz")
    t = pd.read_csv(tmp_path / "x.bins.tsv.gz", sep="\t")
    assert list(t.columns) == ["chrom", "start", "end", "AAAA-1", "CCCC-1"]
    assert t["CCCC-1"].tolist() == [4, 5, 6]

    inten = pd.DataFrame({"s1": [1e6, 0, 5e5], "s2": [2e6, 3e5, np.nan]})
    ann = pd.DataFrame({"protein_id": ["SIM_A", "SIM_B", "SIM_C"], "gene": ["A", "B", ""],
                        "protein_name": ["a", "b", ""], "reverse": [False, False, True],
                        "contaminant": [False, True, False], "only_by_site": [True, False, False]})
    writers.write_maxquant_protein_groups(inten, ann, tmp_path / "pg.txt")
    pg = pd.read_csv(tmp_path / "pg.txt", sep="\t", keep_default_na=False)
    assert pg["Protein IDs"].tolist() == ["SIM_A", "CON__SIM_B", "REV__SIM_C"]
    assert pg["Reverse"].tolist() == ["", "", "+"] and pg["Only identified by site"].tolist() == ["+", "", ""]
    assert pg["Intensity s1"].tolist() == [1000000, 0, 500000] and pg["LFQ intensity s2"].tolist()[2] == 0
    assert pg["Intensity"].tolist() == [3000000, 300000, 500000]
    assert list(pg.columns[:6]) == ["Protein IDs", "Majority protein IDs", "Protein names",
                                    "Gene names", "Peptides", "Intensity"]
    assert list(pg.columns[-4:]) == ["Only identified by site", "Reverse", "Potential contaminant", "id"]
    with pytest.raises(InputError):
        writers.write_maxquant_protein_groups(inten, ann.drop(columns="reverse"), tmp_path / "pg2.txt")


def test_simulate_imports_no_analysis_module():
    """Every module of the package: pinnacle imports are only the writers, errors and the
    cohort's file layout (``pinnacle.io.cohort_layout``, the io side the design allows the
    simulator); relative imports stay inside the package (``from .x``, never ``from ..x``)."""
    files = sorted(Path(simulate.__file__).parent.glob("*.py"))
    assert len(files) >= 10, files
    src = "\n".join(f.read_text() for f in files)
    imports = [line.strip() for line in src.splitlines() if line.strip().startswith(("import ", "from "))]
    pinnacle_imports = [line for line in imports if "pinnacle" in line]
    assert all(line in ("from pinnacle import writers", "from pinnacle.errors import InputError")
               or line.startswith(("from pinnacle.io.cohort_layout import ", "from pinnacle.io import cohort_layout "))
               for line in pinnacle_imports), pinnacle_imports
    assert not [line for line in imports if line.startswith("from ..")]


def test_no_analysis_module_imports_the_simulator():
    """Only the truth check (with the simulated cohorts of tests and benchmarks) may import the
    simulator; the run reads a simulated cohort through pinnacle.io.cohort_layout (a stage cannot
    peek at the answer)."""
    root = Path(simulate.__file__).parents[1]
    allowed = {"truth_check"}
    def imports_simulator(line: str) -> bool:
        line = line.strip()
        if not line.startswith(("import ", "from ")):
            return False
        return "pinnacle.simulate" in line or (line.startswith("from pinnacle import")
                                               and "simulate" in line.split(" import ", 1)[1])

    offenders = [str(f.relative_to(root)) for f in sorted(root.rglob("*.py"))
                 if f.relative_to(root).parts[0] not in allowed | {"simulate"}
                 and any(imports_simulator(line) for line in f.read_text().splitlines())]
    assert not offenders, offenders


def test_no_analysis_module_names_the_truth():
    """The analysis stages (the readers in io included) neither import the truth layout nor spell
    the truth folder: only the layout itself, the run's wiring (config), the truth check and the
    simulator know it."""
    root = Path(simulate.__file__).parents[1]
    wiring = {"config.py", "io/cohort_layout.py", "truth_check", "simulate", "writers.py",
              "errors.py", "__init__.py"}
    offenders = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if rel.parts[0] in wiring or rel.as_posix() in wiring:
            continue
        code = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        if "cohort_layout" in code or re.search(r"""["'/]truth["'/]""", code):
            offenders.append(str(rel))
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------
# truth/ layout (pinnacle.io.cohort_layout): one place for the writer and every reader
# ------------------------------------------------------------------------------------------
def test_layout_names_every_truth_file(cohort, calib):
    from pinnacle.io import cohort_layout as layout

    out, res = cohort
    truth = Path(layout.truth_dir(out))
    assert res["truth"] == str(truth) and truth == out / "truth"
    assert sorted(p.name for p in truth.iterdir()) == sorted(layout.TRUTH_FILES)
    for name in layout.TRUTH_FILES:
        assert Path(layout.truth_file(truth, name)).is_file(), name
    with pytest.raises(ValueError, match="not a file of the truth folder"):
        layout.truth_file(truth, "cell.tsv")
    # the strings Snakemake sees: as the rules spelled them before the layout module
    assert layout.truth_dir("demo") == "demo/truth"
    assert layout.truth_file("demo/truth", layout.CELLS) == "demo/truth/cells.tsv.gz"
    assert layout.twin_path("demo/truth", "P01_resection") == \
        "demo/truth/interferon_off/P01_resection/filtered_feature_bc_matrix.h5"
    # demo.smk takes the cohort folder as the parent of the truth folder of the cells table
    assert Path(layout.truth_file(layout.truth_dir("x/demo"), layout.CELLS)).parent.parent == Path("x/demo")
    # the twins are where the layout says (resection samples only)
    samples = pd.read_csv(calib / "samples.tsv", sep="\t")
    for r in samples.itertuples():
        twin = Path(layout.twin_path(layout.truth_dir(calib), r.sample_id))
        assert twin.is_file() == (r.timepoint == "resection"), twin
    assert sorted(p.name for p in (calib / "truth").iterdir()) == sorted([*layout.TRUTH_FILES, layout.INTERFERON_OFF])


def test_workflow_takes_truth_paths_from_layout():
    """No rule file or adapter spells a path inside the truth folder by hand: they ask
    pinnacle.io.cohort_layout (imported by common.smk as ``truth_layout``; the other rule files
    share its namespace)."""
    from pinnacle.io import cohort_layout as layout

    rules = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    assert rules and scripts
    by_hand = re.compile(r"""\{TRUTH\}/|TRUTH\s*,\s*["']|\btruth\s*/\s*["']|/truth["'/]"""
                         + "|" + re.escape(layout.INTERFERON_OFF))
    for f in rules + scripts:
        code = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        code = code.replace("results/truth/", "").replace("logs/truth/", "").replace("benchmarks/truth/", "")
        assert not by_hand.findall(code), (f.name, by_hand.findall(code))
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "from pinnacle.io import cohort_layout as truth_layout" in common
    assert "truth_layout.truth_file(RUN.truth, name)" in common  # every truth input of the check
    config = (ROOT / "src" / "pinnacle" / "config.py").read_text()
    assert "truth_dir(outdir)" in config and "twin_path(self.truth, sample)" in config


def test_null_cohort_plants_nothing(tmp_path):
    """response_effects=False: same patients and noise, no response effect, every effect a null."""
    simulate.simulate_cohort(tmp_path / "a", n_patients=4, cells_per_sample=60, dna_cells_per_sample=0, seed=3)
    simulate.simulate_cohort(tmp_path / "b", n_patients=4, cells_per_sample=60, dna_cells_per_sample=0, seed=3,
                             response_effects=False)
    eff = pd.read_csv(tmp_path / "b" / "truth" / "effects.tsv", sep="\t")
    # the states stay (a state-only cohort): only the interferon rows of C1Q macrophages move
    state_rows = eff["feature"].isin(simulate.IFN_RESPONSE_GENES) & (eff["contrast"] == "resection_vs_baseline")
    assert not eff.loc[~state_rows, "planted"].any() and (eff.loc[~state_rows, "log2fc"] == 0).all()
    assert eff.loc[state_rows, "planted"].all()
    # ... by the interferon state alone: the planted x4 (log2 2) of the responders is gone
    eff_a = pd.read_csv(tmp_path / "a" / "truth" / "effects.tsv", sep="\t")
    a_rows = eff_a["feature"].isin(simulate.IFN_RESPONSE_GENES) & (eff_a["contrast"] == "resection_vs_baseline")
    diff = eff_a.loc[a_rows, "log2fc"].to_numpy() - eff.loc[state_rows, "log2fc"].to_numpy()
    is_resp = (eff.loc[state_rows, "group"] == "responder").to_numpy()
    assert np.allclose(diff[is_resp], 2.0, atol=1e-3) and np.allclose(diff[~is_resp], 0.0, atol=1e-3)
    st = {k: pd.read_csv(tmp_path / k / "truth" / "samples.tsv", sep="\t") for k in "ab"}
    pd.testing.assert_series_equal(st["a"]["ifn_level"], st["b"]["ifn_level"])
    comp = {k: pd.read_csv(tmp_path / k / "truth" / "composition.tsv", sep="\t") for k in "ab"}
    # baseline is the same cohort; at resection the responders' planted shift is gone
    base = {k: c[c["sample_id"].str.endswith("baseline")].reset_index(drop=True) for k, c in comp.items()}
    pd.testing.assert_frame_equal(base["a"], base["b"])
    assert not comp["a"].equals(comp["b"])


# ------------------------------------------------------------------------------------------
# calibration against real cells, state programmes, interferon twin, panels
# ------------------------------------------------------------------------------------------
_STATE_GENES = (set(simulate.INTERFERON_PROGRAMME) | set(simulate.ACTIVATION_PROGRAMME)
                | set(simulate.STRESS_PROGRAMME))
_CORE_ISGS = ["ISG15", "IFI6", "MX1", "IFIT1", "IFIT2", "IFIT3"]
#: Kang author type -> the simulated blood types it corresponds to directly
_KANG_DIRECT = {"CD4 T cells": ["CD4_naive", "CD4_helper", "CD4_Tfh", "Treg"],
                "CD8 T cells": ["CD8_naive", "CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted"],
                "B cells": ["B_naive", "B_memory"], "CD14+ Monocytes": ["mono_classical"],
                "FCGR3A+ Monocytes": ["mono_nonclassical"]}


@pytest.fixture(scope="module")
def calib(small_cohort):
    """A cohort big enough to measure detection shares (2 patients x 1,500 droplets), with the
    interferon twins (the session's small cohort, tests/conftest.py)."""
    return small_cohort


def _pool_cohort(outdir: Path, *, path_of=None):
    """Gene counts of every sample (good singlets only), the aligned truth rows and the genes."""
    samples = pd.read_csv(outdir / "samples.tsv", sep="\t")
    truth = pd.read_csv(outdir / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False).set_index("cell_id")
    blocks, ids = [], []
    for r in samples.itertuples():
        a = sc.read_10x_h5(path_of(r) if path_of else r.rna)
        blocks.append(a.X.tocsr())
        ids += [f"{r.sample_id}:{b}" for b in a.obs_names]
        genes = a.var_names
    tr = truth.loc[ids].reset_index()
    good = _good(tr)
    return sp.vstack(blocks, format="csr")[good], tr[good].reset_index(drop=True), genes


#: genes whose out-of-type detection in the simulated tumour is ambient RNA from plasma cells and
#: C1Q macrophages (docs/simulator.md, "Reading the tables")
TUMOUR_AMBIENT_GENES = ("IGKC", "JCHAIN", "IGHG1", "IGLC2", "IGLL5", "C1QA")


def leakage_table(outdir: Path, *, min_cells: int = 60) -> pd.DataFrame:
    """Simulated vs real share of cells detecting each measured marker, per published blood type.

    ``kind`` "out": the simulated types that the published type holds and whose programmes lack
    the gene, where the published type does not express it itself (leakage: CCR7 in B cells);
    "in": lineage genes in the types that all carry them (CD3E in T cells). Simulated cells are
    the good singlets of all samples, pooled per published type; state-programme genes are left
    out (the states move them)."""
    real = pd.read_csv(RESOURCES / "marker_detection_pbmc.tsv", sep="\t")
    share = dict(zip(zip(real["gene"], real["published_type"]), real["share_detected"]))
    X, tr, genes = _pool_cohort(outdir)
    det = (X > 0).tocsc()
    carriers = simulate._carriers()
    direct: dict[str, list[str]] = {}
    for t, (r, d) in simulate._REAL_TYPE.items():
        if d:
            direct.setdefault(r, []).append(t)
    rows = []
    for g, car in sorted(carriers.items()):
        if g in _STATE_GENES or g not in genes:
            continue
        own = simulate._own_real_types(car)
        for r, types in sorted(direct.items()):
            if (g, r) not in share:
                continue
            if r not in own:
                kind, sel = "out", [t for t in types if t not in car]
            elif simulate._lineage_level(r, car):
                kind, sel = "in", types
            else:
                continue
            m = tr["cell_type"].isin(sel).to_numpy()
            if m.sum() < min_cells:
                continue
            sim = float(det[:, genes.get_loc(g)].toarray().ravel()[m].mean())
            rows.append(dict(gene=g, published_type=r, kind=kind, n_cells=int(m.sum()),
                             simulated=round(sim, 3), real=round(float(share[(g, r)]), 3)))
    out = pd.DataFrame(rows)
    out["difference"] = (out["simulated"] - out["real"]).round(3)
    return out


def isg_table(outdir: Path, genes=("ISG15", "IFI6", "MX1", "IFIT1", "IFIT3", "LY6E", "IDO1", "CXCL10",
                                   "GBP1", "STAT1", "HLA-A", "B2M")) -> pd.DataFrame:
    """Fold change resection / baseline (mean CP10k, pooled over each response group's patients)
    of interferon genes per Kang author type (the simulated types it holds directly), next to
    Kang's stim / ctrl fold change."""
    kang = pd.read_csv(RESOURCES / "interferon_response_pbmc.tsv", sep="\t").set_index(["gene", "cell_type"])
    X, tr, names = _pool_cohort(outdir)
    lib = np.asarray(X.sum(axis=1)).ravel()
    cols = [names.get_loc(g) for g in genes]
    N = (sp.diags(1e4 / np.maximum(lib, 1)) @ X)[:, cols].toarray()
    rows = []
    for kt, types in _KANG_DIRECT.items():
        in_type = tr["cell_type"].isin(types).to_numpy()
        fc = {}
        for grp in ("responder", "non_responder"):
            g_m = in_type & (tr["response"] == grp).to_numpy()
            base = N[g_m & (tr["timepoint"] == "baseline").to_numpy()].mean(axis=0)
            res = N[g_m & (tr["timepoint"] == "resection").to_numpy()].mean(axis=0)
            fc[grp] = (res + 0.05) / (base + 0.05)
        for j, g in enumerate(genes):
            k = kang.loc[(g, kt)] if (g, kt) in kang.index else None
            rows.append(dict(gene=g, kang_type=kt, n_cells=int(in_type.sum()),
                             kang_fold_change=round(float(k["fold_change"]), 1) if k is not None else np.nan,
                             simulated_responders=round(float(fc["responder"][j]), 1),
                             simulated_non_responders=round(float(fc["non_responder"][j]), 1)))
    return pd.DataFrame(rows)


def simulator_vs_real_markdown(outdir: Path) -> str:
    """The "simulator vs real" tables of docs/simulator.md, measured on a simulated cohort."""
    lk = leakage_table(outdir)
    isg = isg_table(outdir)
    levels = pd.read_csv(outdir / "truth" / "samples.tsv", sep="\t")
    res = levels[levels["timepoint"] == "resection"].groupby("response")["ifn_level"].apply(
        lambda v: ", ".join(f"{x:.2f}" for x in v))
    pick = [("CCR7", "B"), ("SELL", "B"), ("LTB", "B"), ("CD3E", "B"), ("LYZ", "T_CD4"), ("LYZ", "T_CD8"),
            ("CD74", "T_CD4"), ("S100A9", "T_CD4"), ("NKG7", "T_CD4"), ("MS4A1", "T_CD4"), ("CD3E", "NK"),
            ("CD8A", "NK"), ("CCR7", "NK"), ("FCER1G", "NK"), ("CD79B", "Mono_CD16"), ("SELL", "Mono_CD14"),
            ("CD3E", "T_CD4"), ("CD8A", "T_CD8"), ("MS4A1", "B"), ("CD79A", "B"), ("LYZ", "Mono_CD14"),
            ("CD14", "Mono_CD14"), ("FCGR3A", "Mono_CD16"), ("GNLY", "NK"), ("KLRD1", "NK")]
    sel = lk.set_index(["gene", "published_type"])
    lines = ["| gene | published type | kind | simulated cells | real share | simulated share |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for g, r in pick:
        if (g, r) in sel.index:
            x = sel.loc[(g, r)]
            lines.append(f"| {g} | {r} | {x['kind']} | {x['n_cells']} | {x['real']:.2f} | {x['simulated']:.2f} |")
    summary = []
    for kind, sub in lk.groupby("kind"):
        ok = (sub["difference"].abs() <= 0.1).mean()
        summary.append(f"| {kind} | {len(sub)} | {ok:.2f} | {sub['difference'].abs().median():.3f} | "
                       f"{sub['difference'].median():+.3f} |")
    isg_lines = ["| gene | Kang type | Kang stim/ctrl | simulated responders | simulated non-responders |",
                 "| --- | --- | ---: | ---: | ---: |"]
    for r in isg.itertuples():
        isg_lines.append(f"| {r.gene} | {r.kang_type} | {r.kang_fold_change:g} | {r.simulated_responders:g} | "
                         f"{r.simulated_non_responders:g} |")
    return "\n".join(
        ["Marker detection (share of cells with count > 0), selected pairs:", ""] + lines
        + ["", "All measured pairs:", "",
           "| kind | pairs | share with abs(sim - real) <= 0.1 | median abs difference | median difference |",
           "| --- | ---: | ---: | ---: | ---: |"] + summary
        + ["", "Interferon genes, fold change resection / baseline (simulated) vs stim / ctrl (Kang); "
           f"resection interferon levels: responders {res.get('responder', '')}; "
           f"non-responders {res.get('non_responder', '')}:", ""] + isg_lines)


def test_simulator_vs_real_table(calib):
    """Leakage and in-type detection of the measured markers within 0.1 of the real PBMC shares
    for >= 90% of pairs; core ISGs up >= 10x (median >= 20x) in every blood type of responders."""
    lk = leakage_table(calib)
    print("\n" + simulator_vs_real_markdown(calib))
    for kind in ("out", "in"):
        sub = lk[lk["kind"] == kind]
        assert len(sub) >= (300 if kind == "out" else 40), (kind, len(sub))
        close = (sub["difference"].abs() <= 0.1).mean()
        assert close >= 0.9, (kind, close, sub.loc[sub["difference"].abs() > 0.1].to_string())
    # the examples: CCR7 and SELL in B cells, LYZ in T cells are real-level leaks
    sel = lk.set_index(["gene", "published_type"])["simulated"]
    assert sel[("SELL", "B")] > 0.5 and sel[("CCR7", "B")] > 0.2 and sel[("LYZ", "T_CD4")] > 0.2


def test_interferon_rises_in_every_type_of_responders(calib):
    isg = isg_table(calib, genes=tuple(_CORE_ISGS))
    fc = isg.groupby("kang_type")["simulated_responders"].median()
    assert len(fc) == 5 and (fc >= 10).all() and fc.median() >= 20, fc
    # in every immune type with cells at both timepoints (and malignant cells): core ISG sum up
    X, tr, genes = _pool_cohort(calib)
    lib = np.asarray(X.sum(axis=1)).ravel()
    core = np.asarray(X[:, [genes.get_loc(g) for g in _CORE_ISGS]].sum(axis=1)).ravel() / lib * 1e4
    resp = (tr["response"] == "responder").to_numpy()
    checked = 0
    for t in simulate.CELL_TYPES:
        if t in ("fibroblast", "endothelial"):
            continue
        b = resp & (tr["cell_type"] == t).to_numpy() & (tr["timepoint"] == "baseline").to_numpy()
        r = resp & (tr["cell_type"] == t).to_numpy() & (tr["timepoint"] == "resection").to_numpy()
        if b.sum() >= 5 and r.sum() >= 5:
            assert core[r].mean() > 10 * core[b].mean(), (t, core[r].mean(), core[b].mean())
            checked += 1
    assert checked >= 12
    # per-cell truth: the state is what rose
    assert tr.loc[resp & (tr["timepoint"] == "resection").to_numpy(), "ifn_state"].median() > 0.3
    assert tr.loc[(tr["timepoint"] == "baseline").to_numpy(), "ifn_state"].max() < 0.1


def test_interferon_twin_identical_outside_the_programme(calib):
    samples = pd.read_csv(calib / "samples.tsv", sep="\t")
    res = samples[samples["timepoint"] == "resection"]
    assert len(res) == 2
    assert not (calib / "truth" / "interferon_off" / samples["sample_id"].iloc[0]).exists()  # a baseline
    for r in res.itertuples():
        on = sc.read_10x_h5(r.rna, gex_only=False)
        off = sc.read_10x_h5(calib / "truth" / "interferon_off" / r.sample_id / "filtered_feature_bc_matrix.h5",
                             gex_only=False)
        assert list(on.obs_names) == list(off.obs_names) and list(on.var_names) == list(off.var_names)
        assert on.var.equals(off.var)
        prog = on.var_names.isin(list(simulate.INTERFERON_PROGRAMME))
        assert prog.sum() == len(simulate.INTERFERON_PROGRAMME)
        assert (on.X[:, ~prog] != off.X[:, ~prog]).nnz == 0
        x_on, x_off = on.X[:, prog].sum(), off.X[:, prog].sum()
        assert x_on > 2 * x_off, (x_on, x_off)
    st = pd.read_csv(calib / "truth" / "samples.tsv", sep="\t")
    assert st.loc[st["timepoint"] == "resection", "interferon_twin"].all()
    assert not st.loc[st["timepoint"] == "baseline", "interferon_twin"].any()


def test_state_truth_columns(calib):
    tr = pd.read_csv(calib / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False)
    st = pd.read_csv(calib / "truth" / "samples.tsv", sep="\t")
    for col in ("ifn_state", "activation_state", "stress_state"):
        assert col in tr.columns and (tr[col] >= 0).all()
    for col in ("ifn_level", "activation_level", "stress_level"):
        assert col in st.columns
    assert (st.loc[st["timepoint"] == "baseline", "ifn_level"] <= 0.01).all()
    assert (st.loc[(st["timepoint"] == "resection") & (st["response"] == "responder"), "ifn_level"] >= 0.5).all()
    assert st["activation_level"].between(0.05, 0.4).all() and st["stress_level"].between(0.02, 0.3).all()
    # activation acts in T and NK cells only; stress in every cell
    assert (tr.loc[~tr["cell_type_major"].isin(["T/NK", "doublet"]), "activation_state"] == 0).all()
    assert (tr.loc[tr["cell_type"] == "malignant", "stress_state"] > 0).mean() > 0.9
    genes = pd.read_csv(calib / "truth" / "genes.tsv", sep="\t", keep_default_na=False)
    prog = genes.set_index("gene_symbol")["state_programme"]
    assert set(prog[prog == "interferon"].index) == set(simulate.INTERFERON_PROGRAMME)
    assert set(prog[prog == "stress"].index) == set(simulate.STRESS_PROGRAMME)


def test_states_never_change_composition(tmp_path):
    kw = dict(n_patients=2, cells_per_sample=200, empty_droplets_per_sample=20, dna_cells_per_sample=0, seed=4)
    simulate.simulate_cohort(tmp_path / "on", **kw)
    simulate.simulate_cohort(tmp_path / "off", states=None, **kw)
    simulate.simulate_cohort(tmp_path / "ifn", states=["interferon"], **kw)
    cols = ["cell_id", "cell_type", "cell_type_major", "is_doublet", "is_low_quality", "clone", "expected_library"]
    t = {k: pd.read_csv(tmp_path / k / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False)
         for k in ("on", "off", "ifn")}
    pd.testing.assert_frame_equal(t["on"][cols], t["off"][cols])
    pd.testing.assert_frame_equal(t["on"][cols], t["ifn"][cols])
    for k in ("off", "ifn"):
        assert (tmp_path / "on" / "truth" / "composition.tsv").read_bytes() == \
            (tmp_path / k / "truth" / "composition.tsv").read_bytes()
    assert (t["off"][["ifn_state", "activation_state", "stress_state"]] == 0).all().all()
    assert (t["ifn"][["activation_state", "stress_state"]] == 0).all().all()
    # the interferon state of a cell does not depend on which other states are on
    assert t["on"]["ifn_state"].equals(t["ifn"]["ifn_state"]) and t["on"]["ifn_state"].max() > 0.3
    with pytest.raises(InputError):
        simulate.simulate_cohort(tmp_path / "bad", states=["interferon", "hypoxia"], **kw)


def test_panel_without_mito_genes(tmp_path):
    kw = dict(n_patients=2, cells_per_sample=80, empty_droplets_per_sample=20, dna_cells_per_sample=0,
              seed=2, interferon_twin=True)
    res = simulate.simulate_cohort(tmp_path / "p", panel_genes=1200, mito_genes=False, **kw)
    assert res["n_genes"] == 1200
    samples = pd.read_csv(tmp_path / "p" / "samples.tsv", sep="\t")
    a = sc.read_10x_h5(samples["rna"].iloc[1], gex_only=False)
    raw = sc.read_10x_h5(samples["rna_raw"].iloc[1], gex_only=False)
    twin = sc.read_10x_h5(tmp_path / "p" / "truth" / "interferon_off" / samples["sample_id"].iloc[1]
                          / "filtered_feature_bc_matrix.h5", gex_only=False)
    gex = a.var_names[a.var["feature_types"] == "Gene Expression"]
    assert len(gex) == 1200 and not gex.str.startswith("MT-").any()
    assert list(raw.var_names) == list(a.var_names) == list(twin.var_names)
    assert (a.var["feature_types"] == "Antibody Capture").sum() == len(simulate.ADT_PANEL)
    genes = pd.read_csv(tmp_path / "p" / "truth" / "genes.tsv", sep="\t", keep_default_na=False)
    assert genes["in_matrix"].sum() == 1200 and len(genes) > 2500
    kept = genes[genes["in_matrix"]]
    # the most detected genes: every kept gene is expected in more cells than every dropped one
    dropped = genes[~genes["in_matrix"] & ~genes["gene_symbol"].str.startswith("MT-")]
    assert kept["expected_detection"].min() >= dropped["expected_detection"].max()
    assert list(kept["gene_symbol"]) == list(gex)  # gene-table order
    # n_counts is the matrix's total
    tr = pd.read_csv(tmp_path / "p" / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False).set_index("cell_id")
    n = np.asarray(a.X[:, :1200].sum(axis=1)).ravel()
    ids = [f"{samples['sample_id'].iloc[1]}:{b}" for b in a.obs_names]
    assert np.array_equal(n, tr.loc[ids, "n_counts"].to_numpy())
    # a list of genes, and the MT genes alone dropped
    simulate.simulate_cohort(tmp_path / "l", panel_genes=["CD3E", "MS4A1", "LYZ", "MT-CO1"], **kw)
    b = sc.read_10x_h5(pd.read_csv(tmp_path / "l" / "samples.tsv", sep="\t")["rna"].iloc[0])
    assert list(b.var_names) == ["MS4A1", "CD3E", "LYZ", "MT-CO1"]  # gene-table (genome) order
    simulate.simulate_cohort(tmp_path / "m", mito_genes=False, **kw)
    c = sc.read_10x_h5(pd.read_csv(tmp_path / "m" / "samples.tsv", sep="\t")["rna"].iloc[0])
    assert c.n_vars == len(genes) - 13 and not c.var_names.str.startswith("MT-").any()
    for bad in (0, 10 ** 6, ["NOT_A_GENE"], "CD3E"):
        with pytest.raises(InputError):
            simulate.simulate_cohort(tmp_path / "bad", panel_genes=bad, **kw)


def test_cli_states_twin_and_panel(tmp_path, capsys):
    rc = simulate.main(["--out", str(tmp_path / "cli"), "--patients", "2", "--cells", "40", "--empty", "10",
                        "--dna-cells", "0", "--seed", "1", "--quiet", "--states", "interferon,stress",
                        "--interferon-twin", "--panel-genes", "800", "--no-mito-genes"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["n_genes"] == 800
    params = json.loads((tmp_path / "cli" / "truth" / "params.json").read_text())
    assert params["states"] == ["interferon", "stress"] and params["interferon_twin"] and not params["mito_genes"]
    assert (tmp_path / "cli" / "truth" / "interferon_off" / "P02_resection" / "filtered_feature_bc_matrix.h5").is_file()
    assert simulate.main(["--out", str(tmp_path / "x"), "--patients", "2", "--quiet", "--panel-genes", "abc"]) == 2


@pytest.mark.slow
def test_simulator_vs_real_table_demo(tmp_path):
    """The table of docs/simulator.md: the demo cohort (config/config.yaml: 6 patients, 1,000
    droplets per sample, seed 1). Run with ``pytest -s -m slow -k simulator_vs_real``."""
    simulate.simulate_cohort(tmp_path / "demo", n_patients=6, cells_per_sample=1000, dna_cells_per_sample=0,
                             seed=1)
    print("\n" + simulator_vs_real_markdown(tmp_path / "demo"))
    lk = leakage_table(tmp_path / "demo")
    out = lk[lk["kind"] == "out"]
    # tumour ambient RNA, not calibration (docs/simulator.md): plasma-cell immunoglobulins and
    # C1Q-macrophage C1QA reach every droplet; blood has neither cell, so these only run high
    tumour_ambient = out["gene"].isin(TUMOUR_AMBIENT_GENES)
    assert (out.loc[tumour_ambient, "difference"] >= -0.1).all()
    close = (out.loc[~tumour_ambient, "difference"].abs() <= 0.1).mean()
    print(f"out pairs within 0.1: {close:.3f} of {(~tumour_ambient).sum()} (all pairs: "
          f"{(out['difference'].abs() <= 0.1).mean():.3f} of {len(out)})")
    assert close >= 0.9
