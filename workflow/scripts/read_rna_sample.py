"""Adapter: read one sample's count matrix, split RNA / antibody tags, compute QC metrics."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from pinnacle import io, rna_qc, sheets  # noqa: E402

meta = snakemake.params.meta
qc = snakemake.params.qc
adata = io.read_rna(snakemake.input.rna, sample_id=meta["sample_id"])
rna, prot = io.split_features(adata)
rna = sheets.label_cells(rna, **meta)
rna = rna_qc.qc_metrics(rna, mito_prefix=qc["mito_prefix"], ribo_prefixes=qc["ribo_prefixes"],
                        hb_regex=qc["hb_regex"], where=snakemake.input.rna)
if prot is None:
    prot = rna[:, []].copy()
prot.obs = rna.obs[list(rna_qc.OBS_META)].copy()
rna.write_h5ad(snakemake.output.rna, compression="gzip")
prot.write_h5ad(snakemake.output.prot, compression="gzip")
rna_qc.summarise_sample(rna, n_adt=prot.n_vars).to_csv(snakemake.output.summary, sep="\t", index=False)
print(f"{meta['sample_id']}: {rna.n_obs} cells, {rna.n_vars} genes, {prot.n_vars} antibody tags",
      file=sys.stderr)
