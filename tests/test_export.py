"""The cellxgene-ready cohort file, the run summary table, training progress lines and UMAPs a reader can read."""

import logging
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pinnacle import export, progress


def _cohort(tmp_path, *, n_cells=53, n_genes=40, seed=0):
    """A counts file on every gene (cells in sample order, plus cells QC removed later) and an
    annotated cohort on a subset of genes, its cells in another order."""
    rng = np.random.default_rng(seed)
    cells = [f"S{i % 3}:{i:04d}" for i in range(n_cells + 5)]
    genes = [f"G{j}" for j in range(n_genes)]
    counts = sp.random(len(cells), n_genes, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    counts.data = np.ceil(counts.data * 20).astype(np.float32)
    counts.data[counts.indptr[3]:counts.indptr[4]] = 0  # a cell without counts normalises to zeros, not NaN
    counts.eliminate_zeros()
    raw = ad.AnnData(X=counts, obs=pd.DataFrame(index=cells),
                     var=pd.DataFrame({"gene_ids": [f"ENSG{j:011d}" for j in range(n_genes)],
                                       "feature_types": "Gene Expression"}, index=genes))
    raw.write_h5ad(tmp_path / "rna_counts.h5ad")
    kept = [cells[i] for i in rng.permutation(len(cells)) if i != 3][:n_cells] + [cells[3]]
    obs = pd.DataFrame({"sample_id": [c.split(":")[0] for c in kept],
                        "cell_type": pd.Categorical(rng.choice(["B_naive", "CD8_exhausted", "unknown"], len(kept))),
                        "barcode": [c.split(":")[1] for c in kept],
                        "qc_pass": True, "total_counts": rng.random(len(kept)).astype(np.float32),
                        "leiden_1.0": pd.Categorical(rng.integers(0, 4, len(kept)))}, index=kept)
    annotated = ad.AnnData(X=sp.csr_matrix((len(kept), 10), dtype=np.float32), obs=obs,
                           var=pd.DataFrame(index=genes[:10]))
    annotated.obsm["X_umap"] = rng.normal(size=(len(kept), 2))
    annotated.obsm["X_scVI"] = rng.normal(size=(len(kept), 5)).astype(np.float32)
    annotated.obsm["X_harmony"] = rng.normal(size=(len(kept), 3))
    annotated.obsm["marker_scores"] = rng.normal(size=(len(kept), 3))  # not an embedding
    annotated.obsm["X_one_column"] = rng.normal(size=(len(kept), 1))
    annotated.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    annotated.uns["scvi"] = {"max_epochs": 50, "device": "cpu"}
    annotated.uns["panel"] = pd.DataFrame({"gene": ["CD3E"], "present": [True]})
    annotated.uns["big"] = np.zeros(export.MAX_UNS_ELEMENTS + 1)
    annotated.uns["cell_type_colors"] = np.array(["#1f77b4", "#ff7f0e", "#2ca02c"])
    annotated.uns["sample_id_colors"] = np.array(["#1f77b4"])  # wrong length: left out
    annotated.write_h5ad(tmp_path / "annotated.h5ad")
    return raw, annotated


def test_write_cellxgene_reads_back_as_cellxgene_expects(tmp_path):
    raw, annotated = _cohort(tmp_path)
    out = tmp_path / "cellxgene.h5ad"
    record = export.write_cellxgene(tmp_path / "annotated.h5ad", tmp_path / "rna_counts.h5ad", out,
                                    chunk_size=7, title="test cohort")
    got = ad.read_h5ad(out)
    assert record["n_obs"] == got.n_obs == annotated.n_obs and got.n_vars == raw.n_vars
    assert list(got.obs_names) == list(annotated.obs_names)
    # every gene, both matrices sparse float32; raw.X the counts of the same cells, X their log1p CP10k
    assert sp.issparse(got.X) and got.X.dtype == np.float32 and got.raw.X.dtype == np.float32
    expected = raw[annotated.obs_names].X.toarray()
    np.testing.assert_array_equal(got.raw.X.toarray(), expected)
    totals = expected.sum(1, keepdims=True)
    norm = np.log1p(np.divide(expected * 1e4, totals, out=np.zeros_like(expected), where=totals > 0))
    np.testing.assert_allclose(got.X.toarray(), norm, rtol=1e-5)
    assert list(got.var_names) == list(raw.var_names) == list(got.raw.var_names)
    assert got.var["gene_ids"].iloc[0] == "ENSG00000000000"
    assert got.var["highly_variable"].sum() == 10 and got.var["highly_variable"].iloc[:10].all()
    # text columns as categories; numbers and booleans kept as they are
    for col in ("sample_id", "cell_type", "leiden_1.0"):
        assert isinstance(got.obs[col].dtype, pd.CategoricalDtype), col
    assert "barcode" not in got.obs  # an identifier (in the cell id), not a grouping
    assert got.obs["qc_pass"].dtype == bool and got.obs["total_counts"].dtype == np.float32
    # embeddings (X_*) as float32; score tables and one-column arrays are no embeddings
    assert set(got.obsm) == {"X_umap", "X_scVI", "X_harmony"}
    assert all(v.dtype == np.float32 for v in got.obsm.values())
    # small uns: no tables, big arrays, neighbour graph or colour list of the wrong length
    assert set(got.uns) == {"scvi", "cell_type_colors", "title", "default_embedding"}
    assert got.uns["title"] == "test cohort" and got.uns["default_embedding"] == "X_umap"


def test_write_cellxgene_stops_on_cells_without_counts(tmp_path):
    from pinnacle.errors import InputError

    raw, annotated = _cohort(tmp_path)
    annotated.obs_names = [f"{c}-x" if i == 0 else c for i, c in enumerate(annotated.obs_names)]
    annotated.write_h5ad(tmp_path / "annotated.h5ad")
    with pytest.raises(InputError, match="1 annotated cells have no counts"):
        export.write_cellxgene(tmp_path / "annotated.h5ad", tmp_path / "rna_counts.h5ad", tmp_path / "c.h5ad")
    assert not (tmp_path / "c.h5ad").exists()


def test_cellxgene_obs_turns_text_and_mixed_categories_into_string_categories():
    obs = pd.DataFrame({"a": ["x", "x", None], "b": pd.Categorical([1, 2, 2]), "c": [1.0, 2.0, 3.0],
                        "d": pd.Categorical(["u", "v", "u"], categories=["u", "v", "w"]), "id": ["p", "q", "r"]})
    out = export.cellxgene_obs(obs)
    assert list(out["a"].cat.categories) == ["x"] and out["a"].isna().iloc[2]
    assert list(out["b"].cat.categories) == ["1", "2"]
    assert "id" not in out
    assert out["c"].dtype == float
    assert list(out["d"].cat.categories) == ["u", "v"]  # unused categories dropped


def test_run_summary_lists_samples_cells_types_versions_and_config_hash():
    qc = pd.DataFrame({"sample_id": ["P01_baseline", "P01_resection"], "patient_id": ["P01", "P01"],
                       "n_cells_loaded": [800, 600], "n_cells_kept": [700, 500]})
    types = pd.Series(["B_naive"] * 900 + ["unknown"] * 300)
    table = export.run_summary(qc, types, config_sha256=export.config_hash({"seed": 3, "a": {"b": 1}}), seed=3,
                               pinned={"scanpy": "1.11.5", "anndata": "0.12.19", "torch": "2.13.0"},
                               versions={"scanpy": "1.11.5", "anndata": "0.12.18", "torch": "2.13.0+cpu"},
                               python="3.11.7")
    assert list(table.columns) == ["section", "name", "value", "note"]
    assert list(dict.fromkeys(table["section"])) == ["run", "sample", "cell type", "software"]
    run = table[table["section"] == "run"].set_index("name")["value"]
    assert run["samples"] == 2 and run["cells before QC"] == 1400 and run["cells after QC"] == 1200
    assert run["cell types"] == 2 and run["seed"] == 3 and run["python"] == "3.11.7"
    assert run["config sha256"] == export.config_hash({"a": {"b": 1}, "seed": 3})  # key order does not matter
    assert run["config sha256"] != export.config_hash({"seed": 4, "a": {"b": 1}})
    sample = table[table["section"] == "sample"].set_index("name")
    assert sample.loc["P01_baseline", "note"] == "700 of 800 cells kept (87.5%)"
    soft = table[table["section"] == "software"].set_index("name")
    assert soft.loc["scanpy", "note"] == "" and soft.loc["anndata", "note"] == "pinned 0.12.19"
    assert soft.loc["torch", "note"] == ""  # the CPU build of the pinned release


def test_pinned_packages_compares_names_as_pip_does(tmp_path):
    path = tmp_path / "req.txt"
    path.write_text("# comment\nPyYAML==6.0.4\nscikit_learn==1.7.2  # why\npyyaml-extra\n-e ..\ntorch>=2\n")
    assert export.pinned_packages(path) == {"pyyaml": "6.0.4", "scikit-learn": "1.7.2"}


def test_epoch_logger_logs_a_line_per_chunk_of_epochs(caplog):
    assert progress.log_every(400) == 20 and progress.log_every(7) == 1 and progress.log_every(0) == 1
    callback = progress.epoch_logger("scVI", 45, lines=4)
    module = SimpleNamespace(device="cpu")
    with caplog.at_level(logging.INFO, logger="pinnacle.progress"):
        callback.on_train_start(None, module)
        for epoch in range(45):
            trainer = SimpleNamespace(current_epoch=epoch, callback_metrics={"elbo_train": 1234.5})
            callback.on_train_epoch_end(trainer, module)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "scVI: training 45 epochs on cpu"
    assert [line.split(" (")[0] for line in lines[1:]] == [f"scVI: epoch {e}/45" for e in (12, 24, 36, 45)]
    assert "elbo_train 1234" in lines[-1] and "(100%)" in lines[-1]


def test_umap_of_many_types_has_a_key_beside_the_cells_and_numbers_on_them():
    """24 subtypes: every one in a legend outside the panel, numbered on the data (a reader can
    tell similar colours apart), axes named; Leiden clusters keep their own names."""
    from pinnacle import rna_integrate

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 24, 1200)
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": [f"type_{i:02d}" for i in labels],
                                         "cell_type_major": [f"major_{i // 6}" for i in labels],
                                         "leiden_1.0": pd.Categorical(labels.astype(str))},
                                        index=[f"c{i}" for i in range(1200)]))
    adata.obsm["X_umap"] = rng.normal(scale=8, size=(24, 2))[labels] + rng.normal(size=(1200, 2))
    fig = rna_integrate.plot_embeddings(adata, bases={"UMAP": "X_umap"},
                                        colors=["cell_type_major", "cell_type", "leiden_1.0"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    major, sub, leiden = fig.axes
    for ax in (major, sub, leiden):
        legend = ax.get_legend()
        assert legend is not None and ax.get_xlabel() == "UMAP 1" and ax.get_ylabel() == "UMAP 2"
        # the key is beside the panel, not over its cells
        assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert [t.get_text() for t in sub.get_legend().get_texts()][:2] == ["1 type_00", "2 type_01"]
    assert len(sub.get_legend().get_texts()) == 24 and len(sub.texts) == 24
    assert not major.texts  # 4 types: colours and key suffice
    assert sorted(t.get_text() for t in leiden.texts) == sorted(map(str, range(24)))
    assert len({str(c) for c in rna_integrate.category_palette(24)}) == 24


def test_before_after_figure_draws_a_subsampled_unintegrated_umap():
    """Above integration.unintegrated_cells the unintegrated UMAP has NaN for the cells left out:
    the figure draws the others and still writes the types on the data (it failed at 100,000
    cells with the 50,000-cell default)."""
    from pinnacle import rna_integrate

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 12, 2000)
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": [f"type_{i:02d}" for i in labels]},
                                        index=[f"c{i}" for i in range(2000)]))
    adata.obsm["X_umap"] = rng.normal(scale=8, size=(12, 2))[labels] + rng.normal(size=(2000, 2))
    adata.obsm["X_umap_pca"] = adata.obsm["X_umap"] + 1.0
    adata.obsm["X_umap_pca"][rng.permutation(2000)[:1000]] = np.nan
    fig = rna_integrate.plot_embeddings(adata, bases={"before": "X_umap_pca", "after": "X_umap"}, colors=["cell_type"])
    before, after = fig.axes
    assert len(before.texts) == len(after.texts) == 12
