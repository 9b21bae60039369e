"""The link (pinnacle.cnv.link): scRNA malignant cells assigned to scDNA clones, clone fractions
from both assays, clone pseudobulk.

Planted clones (negative binomial counts over arm-level copy-number profiles), the nulls
(identical profiles, one clone, cells of a single clone, shuffled profiles), and the issue's bars on
the simulator's cohort: the pipeline's own scDNA clones, the truth read only here.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pinnacle import cnv, io
from pinnacle.cnv import link
from pinnacle.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "resources" / "bins_1mb_grch38.tsv.gz"
GENES = ROOT / "resources" / "genes_grch38.tsv"
#: each clone adds arm events to its parent's (a linear tree, as the simulator plants them)
EVENTS = [{"1q": 3, "3p": 1, "8q": 4}, {"1q": 3, "3p": 1, "8q": 4, "7p": 3, "14q": 1},
          {"1q": 3, "3p": 1, "8q": 4, "7p": 3, "14q": 1, "4q": 1, "12p": 3}]


# ---------------------------------------------------------------------------------------------
# planted clones
# ---------------------------------------------------------------------------------------------
def _planted(*, n_cells=600, fractions=(0.5, 0.3, 0.2), depth=2000.0, genes_per_chrom=60, seed=0):
    """Malignant cells x genes, NB counts with mean library x baseline x CN/2 of the cell's clone;
    returns (AnnData with layers['counts'], consensus clones x 1 Mb bins, gene table, true clone)."""
    rng = np.random.default_rng(seed)
    chroms = [f"chr{i}" for i in range(1, 23)]
    bins = pd.DataFrame([(c, i * 1_000_000, (i + 1) * 1_000_000) for c in chroms for i in range(60)],
                        columns=["chrom", "start", "end"])
    bins.index = bins["chrom"] + ":" + bins["start"].astype(str) + "-" + bins["end"].astype(str)
    arms = (bins["chrom"].str[3:] + np.where(bins["start"] < 30_000_000, "p", "q")).to_numpy()
    prof = np.full((len(EVENTS), len(bins)), 2, dtype=np.int8)
    for i, ev in enumerate(EVENTS):
        for arm, cn in ev.items():
            prof[i, arms == arm] = cn
    names = [f"P1_C{i + 1}" for i in range(len(EVENTS))]
    cons = pd.DataFrame(prof, index=pd.Index(names, name="clone"), columns=bins.index)
    cons.attrs["n_cells"] = dict.fromkeys(names, 40)
    starts = np.sort(rng.integers(0, 59_000_000, (len(chroms), genes_per_chrom)), axis=1)
    genes = pd.DataFrame([(f"{c}_g{j}", c, int(s), int(s) + 20_000) for c, row in zip(chroms, starts)
                          for j, s in enumerate(row)], columns=["gene_symbol", "chrom", "start", "end"])
    col = (genes["start"] + 10_000) // 1_000_000 + 60 * np.repeat(np.arange(len(chroms)), genes_per_chrom)
    base = rng.lognormal(0, 1.2, len(genes))
    base /= base.sum()
    phi = rng.uniform(0.1, 0.6, len(genes))
    lab = rng.choice(len(EVENTS), size=n_cells, p=np.asarray(fractions) / np.sum(fractions))
    mu = depth * rng.lognormal(0, 0.4, (n_cells, 1)) * base[None, :] * prof[lab][:, col.to_numpy()] / 2.0
    X = sp.csr_matrix(rng.poisson(mu * rng.gamma(1 / phi, phi, size=mu.shape)).astype(np.float32))
    obs = pd.DataFrame({"sample_id": np.where(np.arange(n_cells) % 2, "P1_baseline", "P1_resection"),
                        "patient_id": "P1"}, index=[f"cell{i}" for i in range(n_cells)])
    a = ad.AnnData(X, obs=obs, var=pd.DataFrame(index=genes["gene_symbol"].to_numpy()))
    a.layers["counts"] = X.copy()
    return a, cons, genes, np.asarray(names)[lab]


def _accuracy(a: ad.AnnData, truth) -> tuple[float, float]:
    """(accuracy on assigned cells, assignment rate)."""
    lab = a.obs["clone"].astype(str).to_numpy()
    asg = lab != link.UNASSIGNED
    return float(np.mean(lab[asg] == np.asarray(truth)[asg])) if asg.any() else np.nan, float(asg.mean())


def test_genes_to_bins_takes_the_bin_of_the_midpoint():
    bins = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "start": [0, 1_000_000, 3_000_000, 0],
                         "end": [1_000_000, 2_000_000, 4_000_000, 1_000_000]})
    bins.index = bins["chrom"] + ":" + bins["start"].astype(str) + "-" + bins["end"].astype(str)
    genes = pd.DataFrame({"gene_symbol": ["A", "B", "C", "D", "E", "A"],
                          "chrom": ["1", "chr1", "chr1", "2", "chr3", "chr2"],
                          "start": [900_000, 1_500_000, 2_500_000, 10, 10, 10],
                          "end": [1_300_000, 1_600_000, 2_600_000, 20, 20, 20]})
    got = link.genes_to_bins(genes, bins)
    # A's midpoint (1.1 Mb) lies in the second bin; "1" and "chr1" are one chromosome; a repeated
    # symbol keeps its first row; C lies in a gap (a filtered bin), E on a chromosome without bins
    assert got["A"] == "chr1:1000000-2000000" and got["B"] == "chr1:1000000-2000000"
    assert got["D"] == "chr2:0-1000000" and pd.isna(got["C"]) and pd.isna(got["E"])
    near = link.genes_to_bins(genes, list(bins.index), max_distance=600_000)  # names parse too
    assert near["C"] == "chr1:3000000-4000000"  # 2.55 Mb: 0.45 Mb from the bin at 3 Mb, 0.55 from 2 Mb
    with pytest.raises(InputError, match="not chrom:start-end"):
        link.genes_to_bins(genes, ["chr1_0_100"])


def test_planted_clones_are_assigned_with_calibrated_posteriors():
    a, cons, genes, truth = _planted(depth=2000)
    link.assign_clones(a, cons, genes=genes)
    st = a.uns["clone_assignment"]["all"]
    acc, rate = _accuracy(a, truth)
    # 7p, 14q, 4q and 12p tell the clones apart (~4 x 30 genes); the posterior threshold 0.9 keeps
    # about three quarters of the cells at this depth
    assert st["status"] == "ok" and st["n_informative_genes"] >= 100, st
    assert acc >= 0.95 and rate >= 0.6, (acc, rate, st)
    assert (a.obs["clone_n_genes"] >= 10).all() and a.obs["clone_posterior"].between(0, 1).all()
    post = a.obsm["clone_posteriors"]
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    assert list(post.columns) == list(cons.index)
    # the posterior is calibrated: the best clone's share of right calls tracks its posterior
    best_ok = a.obs["clone_best"].to_numpy() == truth
    p = a.obs["clone_posterior"].to_numpy()
    assert best_ok[p >= 0.99].mean() >= 0.97 and 0.7 <= best_ok[p < 0.9].mean() <= 0.9
    # the prior is fitted towards the planted fractions
    assert st["prior"]["P1_C1"] == pytest.approx(0.5, abs=0.06)
    # deterministic: the same input gives the same output
    b = link.assign_clones(a.copy(), cons, genes=genes)
    assert b.obs["clone"].equals(a.obs["clone"]) and np.array_equal(b.obs["clone_posterior"], p)
    # shallow cells: fewer assigned, still right
    s, cons_s, genes_s, truth_s = _planted(depth=300, seed=1)
    link.assign_clones(s, cons_s, genes=genes_s, prior="uniform")
    acc_s, rate_s = _accuracy(s, truth_s)
    assert acc_s >= 0.9 and 0.05 <= rate_s < rate / 2, (acc_s, rate_s, s.uns["clone_assignment"])


def test_identical_profiles_or_one_clone_leave_every_cell_unassigned():
    a, cons, genes, _ = _planted(n_cells=200)
    same = cons.iloc[[0, 0, 0]].set_axis(cons.index)  # three names, one profile
    link.assign_clones(a, same, genes=genes)
    st = a.uns["clone_assignment"]["all"]
    assert st["status"] == "indistinguishable" and "cannot be told apart" in st["message"]
    assert len(st["indistinguishable_clones"]) == 3 and st["assignment_rate"] == 0
    assert (a.obs["clone"] == link.UNASSIGNED).all() and a.obs["clone_posterior"].isna().all()
    link.assign_clones(a, cons.iloc[:1], genes=genes)
    assert a.uns["clone_assignment"]["all"]["status"] == "too_few_clones"
    assert (a.obs["clone"] == link.UNASSIGNED).all()
    # a whole-genome doubling is no contrast expression can see
    wgd = pd.concat([cons.iloc[:1], (cons.iloc[:1] * 2).set_axis(["P1_C2"])])
    link.assign_clones(a, wgd, genes=genes)
    assert a.uns["clone_assignment"]["all"]["status"] == "indistinguishable"


@pytest.mark.parametrize("prior", ["fit", "uniform"])
def test_nulls_single_clone_cells_and_shuffled_profiles_are_not_confident(prior):
    # cells all of one clone: their baselines fit any of the profiles (the free baselines absorb a
    # constant copy number), so no assignment may be claimed
    for only in range(3):
        frac = np.eye(3)[only]
        a, cons, genes, _ = _planted(fractions=frac, depth=3000, seed=2 + only)
        link.assign_clones(a, cons, genes=genes, prior=prior)
        st = a.uns["clone_assignment"]["all"]
        assert st["status"] == "inconsistent" and (a.obs["clone"] == link.UNASSIGNED).all(), st
        assert st["halves_z"] < 3
    # profiles shuffled over the bins: the informative genes carry no contrast of these clones
    a, cons, genes, _ = _planted(depth=3000)
    for seed in range(3):
        shuffled = cons.copy()
        shuffled[:] = cons.to_numpy()[:, np.random.default_rng(seed).permutation(cons.shape[1])]
        link.assign_clones(a, shuffled, genes=genes, prior=prior)
        st = a.uns["clone_assignment"]["all"]
        assert st["status"] == "inconsistent" and st["assigned"] == 0, st


def test_bad_input_stops_with_a_fix():
    a, cons, genes, _ = _planted(n_cells=50)
    other = genes.assign(gene_symbol="X" + genes["gene_symbol"])
    with pytest.raises(InputError, match="no gene of the matrix is in the gene table") as e:
        link.assign_clones(a, cons, genes=other)
    assert "Fix:" in str(e.value)
    moved = genes.assign(chrom="chrUn")
    with pytest.raises(InputError, match="no gene of the matrix lies in a bin"):
        link.assign_clones(a, cons, genes=moved)
    with pytest.raises(InputError, match="layer 'raw' not found"):
        link.assign_clones(a, cons, genes=genes, layer="raw")
    b = a.copy()
    b.layers["counts"] = b.layers["counts"] * 0.5
    with pytest.raises(InputError, match="not non-negative integers"):
        link.assign_clones(b, cons, genes=genes)
    with pytest.raises(InputError, match="prior='flat' is not known"):
        link.assign_clones(a, cons, genes=genes, prior="flat")
    with pytest.raises(InputError, match="no 'patient' column"):
        link.assign_clones(a, {"P1": cons}, genes=genes, groupby="patient")


def test_consensus_per_patient_and_a_patient_without_one():
    a, cons, genes, truth = _planted(n_cells=300, depth=3000)
    b, *_ = _planted(n_cells=40, seed=9)
    b.obs["patient_id"] = "P2"
    b.obs_names = [f"P2_{n}" for n in b.obs_names]
    both = ad.concat([a, b], merge="same")
    link.assign_clones(both, {"P1": cons}, genes=genes)
    st = both.uns["clone_assignment"]
    assert st["P1"]["status"] == "ok" and st["P2"]["status"] == "no_consensus"
    assert (both.obs.loc[b.obs_names, "clone"] == link.UNASSIGNED).all()
    acc, _ = _accuracy(both[a.obs_names], truth)
    assert acc >= 0.95


def test_clone_fractions_from_rna_stack_with_the_scdna_fractions():
    obs = pd.DataFrame({"sample_id": ["S1"] * 6 + ["S2"] * 4,
                        "clone": ["C1", "C1", "C2", "unassigned", "C1", "C2", "C2", "C2", "C2", "unassigned"]})
    dna = pd.DataFrame({"sample_id": ["S1"] * 4, "clone": ["C1", "C2", "normal", "C1"]})
    fr = link.clone_fractions_from_rna(obs, dna=dna)
    r = fr[fr["assay"] == "scRNA"].set_index(["sample_id", "clone"])
    assert r.loc[("S1", "C1"), "n_cells"] == 3 and r.loc[("S1", "C1"), "fraction_of_tumour"] == pytest.approx(0.6)
    assert r.loc[("S1", "C1"), "fraction"] == pytest.approx(0.5)
    assert np.isnan(r.loc[("S1", "unassigned"), "fraction_of_tumour"])
    assert r.loc[("S1", "C2"), "assignment_rate"] == pytest.approx(5 / 6)
    assert r.loc[("S2", "C2"), "fraction_of_tumour"] == 1 and r.loc[("S2", "C2"), "assignment_rate"] == 0.75
    d = fr[fr["assay"] == "scDNA"].set_index(["sample_id", "clone"])
    assert d.loc[("S1", "C1"), "fraction_of_tumour"] == pytest.approx(2 / 3) and d["assignment_rate"].isna().all()
    # the same columns as clone_fractions: both assays in one table
    assert set(cnv.clone_fractions(dna).columns) < set(fr.columns)


def test_clone_pseudobulk_sums_counts_of_clones_with_enough_cells():
    a, cons, genes, truth = _planted(n_cells=300, depth=3000)
    link.assign_clones(a, cons, genes=genes)
    pb = link.clone_pseudobulk(a, min_cells=20)
    lab = a.obs["clone"].astype(str)
    size = a.obs.groupby([a.obs["sample_id"], lab], observed=True).size()
    kept = size[(size >= 20) & (size.index.get_level_values(1) != link.UNASSIGNED)]
    assert pb.n_obs == len(kept) and sp.issparse(pb.X)
    for name, row in pb.obs.iterrows():
        cells = (a.obs["sample_id"] == row["sample_id"]).to_numpy() & (lab == row["clone"]).to_numpy()
        assert row["n_cells"] == cells.sum() and name == f"{row['sample_id']}|{row['clone']}"
        np.testing.assert_allclose(pb[name].X.toarray().ravel(), np.asarray(a.layers["counts"][cells].sum(axis=0)).ravel())
    assert set(pb.obs["patient_id"]) == {"P1"}
    small = link.clone_pseudobulk(a, min_cells=10_000)
    clones = size[size.index.get_level_values(1) != link.UNASSIGNED]
    assert small.n_obs == 0 and len(small.uns["clone_pseudobulk"]["dropped"]) == len(clones)


# ---------------------------------------------------------------------------------------------
# the bars on the simulator's cohort (truth read here only)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linked(simulated_cohort):
    """Per patient: the pipeline's scDNA clones and consensus, the malignant scRNA singlets (by the
    truth) assigned to them, and the pipeline -> planted clone names (majority of the scDNA truth)."""
    out = simulated_cohort(n_patients=2, n_responders=1, cells_per_sample=2000, dna_cells_per_sample=150, seed=5)
    ref = cnv.read_bin_reference(REFERENCE)
    genes = pd.read_csv(GENES, sep="\t")
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    dna_truth = pd.read_csv(out / "truth" / "dna_cells.tsv.gz", sep="\t").set_index("cell_id")
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id", keep_default_na=False)
    planted_fr = pd.read_csv(out / "truth" / "clone_fractions.tsv", sep="\t")
    patients = {}
    for pid, rows in samples.groupby("patient_id"):
        dna, rna = [], []
        for _, r in rows.iterrows():
            d = io.read_scdna(r["dna"], sample_id=r["sample_id"])
            d.obs["patient_id"] = pid
            dna.append(cnv.process_sample(d, reference=ref)[0])
            g, _ = io.split_features(io.read_rna(r["rna"], sample_id=r["sample_id"]))
            g.obs["patient_id"] = pid
            rna.append(g)
        d = cnv.call_clones(cnv.combine_samples(dna))
        lab = d.obs["clone"].astype(str)
        tum = ~lab.isin(["normal", "outlier", "unclustered"])
        names = pd.crosstab(lab[tum], dna_truth.loc[d.obs_names[tum], "clone"]).idxmax(axis=1).to_dict()
        rna = ad.concat(rna, merge="same")
        t = truth.loc[rna.obs_names]
        mal = (t["cell_type"] == "malignant") & ~t["is_doublet"].astype(bool) & ~t["is_low_quality"].astype(bool)
        rna = rna[mal.to_numpy()].copy()
        rna.layers["counts"] = rna.X.copy()
        rna.obs["planted"] = truth.loc[rna.obs_names, "clone"].to_numpy()
        patients[pid] = {"dna": d, "consensus": cnv.clone_consensus(d), "rna": rna, "names": names}
    both = ad.concat([p["rna"] for p in patients.values()], merge="same")
    link.assign_clones(both, {pid: p["consensus"] for pid, p in patients.items()}, genes=genes)
    return patients, both, genes, planted_fr


def test_simulated_rna_cells_meet_their_planted_clones(linked):
    patients, both, _, _ = linked
    names = {k: v for p in patients.values() for k, v in p["names"].items()}
    called = both.obs["clone"].astype(str).map(lambda c: names.get(c, c))
    assigned = called != link.UNASSIGNED
    acc = float((called[assigned] == both.obs.loc[assigned, "planted"]).mean())
    rate = float(assigned.mean())
    st = both.uns["clone_assignment"]
    msg = f"accuracy {acc:.3f} on assigned cells, assignment rate {rate:.3f}; status {st}"
    # the clones differ on whole arms (hundreds of genes) and a malignant cell has ~13,000 UMIs, so
    # nearly every cell is clear: the floor 0.8 leaves room for the shallow and ambiguous ones
    assert acc >= 0.8 and rate >= 0.8, msg
    assert all(s["status"] == "ok" and s["halves_kappa"] >= 0.5 for s in st.values()), msg


def test_simulated_rna_clone_fractions_match_the_planted_ones(linked):
    patients, both, _, planted = linked
    names = {k: v for p in patients.values() for k, v in p["names"].items()}
    obs = both.obs.assign(clone=both.obs["clone"].astype(str).map(lambda c: names.get(c, c)))
    dna = pd.concat([p["dna"].obs for p in patients.values()])
    dna = dna.assign(clone=dna["clone"].astype(str).map(lambda c: names.get(c, c)))
    fr = link.clone_fractions_from_rna(obs, dna=dna)
    rna = fr[(fr["assay"] == "scRNA") & fr["fraction_of_tumour"].notna()]
    m = planted.merge(rna, on=["sample_id", "clone"], how="left").fillna({"fraction_of_tumour": 0.0})
    drawn = m["n_rna_cells"] / m.groupby("sample_id")["n_rna_cells"].transform("sum")
    n = m.groupby("sample_id")["n_rna_cells"].transform("sum")
    # against the planted (expected) fractions: within 3 multinomial standard errors of the sample's
    # malignant cells (83 to 600 cells: 0.02 to 0.16) or 0.05; against the drawn cells' fractions
    # (the planted labels of all malignant droplets, doublets too): within 0.05
    tol = np.maximum(0.05, 3 * np.sqrt(m["expected_fraction"] * (1 - m["expected_fraction"]) / n))
    err = (m["fraction_of_tumour"] - m["expected_fraction"]).abs()
    assert (err <= tol).all(), m.assign(err=err, tol=tol).to_string()
    assert ((m["fraction_of_tumour"] - drawn).abs() <= 0.05).all(), m.to_string()
    assert (fr.loc[fr["assay"] == "scRNA", "assignment_rate"] >= 0.8).all()
    # both assays in one table: each planted clone of each sample has a fraction from each
    for assay in ("scRNA", "scDNA"):
        got = fr[fr["assay"] == assay].set_index(["sample_id", "clone"]).index
        assert set(zip(planted["sample_id"], planted["clone"])) <= set(got), assay


def test_simulated_nulls_single_clone_and_shuffled_consensus(linked, tmp_path):
    patients, _, genes, _ = linked
    p = patients["P02"]
    rna, cons = p["rna"], p["consensus"]
    # the cells of one planted clone only: a single-clone tumour in the RNA
    major = rna.obs["planted"].value_counts().index[0]
    one = rna[(rna.obs["planted"] == major).to_numpy()].copy()
    link.assign_clones(one, cons, genes=genes)
    st = one.uns["clone_assignment"]["all"]
    assert st["status"] == "inconsistent" and (one.obs["clone"] == link.UNASSIGNED).all(), st
    # the consensus profiles shuffled over the bins
    for seed in range(2):
        shuffled = cons.copy()
        shuffled[:] = cons.to_numpy()[:, np.random.default_rng(seed).permutation(cons.shape[1])]
        a = link.assign_clones(rna.copy(), shuffled, genes=genes)
        st = a.uns["clone_assignment"]["all"]
        assert st["status"] == "inconsistent" and st["assigned"] == 0, st
    # another patient's consensus
    a = link.assign_clones(rna.copy(), patients["P01"]["consensus"], genes=genes)
    assert a.uns["clone_assignment"]["all"]["assigned"] == 0, a.uns["clone_assignment"]


def test_simulated_clone_pseudobulk_shows_the_copy_number(linked):
    """Clone-level expression: between two clones, genes on an arm the clones hold in different
    copy number differ by the copy-number ratio; the rest do not."""
    patients, both, genes, _ = linked
    p = patients["P02"]
    rna = both[both.obs["patient_id"] == "P02"].copy()
    pb = link.clone_pseudobulk(rna, min_cells=20)
    assert (pb.obs["n_cells"] >= 20).all() and set(pb.obs["patient_id"]) == {"P02"}
    clones = pb.obs.groupby("clone")["n_cells"].sum()
    assert len(clones) == 2
    sums = {c: np.asarray(pb[(pb.obs["clone"] == c).to_numpy()].X.sum(axis=0)).ravel() for c in clones.index}
    cons = p["consensus"].loc[list(clones.index)]
    gb = link.genes_to_bins(genes, list(cons.columns)).reindex(rna.var_names)
    ok = gb.notna().to_numpy()
    cn = cons[gb[ok].to_numpy()].to_numpy()
    a, b = (sums[c][ok] for c in clones.index)
    expressed = (a > 200) & (b > 200)
    a, b, cn = a[expressed], b[expressed], cn[:, expressed]
    ratio = np.log2(a / a.sum()) - np.log2(b / b.sum())
    diff, same = cn[0] != cn[1], cn[0] == cn[1]
    want = np.log2(cn[0][diff] / cn[1][diff])
    shift = np.median(ratio[same])  # the clones' library scales differ a little
    assert diff.sum() >= 20 and abs(shift) < 0.1
    assert np.median(np.abs(ratio[diff] - shift - want)) < 0.15, np.median(ratio[diff] - shift - want)
