"""Adapter: the cohort MuData results/cohort/cohort.h5mu: rna (the annotated cohort object) and
prot (the normalised tags of the same cells), with totalVI's results when it ran."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import mudata  # noqa: E402

from pinnacle import protein, writers  # noqa: E402

inp = snakemake.input
totalvi = ad.read_h5ad(inp.totalvi) if inp.totalvi else None
mdata = protein.build_mudata(ad.read_h5ad(inp.rna), ad.read_h5ad(inp.prot), totalvi=totalvi)
# pull_on_update=False: mudata's coming default (no modality columns copied into mdata.obs on write)
with writers.atomic_path(snakemake.output.h5mu) as tmp, mudata.set_options(pull_on_update=False):
    mdata.write_h5mu(tmp, compression="gzip")
print(mdata, file=sys.stderr)
