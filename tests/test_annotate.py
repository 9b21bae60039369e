"""Marker-based annotation: the marker file, scoring, hierarchical labels with abstention, and
accuracy on a simulated cohort (planted labels) and on real PBMCs with published labels.

The simulator is used here only to make data and to score the result; ``pinnacle.annotate``
itself never sees it.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from cohorts import cluster_like_pipeline

from pinnacle import annotate as an
from pinnacle import compare, io, rna_integrate
from pinnacle.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ROOT / "resources" / "markers.yaml"
STATES = ROOT / "resources" / "states.yaml"
# lineages blood cannot hold, or that a PBMC panel lacks
BLOOD_ABSENT = ["mast", "malignant/epithelial", "fibroblast", "endothelial"]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYMPHONY = DATA / "symphony_pbmc_3batch"

SUBTYPES = ["CD8_naive", "CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted", "CD4_naive", "CD4_helper",
            "CD4_Tfh", "Treg", "NK", "B_naive", "B_memory", "plasma", "mono_classical",
            "mono_nonclassical", "macrophage_SPP1", "macrophage_C1Q", "cDC1", "cDC2", "DC_LAMP3", "pDC",
            "mast", "malignant", "fibroblast", "endothelial"]


# --------------------------------------------------------------------------------------------
# the marker file
# --------------------------------------------------------------------------------------------


def test_marker_file_loads_with_the_shared_vocabulary():
    m = an.load_markers(MARKERS)
    assert list(m) == list(an.MAJOR_TYPES)
    subs = [s for rec in m.values() for s in rec["subtypes"]]
    assert sorted(subs) == sorted(SUBTYPES) and len(subs) == len(set(subs))
    for major, rec in m.items():
        assert rec["markers"] and rec["source"], major
        for sub, srec in rec["subtypes"].items():
            assert srec["markers"] and srec["source"], sub
            assert not set(srec["markers"]) & set(srec["negative"]), sub
    # the markers the issue names for the checkpoint-relevant subsets are there
    t = m["T/NK"]["subtypes"]
    assert {"PDCD1", "HAVCR2", "LAG3", "TOX", "CXCL13"} <= set(t["CD8_exhausted"]["markers"])
    assert {"FOXP3", "CTLA4"} <= set(t["Treg"]["markers"])   # IL2RA: an activation state (states.yaml)
    assert "CLEC9A" in m["myeloid"]["subtypes"]["cDC1"]["markers"]
    assert "CD1C" in m["myeloid"]["subtypes"]["cDC2"]["markers"]


def _write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """\
"T/NK":
  markers: [CD3D, CD3E]
  source: "a"
  subtypes:
    CD8_naive: {markers: [CD8A, CCR7], source: "b"}
    NK: {markers: [KLRF1], negative: [CD3D], source: "c"}
"B":
  markers: [MS4A1]
  source: "d"
