"""Adapter: one scDNA sample from bin counts to integer copy number (pinnacle.cnv.process_sample)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pinnacle import cnv, io, sheets, writers  # noqa: E402

meta, p = snakemake.params.meta, snakemake.params.cnv
raw = sheets.label_cells(io.read_scdna(snakemake.input.dna, sample_id=meta["sample_id"]), **meta)
called, qc = cnv.process_sample(
    raw, reference=cnv.read_bin_reference(snakemake.input.reference),
    bin_options={"max_blacklist": p["max_blacklist"], "gc_range": tuple(p["gc_range"])},
    qc_options=dict(p["qc"]),
    cn_options={"max_cn": p["max_copy_number"], "ploidy_range": tuple(p["ploidy_range"])})
writers.write_h5ad(called, snakemake.output.h5ad, compression="gzip")
called_cols = ["ploidy", "aneuploid_fraction", "cnv_diploid"]
qc = qc.rename(columns={"group": "sample_id"}).join(called.obs[called_cols])
writers.write_table(qc.rename_axis("cell_id").reset_index(), snakemake.output.qc, sep="\t", index=False)
print(f"{meta['sample_id']}: {raw.n_obs} cells x {raw.n_vars} bins read; {called.n_vars} bins kept; "
      f"{called.n_obs} cells pass QC, {int(called.obs['cnv_diploid'].sum())} diploid", file=sys.stderr)
