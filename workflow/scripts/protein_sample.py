"""Adapter: one sample's antibody tags: empty droplets from the raw matrix, tag QC, DSB or CLR."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import logging  # noqa: E402

import anndata as ad  # noqa: E402

from pinnacle import io, protein, writers  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO)
cfg, sample = snakemake.params.protein, snakemake.wildcards.sample
raw = io.read_rna(snakemake.input.rna_raw[0], sample_id=sample) if snakemake.input.rna_raw else None
norm, table = protein.normalise_sample(
    ad.read_h5ad(snakemake.input.prot), raw, method=cfg["normalisation"], isotype_pattern=cfg["isotype_pattern"],
    adt_counts_range=tuple(cfg["empty_adt_range"]),
    rna_counts_range=tuple(cfg["empty_rna_range"]) if cfg["empty_rna_range"] is not None else None,
    max_empties=cfg["max_empties"], min_empties=cfg["min_empties"], n_mads=cfg["isotype_n_mads"],
    random_state=snakemake.params.seed, where=f"sample {sample}")
rec = norm.uns["protein_norm"]
writers.write_table(table, snakemake.output.tags, sep="\t", index=False)
fig = protein.plot_tag_qc(norm, table, title=f"{sample}: {norm.n_obs:,} cells, {rec['method'].upper()} "
                          f"({rec['reason']})")
writers.save_figure(fig, snakemake.output.figure, dpi=110)
writers.write_h5ad(norm, snakemake.output.h5ad, compression="gzip")
print(f"{sample}: {rec['method']} ({rec['reason']}); {norm.n_vars} tags normalised, dropped: {rec['dropped']} "
      f"{rec['dropped_reason']}; isotypes: {rec['isotypes']}", file=sys.stderr)
