"""The comparison figures as a reader sees them: every axis named, every colour keyed, names of
points legible (inside their panel, not over one another), one colour scale across panels."""
import anndata as ad
import matplotlib
import numpy as np
import pandas as pd

from pinnacle import compare

matplotlib.use("Agg")

RL = ["non_responder", "responder"]
TP = ["baseline", "resection"]


def _meta(n_patients=6):
    rows = [{"sample_id": f"P{i}_{tp}", "patient_id": f"P{i}", "timepoint": tp,
             "response": RL[i % 2]} for i in range(n_patients) for tp in TP]
    return compare.sample_meta(rows)


def _boxes(fig, artists):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def test_composition_names_the_y_axis_of_every_row_and_keys_the_colours_beside_the_panels():
    meta = _meta()
    rng = np.random.default_rng(0)
    props = pd.DataFrame(rng.dirichlet(np.ones(14), len(meta)), index=meta.index,
                         columns=[f"type_{i:02d}" for i in range(14)])
    tests = pd.DataFrame([{"design": f"on_treatment_{lvl}", "cell_type": ct, "padj": 0.05}
                          for lvl in RL for ct in props.columns])
    fig = compare.plot_composition_pairs(props, meta, tests, response_levels=RL, timepoints=TP, fdr=0.1)
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 14
    # 6 panels a row: the first of each of the 3 rows names the unit, each panel keeps its own scale
    assert [ax.get_ylabel() for ax in panels[::6]] == ["% of the sample's cells"] * 3
    assert all("responder: q=0.05*" in ax.get_title() for ax in panels)
    # the key sits in an empty cell of the grid, over no panel
    keyed = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(keyed) == 1 and keyed[0] not in panels
    key, = _boxes(fig, [keyed[0].get_legend()])
    assert not any(key.overlaps(b) for b in _boxes(fig, panels))


def _de(n_genes=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for ct in ("B_naive", "CD8_exhausted"):
        lfc = rng.normal(0, 0.3, n_genes)
        lfc[:12] = rng.uniform(4, 5, 12)  # a tight clump of hits whose names would collide
        p = np.where(np.arange(n_genes) < 12, 10.0 ** -rng.uniform(20, 22, n_genes), rng.uniform(0.01, 1, n_genes))
        rows.append(pd.DataFrame({"cell_type": ct, "gene": [f"GENE{i}" for i in range(n_genes)], "log2fc": lfc,
                                  "log2fc_shrunk": lfc, "pvalue": p, "padj": np.minimum(p * n_genes, 1)}))
    return pd.concat(rows, ignore_index=True)


def test_volcano_names_stay_in_their_panel_and_apart_with_a_key_for_the_colours():
    fig = compare.plot_volcanoes(_de(), fdr=0.1, title="on_treatment")
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 2 and fig.legends
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"FDR < 0.1 (top 5 named)", "not significant"}
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in panels:
        assert ax.get_xlabel() == "log2 fold change (shrunken)" and ax.get_ylabel() == "-log10 p"
        assert len(ax.texts) == 5
        boxes = [matplotlib.text.Text.get_window_extent(t, renderer) for t in ax.texts]
        frame = ax.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_protein_volcano_does_not_call_its_fold_changes_shrunken():
    de = _de().rename(columns={"cell_type": "design"}).assign(status="tested")
    fig = compare.plot_protein_volcanoes(de, fdr=0.1)
    labels = {ax.get_xlabel() for ax in fig.axes if ax.collections}
    assert labels and not any("shrunk" in x for x in labels)


def test_effect_heatmap_shares_one_keyed_scale_and_greys_what_was_not_tested():
    rows = [{"design": d, "cell_type": ct, "signature": sig, "t": scale * (i - 2), "padj": 0.01 if i == 4 else 0.5,
             "status": "tested"}
            for d, scale in (("baseline", 0.5), ("on_treatment", 4.0))
            for ct in ("B", "T") for i, sig in enumerate("abcde")]
    table = pd.DataFrame(rows)
    table = table[~((table["design"] == "baseline") & (table["cell_type"] == "T") & (table["signature"] == "a"))]
    fig = compare.plot_effect_heatmap(table, value="t", fdr=0.1, title="Signature scores")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2 and len({im.get_clim() for im in images}) == 1  # one scale for both designs
    bars = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert len(bars) == 1 and "t statistic" in bars[0].get_ylabel() and "not tested" in bars[0].get_ylabel()
    baseline = images[0].get_array()
    assert np.ma.is_masked(baseline) and baseline.mask.sum() == 1  # the untested pair is grey, not 0
    assert fig.texts[0].get_text() == "Signature scores"  # the title, not a second key
    stars = [t for ax in fig.axes for t in ax.texts if t.get_text() == "*"]
    assert len(stars) == 4 and {t.get_color() for t in stars} == {"black", "white"}


def test_top_genes_heatmap_has_a_colour_bar():
    meta = _meta(4)
    rng = np.random.default_rng(1)
    genes = [f"G{i}" for i in range(30)]
    pb = ad.AnnData(rng.poisson(20, (len(meta), 30)).astype(float),
                    obs=pd.DataFrame({"sample_id": meta.index, "cell_type": "B"}, index=[f"{s}|B" for s in meta.index]),
                    var=pd.DataFrame(index=genes))
    de = pd.DataFrame({"cell_type": "B", "gene": genes, "pvalue": np.linspace(1e-5, 1, 30)})
    fig = compare.plot_top_genes(pb, de, meta, title="baseline")
    bars = [ax for ax in fig.axes if "z-score" in ax.get_ylabel()]
    assert len(bars) == 1
