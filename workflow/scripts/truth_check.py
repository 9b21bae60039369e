"""Adapter: gather each stage's results and compare them with the simulated truth."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import truth_check as tc  # noqa: E402

inp = snakemake.input
truth = Path(snakemake.params.truth)
truth_cells = pd.read_csv(inp.truth_cells, sep="\t")
cells = pd.read_csv(inp.cells, sep="\t", index_col="cell_id")
rows = tc.check_rna_reading(cells, truth_cells) + tc.check_qc_metrics(cells, truth_cells)
adt_panel = pd.read_csv(truth / "adt_panel.tsv", sep="\t")
rows += tc.check_adt(pd.read_csv(inp.qc_summary, sep="\t"), n_tags=len(adt_panel))
if inp.dna:
    dna_ids = [i for p in inp.dna for i in ad.read_h5ad(p, backed="r").obs_names]
    rows += tc.check_dna_reading(dna_ids, pd.read_csv(truth / "dna_cells.tsv.gz", sep="\t"))
if "proteomics" in inp.keys():
    prot = ad.read_h5ad(inp.proteomics)
    truth_prot = pd.read_csv(truth / "proteins.tsv", sep="\t")
    n_truth_samples = len(pd.read_csv(truth / "samples.tsv", sep="\t"))
    rows += tc.check_proteomics_reading(prot.var["protein_id"], prot.n_obs, truth_prot, n_truth_samples)
table = tc.truth_table(rows)
table.to_csv(snakemake.output[0], sep="\t", index=False)
print(table.to_string(), file=sys.stderr)