"""


def test_minimal_file_and_single_subtype_default(tmp_path):
    m = an.load_markers(_write(tmp_path, GOOD))
    assert list(m["B"]["subtypes"]) == ["B"]  # a major type without subtypes is its own subtype
    assert m["T/NK"]["subtypes"]["NK"]["negative"] == ["CD3D"]


def test_bad_file_unknown_key(tmp_path):
    p = _write(tmp_path, GOOD.replace("  markers: [MS4A1]", "  markrs: [MS4A1]"))
    with pytest.raises(InputError, match=r"'B': unknown key\(s\) 'markrs'") as e:
        an.load_markers(p)
    assert str(p) in str(e.value) and "allowed keys" in str(e.value)


def test_bad_file_unknown_key_in_subtype(tmp_path):
    p = _write(tmp_path, GOOD.replace('NK: {markers: [KLRF1], negative: [CD3D], source: "c"}',
                                      'NK: {markers: [KLRF1], negatives: [CD3D], source: "c"}'))
    with pytest.raises(InputError, match=r"'T/NK' > subtypes > 'NK': unknown key\(s\) 'negatives'"):
        an.load_markers(p)


def test_bad_file_empty_marker_list(tmp_path):
    p = _write(tmp_path, GOOD.replace("CD8_naive: {markers: [CD8A, CCR7]", "CD8_naive: {markers: []"))
    with pytest.raises(InputError, match=r"'CD8_naive': 'markers' is empty"):
        an.load_markers(p)


def test_bad_file_duplicate_subtype_across_majors(tmp_path):
    p = _write(tmp_path, GOOD + '  subtypes:\n    NK: {markers: [MS4A1], source: "e"}\n')
    with pytest.raises(InputError, match=r"subtype name 'NK' is also a subtype of 'T/NK'"):
        an.load_markers(p)


def test_bad_file_duplicate_subtype_within_major(tmp_path):
    # PyYAML would silently keep the second one; the loader refuses it and names the line
    p = _write(tmp_path, GOOD.replace('    NK: {markers: [KLRF1]', '    CD8_naive: {markers: [KLRF1]'))
    with pytest.raises(InputError, match=r"line 6\): key 'CD8_naive' appears twice \(first on line 5\)"):
        an.load_markers(p)


def test_bad_file_missing_source(tmp_path):
    p = _write(tmp_path, GOOD.replace('  markers: [MS4A1]\n  source: "d"', "  markers: [MS4A1]"))
    with pytest.raises(InputError, match=r"'B': no 'source' given"):
        an.load_markers(p)


def test_bad_file_gene_both_marker_and_negative(tmp_path):
    p = _write(tmp_path, GOOD.replace("negative: [CD3D]", "negative: [KLRF1]"))
    with pytest.raises(InputError, match=r"KLRF1 listed both as marker and as negative"):
        an.load_markers(p)


def test_bad_file_reserved_unknown(tmp_path):
    p = _write(tmp_path, GOOD.replace("    NK: {", "    unknown: {"))
    with pytest.raises(InputError, match=r"'unknown' is reserved"):
        an.load_markers(p)


def test_bad_file_not_yaml_or_missing(tmp_path):
    with pytest.raises(InputError, match=r"not valid YAML"):
        an.load_markers(_write(tmp_path, "B:\n  markers: [MS4A1\n"))
    with pytest.raises(InputError, match=r"marker file not found"):
        an.load_markers(tmp_path / "nope.yaml")


def test_marker_set_without_any_gene_in_data():
    m = an.load_markers(MARKERS)
    genes = [g for rec in m.values() for g in rec["markers"]]
    genes += [g for rec in m.values() for s in rec["subtypes"].values() for g in s["markers"]]
    without_mast = [g for g in set(genes) if g not in m["mast"]["markers"]]
    with pytest.raises(InputError, match=r"marker set 'mast' \(major\) names no gene present in the data: "
                                         r"TPSAB1.*Fix: use HGNC symbols") as e:
        an.check_markers_present(m, without_mast, where="cohort.h5ad")
    assert str(e.value).startswith("cohort.h5ad:")
    # some genes missing: a record, not an error
    missing = an.check_markers_present(m, [g for g in set(genes) if g != "LAYN"], where="x")
    assert missing == {"CD8_exhausted": ["LAYN"]}
    # a lineage with no gene left is an error (its cells would silently be another type) ...
    with pytest.raises(InputError, match=r"lineage 'mast' has none of its lineage genes.*skip_lineages"):
        an.drop_absent_sets(m, without_mast)
    # ... unless the analyst says the tissue cannot hold it
    kept, dropped = an.drop_absent_sets(m, without_mast, skip_lineages=["mast"])
    assert "mast" not in kept and "mast" in dropped


# --------------------------------------------------------------------------------------------
# scoring and assignment on small synthetic data
# --------------------------------------------------------------------------------------------

TOY = {
    "A": {"markers": ["a1", "a2", "a3"], "negative": [], "source": "s",
          "subtypes": {"A1": {"markers": ["x1", "x2"], "negative": ["y1"], "source": "s"},
                       "A2": {"markers": ["y1", "y2"], "negative": ["x1"], "source": "s"}}},
    "B": {"markers": ["b1", "b2", "b3"], "negative": [], "source": "s",
          "subtypes": {"B": {"markers": ["b1", "b2", "b3"], "negative": [], "source": "s"}}},
}


def _toy(n=300, seed=0):
    """Two lineages (A with subtypes A1/A2, B) plus 40 background genes; log-normalised, CSR."""
    rng = np.random.default_rng(seed)
    genes = ["a1", "a2", "a3", "x1", "x2", "y1", "y2", "b1", "b2", "b3"] + [f"g{i}" for i in range(40)]
    lam = np.full((n, len(genes)), 0.05)
    lam[:, 10:] = rng.gamma(2.0, 1.0, size=40)
    truth = np.array(["A1"] * (n // 3) + ["A2"] * (n // 3) + ["B"] * (n - 2 * (n // 3)))
    for i, t in enumerate(truth):
        if t in ("A1", "A2"):
            lam[i, 0:3] = 3
            lam[i, slice(3, 5) if t == "A1" else slice(5, 7)] = 3
        else:
            lam[i, 7:10] = 3
    X = rng.poisson(lam).astype(np.float32)
    a = ad.AnnData(sp.csr_matrix(X), var=pd.DataFrame(index=genes))
    a.obs_names = [f"c{i}" for i in range(n)]
    a.obs["truth"] = truth
    a.obs["cluster"] = np.where(truth == "B", "k2", np.where(truth == "A1", "k0", "k1"))
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a


def test_scores_on_sparse_match_dense_and_leave_x_sparse():
    a = _toy()
    an.score_markers(a, TOY, level="major", chunk_size=64)  # several blocks
    assert sp.issparse(a.X)
    s = a.obsm["marker_scores_major"]
    assert isinstance(s, pd.DataFrame) and list(s.columns) == ["A", "B"] and s.index.equals(a.obs_names)
    dense = a.copy()
    dense.X = a.X.toarray()
    an.score_markers(dense, TOY, level="major")
    np.testing.assert_allclose(dense.obsm["marker_scores_major"].to_numpy(), s.to_numpy(), rtol=1e-4, atol=1e-4)
    assert list(a.uns["marker_scores_major"]["parents"]) == ["A", "B"]
    # the best set is the planted lineage
    assert (s.idxmax(axis=1).to_numpy() == np.where(a.obs["truth"] == "B", "B", "A")).mean() > 0.95


def test_scoring_refuses_raw_counts():
    a = _toy()
    a.X = a.layers["counts"].copy()
    with pytest.raises(InputError, match="integer counts, not log-normalised"):
        an.score_markers(a, TOY, level="major")


def test_hierarchical_labels_on_toy():
    a = _toy()
    an.annotate_by_markers(a, TOY, cluster_key="cluster")
    assert (a.obs["cell_type"].astype(str) == a.obs["truth"]).mean() > 0.9
    assert a.obs["cell_type_major"].dtype == "category"
    assert set(a.obs["annotation_method"]) == {"markers"}
    c = a.obs["cell_type_confidence"]
    assert c.between(0, 1).all() and c.median() > 0.5
    assert list(a.uns["annotation_markers"]["clusters"]["cluster"]) == ["k0", "k1", "k2"]


def test_second_population_in_a_cluster_keeps_its_labels():
    """Leiden merges rare types (pDC, mast, endothelium in a small sample): a type with a sizeable
    share of the cluster's calls keeps them; a few stray calls still take the cluster's type."""
    a = _toy()
    b_cells = np.flatnonzero(a.obs["truth"] == "B")
    a.obs["cluster"] = a.obs["cluster"].astype(str)
    a.obs.iloc[b_cells[:40], a.obs.columns.get_loc("cluster")] = "k0"  # 40 B cells among 100 A1
    an.annotate_by_markers(a, TOY, cluster_key="cluster")
    moved = a.obs.iloc[b_cells[:40]]
    assert (moved["cell_type_major"] == "B").mean() > 0.9
    assert (a.obs.loc[a.obs["truth"] == "A1", "cell_type"] == "A1").mean() > 0.9
    # with the population rule off (share above 1) they are forced into the cluster's type
    an.annotate_by_markers(a, TOY, cluster_key="cluster", minority=1.01, strong_score=99)
    assert (a.obs.iloc[b_cells[:40]]["cell_type_major"] == "A").mean() > 0.9


def test_corrections_relabel_clusters_then_cells(tmp_path):
    a = _toy()
    an.annotate_by_markers(a, TOY, cluster_key="cluster")
    consensus = an.consensus_labels(a.obs, methods=["markers"])
    a.obs["cell_type_consensus"] = consensus["cell_type_consensus"].to_numpy()
    p = tmp_path / "c.tsv"
    p.write_text("cluster\tcell_id\tcell_type\treason\n"
                 "k1\t\tA1\tA2 programme is an artefact here\n"
                 "\tc5\tB\tchecked by hand\n"
                 "# a comment line\n")
    corr = an.load_corrections(p, TOY)
    assert list(corr["cell_type_major"]) == ["A", "B"]
    before = a.obs["cell_type"].astype(str).copy()
    an.apply_corrections(a, corr, cluster_key="cluster")
    k1 = (a.obs["cluster"] == "k1").to_numpy()
    assert (a.obs.loc[k1, "cell_type"] == "A1").all() and (a.obs.loc[k1, "cell_type_major"] == "A").all()
    assert a.obs.loc["c5", "cell_type"] == "B" and a.obs.loc["c5", "cell_type_major"] == "B"
    assert a.obs.loc["c5", "cell_type_consensus"] == "B"
    assert (a.obs["cell_type_auto"].astype(str) == before).all()
    assert a.obs.loc["c5", "annotation_corrected"] == "checked by hand"
    untouched = ~k1 & (a.obs_names != "c5")
    assert (a.obs.loc[untouched, "cell_type"].astype(str) == before[untouched]).all()
    assert (a.obs.loc[untouched, "annotation_corrected"] == "").all()
    # a cluster of another resolution is named
    bad = corr.assign(cluster=["k9", ""])
    with pytest.raises(InputError, match=r"clusters \['k9'\] are not clusters of cluster"):
        an.apply_corrections(a, bad, cluster_key="cluster")


@pytest.mark.parametrize("text, match", [
    ("cluster\tcell_type\nk1\tA7\n", r"line 2: 'A7' is not a cell type of the marker file"),
    ("cluster\tcell_id\tcell_type\nk1\tc1\tA1\n", r"line 2: a row must give exactly one of 'cluster' and 'cell_id'"),
    ("cluster\tcell_type\nk1\tA1\nk1\tA2\n", r"line 3: this cluster or cell is corrected twice"),
    ("cluster\tlabel\nk1\tA1\n", r"columns are \['cluster', 'label'\]"),
])
def test_bad_corrections_name_the_line(tmp_path, text, match):
    p = tmp_path / "c.tsv"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        an.load_corrections(p, TOY)


def test_layer_option_and_determinism():
    a = _toy()
    a.layers["lognorm"] = a.X.copy()
    a.X = a.layers["counts"].copy()  # X holds counts; the log values are in a layer
    an.annotate_by_markers(a, TOY, cluster_key="cluster", layer="lognorm")
    first = a.obs[["cell_type_major", "cell_type", "cell_type_confidence"]].copy()
    an.annotate_by_markers(a, TOY, cluster_key="cluster", layer="lognorm")
    pd.testing.assert_frame_equal(first, a.obs[["cell_type_major", "cell_type", "cell_type_confidence"]])
    assert a.uns["marker_scores_major"]["layer"] == "lognorm"
    with pytest.raises(InputError, match="layer 'nope' not in the AnnData"):
        an.score_markers(a, TOY, layer="nope")


def test_unknown_parameters_are_refused():
    a = _toy()
    with pytest.raises(InputError, match="unknown annotation parameter\\(s\\) min_scor"):
        an.annotate_by_markers(a, TOY, cluster_key=None, min_scor=2)
    with pytest.raises(InputError, match="absent='maybe' is not known"):
        an.annotate_by_markers(a, TOY, cluster_key=None, absent="maybe")
    with pytest.raises(InputError, match="obs\\['leiden'\\] \\(clusters\\) is missing"):
        an.annotate_by_markers(a, TOY, cluster_key="leiden")


def test_annotation_never_sees_the_simulator():
    """DESIGN.md: no analysis module imports the simulator or reads its truth."""
    lib = ROOT / "src" / "pinnacle"
    # io/cohort_layout.py names the simulated cohort's files for the simulator, the truth check
    # and the run's wiring (config.py): it is not an analysis module and reads nothing
    files = [*lib.glob("annotate/*.py"), *lib.glob("protein/*.py"), *lib.glob("rna_qc/*.py"), *lib.glob("compare/*.py"),
             *lib.glob("cnv/*.py"), *(f for f in lib.glob("io/*.py") if f.name != "cohort_layout.py"),
             *lib.glob("rna_integrate/*.py"), lib / "export.py"]
    assert len(files) > 25
    src = "\n".join(f.read_text() for f in files)
    code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("#"))
    assert "import simulate" not in code and "pinnacle.simulate" not in code and "from .simulate" not in code
    assert "truth/" not in code and "cells.tsv" not in code


def test_cells_without_markers_are_unknown_not_forced():
    a = _toy()
    X = a.X.tolil()
    X[:20, :10] = 0  # 20 cells lose every marker gene
    a.X = sp.csr_matrix(X)
    an.annotate_by_markers(a, TOY, cluster_key=None)
    assert (a.obs["cell_type_major"].iloc[:20] == an.UNKNOWN).all()
    assert (a.obs["cell_type"].iloc[:20] == an.UNKNOWN).all()
    assert (a.obs["cell_type_confidence"].iloc[:20] == 0).all()


# --------------------------------------------------------------------------------------------
# simulated cohort: accuracy against the planted labels
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """3 patients x 2 timepoints x 1,500 cells (seed 3), QC'd with the truth, normalised, Leiden 1.0."""
    from pinnacle.simulate import simulate_cohort  # tests only: the annotation never imports it

    t0 = time.perf_counter()
    out = tmp_path_factory.mktemp("sim_annot")
    simulate_cohort(out, n_patients=3, cells_per_sample=1500, dna_cells_per_sample=0, seed=3)
    samples = pd.read_csv(out / "samples.tsv", sep="\t", dtype=str)
    parts = []
    for sid in samples["sample_id"]:
        gex, _ = io.split_features(io.read_rna(out / "rna" / sid / "filtered_feature_bc_matrix.h5", sample_id=sid))
        parts.append(gex)
    adata = ad.concat(parts, merge="same")
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id").loc[adata.obs_names]
    # QC is another stage: drop the planted doublets and low-quality cells with the truth
    keep = ~(truth["is_doublet"].astype(bool) | truth["is_low_quality"].astype(bool)).to_numpy()
    adata = adata[keep].copy()
    truth = truth.loc[adata.obs_names]
    rna_integrate.normalise(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat")
    rna_integrate.pca(adata, n_comps=30, random_state=0)
    sc.pp.neighbors(adata, use_rep="X_pca", random_state=0)
    sc.tl.leiden(adata, resolution=1.0, key_added="leiden", flavor="igraph", n_iterations=2, directed=False,
                 random_state=0)
    t1 = time.perf_counter()
    markers = an.load_markers(MARKERS)
    an.annotate_by_markers(adata, markers, cluster_key="leiden", random_state=0)
    t2 = time.perf_counter()
    print(f"\nsimulated cohort: {adata.n_obs} cells; prepare {t1 - t0:.1f} s, annotate {t2 - t1:.1f} s")
    return adata, truth, markers


def _recall(pred: pd.Series, truth: pd.Series) -> pd.DataFrame:
    ok = pred.astype(str).to_numpy() == truth.astype(str).to_numpy()
    df = pd.DataFrame({"truth": truth.astype(str).to_numpy(), "ok": ok})
    return df.groupby("truth")["ok"].agg(n="size", recall="mean")


def test_simulated_major_types(sim):
    adata, truth, _ = sim
    pred = adata.obs["cell_type_major"]
    acc = float((pred.astype(str).to_numpy() == truth["cell_type_major"].astype(str).to_numpy()).mean())
    rec = _recall(pred, truth["cell_type_major"])
    print(f"\nmajor accuracy {acc:.4f}\n{rec.round(3).to_string()}")
    # the bar: markers of the literature recover lineages almost perfectly; a lineage under 0.9
    # recall is what issue 4 calls a failure
    assert acc >= 0.95
    assert (rec["recall"] >= 0.9).all(), rec[rec["recall"] < 0.9]
    assert set(rec.index) == set(an.MAJOR_TYPES)


def test_simulated_subtypes(sim):
    adata, truth, _ = sim
    pred = adata.obs["cell_type"]
    acc = float((pred.astype(str).to_numpy() == truth["cell_type"].astype(str).to_numpy()).mean())
    rec = _recall(pred, truth["cell_type"])
    n_unknown = int((pred == an.UNKNOWN).sum())
    print(f"\nsubtype accuracy {acc:.4f} (unresolved: {n_unknown})\n{rec.round(3).to_string()}")
    assert acc >= 0.9
    big = rec[rec["n"] >= 30]
    # memory B cells are told from naive ones by CD27 / TNFRSF13B (detected in ~40% of them, as
    # in real 10x data) and the absence of the naive genes; AIM2, which marked them better, is an
    # interferon-stimulated gene (states.yaml). Measured 0.53; every other subtype >= 0.83.
    assert big.loc["B_memory", "recall"] >= 0.45
    others = big.drop(index="B_memory")
    assert (others["recall"] >= 0.75).all(), others[others["recall"] < 0.75]
    assert set(rec.index) == set(SUBTYPES)
    # confidence means something: wrong labels are less confident than right ones
    ok = pred.astype(str).to_numpy() == truth["cell_type"].astype(str).to_numpy()
    conf = adata.obs["cell_type_confidence"].to_numpy()
    assert conf[ok].mean() > conf[~ok].mean() + 0.2


def test_null_clusters_come_out_unknown(sim):
    """A cluster of shuffled cells (each gene permuted across cells, so markers of all lineages
    mix at random) and a cluster of cells without any marker expression are not forced."""
    adata, truth, markers = sim
    rng = np.random.default_rng(1)
    counts = adata.layers["counts"].tocsc()
    n_null = 300
    shuffled = np.column_stack([counts[:, j].toarray().ravel()[rng.choice(adata.n_obs, n_null, replace=False)]
                                for j in range(adata.n_vars)])
    marker_genes = {g for rec in an.marker_sets(markers, "major").values() for g in rec["markers"] + rec["negative"]}
    marker_genes |= {g for rec in an.marker_sets(markers, "subtype").values() for g in rec["markers"] + rec["negative"]}
    blank = counts[rng.choice(adata.n_obs, n_null, replace=False)].toarray()
    blank[:, adata.var_names.isin(sorted(marker_genes))] = 0
    null = ad.AnnData(sp.csr_matrix(np.vstack([shuffled, blank]).astype(np.float32)),
                      var=pd.DataFrame(index=adata.var_names))
    null.obs_names = [f"null:{i}" for i in range(2 * n_null)]
    null.obs["leiden"] = ["null_shuffled"] * n_null + ["null_no_markers"] * n_null
    rna_integrate.normalise(null)
    real = ad.AnnData(adata.X.copy(), obs=adata.obs[["leiden"]].astype(str), var=pd.DataFrame(index=adata.var_names))
    both = ad.concat([real, null])
    an.annotate_by_markers(both, markers, cluster_key="leiden")
    lab = both.obs["cell_type_major"].astype(str)
    frac_shuf = float((lab[both.obs["leiden"] == "null_shuffled"] == an.UNKNOWN).mean())
    frac_blank = float((lab[both.obs["leiden"] == "null_no_markers"] == an.UNKNOWN).mean())
    frac_real = float((lab.iloc[: adata.n_obs] == an.UNKNOWN).mean())
    print(f"\nunknown: shuffled {frac_shuf:.3f}, no markers {frac_blank:.3f}, real cells {frac_real:.4f}")
    assert frac_blank == 1.0
    assert frac_shuf >= 0.9
    assert frac_real <= 0.01
    assert (both.obs["cell_type_confidence"][lab == an.UNKNOWN] == 0).all()


def test_tables_and_dotplot(sim):
    import matplotlib.figure

    adata, _, markers = sim
    counts = an.cell_type_counts(adata.obs, sample_key="sample_id", label_key="cell_type")
    assert counts.shape[0] == 6 and counts.to_numpy().sum() == adata.n_obs
    assert set(SUBTYPES) <= set(counts.columns)
    ct = an.crosstab_clusters(adata.obs, "leiden", "cell_type_major")
    assert ct.to_numpy().sum() == adata.n_obs
    obs_before, uns_before = adata.obs.copy(), set(adata.uns)
    fig = an.plot_marker_dotplot(adata, markers, groupby="cell_type")
    assert isinstance(fig, matplotlib.figure.Figure)
    pd.testing.assert_frame_equal(adata.obs, obs_before)
    assert set(adata.uns) == uns_before
    with pytest.raises(InputError, match="obs column 'nope' is missing"):
        an.cell_type_counts(adata.obs, sample_key="nope")


def test_annotated_object_writes_h5ad(sim, tmp_path):
    adata, _, _ = sim
    small = adata[:200].copy()
    small.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert back.obs["cell_type"].equals(small.obs["cell_type"])
    assert list(back.obsm["marker_scores_major"].columns) == list(an.MAJOR_TYPES)
    # labels can be re-derived from the stored scores (set -> parent survives the file)
    an.assign_labels(back, cluster_key="leiden")
    assert (back.obs["cell_type"].astype(str) != an.UNKNOWN).mean() > 0.9


# --------------------------------------------------------------------------------------------
# real data: Symphony's three-batch PBMCs with published labels
# --------------------------------------------------------------------------------------------


def _to_published(label: str) -> str:
    if label.startswith("CD8_"):
        return "T_CD8"
    if label.startswith("CD4_") or label == "Treg":
        return "T_CD4"
    return {"mono_classical": "Mono_CD14", "mono_nonclassical": "Mono_CD16", "B_naive": "B", "B_memory": "B",
            "NK": "NK", "cDC1": "DC", "cDC2": "DC", "DC_LAMP3": "DC", "pDC": "DC"}.get(label, f"ours:{label}")


_BROAD = {"T_CD8": "T", "T_CD4": "T", "Mono_CD14": "Mono", "Mono_CD16": "Mono"}


@pytest.mark.realdata
@pytest.mark.skipif(not SYMPHONY.is_dir(), reason="../shared/data/symphony_pbmc_3batch is absent")
def test_symphony_pbmc_published_labels():
    import scipy.io
    from sklearn.metrics import adjusted_rand_score

    lognorm = scipy.io.mmread(SYMPHONY / "lognorm_genes_x_cells.mtx.gz").T.tocsr()  # cells x genes
    genes = pd.read_csv(SYMPHONY / "genes.tsv.gz", sep="\t")["gene"].astype(str).to_numpy()
    cells = pd.read_csv(SYMPHONY / "cells.tsv.gz", sep="\t").set_index("cell_id")
    cells = cells.rename(columns={"cell_type": "published_type", "cell_type_broad": "published_broad"})
    # PROVENANCE: count = expm1(value) x nUMI / 1e4 is an integer for every stored value
    counts = lognorm.copy()
    per_value_numi = np.repeat(cells["nUMI"].to_numpy(dtype=float), np.diff(counts.indptr))
    raw = np.expm1(counts.data) * per_value_numi / 1e4
    assert np.abs(raw - np.rint(raw)).max() < 1e-6
    counts.data = np.rint(raw)
    adata = ad.AnnData(counts.astype(np.float32), obs=cells, var=pd.DataFrame(index=genes))

    # the pipeline: normalise, HVGs, PCA, Harmony over the three chemistries, Leiden
    cluster_like_pipeline(adata, batch_key="donor", n_top_genes=1000, n_comps=30)
    # a 1,767-gene panel of blood: lineages whose markers it lacks (mast, epithelial, endothelial)
    # cannot be scored and are dropped; the rest of the file is used as is
    markers = an.load_markers(MARKERS)
    states = compare.load_signatures(STATES)
    an.annotate_by_markers(adata, markers, cluster_key="leiden", absent="drop",
                           state_genes=an.state_genes(states),
                           skip_lineages=BLOOD_ABSENT)
    dropped = adata.uns["annotation_markers"]["dropped_sets"]

    ours_fine = adata.obs["cell_type"].astype(str).map(_to_published)
    ours_broad = ours_fine.replace(_BROAD)
    pub_fine, pub_broad = adata.obs["published_type"].astype(str), adata.obs["published_broad"].astype(str)
    ari_broad = adjusted_rand_score(pub_broad, ours_broad)
    ari_fine = adjusted_rand_score(pub_fine, ours_fine)
    rec_broad = _recall(ours_broad, pub_broad)
    rec_fine = _recall(ours_fine, pub_fine)
    print(f"\nSymphony PBMC ({adata.n_obs} cells), dropped sets: {dropped}")
    print(f"ARI broad {ari_broad:.3f}, fine {ari_fine:.3f}")
    print(f"recall (broad)\n{rec_broad.round(3).to_string()}\nrecall (fine)\n{rec_fine.round(3).to_string()}")
    print(pd.crosstab(adata.obs["cell_type"], pub_fine).to_string())

    # issue bars: broad ARI >= 0.85, no published type the marker file defines below 0.8 recall
    # (measured 0.938; B 0.93, DC 0.93, Mono 0.93, NK 0.98, T 0.98). HSC and MK (3 and 7 cells)
    # have no set in the marker file.
    for t in ("T", "Mono", "B", "NK", "DC"):
        assert rec_broad.loc[t, "recall"] >= 0.8, (t, rec_broad.loc[t])
    assert ari_broad >= 0.85
    # CD4 vs CD8 T: blood T cells are largely naive; measured 0.81 / 0.94 with the CD4_T / CD8_T
    # groups smoothed per cluster (0.73 / 0.94 before; 0.42 without the naive CD4 set)
    assert rec_fine.loc["T_CD4", "recall"] >= 0.75 and rec_fine.loc["T_CD8", "recall"] >= 0.85
    # blood holds no tumour or stromal cells: those labels stay (nearly) absent
    stromal = adata.obs["cell_type_major"].isin(["malignant/epithelial", "fibroblast", "endothelial"])
    assert stromal.mean() <= 0.005
