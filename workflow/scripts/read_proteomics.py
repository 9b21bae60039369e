"""Adapter: read the cohort's bulk proteomics file and attach sample metadata."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from pinnacle import io, sheets, writers  # noqa: E402

prot = io.read_proteomics(snakemake.input[0], format=snakemake.params.format,
                          quantity=snakemake.params.quantity)
prot = sheets.attach_sample_meta(prot, pd.DataFrame(snakemake.params.samples), where=snakemake.input[0])
writers.write_h5ad(prot, snakemake.output.h5ad, compression="gzip")
print(f"{prot.n_obs} samples x {prot.n_vars} protein groups; {prot.uns['proteomics']}", file=sys.stderr)
