"""Adapter: one patient's scRNA cells: inferred copy number, malignant calls and (with scDNA
clones) each malignant cell's clone (pinnacle.cnv.patient_malignant_cells)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import cnv, writers  # noqa: E402

inp, out, p = snakemake.input, snakemake.output, snakemake.params
infer, link = p.infer, p.link
consensus = pd.read_csv(inp.consensus, sep="\t", index_col="clone") if "consensus" in inp.keys() else None
cells, summary, pseudobulk, rna = cnv.patient_malignant_cells(
    ad.concat([ad.read_h5ad(path) for path in inp.rna], join="inner", merge="same"),
    pd.read_csv(inp.labels, sep="\t", index_col="cell_id"), genes=pd.read_csv(inp.genes, sep="\t"),
    patient=snakemake.wildcards.patient, consensus=consensus, reference_types=infer["reference_types"],
    min_reference_cells=infer["min_reference_cells"], use_ebv=infer["use_ebv"],
    min_probability=infer["min_probability"], min_posterior=link["min_posterior"], min_genes=link["min_genes"],
    pseudobulk_min_cells=link["pseudobulk_min_cells"])
writers.write_table(cells.reset_index(), out.cells, sep="\t", index=False)
writers.write_table(summary, out.summary, sep="\t", index=False)
writers.write_h5ad(pseudobulk, out.pseudobulk, compression="gzip")
writers.save_figure(cnv.plot_cnv_heatmap(rna), out.heatmap, dpi=110, bbox_inches="tight")
print(summary.T.to_string(), file=sys.stderr)
