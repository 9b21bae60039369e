"""Adapter: bulk proteomics tested with every design (moderated least squares per protein)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import compare, writers  # noqa: E402

p, cfg = snakemake.params, snakemake.params.compare
meta = compare.sample_meta(p.meta)
prot = ad.read_h5ad(snakemake.input.h5ad)
tests = pd.concat([compare.protein_test(prot, meta, design=d, response_levels=p.response_levels,
                                        timepoints=p.timepoints, covariates=cfg["covariates"],
                                        min_patients=cfg["min_patients"], min_valid=cfg["proteomics_min_valid"])
                   for d in p.designs], ignore_index=True)
writers.write_table(tests, snakemake.output.table, sep="\t", index=False)
writers.write_table(compare.significant(tests, fdr=cfg["fdr"], by="design"), snakemake.output.significant, sep="\t",
                    index=False)
writers.save_figure(compare.plot_protein_volcanoes(tests, fdr=cfg["fdr"]), snakemake.output.figure, dpi=100)
print(tests.head(40).to_string(), file=sys.stderr)
