"""Adapter: the cohort's protein modality (shared tags of the samples' panels), the table of
normalisation methods, the tag UMAP and the cohort figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import logging  # noqa: E402

import anndata as ad  # noqa: E402

from pinnacle import protein, writers  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.INFO)
p = snakemake.params
samples = {s: ad.read_h5ad(path) for s, path in zip(p.samples, snakemake.input.prot, strict=True)}
writers.write_table(protein.normalisation_table(samples), snakemake.output.methods, sep="\t", index=False)
rna = ad.read_h5ad(snakemake.input.rna, backed="r")
obs = rna.obs[[c for c in ("sample_id", "patient_id", "timepoint", "response", "cell_type_major", "cell_type")
               if c in rna.obs]]
prot = protein.cohort_protein(samples, obs, where="protein_cohort (results/protein/{sample}/prot_norm.h5ad)")
prot = protein.tag_umap(prot, random_state=p.seed)
tags = protein.lineage_tags(prot.var_names, protein.load_protein_expectations(snakemake.input.expectations)["tags"])
writers.save_figure(protein.plot_lineage_tags(prot, tags, random_state=p.seed), snakemake.output.violins, dpi=110)
rna_umap = rna[prot.obs_names].obsm["X_umap"] if prot.n_obs and "X_umap" in rna.obsm else None
writers.save_figure(protein.plot_tag_umap(prot, tags, rna_umap=rna_umap, random_state=p.seed),
                    snakemake.output.umap, dpi=110)
writers.write_h5ad(prot, snakemake.output.h5ad, compression="gzip")
print(f"cohort protein: {prot.n_obs} cells x {prot.n_vars} tags; {prot.uns['protein_cohort']}", file=sys.stderr)
