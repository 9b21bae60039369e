"""Adapter: label the demo's resection cells with and without their interferon programme
(the simulator's twins) and write how many keep their label."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import annotate, compare, io, writers  # noqa: E402
from pinnacle import truth_check as tc  # noqa: E402

cfg = snakemake.params.annotation
cohort = ad.read_h5ad(snakemake.input.h5ad)
states = compare.load_signatures(snakemake.input.states)
twins = [io.split_features(io.read_rna(p, sample_id=s))[0]
         for s, p in zip(snakemake.params.samples, snakemake.input.twins, strict=True)]
table = tc.label_stability(cohort, twins, markers=annotate.load_markers(snakemake.input.markers),
                           state_genes=annotate.state_genes(states),
                           cluster_key=f"leiden_{cfg['cluster_resolution']}", min_score=cfg["min_score"],
                           min_margin=cfg["min_margin"], majority=cfg["majority"], absent=cfg["absent"],
                           skip_lineages=cfg["skip_lineages"])
writers.write_table(table, snakemake.output[0], sep="\t", index=False)
print(table.to_string(), file=sys.stderr)
