"""Adapter: pseudobulk DE (pydeseq2) of one design in one cell type (one job per design x type), and camera
of the signatures on the same fit (the enrichment rule adds the FDR across types)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, cfg, wc = snakemake.params, snakemake.params.de, snakemake.wildcards
meta = compare.sample_meta(p.meta)
pb = ad.read_h5ad(snakemake.input.h5ad, backed="r")
cell_type = compare.cell_type_from_file_name(wc.cell_type, compare.de_cell_types(pb.obs["cell_type"], p.listed))
pb = compare.cell_type_pseudobulks(pb, cell_type)
res, status, camera = compare.pseudobulk_de(
    pb, meta, design=wc.design, response_levels=p.response_levels, timepoints=p.timepoints,
    covariates=cfg["covariates"], cell_types=[cell_type], min_cells=cfg["min_cells"], min_counts=cfg["min_counts"],
    min_patients=cfg["min_patients"], alpha=cfg["fdr"], shrink=cfg["shrink_lfc"],
    leave_one_out=p.leave_one_out, n_cpus=snakemake.threads,
    signatures=compare.load_signatures(snakemake.input.signatures))
writers.write_table(res, snakemake.output.table, sep="\t", index=False)
writers.write_table(status, snakemake.output.status, sep="\t", index=False)
writers.write_table(camera, snakemake.output.camera, sep="\t", index=False)  # header only when no type/signature
print(status.to_string(), file=sys.stderr)
