"""Adapter: one patient's scDNA clones (pinnacle.cnv.process_patient), tables and figures."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import cnv, writers  # noqa: E402

p, out, patient = snakemake.params, snakemake.output, snakemake.wildcards.patient
samples = [ad.read_h5ad(path) for path in snakemake.input.samples]
cells, consensus, tree, fractions, status = cnv.process_patient(samples, clone_options=dict(p.clones),
                                                                 random_state=p.seed)
fractions.insert(0, "patient_id", patient)
tree.insert(0, "patient_id", patient)
writers.write_h5ad(cells, out.h5ad, compression="gzip")
writers.write_table(consensus.rename_axis("clone"), out.consensus, sep="\t")
writers.write_table(tree, out.tree, sep="\t", index=False)
writers.write_table(fractions, out.fractions, sep="\t", index=False)
status_row = pd.DataFrame([{"patient_id": patient, "n_cells": cells.n_obs, **status}])
writers.write_table(status_row, out.status, sep="\t", index=False)
fig = cnv.plot_clone_heatmap(cells, max_cn=min(6, p.max_cn))
writers.save_figure(fig, out.heatmap, dpi=110, bbox_inches="tight")
fig = cnv.plot_consensus_profiles(consensus, chrom=cells.var["chrom"].astype(str).to_numpy(),
                                  max_cn=min(6, p.max_cn), title=f"{patient}: clone consensus profiles")
writers.save_figure(fig, out.profiles, dpi=110, bbox_inches="tight")
print(status_row.to_string(), file=sys.stderr)
print(tree.to_string(), file=sys.stderr)
