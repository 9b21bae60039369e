"""Adapter: one sample's QC: read, metrics, thresholds, doublets, ambient estimate, figure; and the
kept cells' Seurat v3 variance statistics the cohort's HVGs are chosen from."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import io, rna_integrate, rna_qc, sheets, writers  # noqa: E402

meta, qc, seed = snakemake.params.meta, snakemake.params.qc, snakemake.params.seed
rna, prot = io.split_features(io.read_rna(snakemake.input.rna, sample_id=meta["sample_id"]))
rna = sheets.label_cells(rna, **meta)
rna = rna_qc.qc_metrics(rna, mito_prefix=qc["mito_prefix"], ribo_prefixes=qc["ribo_prefixes"],
                        hb_regex=qc["hb_regex"], require_mito=qc.get("require_mito", True),
                        where=snakemake.input.rna)
if rna.uns["mito_filter"] != rna_qc.MITO_APPLIED:
    print(f"WARNING {meta['sample_id']}: mitochondrial filter {rna.uns['mito_filter']}; "
          "pct_counts_mt is NaN and no cell is judged on it.", file=sys.stderr, flush=True)
rna, summary = rna_qc.run_sample_qc(
    rna, method=qc["thresholds"], n_mads=qc["n_mads"], mito_floor=qc["mito_floor"], fixed=qc["fixed"],
    doublets=qc["doublets"]["enabled"], remove_doublets=qc["doublets"]["remove"],
    doublet_rate_per_1000=qc["doublets"]["rate_per_1000_cells"], doublet_rate=qc["doublets"]["expected_rate"],
    doublet_threshold=qc["doublets"]["threshold"], random_state=seed)
kept = rna[rna.obs["keep"].to_numpy()].copy()
if snakemake.input.rna_raw:
    raw = io.read_rna(snakemake.input.rna_raw[0], sample_id=meta["sample_id"])
    # the raw matrix must be this sample's (checked inside, before any estimate)
    fields, ambient = rna_qc.estimate_ambient(kept, raw, cell_barcodes=rna.obs_names,
                                              max_umis=qc["ambient_max_umis"], random_state=seed,
                                              where=snakemake.input.rna_raw[0],
                                              min_shared_barcodes=qc["raw_min_shared_barcodes"],
                                              filtered_where=snakemake.input.rna)
    summary.update(fields)
    kept.uns["ambient_profile"] = ambient.to_frame()
else:
    summary.update(ambient_contamination=float("nan"), ambient_pairs_used=0, ambient_clusters=0, empty_droplets=0)
mito_note = "" if summary["mito_filter"] == rna_qc.MITO_APPLIED else " (mitochondrial filter skipped: no MT genes)"
fig = rna_qc.plot_sample_qc(rna, title=f"{meta['sample_id']}: {summary['n_cells_kept']} of "
                            f"{summary['n_cells_loaded']} cells kept{mito_note}")
writers.save_figure(fig, snakemake.output.figure, dpi=110)

cols = ["barcode", *sheets.OBS_META, "total_counts", "n_genes_by_counts", "log1p_total_counts",
        "log1p_n_genes_by_counts", "pct_counts_mt", "pct_counts_ribo", "pct_counts_hb", "qc_pass",
        "doublet_score", "predicted_doublet", "keep"]
writers.write_table(rna.obs[cols], snakemake.output.cells, sep="\t", index_label="cell_id")
writers.write_table(pd.DataFrame([{**meta, **summary, "n_adt": 0 if prot is None else prot.n_vars}]),
                    snakemake.output.summary, sep="\t", index=False)
kept.obs = kept.obs.drop(columns=[c for c in kept.obs if c.startswith("qc_fail_")])
writers.write_h5ad(kept, snakemake.output.rna, compression="gzip")
stats = rna_integrate.sample_hvg_stats(kept)
writers.write_table(stats, snakemake.output.hvg_stats, sep="\t")
print(f"HVG statistics: loess span {stats.attrs['span']}", file=sys.stderr)
prot = kept[:, []].copy() if prot is None else prot[kept.obs_names].copy()
prot.obs = kept.obs[list(sheets.OBS_META)].copy()
writers.write_h5ad(prot, snakemake.output.prot, compression="gzip")
print(summary, file=sys.stderr)
