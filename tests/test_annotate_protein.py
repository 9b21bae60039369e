"""Protein (CITE-seq) evidence for RNA labels: the expectation file, tag names, per-cell CLR,
per-sample tag calls, the confirm/contradict rule, the per-label table and figure.

Accuracy is measured on a simulated cohort (planted labels, planted tags: the simulator and
``pinnacle.annotate`` never meet; only this test reads the truth) and on real 10x PBMC CITE-seq
data, whose RNA labels come from our markers and whose tags are measured independently.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from pinnacle import annotate as an
from pinnacle import compare, io, rna_integrate
from pinnacle.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PROTEIN_MARKERS = ROOT / "resources" / "protein_markers.yaml"
MARKERS = ROOT / "resources" / "markers.yaml"
STATE_GENES = an.state_genes(compare.load_signatures(ROOT / "resources" / "states.yaml"))
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CITESEQ = DATA / "pbmc_citeseq_10x_subsets"
TSANG = DATA / "dsb_citeseq_tsang"
LINEAGE_TAGS = ["CD3", "CD4", "CD8", "CD19", "CD14", "CD16", "CD56"]


@pytest.fixture(scope="module")
def expectations():
    return an.load_protein_expectations(PROTEIN_MARKERS)


# --------------------------------------------------------------------------------------------
# the expectation file
# --------------------------------------------------------------------------------------------


def test_expectation_file_uses_the_label_vocabulary(expectations):
    assert list(expectations["tags"]) == LINEAGE_TAGS
    markers = an.load_markers(MARKERS)
    vocabulary = set(markers) | {s for rec in markers.values() for s in rec["subtypes"]}
    assert set(expectations["labels"]) <= vocabulary
    assert set(markers) <= set(expectations["labels"])  # every lineage has an entry
    for lab, rec in expectations["labels"].items():
        assert rec["source"] and rec["expect"], lab
    # a subtype carries its lineage's expectation, overridden by its own
    cd8 = expectations["labels"]["CD8_naive"]["expect"]
    assert cd8 == {"CD19": False, "CD14": False, "CD3": True, "CD8": True, "CD4": False}
    assert expectations["labels"]["NK"]["expect"]["CD3"] is False
    assert "CD16" not in expectations["labels"]["NK"]["expect"]  # CD56bright NK are CD16-


def test_expectation_file_names_no_gene_for_the_cohort_object():
    """resources/*.yaml are globbed for genes to keep (common.smk GENE_RESOURCES); tag names
    such as CD3 or CD56 are not genes and must not be picked up."""
    raw = yaml.safe_load(PROTEIN_MARKERS.read_text())
    assert rna_integrate.genes_in_yaml(raw) == set()
    # ...while the marker file still gives its genes
    assert "CD3E" in rna_integrate.genes_in_yaml(yaml.safe_load(MARKERS.read_text()))


GOOD = """\
tags:
  CD3: {aliases: [CD3E], source: "a"}
  CD19: {aliases: [], source: "b"}
cell_types:
  B: {expect: {CD19: pos, CD3: neg}, source: "c"}
  "T/NK":
    expect: {CD19: neg}
    source: "d"
    subtypes:
      CD8_naive: {expect: {CD3: pos}, source: "e"}
"""


@pytest.mark.parametrize("bad, message", [
    (GOOD.replace("{CD19: pos, CD3: neg}", "{CD19: pos, CD33: neg}"), r"tag 'CD33' is not defined under 'tags'"),
    (GOOD.replace("{CD19: pos, CD3: neg}", "{CD19: yes, CD3: neg}"), r"tag 'CD19': expected 'pos' or 'neg'"),
    (GOOD.replace(', source: "e"', ""), r"'T/NK' > subtypes > 'CD8_naive': no 'source' given"),
    (GOOD.replace("expect: {CD19: neg}", "expected: {CD19: neg}"), r"unknown key\(s\) 'expected'"),
    (GOOD.replace("cell_types:", "types:"), r"exactly the top-level keys"),
    (GOOD + '  B: {expect: {CD19: pos}, source: "f"}\n', r"line 11\): key 'B' appears twice \(first on line 5\)"),
])
def test_bad_expectation_files(tmp_path, bad, message):
    path = tmp_path / "p.yaml"
    path.write_text(bad)
    with pytest.raises(InputError, match=message) as e:
        an.load_protein_expectations(path)
    assert str(path) in str(e.value)


def test_good_toy_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    exp = an.load_protein_expectations(path)
    assert exp["tags"]["CD3"] == ["CD3", "CD3E"]
    assert exp["labels"]["CD8_naive"] == {"expect": {"CD19": False, "CD3": True}, "parent": "T/NK", "source": "e"}
    with pytest.raises(InputError, match="not found"):
        an.load_protein_expectations(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# tag names, CLR, tag calls
# --------------------------------------------------------------------------------------------


def test_tag_aliases(expectations):
    panel = ["CD3_TotalSeqB", "CD4-1", "CD4-2", "CD8a", "ADT_CD19", "CD14_PROT", "cd16 ", "NCAM1",
             "CD41", "CD45RA", "Mouse IgG2bkIsotype_PROT", "IgM_PROT", "IgG1_control_TotalSeqB"]
    assert an.match_tags(panel, expectations["tags"]) == {
        "CD3": "CD3_TotalSeqB", "CD4": "CD4-1", "CD8": "CD8a", "CD19": "ADT_CD19", "CD14": "CD14_PROT",
        "CD16": "cd16 ", "CD56": "NCAM1"}
    # CD41 (ITGA2B, platelets) is not CD4, and a clone number is not part of the name
    assert an.match_tags(["CD41", "CD8B"], expectations["tags"]) == {}
    assert an.match_tags(["CD3E-2", "CD8 alpha"], expectations["tags"]) == {"CD3": "CD3E-2", "CD8": "CD8 alpha"}
    assert an.isotype_controls(panel) == ["Mouse IgG2bkIsotype_PROT", "IgG1_control_TotalSeqB"]


def test_clr_is_per_cell():
    counts = np.array([[0, 10, 100, 5], [3, 3, 3, 3], [0, 0, 0, 0]], dtype=np.float32)
    prot = ad.AnnData(counts)
    an.clr(prot)
    # Seurat NormalizeData(method="CLR", margin=2) = muon.prot.pp.clr(axis=1), written out
    g = np.exp(np.log1p(counts.astype(float)).mean(axis=1, keepdims=True))
    np.testing.assert_allclose(prot.layers["clr"], np.log1p(counts / g), rtol=1e-6)
    assert (prot.layers["clr"][2] == 0).all()
    # a cell's values do not depend on the other cells
    other = ad.AnnData(np.vstack([counts[:1], counts[1:] * 50]))
    an.clr(other)
    np.testing.assert_allclose(other.layers["clr"][0], prot.layers["clr"][0])
    with pytest.raises(InputError, match="negative"):
        an.clr(ad.AnnData(-counts))


# --------------------------------------------------------------------------------------------
# simulated cohort: planted types and tags
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(small_cohort):
    """The session's small cohort (tests/conftest.py: 2 patients x 2 timepoints x 1,500 cells);
    each sample's tags and truth labels, planted doublets and damaged cells removed (QC's job)."""
    t0 = time.perf_counter()
    out = small_cohort
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", index_col="cell_id")
    samples = pd.read_csv(out / "samples.tsv", sep="\t", dtype=str)
    parts = {}
    for row in samples.itertuples():
        _, prot = io.split_features(io.read_rna(row.rna, sample_id=row.sample_id))
        t = truth.loc[prot.obs_names]
        keep = ~(t["is_doublet"].astype(bool) | t["is_low_quality"].astype(bool)).to_numpy()
        parts[row.sample_id] = (prot[keep].copy(), t.loc[keep, ["cell_type", "cell_type_major"]].astype(str))
    print(f"\nsimulated {sum(p.n_obs for p, _ in parts.values())} cells in {time.perf_counter() - t0:.1f} s")
    return parts


def _evidence(parts, expectations, relabel=None):
    out = []
    for prot, labels in parts.values():
        labels = labels if relabel is None else relabel(labels)
        out.append(an.protein_evidence(prot, labels, expectations, random_state=0)[0])
    return pd.concat(out)


# the labels whose lineage the seven tags define; the protein must confirm them
_GROUPS = {"T CD8": ["CD8_naive", "CD8_effector_memory", "CD8_tissue_resident", "CD8_exhausted"],
           "T CD4": ["CD4_naive", "CD4_helper", "CD4_Tfh", "Treg"], "B": ["B"], "NK": ["NK"],
           "monocyte": ["mono_classical", "mono_nonclassical"]}


def test_simulated_true_labels_are_confirmed(sim, expectations):
    t0 = time.perf_counter()
    cells = _evidence(sim, expectations)
    elapsed = time.perf_counter() - t0
    table = an.protein_evidence_by_label(cells, expectations).set_index("label")
    print(f"\nprotein evidence on {len(cells)} cells: {elapsed:.1f} s\n"
          f"{table[['n_cells', 'n_checked', 'n_contradicts', 'agreement']].round(3).to_string()}")
    assert set(cells["protein_evidence"].astype(str)) <= {"confirms", "contradicts"}
    # every planted tag is matched and bimodal in every sample: no cell goes unchecked
    assert (cells["n_tags_checked"] >= 2).all()
    overall = float((cells["protein_evidence"] == "confirms").mean())
    # Bar: measured 0.996-0.998 over seeds 0-3 (the lowest label, B, 0.978-0.990: CD19 is the
    # dimmest planted tag, so a few B cells fall below its valley); a 2% gating error overall or
    # a lineage below 0.93 would mean the thresholds are misplaced.
    assert overall >= 0.98
    for group, labs in _GROUPS.items():
        sub = cells[cells["protein_label"].isin(labs)]
        agree = float((sub["protein_evidence"] == "confirms").mean())
        assert len(sub) >= 20 and agree >= 0.93, (group, agree)
    # the figure is drawn with the expected pattern
    import matplotlib.figure

    assert isinstance(an.plot_protein_evidence(an.protein_evidence_by_label(cells, expectations)),
                      matplotlib.figure.Figure)


# swaps between lineages the seven tags tell apart
_SWAP_TO = {"CD4_naive": "CD8_naive", "CD4_helper": "CD8_effector_memory", "CD4_Tfh": "CD8_naive",
            "Treg": "CD8_exhausted",
            "CD8_naive": "CD4_helper", "CD8_effector_memory": "NK", "CD8_tissue_resident": "B",
            "CD8_exhausted": "CD4_Tfh", "NK": "CD8_effector_memory", "B": "CD4_helper",
            "mono_classical": "NK", "mono_nonclassical": "B"}


def test_simulated_wrong_labels_are_flagged(sim, expectations):
    rng = np.random.default_rng(0)
    swapped = []

    def relabel(labels):
        labels = labels.copy()
        lab = labels["cell_type"].where(labels["cell_type_major"] != "B", "B")
        can = lab.isin(list(_SWAP_TO)).to_numpy()
        pick = can & (rng.random(len(labels)) < 0.15)
        labels.loc[pick, "cell_type"] = lab[pick].map(_SWAP_TO).to_numpy()
        labels.loc[pick, "cell_type_major"] = labels.loc[pick, "cell_type"].map(
            lambda s: "B" if s == "B" else "T/NK").to_numpy()
        swapped.extend(labels.index[pick])
        return labels

    cells = _evidence(sim, expectations, relabel)
    wrong = cells.loc[swapped, "protein_evidence"].astype(str)
    right = cells.drop(index=swapped)["protein_evidence"].astype(str)
    flagged, false_flags = float((wrong == "contradicts").mean()), float((right == "contradicts").mean())
    print(f"\n{len(wrong)} swapped labels: {flagged:.3f} flagged; {len(right)} true labels: {false_flags:.4f} flagged")
    # Bar: measured 1.000 flagged over seeds 0-3 (a swap changes 2-4 expected lineage tags,
    # each a chance to catch it; with max_discordant=1, two needed, 0.989-0.997); the true
    # labels keep the rate of the test above (0.004 flagged).
    assert len(wrong) > 300
    assert flagged >= 0.95
    assert false_flags <= 0.02
    # the discordant tags are named: a CD4 T cell labelled CD8 shows CD4+ and CD8-
    cd4_as_cd8 = cells.loc[swapped][cells.loc[swapped, "protein_label"] == "CD8_effector_memory"]
    assert cd4_as_cd8["discordant_tags"].str.contains("CD8-").mean() > 0.9


def test_unimodal_tag_falls_back_to_isotype_background(sim, expectations):
    """A sample without B cells: CD19 has one mode; below the isotype controls' background it is
    called negative everywhere (not split in two by the mixture)."""
    prot, labels = next(iter(sim.values()))
    keep = (labels["cell_type_major"] != "B").to_numpy()
    sub = prot[keep].copy()
    an.clr(sub)
    cols = an.match_tags(sub.var_names, expectations["tags"])
    calls, thresholds = an.call_tags(sub, list(cols.values()))
    th = thresholds.set_index("tag")
    print(f"\n{th.round(3).to_string()}")
    assert th.loc[cols["CD19"], "method"] == "isotype" and (calls[cols["CD19"]] == 0).all()
    assert (th.drop(index=cols["CD19"])["method"] == "mixture").all()
    # without isotype controls the tag is left undetermined, and no cell is judged on it
    no_iso = sub[:, [v for v in sub.var_names if v not in an.isotype_controls(sub.var_names)]].copy()
    an.clr(no_iso)
    calls2, th2 = an.call_tags(no_iso, [cols["CD19"]])
    assert th2.loc[0, "method"] == "undetermined" and calls2[cols["CD19"]].isna().all()


def test_no_tags_and_no_expectation(sim, expectations):
    prot, labels = next(iter(sim.values()))
    empty = prot[:, []].copy()  # a sample without CITE-seq (the QC writes such a prot.h5ad)
    cells, tags = an.protein_evidence(empty, labels, expectations)
    assert tags.empty and "threshold" in tags
    assert (cells["protein_evidence"] == "no_tags").all() and (cells["n_tags_checked"] == 0).all()
    table = an.protein_evidence_by_label(cells, expectations)
    assert table.empty and {"label", "agreement", "pos_CD3", "expected_CD3"} <= set(table.columns)
    assert an.protein_evidence_by_label(cells.iloc[:0], expectations).empty
    fig = an.plot_protein_evidence(table)
    assert "no CITE-seq tags" in " ".join(t.get_text() for t in fig.axes[0].texts)
    # a panel without the lineage tags is the same as no panel
    other = prot[:, ["CD45_TotalSeqB", "CD25_TotalSeqB"]].copy()
    assert (an.protein_evidence(other, labels, expectations)[0]["protein_evidence"] == "no_tags").all()
    # unknown labels: no expectation (unless the major type is known); cells missing from prot: no tags
    lab = labels.copy()
    lab.iloc[:10, lab.columns.get_loc("cell_type")] = an.UNKNOWN
    lab.iloc[:5, lab.columns.get_loc("cell_type_major")] = an.UNKNOWN
    lab.loc["ghost:AAAA"] = ["B_naive", "B"]
    res, _ = an.protein_evidence(prot, lab, expectations)
    assert (res["protein_evidence"].iloc[:5] == "no_expectation").all()
    assert (res["protein_label"].iloc[5:10] == lab["cell_type_major"].iloc[5:10]).all()
    assert res.loc["ghost:AAAA", "protein_evidence"] == "no_tags"
    with pytest.raises(InputError, match="'cell_type' is missing"):
        an.protein_evidence(prot, labels.drop(columns="cell_type"), expectations)


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------


def _citeseq(name):
    a = ad.read_h5ad(CITESEQ / f"{name}.h5ad")
    prot = ad.AnnData(np.asarray(a.obsm["protein_expression"], dtype=np.float32),
                      obs=pd.DataFrame(index=a.obs_names), var=pd.DataFrame(index=list(a.uns["protein_names"])))
    rna = ad.AnnData(a.X.copy(), obs=pd.DataFrame(index=a.obs_names), var=pd.DataFrame(index=a.var_names))
    return rna, prot


@pytest.mark.realdata
@pytest.mark.skipif(not CITESEQ.is_dir(), reason="../shared/data/pbmc_citeseq_10x_subsets is absent")
def test_real_pbmc_citeseq_confirms_marker_labels(expectations):
    """Two real 10x PBMC CITE-seq subsets (200 cells each; 14 and 29 TotalSeq-B tags named
    CD3_TotalSeqB, CD8a_TotalSeqB, ...): RNA labels from our markers, tags checked per sample.
    No published labels: the protein is the independent judge."""
    import scanpy as sc

    expect_markers = an.load_markers(MARKERS)
    parts, lineage = [], []
    for name in ("pbmc_10k_protein_v3", "pbmc_5k_protein_v3"):
        rna, prot = _citeseq(name)
        rna_integrate.normalise(rna)
        sc.pp.highly_variable_genes(rna, n_top_genes=2000, flavor="seurat")
        rna_integrate.pca(rna, n_comps=20, random_state=0)
        sc.pp.neighbors(rna, use_rep="X_pca", n_neighbors=10, random_state=0)
        sc.tl.leiden(rna, resolution=1.0, key_added="leiden", flavor="igraph", n_iterations=2, directed=False,
                     random_state=0)
        an.annotate_by_markers(rna, expect_markers, cluster_key="leiden", absent="drop", state_genes=STATE_GENES,
                               skip_lineages=["malignant/epithelial", "fibroblast", "endothelial"])
        res, tags = an.protein_evidence(prot, rna.obs[["cell_type", "cell_type_major"]], expectations)
        major = rna.obs[["cell_type_major"]].assign(cell_type=rna.obs["cell_type_major"])
        lineage.append(an.protein_evidence(prot, major, expectations)[0])
        assert set(tags["tag"]) == set(LINEAGE_TAGS) and (tags["method"] == "mixture").all()
        assert tags.set_index("tag").loc["CD8", "column"] == "CD8a_TotalSeqB"
        parts.append(res)
    cells = pd.concat(parts)
    # issue bar: the lineage (major type) confirmed by the tags for >= 95% of checked cells
    lin = pd.concat(lineage)
    lin = lin[lin["protein_evidence"].isin(["confirms", "contradicts"])]
    confirmed = float((lin["protein_evidence"] == "confirms").mean())
    print(f"\nlineage confirmed by protein: {confirmed:.3f} of {len(lin)} checked cells\n"
          f"{lin.groupby('protein_label')['protein_evidence'].value_counts().to_string()}")
    assert len(lin) >= 300 and confirmed >= 0.95
    table = an.protein_evidence_by_label(cells, expectations).set_index("label")
    print(f"\n{table[['n_cells', 'n_checked', 'n_contradicts', 'agreement']].round(3).to_string()}")
    print(cells[cells["protein_evidence"] == "contradicts"].groupby("protein_label")["discordant_tags"]
          .value_counts().to_string())

    def agree(labs):
        sub = cells[cells["protein_label"].isin(labs)]["protein_evidence"]
        return float((sub == "confirms").mean()), len(sub)

    # Bars (measured: B 1.00 of 29, CD4 T 0.98 of 86, NK 0.88 of 34, classical monocytes 0.92 of
    # 105); a few cells per label are intermediate monocytes (CD16+) or doublets.
    for labs, bar in ((["B"], 0.9), (_GROUPS["T CD4"], 0.9), (["NK"], 0.8), (["mono_classical"], 0.85)):
        value, n = agree(labs)
        assert n >= 25 and value >= bar, (labs, value, n)
    # Naive CD4 T cells (CCR7+ SELL+ LEF1+ CD4+) have their own set: the protein confirms them
    # (measured 0.94 of 47). Before it existed they took CD8_naive, where the protein then said
    # CD4+ CD8- for 50 of 65 cells; now for 14 of 28.
    value, n = agree(["CD4_naive"])
    assert n >= 30 and value >= 0.9, (value, n)
    naive = cells[cells["protein_label"] == "CD8_naive"]
    assert (naive["discordant_tags"] == "CD4+ CD8-").mean() <= 0.55
    # A finding: RNA separates CD4 from CD8 T cells per cell only where CD4/CD8A/CD8B transcripts
    # are caught, so CD4 T cells with GZMK or CD69 (memory, activated) can take a CD8 subtype; the
    # protein flags them (CD8 labels confirmed in 0.56 of 77 cells here, CD4 labels in 0.96).


@pytest.mark.realdata
@pytest.mark.skipif(not TSANG.is_dir(), reason="../shared/data/dsb_citeseq_tsang is absent")
def test_real_tsang_panel_calls_exclusive_lineages(expectations):
    """87-antibody PBMC panel (names like CD3_PROT, 'Mouse IgG2bkIsotype_PROT'), no labels:
    the lineage calls must be near mutually exclusive, as blood lineages are."""
    counts = pd.read_csv(TSANG / "cells_adt_counts.tsv.gz", sep="\t", index_col="antibody").T
    prot = ad.AnnData(counts.to_numpy(dtype=np.float32), obs=pd.DataFrame(index=counts.index),
                      var=pd.DataFrame(index=counts.columns.astype(str)))
    assert len(an.isotype_controls(prot.var_names)) == 4
    cols = an.match_tags(prot.var_names, expectations["tags"])
    assert set(cols) == set(LINEAGE_TAGS)
    an.clr(prot)
    calls, th = an.call_tags(prot, list(cols.values()))
    calls.columns = list(cols)
    frac = calls.mean()
    print(f"\n{th.round(3).to_string()}\npositive: {frac.round(3).to_dict()}")
    both = {f"{a}+{b}+": float(((calls[a] == 1) & (calls[b] == 1)).mean())
            for a, b in (("CD3", "CD19"), ("CD3", "CD14"), ("CD19", "CD14"), ("CD4", "CD8"), ("CD3", "CD56"))}
    print(f"double positive: {both}")
    # Measured: CD3+CD19+ 0.001, CD19+CD14+ and CD4+CD8+ rare. CD3+CD14+ 0.032: this panel's CD14
    # is weak (at most 81 counts), its monocyte mode overlaps the T cells' background; the
    # undetermined band (6.6% of cells) halves the overlap (0.073 with the valley alone).
    assert both["CD3+CD19+"] <= 0.01 and both["CD19+CD14+"] <= 0.01 and both["CD4+CD8+"] <= 0.03
    assert both["CD3+CD14+"] <= 0.05
    assert th.set_index("tag").loc[cols["CD14"], "undetermined_fraction"] > 0
    assert 0.3 <= frac["CD3"] <= 0.85 and 0.02 <= frac["CD19"] <= 0.3 and 0.02 <= frac["CD14"] <= 0.4
