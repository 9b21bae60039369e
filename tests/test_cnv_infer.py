"""Copy number inferred from scRNA-seq and the malignant call (``pinnacle.cnv.infer``).

- Simulated cohort (2 patients, 30% of the epithelium diploid normal epithelium, EBV in the
  malignant cells): the annotation input (``cell_type_major``) is taken from the planted labels,
  as the pipeline takes it from the annotation stage; the planted malignant / normal epithelium
  labels are the answer.
- Real data (skipped when ``../shared`` is absent): inferCNV's oligodendroglioma example (Tirosh
  et al. 2016, Smart-seq2; hg19 positions from its own gene file), whose tumours carry the 1p/19q
  co-deletion.
- Unit tests on a synthetic profile with a planted gain and loss, and bad input.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pinnacle.cnv.infer import (
    MALIGNANT,
    NON_MALIGNANT,
    call_malignant,
    ebv_genes,
    infer_cnv,
    plot_cnv_heatmap,
)
from pinnacle.errors import InputError
from pinnacle.io import read_rna, split_features

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
GENES = ROOT / "resources" / "genes_grch38.tsv"
OLIGO = Path(__file__).resolve().parents[2] / "shared" / "data" / "infercnv_oligodendroglioma"
SIM = dict(n_patients=2, n_responders=1, cells_per_sample=1500, dna_cells_per_sample=0, seed=11,
           normal_epithelial=0.3, ebv=True)
EPI = "malignant/epithelial"


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


# ---------------------------------------------------------------------------------------------
# simulated cohort
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(simulated_cohort):
    """Per patient: (with EBV, without EBV genes, planted truth of the cells), both called."""
    out = simulated_cohort(**SIM)
    samples = pd.read_csv(out / "samples.tsv", sep="\t")
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False).set_index("cell_id")
    genes = pd.read_csv(GENES, sep="\t")
    res = {}
    for pid, rows in samples.groupby("patient_id"):
        a = ad.concat([split_features(read_rna(r.rna, sample_id=r.sample_id))[0] for r in rows.itertuples()],
                      merge="same")
        tr = truth.loc[a.obs_names]
        qc = ~(tr["is_doublet"].astype(bool) | tr["is_low_quality"].astype(bool)).to_numpy()  # what QC removes
        a, tr = a[qc].copy(), tr[qc]
        a.layers["counts"] = a.X
        a.obs["cell_type_major"] = tr["cell_type_major"].to_numpy()
        a.obs["patient_id"] = pid
        no_ebv = a[:, ~a.var_names.isin(ebv_genes(a.var_names))].copy()
        for x in (a, no_ebv):
            infer_cnv(x, genes=genes)
        summaries = (call_malignant(a), call_malignant(no_ebv))
        res[pid] = (a, no_ebv, tr, summaries)
    return res


def _scores(a: ad.AnnData, tr: pd.DataFrame) -> dict:
    epi = (tr["cell_type_major"] == EPI).to_numpy()
    mal = (tr["cell_type"] == "malignant").to_numpy()
    called = (a.obs["malignant_call"] == MALIGNANT).to_numpy()
    return dict(accuracy=float((called[epi] == mal[epi]).mean()), recall=float(called[mal].mean()),
                non_epithelial_called=float(called[~epi].mean()), n_epi=int(epi.sum()), n_mal=int(mal.sum()))


def test_simulated_malignant_call_meets_the_bars(sim):
    for pid, (a, _, tr, (summary, _)) in sim.items():
        s = _scores(a, tr)
        assert s["accuracy"] >= 0.9 and s["recall"] >= 0.85, (pid, s)
        assert s["non_epithelial_called"] <= 0.002, (pid, s)
        assert summary.loc[0, "status"] == "ok" and summary.loc[0, "normal_epithelium"], summary.T
        assert set(a.obs["malignant_call"].cat.categories) == {MALIGNANT, "uncertain", NON_MALIGNANT}
        conf = a.obs["malignant_confidence"].to_numpy()
        assert np.all((conf >= 0.5) & (conf <= 1))
        # the planted normal epithelium is mostly called non-malignant (the call is not "all epithelium")
        normal = (tr["cell_type"] == "epithelial_normal").to_numpy()
        assert (a.obs["malignant_call"].to_numpy()[normal] == NON_MALIGNANT).mean() >= 0.7


def test_ebv_raises_confidence_and_the_call_works_without_it(sim):
    for pid, (a, b, tr, (with_ebv, without)) in sim.items():
        assert with_ebv.loc[0, "ebv_used"] and not without.loc[0, "ebv_used"]
        assert with_ebv.loc[0, "ebv_positive_tumour"] > 5 * with_ebv.loc[0, "ebv_positive_ambient"]
        mal = (tr["cell_type"] == "malignant").to_numpy()
        assert a.obs["malignant_probability"][mal].mean() > b.obs["malignant_probability"][mal].mean(), pid
        s = _scores(b, tr)
        assert s["non_epithelial_called"] <= 0.002
        assert s["accuracy"] >= 0.85 and s["recall"] >= 0.85, (pid, s)
    assert "malignant_ebv_counts" in sim["P01"][0].obs and "malignant_ebv_counts" not in sim["P01"][1].obs


def test_cnv_score_and_status_on_the_simulation(sim):
    for a, _, tr, _ in sim.values():
        st = a.uns["cnv"]["status"]
        assert st["status"] == "ok" and st["n_genes_not_in_table"] == 0 and st["n_ebv_genes"] == 5
        assert a.obsm["X_cnv"].shape == (a.n_obs, st["n_windows"]) and len(a.uns["cnv"]["windows"]) == st["n_windows"]
        mal = (tr["cell_type"] == "malignant").to_numpy()
        ref = ~(tr["cell_type_major"] == EPI).to_numpy()
        assert _auroc(a.obs["cnv_score"][mal], a.obs["cnv_score"][ref]) > 0.85


def test_misannotated_tumour_cells_need_overwhelming_evidence(sim):
    """A tumour cell the annotation missed is still called; a reference cell never on noise."""
    a, _, tr, _ = sim["P01"]
    b = a.copy()
    mal = np.flatnonzero((tr["cell_type"] == "malignant").to_numpy())[:12]
    lab = b.obs["cell_type_major"].astype(str).to_numpy()
    lab[mal] = "unknown"
    b.obs["cell_type_major"] = lab
    s = call_malignant(b)
    assert (b.obs["malignant_call"].to_numpy()[mal] == MALIGNANT).mean() >= 0.75
    assert s.loc[0, "n_non_epithelial_malignant"] <= len(mal) + 2


def test_heatmap_is_grouped_and_labelled(sim):
    a = sim["P02"][0]
    fig = plot_cnv_heatmap(a)
    ax, cax = fig.axes[1], fig.axes[2]
    assert "malignant" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["1", "2", "3"]
    assert "copy number" in cax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("malignant:") for t in labels) and any("reference" in t for t in labels)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_simulator_options(sim, simulated_cohort, capsys):
    from pinnacle.simulate import main

    out = simulated_cohort(**SIM)
    truth = pd.read_csv(out / "truth" / "cells.tsv.gz", sep="\t", keep_default_na=False)
    single = truth[~truth["is_doublet"].astype(bool)]
    epi = single[single["cell_type_major"] == EPI]
    assert 0.2 < (epi["cell_type"] == "epithelial_normal").mean() < 0.4
    assert (epi.loc[epi["cell_type"] == "epithelial_normal", "clone"] == "").all()
    ebv = single.groupby(single["cell_type"] == "malignant")["ebv_counts"].apply(lambda x: (x > 0).mean())
    assert ebv[True] > 0.7 and ebv[False] < 0.1
    params = json.loads((out / "truth" / "params.json").read_text())
    assert params["normal_epithelial"] == 0.3 and params["ebv"]["contig"] == "chrEBV"
    with pytest.raises(SystemExit):
        main(["--help"])
    helptext = capsys.readouterr().out
    assert "--normal-epithelial" in helptext and "--ebv" in helptext


# ---------------------------------------------------------------------------------------------
# real data: inferCNV's oligodendroglioma example
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not OLIGO.is_dir(), reason="../shared/data/infercnv_oligodendroglioma is absent")
def test_oligodendroglioma_scores_and_1p19q_loss():
    m = pd.read_csv(OLIGO / "oligodendroglioma_expression_downsampled.counts.matrix.gz", sep="\t", index_col=0)
    ann = pd.read_csv(OLIGO / "oligodendroglioma_annotations_downsampled.txt", sep="\t", header=None, index_col=0)[1]
    genes = pd.read_csv(OLIGO / "gencode_downsampled.EXAMPLE_ONLY_DONT_REUSE.txt", sep="\t", header=None,
                        names=["gene_symbol", "chrom", "start", "end"])
    X = sp.csr_matrix(m.T.to_numpy(np.float32))
    a = ad.AnnData(X, obs=pd.DataFrame({"cell_type": ann.reindex(m.columns).to_numpy()}, index=m.columns),
                   var=pd.DataFrame(index=m.index), layers={"counts": X})
    ref = ["Microglia/Macrophage", "Oligodendrocytes (non-malignant)"]
    st = infer_cnv(a, genes=genes, reference_key="cell_type", reference_categories=ref)
    assert st["status"] == "ok" and st["n_reference_cells"] == 42
    is_ref = a.obs["cell_type"].isin(ref).to_numpy()
    assert _auroc(a.obs["cnv_score"][~is_ref], a.obs["cnv_score"][is_ref]) > 0.9
    w = a.uns["cnv"]["windows"]
    X = a.obsm["X_cnv"].toarray()
    for arm in ((w["chrom"] == "chr1") & (w["end"] < 120e6), (w["chrom"] == "chr19") & (w["start"] > 28e6)):
        sel = arm.to_numpy()
        tumour, normal = X[~is_ref][:, sel].mean(), X[is_ref][:, sel].mean()
        assert tumour < 0 and tumour < normal - 0.05, (tumour, normal)
    rest = (~w["chrom"].isin(["chr1", "chr19"])).to_numpy()
    assert abs(X[~is_ref][:, rest].mean()) < 0.03
    s = call_malignant(a, cell_type_key="cell_type", reference_categories=ref,
                       epithelial_categories=[c for c in ann.unique() if c.startswith("malignant")])
    assert s.loc[0, "n_epithelial_malignant"] >= 0.95 * (~is_ref).sum() and s.loc[0, "n_non_epithelial_malignant"] == 0


# ---------------------------------------------------------------------------------------------
# synthetic profile and bad input
# ---------------------------------------------------------------------------------------------
def _synthetic(n_ref: int = 400, n_tum: int = 150, seed: int = 0):
    """4 chromosomes x 500 genes; tumour cells: chr2 gained (x1.5), first half of chr3 lost (x0.5)."""
    rng = np.random.default_rng(seed)
    G = 2000
    genes = pd.DataFrame({"gene_symbol": [f"G{i}" for i in range(G)], "chrom": np.repeat(["1", "2", "3", "4"], 500),
                          "start": np.tile(np.arange(500) * 100_000 + 1, 4)})
    genes["end"] = genes["start"] + 5_000
    base = np.exp(rng.normal(-1.0, 1.2, G))
    types = np.r_[np.repeat(["T/NK", "myeloid"], n_ref // 2), np.repeat([EPI], n_tum)]
    mu = np.tile(base, (len(types), 1)) * np.exp(rng.normal(0, 0.3, (3, G)))[pd.factorize(types)[0]]
    tum = types == EPI
    cn = np.ones(G)
    cn[500:1000] = 1.5
    cn[1000:1250] = 0.5
    mu[tum] *= cn
    lib = np.exp(rng.normal(np.log(3000), 0.3, len(types)))
    X = rng.poisson(mu / mu.sum(axis=1, keepdims=True) * lib[:, None]).astype(np.float32)
    a = ad.AnnData(sp.csr_matrix(X), obs=pd.DataFrame({"cell_type_major": types}, index=[f"c{i}" for i in range(len(types))]),
                   var=pd.DataFrame(index=genes["gene_symbol"].to_numpy()))
    a.layers["counts"] = a.X
    return a, genes


def test_planted_gain_and_loss_recovered_in_their_region():
    a, genes = _synthetic()
    st = infer_cnv(a, genes=genes, min_mean_counts=0.05)
    assert st["status"] == "ok"
    w = a.uns["cnv"]["windows"]
    X = a.obsm["X_cnv"].toarray()
    tum = (a.obs["cell_type_major"] == EPI).to_numpy()
    mean = X[tum].mean(axis=0)
    gain = (w["chrom"] == "chr2").to_numpy()
    loss = ((w["chrom"] == "chr3") & (w["end"] < 24_000_000)).to_numpy()
    flat = w["chrom"].isin(["chr1", "chr4"]).to_numpy() | ((w["chrom"] == "chr3") & (w["start"] > 26_000_000)).to_numpy()
    assert mean[gain].mean() > 0.1 and mean[loss].mean() < -0.1
    assert abs(mean[flat].mean()) < 0.03 and np.abs(X[~tum].mean(axis=0)).max() < 0.05
    # window by window, the planted regions stand out of the tumour type's own expression scatter
    assert (mean[gain] > np.quantile(mean[flat], 0.9)).mean() > 0.8
    assert (mean[loss] < np.quantile(mean[flat], 0.1)).mean() > 0.8
    s = call_malignant(a, min_cells=10)
    calls = a.obs["malignant_call"].to_numpy()
    assert (calls[tum] == MALIGNANT).mean() > 0.95 and (calls[~tum] == NON_MALIGNANT).all(), s.T


def test_genes_missing_from_the_table_are_dropped_and_counted():
    a, genes = _synthetic(n_ref=200, n_tum=50)
    st = infer_cnv(a, genes=genes.iloc[7:], min_mean_counts=0.05)
    assert st["status"] == "ok" and st["n_genes_not_in_table"] == 7
    assert "7 genes not in the gene table" in st["message"]


def test_too_few_reference_cells_is_a_status_not_a_crash():
    a, genes = _synthetic(n_ref=10, n_tum=60)
    st = infer_cnv(a, genes=genes)
    assert st["status"] == "too_few_reference_cells" and "10 reference cells" in st["message"]
    assert a.obs["cnv_score"].isna().all() and "X_cnv" not in a.obsm
    s = call_malignant(a)
    assert s.loc[0, "status"] == "no_cnv"
    assert (a.obs["malignant_call"][a.obs["cell_type_major"] == EPI] == "uncertain").all()


def test_bad_input_raises_input_error():
    a, genes = _synthetic(n_ref=40, n_tum=10)
    with pytest.raises(InputError, match="lacks column"):
        infer_cnv(a, genes=genes.drop(columns="start"))
    with pytest.raises(InputError, match="layer 'raw'"):
        infer_cnv(a, genes=genes, layer="raw")
    with pytest.raises(InputError, match="no 'annotation' column"):
        infer_cnv(a, genes=genes, reference_key="annotation")
    with pytest.raises(InputError, match="min_probability"):
        call_malignant(a, min_probability=0.3)
    with pytest.raises(InputError, match="no inferred copy number"):
        plot_cnv_heatmap(a)


def test_ebv_genes_by_name_and_contig():
    names = ["RPMS1", "LMP1", "LMP2A", "EBNA1", "EBV_BARF1", "BART10", "EBNA1BP2", "PSMB9", "LMP2", "CD3E", "X1"]
    assert ebv_genes(names) == ["RPMS1", "LMP1", "LMP2A", "EBNA1", "EBV_BARF1", "BART10"]
    assert ebv_genes(["X1", "X2"], chrom=["chrEBV", "chr1"]) == ["X1"]
    with pytest.raises(InputError):
        ebv_genes(["X1"], chrom=["chr1", "chr2"])


def test_heatmap_chromosome_names_do_not_overlap():
    """The windows of the demo's patient P01 (963 windows; chr21 has 4, chr22 17): the small
    chromosomes' names, drawn side by side, used to run into each other ("20 21 22")."""
    import matplotlib.pyplot as plt

    sizes = [120, 64, 53, 37, 49, 58, 41, 34, 38, 37, 66, 53, 11, 27, 26, 48, 65, 13, 79, 23, 4, 17]
    chr_pos = dict(zip([f"chr{i}" for i in range(1, 23)], np.r_[0, np.cumsum(sizes)[:-1]].tolist()))
    n = 300
    a = ad.AnnData(np.zeros((n, 1)), obs=pd.DataFrame({"cell_type_major": ["T/NK"] * 200 + [EPI] * 100},
                                                      index=[f"c{i}" for i in range(n)]))
    a.obsm["X_cnv"] = np.random.default_rng(0).normal(0, 0.1, (n, sum(sizes)))
    a.uns["cnv"] = {"chr_pos": chr_pos}
    fig = plot_cnv_heatmap(a)
    fig.canvas.draw()
    ax, renderer = fig.axes[1], fig.canvas.get_renderer()
    ticks = ax.get_xticklabels()
    assert [t.get_text().strip() for t in ticks] == [str(i) for i in range(1, 23)]
    for line in (0, 1):  # names on the same line of tick labels stand apart
        boxes = [t.get_window_extent(renderer) for t in ticks if t.get_text().count("\n") == line]
        for b1, b2 in pairwise(boxes):
            assert b1.x1 < b2.x0, [t.get_text() for t in ticks]
    plt.close(fig)
