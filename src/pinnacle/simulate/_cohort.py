"""The cohort: sample and patient sheets, the gene panel, and :func:`simulate_cohort`, which
writes every file and the ``truth/`` folder."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pinnacle import writers
from pinnacle.io import cohort_layout as layout
from pinnacle.io.cohort_layout import cohort_sheets

from ._calibration import _load_real_tables
from ._design import _design, _effects_table
from ._dna import _simulate_dna
from ._model import _Model
from ._proteomics import _simulate_proteomics
from ._resources import _arm_of, _find_resource, _load_arms, _load_bins, _load_genes
from ._rna import _simulate_sample
from ._tables import (
    _ACTIVATION_RANGE,
    _BLOCK,
    _CLONE_LOG2FC,
    _COMPOSITION_EFFECTS,
    _GENE_DISPERSION,
    _IFN_BASELINE,
    _IFN_LOG2FC,
    _IFN_NON_RESPONDER_SCALE,
    _IFN_RESPONDER,
    _MALIGNANT_RANGE,
    _NULL_TYPES,
    _PATIENT_CONCENTRATION,
    _SAMPLE_CONCENTRATION,
    _STATE_CELL_SHAPE,
    _STRESS_RANGE,
    _TYPES,
    CELL_TYPES,
    EBV_CONTIG,
    EBV_GENES,
    NORMAL_EPITHELIAL,
    PLANTED_PROTEINS,
    STATES,
)
from ._util import _check, _rng, _sha256


def _panel(model: _Model, panel_genes, mito_genes: bool) -> np.ndarray:
    """Mask of the genes written: all, the top N by expected detection, or a list; MT- genes
    dropped when ``mito_genes`` is False."""
    where = "simulate.simulate_cohort"
    keep = ~model.is_mt if not mito_genes else np.ones(model.G, dtype=bool)
    if panel_genes is None:
        return keep
    if isinstance(panel_genes, (int, np.integer)) and not isinstance(panel_genes, bool):
        n = int(panel_genes)
        _check(1 <= n <= int(keep.sum()), where, f"panel_genes={n} is out of range.",
               f"Use 1..{int(keep.sum())} genes, a list of symbols, or None.")
        det = np.where(keep, model.expected_detection(), -1.0)
        top = np.argsort(-det, kind="stable")[:n]
        out = np.zeros(model.G, dtype=bool)
        out[top] = True
        return out
    _check(not isinstance(panel_genes, (str, bytes)) and isinstance(panel_genes, Iterable), where,
           f"panel_genes={panel_genes!r} is invalid.", "Give None, an int or a list of gene symbols.")
    names = [str(g) for g in panel_genes]
    unknown = [g for g in names if g not in model.idx]
    _check(not unknown and names, where, f"panel_genes names genes not in the gene table: {unknown[:5]}.",
           "Use symbols of resources/genes_grch38.tsv.")
    return keep & np.isin(model.symbols, names)


def simulate_cohort(outdir: str | os.PathLike, *, n_patients: int = 6, n_responders: int | None = None,
                    cells_per_sample: int = 1000, empty_droplets_per_sample: int | None = None,
                    dna_cells_per_sample: int = 150, doublet_rate: float = 0.05,
                    low_quality_rate: float = 0.05, batch_strength: float = 0.3, seed: int = 0,
                    gene_table: str | os.PathLike | None = None,
                    bins: str | os.PathLike | None = None,
                    dna_tumour_enrichment: float = 3.0, response_effects: bool = True,
                    states: Iterable[str] | None = STATES, interferon_twin: bool = False,
                    panel_genes: int | Sequence[str] | None = None, mito_genes: bool = True,
                    normal_epithelial: float = 0.0, ebv: bool = False,
                    verbose: bool = False) -> dict:
    """Write the simulated trial cohort to ``outdir`` and return a summary dict.

    Writes ``samples.tsv`` and ``patients.tsv`` (see :func:`cohort_sheets`), per sample
    ``rna/{sample}/filtered_feature_bc_matrix.h5`` and ``raw_feature_bc_matrix.h5`` (Cell Ranger
    v3 layout, genes + antibody tags), ``dna/{sample}.bins.tsv.gz`` (reads per 1 Mb bin, one column
    per cell barcode), ``proteomics/proteinGroups.txt`` (MaxQuant style, all samples), and the
    truth in ``truth/``: ``cells.tsv.gz``, ``samples.tsv``, ``composition.tsv``, ``effects.tsv``,
    ``clones.tsv``, ``clone_fractions.tsv``, ``dna_cells.tsv.gz``, ``proteins.tsv`` (the 500 real
    proteins), ``protein_rows.tsv`` (every proteinGroups row with its kind), ``genes.tsv``,
    ``params.json``.

    States never change a cell's type, and switching one off changes no other draw (same cells,
    same composition). Per-cell state levels go to ``truth/cells.tsv.gz`` (ifn_state,
    activation_state, stress_state), per-sample levels to ``truth/samples.tsv`` (ifn_level,
    activation_level, stress_level).

    Parameters
    ----------
    outdir
        Folder to write into (created).
    n_patients, n_responders, seed
        As in :func:`cohort_sheets`; ``seed`` also seeds every draw.
    cells_per_sample
        Cell-containing droplets per sample (>= 20).
    empty_droplets_per_sample
        Empty droplets in each raw h5; default 3 x ``cells_per_sample``.
    dna_cells_per_sample
        scDNA cells per sample (0: no scDNA).
    doublet_rate
        Share of droplets that are heterotypic doublets.
    low_quality_rate
        Share of droplets that are low-quality cells.
    batch_strength
        sdlog of the per-sample gene-wise batch multipliers (0-2).
    gene_table, bins
        Gene and bin tables; default the ones shipped in ``resources/``.
    dna_tumour_enrichment
        Multiplies the sample's malignant fraction for the scDNA cells (capped at 0.9), as a
        tumour-cell enrichment before scDNA library preparation would.
    response_effects
        ``False`` writes a null cohort: the same patients, responders and noise, but no planted
        response effect (every composition, baseline DE, protein and clone row of
        ``effects.tsv`` is then a null), for checking that comparisons stay quiet; the states
        stay, so it is a "state-only" cohort (only states change between timepoints,
        composition fixed), and the C1Q macrophage interferon rows keep the state's expected
        change.
    states
        State programmes switched on (default all of :data:`STATES`: "interferon",
        "activation", "stress"; ``None`` or ``()``: none).
    interferon_twin
        Also write, for each resection sample, the same droplets with the interferon state at 0
        to ``truth/interferon_off/{sample}/filtered_feature_bc_matrix.h5`` (same format and
        features); every gene outside the interferon programme has identical counts.
    panel_genes
        ``None`` (all genes), an int N (keep the N genes with the highest expected detection
        share in the cohort-mean composition) or a list of gene symbols (kept in gene-table
        order). The panel applies to every h5 file written; ``truth/genes.tsv`` lists all genes
        with ``in_matrix``.
    mito_genes
        ``False`` drops the MT- genes (before the top N are chosen).
    normal_epithelial
        Share (0 <= x < 1) of the epithelial cells that are diploid normal epithelium: the
        malignant cells' programme and library, no copy-number factors; ``cell_type``
        ``"epithelial_normal"``, major type ``"malignant/epithelial"``, clone ``""``. Makes the
        malignant call of the copy-number stage non-trivial. Default 0: none.
    ebv
        Malignant cells express Epstein-Barr virus transcripts (:data:`EBV_GENES`: RPMS1, LMP2A,
        EBNA1, LMP1, BARF1; ~0.04% of a cell's UMIs, detected in most malignant cells), written
        as "Gene Expression" features after the human genes (ids ``EBV_<name>``; a reference
        with the EBV genome as contig ``chrEBV``); other cells get them only from ambient RNA.
        ``truth/cells.tsv.gz`` gains ``ebv_counts``. Default False.
    verbose
        Print progress per sample to stderr.

    Returns
    -------
    Paths written (``outdir``, ``samples``, ``patients``, ``proteomics``, ``truth``) and counts
    (``n_samples``, ``n_cells``, ``n_genes``, ``n_antibody_tags``), with ``seconds`` taken.
    """
    t0 = time.perf_counter()
    where = "simulate.simulate_cohort"
    if empty_droplets_per_sample is None:
        empty_droplets_per_sample = 3 * int(cells_per_sample)
    _check(isinstance(cells_per_sample, (int, np.integer)) and cells_per_sample >= 20, where,
           f"cells_per_sample={cells_per_sample!r} is too small.", "Use at least 20 cells per sample.")
    _check(isinstance(empty_droplets_per_sample, (int, np.integer)) and empty_droplets_per_sample >= 0,
           where, f"empty_droplets_per_sample={empty_droplets_per_sample!r} is invalid.", "Use an integer >= 0.")
    _check(isinstance(dna_cells_per_sample, (int, np.integer)) and dna_cells_per_sample >= 0, where,
           f"dna_cells_per_sample={dna_cells_per_sample!r} is invalid.", "Use an integer >= 0 (0: no scDNA).")
    for name, v in (("doublet_rate", doublet_rate), ("low_quality_rate", low_quality_rate)):
        _check(isinstance(v, (int, float)) and 0 <= v < 0.5, where, f"{name}={v!r} out of range.",
               "Use a fraction in [0, 0.5).")
    _check(doublet_rate + low_quality_rate < 0.6, where, "doublet_rate + low_quality_rate is too large.",
           "Keep their sum below 0.6.")
    _check(isinstance(batch_strength, (int, float)) and 0 <= batch_strength <= 2, where,
           f"batch_strength={batch_strength!r} out of range.",
           "Use a value in [0, 2] (sdlog of gene-wise batch multipliers).")
    _check(isinstance(dna_tumour_enrichment, (int, float)) and dna_tumour_enrichment > 0, where,
           f"dna_tumour_enrichment={dna_tumour_enrichment!r} is invalid.", "Use a positive number.")
    _check(isinstance(seed, (int, np.integer)) and seed >= 0, where, f"seed={seed!r} is invalid.",
           "Use a non-negative integer.")
    _check(isinstance(normal_epithelial, (int, float)) and not isinstance(normal_epithelial, bool)
           and 0 <= normal_epithelial < 1, where, f"normal_epithelial={normal_epithelial!r} out of range.",
           "Use a fraction of the epithelial cells in [0, 1).")
    normal_epithelial, ebv = float(normal_epithelial), bool(ebv)
    states = tuple(dict.fromkeys(states or ()))
    bad = [k for k in states if k not in STATES]
    _check(not bad, where, f"unknown states {bad}.", f"Use a subset of {list(STATES)}.")

    gene_path = Path(gene_table) if gene_table is not None else _find_resource("genes_grch38.tsv")
    _check(gene_path.is_file(), str(gene_path), "gene table not found.", "Pass an existing gene table path.")
    arms_path = gene_path.parent / "chromosome_arms_grch38.tsv"
    if not arms_path.is_file():
        arms_path = _find_resource("chromosome_arms_grch38.tsv")
    bins_path = Path(bins) if bins is not None else _find_resource("bins_1mb_grch38.tsv.gz")
    _check(bins_path.is_file(), str(bins_path), "bin table not found.", "Pass an existing bin table path.")

    samples, patients = cohort_sheets(outdir, n_patients=n_patients, n_responders=n_responders, seed=seed)
    if dna_cells_per_sample == 0:
        samples["dna"] = ""  # no scDNA written: the sheet must not name missing files
    arms = _load_arms(arms_path)
    genes = _load_genes(gene_path, arms)
    real_paths = []
    for name in ("marker_detection_pbmc.tsv", "interferon_response_pbmc.tsv"):
        p = gene_path.parent / name
        real_paths.append(p if p.is_file() else _find_resource(name))
    marker_table, ifn_table = _load_real_tables(*real_paths)
    bin_table = _load_bins(bins_path)
    bin_arms = _arm_of(bin_table["chrom"].to_numpy(),
                       ((bin_table["start"] + bin_table["end"]) // 2).to_numpy(), arms)
    model = _Model(genes, _rng(seed, 5), marker_table, ifn_table)
    design = _design(model, samples, patients, seed, float(batch_strength), bool(response_effects),
                     states=states)
    in_matrix = _panel(model, panel_genes, bool(mito_genes))
    ebv_names = list(EBV_GENES) if ebv else []
    cols = np.r_[np.flatnonzero(in_matrix), model.G + np.arange(len(ebv_names) + model.K)]

    out = Path(outdir)
    tdir = Path(layout.truth_dir(out))
    tdir.mkdir(parents=True, exist_ok=True)
    writers.write_tsv(samples, out / "samples.tsv")
    writers.write_tsv(patients, out / "patients.tsv")

    kept = list(model.symbols[in_matrix])
    var = pd.DataFrame({
        "gene_ids": kept + [f"EBV_{g}" for g in ebv_names] + [f"ADT_{t}" for t in model.adt_tags],
        "feature_types": ["Gene Expression"] * (len(kept) + len(ebv_names)) + ["Antibody Capture"] * model.K,
    }, index=kept + ebv_names + [f"{t}_TotalSeqB" for t in model.adt_tags])

    import anndata as ad  # local: only needed to hand matrices to the writers

    truth_cells, truth_samples, comp_rows, cf_rows, dna_truth = [], [], [], [], []
    n_total = 0
    for _, srow in samples.iterrows():
        sid = srow["sample_id"]
        sinfo = design["samples"][sid]
        twin = bool(interferon_twin) and srow["timepoint"] == "resection"
        cells, raw, cell_bc, all_bc, truth, e_lib, cells_off = _simulate_sample(
            model, design, sid, n_cells=int(cells_per_sample), n_empty=int(empty_droplets_per_sample),
            doublet_rate=float(doublet_rate), low_quality_rate=float(low_quality_rate), seed=seed,
            twin=twin, normal_epithelial=normal_epithelial, ebv=ebv)
        if len(cols) < cells.shape[1]:  # a panel: drop the other genes from every file
            cells, raw = cells[:, cols], raw[:, cols]
            cells_off = cells_off[:, cols] if cells_off is not None else None
            truth["n_counts"] = np.asarray(cells[:, :len(kept) + len(ebv_names)].sum(axis=1)).ravel()
        writers.write_10x_h5(ad.AnnData(cells, obs=pd.DataFrame(index=list(cell_bc)), var=var),
                             srow["rna"])
        writers.write_10x_h5(ad.AnnData(raw, obs=pd.DataFrame(index=list(all_bc)), var=var),
                             srow["rna_raw"])
        if cells_off is not None:
            writers.write_10x_h5(ad.AnnData(cells_off, obs=pd.DataFrame(index=list(cell_bc)), var=var),
                                 layout.twin_path(tdir, sid))
        del cells, raw, cells_off
        truth_cells.append(truth)
        n_total += len(truth)
        singlet = ~truth["is_doublet"]
        tcounts = truth.loc[singlet, "cell_type"].value_counts()
        for t, v in zip(_TYPES, sinfo["pi"]):
            if t == "malignant" and normal_epithelial > 0:  # the epithelial share, split
                v = v * (1 - normal_epithelial)
            comp_rows.append(dict(sample_id=sid, cell_type=t, cell_type_major=CELL_TYPES[t],
                                  expected_fraction=round(float(v), 6), n_cells=int(tcounts.get(t, 0))))
        if normal_epithelial > 0:
            v = sinfo["pi"][model.type_index["malignant"]] * normal_epithelial
            comp_rows.append(dict(sample_id=sid, cell_type=NORMAL_EPITHELIAL, cell_type_major=CELL_TYPES["malignant"],
                                  expected_fraction=round(float(v), 6),
                                  n_cells=int(tcounts.get(NORMAL_EPITHELIAL, 0))))
        pinfo = design["patients"][srow["patient_id"]]
        # scDNA
        n_dna_mal, dna_mal_frac = 0, 0.0
        dcounts = {}
        if dna_cells_per_sample > 0:
            reads, dbc, dtruth, dna_mal_frac = _simulate_dna(
                bin_table, bin_arms, design, sid, n_cells=int(dna_cells_per_sample),
                enrichment=float(dna_tumour_enrichment), seed=seed)
            dvar = bin_table[["chrom", "start", "end"]].copy()
            dvar.index = [f"{c}:{s}-{e}" for c, s, e in zip(dvar["chrom"], dvar["start"], dvar["end"])]
            writers.write_scdna_wide(ad.AnnData(reads.astype(np.int32), obs=pd.DataFrame(index=list(dbc)),
                                                var=dvar), srow["dna"])
            dna_truth.append(dtruth)
            n_dna_mal = int((dtruth["clone"] != "normal").sum())
            dcounts = dtruth["clone"].value_counts().to_dict()
        rcounts = truth["clone"].value_counts().to_dict()
        for c, f in zip(pinfo["clones"], sinfo["clone_fr"]):
            cf_rows.append(dict(sample_id=sid, patient_id=srow["patient_id"], clone=c["name"],
                                expected_fraction=round(float(f), 6), n_rna_cells=int(rcounts.get(c["name"], 0)),
                                n_dna_cells=int(dcounts.get(c["name"], 0))))
        truth_samples.append(dict(
            sample_id=sid, patient_id=srow["patient_id"], timepoint=srow["timepoint"],
            response=sinfo["response"], sex=pinfo["sex"], n_cells=len(truth),
            n_empty=int(empty_droplets_per_sample), n_doublets=int(truth["is_doublet"].sum()),
            n_low_quality=int(truth["is_low_quality"].sum()),
            n_malignant=int((truth["cell_type"] == "malignant").sum()),
            ambient_fraction=round(sinfo["ambient"], 4),
            malignant_fraction=round(float(sinfo["pi"][model.type_index["malignant"]]), 4),
            library_shift=round(sinfo["lib_shift"], 4), mt_shift=round(sinfo["mt_shift"], 4),
            haemoglobin_ambient=round(sinfo["hb"], 4),
            median_empty_umis=float(np.median(e_lib)) if len(e_lib) else 0.0,
            dna_cells=int(dna_cells_per_sample), dna_malignant_fraction=round(dna_mal_frac, 4),
            n_dna_malignant=n_dna_mal,
            ifn_level=sinfo["state_level"]["interferon"],
            activation_level=sinfo["state_level"]["activation"],
            stress_level=sinfo["state_level"]["stress"],
            interferon_twin=twin))
        if verbose:
            print(f"[simulate] {sid}: {len(truth)} cells ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    # proteomics
    ann, inten, lfq, msms, prot_truth, prot_nulls = _simulate_proteomics(model, design, samples, seed)
    writers.write_maxquant_protein_groups(inten, ann, out / "proteomics" / "proteinGroups.txt",
                                          lfq_intensities=lfq, msms_counts=msms)

    # truth tables
    writers.write_tsv(pd.concat(truth_cells, ignore_index=True), layout.truth_file(tdir, layout.CELLS))
    writers.write_tsv(pd.DataFrame(truth_samples), layout.truth_file(tdir, layout.SAMPLES))
    writers.write_tsv(pd.DataFrame(comp_rows), layout.truth_file(tdir, layout.COMPOSITION))
    writers.write_tsv(pd.DataFrame(cf_rows), layout.truth_file(tdir, layout.CLONE_FRACTIONS))
    writers.write_tsv(_effects_table(design, prot_nulls), layout.truth_file(tdir, layout.EFFECTS))
    clone_rows = []
    for pid, p in design["patients"].items():
        for c in p["clones"]:
            for arm in sorted(c["events"], key=lambda a: (int(a[:-1]), a[-1])):
                chrom = "chr" + arm[:-1]
                a = arms.loc[chrom]
                start, end = (0, int(a["midpoint"])) if arm.endswith("p") else (int(a["midpoint"]), int(a["length"]))
                clone_rows.append(dict(patient_id=pid, clone=c["name"], chrom=chrom, arm=arm,
                                       start=start, end=end, copy_number=int(c["events"][arm]),
                                       parent=c["parent"]))
    writers.write_tsv(pd.DataFrame(clone_rows), layout.truth_file(tdir, layout.CLONES))
    if dna_truth:
        writers.write_tsv(pd.concat(dna_truth, ignore_index=True), layout.truth_file(tdir, layout.DNA_CELLS))
    else:
        writers.write_tsv(pd.DataFrame(columns=["cell_id", "sample_id", "clone", "depth"]),
                          layout.truth_file(tdir, layout.DNA_CELLS))
    # proteins.tsv: the real (target) proteins a correct reader keeps; protein_rows.tsv: every row
    # of proteinGroups.txt, including decoys, contaminants and only-by-site groups
    writers.write_tsv(prot_truth[prot_truth["kind"] == "target"].reset_index(drop=True),
                      layout.truth_file(tdir, layout.PROTEINS))
    writers.write_tsv(prot_truth, layout.truth_file(tdir, layout.PROTEIN_ROWS))
    gtruth = genes[["gene_symbol", "chrom", "start", "end", "arm"]].copy()
    gtruth["dispersion"] = np.round(model.dispersion, 5)
    gtruth["is_marker"] = model.programme_gene
    gtruth["state_programme"] = model.state_gene
    gtruth["expected_detection"] = np.round(model.expected_detection(), 4)
    gtruth["in_matrix"] = in_matrix
    writers.write_tsv(gtruth, layout.truth_file(tdir, layout.GENES))
    params = dict(
        n_patients=int(n_patients), n_responders=int((patients["response"] == "responder").sum()),
        cells_per_sample=int(cells_per_sample), empty_droplets_per_sample=int(empty_droplets_per_sample),
        dna_cells_per_sample=int(dna_cells_per_sample), doublet_rate=float(doublet_rate),
        low_quality_rate=float(low_quality_rate), batch_strength=float(batch_strength), seed=int(seed),
        dna_tumour_enrichment=float(dna_tumour_enrichment), response_effects=bool(response_effects),
        gene_table=gene_path.name, gene_table_sha256=_sha256(gene_path),
        bins=bins_path.name, bins_sha256=_sha256(bins_path),
        n_genes=int(model.G), n_antibody_tags=int(model.K), n_bins=len(bin_table),
        gene_dispersion_mixture=[list(_GENE_DISPERSION[0]), list(_GENE_DISPERSION[1]), _GENE_DISPERSION[2]],
        composition_effects_log2fc=_COMPOSITION_EFFECTS, null_types=_NULL_TYPES,
        ifn_log2fc=_IFN_LOG2FC, clone_log2fc=_CLONE_LOG2FC, planted_proteins=PLANTED_PROTEINS,
        patient_concentration=_PATIENT_CONCENTRATION, sample_concentration=_SAMPLE_CONCENTRATION,
        malignant_fraction_range=list(_MALIGNANT_RANGE), block_size=_BLOCK,
        states=list(states), interferon_twin=bool(interferon_twin), mito_genes=bool(mito_genes),
        panel_genes=(None if panel_genes is None else int(panel_genes)
                     if isinstance(panel_genes, (int, np.integer)) else list(map(str, panel_genes))),
        n_genes_in_matrix=int(in_matrix.sum()),
        marker_table=real_paths[0].name, marker_table_sha256=_sha256(real_paths[0]),
        interferon_table=real_paths[1].name, interferon_table_sha256=_sha256(real_paths[1]),
        marker_log_fold_change_range=[round(v, 4) for v in model.fc_log_range],
        ifn_levels=dict(baseline=list(_IFN_BASELINE), responder=list(_IFN_RESPONDER),
                        non_responder_scale=_IFN_NON_RESPONDER_SCALE),
        activation_range=list(_ACTIVATION_RANGE), stress_range=list(_STRESS_RANGE),
        state_cell_gamma_shape=_STATE_CELL_SHAPE,
    )
    if normal_epithelial > 0:  # opt-in options are recorded only when on (default files unchanged)
        params["normal_epithelial"] = normal_epithelial
    if ebv:
        params["ebv"] = dict(genes=EBV_GENES, contig=EBV_CONTIG, gene_ids=[f"EBV_{g}" for g in ebv_names])
    Path(layout.truth_file(tdir, layout.PARAMS)).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return {
        "outdir": str(outdir), "samples": str(out / "samples.tsv"), "patients": str(out / "patients.tsv"),
        "proteomics": str(out / "proteomics" / "proteinGroups.txt"), "truth": str(tdir),
        "n_samples": len(samples), "n_cells": int(n_total), "n_genes": int(in_matrix.sum()) + len(ebv_names),
        "n_antibody_tags": int(model.K), "seconds": round(time.perf_counter() - t0, 2),
    }
