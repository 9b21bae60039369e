"""Adapter: one patient's scRNA cells: inferred copy number, malignant calls and (with scDNA
clones) each malignant cell's clone (pinnacle.cnv.infer_cnv, call_malignant, assign_clones)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from pinnacle import cnv, writers  # noqa: E402

inp, out, p, patient = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards.patient
labels = pd.read_csv(inp.labels, sep="\t", index_col="cell_id")
rna = ad.concat([ad.read_h5ad(path) for path in inp.rna], join="inner", merge="same")
rna = rna[rna.obs_names.isin(labels.index)].copy()
rna.layers["counts"] = sp.csr_matrix(rna.X, dtype="float32")
rna.obs["cell_type_major"] = labels.loc[rna.obs_names, "cell_type_major"].astype(str).to_numpy()
rna.obs["patient_id"] = patient
genes = pd.read_csv(inp.genes, sep="\t")
infer = p.infer
status = cnv.infer_cnv(rna, genes=genes, reference_categories=infer["reference_types"],
                       min_reference_cells=infer["min_reference_cells"])
print(status, file=sys.stderr)
summary = cnv.call_malignant(rna, reference_categories=infer["reference_types"], use_ebv=infer["use_ebv"],
                             min_probability=infer["min_probability"])
cols = [c for c in ("sample_id", "cnv_score", "malignant_call", "malignant_confidence", "malignant_probability",
                    "malignant_cnv_correlation", "malignant_ebv_counts") if c in rna.obs]
cells = rna.obs[cols].copy()
cells["clone"] = ""
cells["clone_posterior"] = float("nan")
link_status = {"link_status": "no scDNA"}
pseudobulk = ad.AnnData(obs=pd.DataFrame(columns=["sample_id", "patient_id", "clone", "n_cells"]))
if "consensus" in inp.keys():
    consensus = pd.read_csv(inp.consensus, sep="\t", index_col="clone")
    mal = rna[(rna.obs["malignant_call"] == "malignant").to_numpy()].copy()
    if mal.n_obs:
        cnv.assign_clones(mal, consensus, genes=genes, min_posterior=p.link["min_posterior"],
                          min_genes=p.link["min_genes"])
        cells.loc[mal.obs_names, "clone"] = mal.obs["clone"].astype(str)
        cells.loc[mal.obs_names, "clone_posterior"] = mal.obs["clone_posterior"].to_numpy()
        pseudobulk = cnv.clone_pseudobulk(mal, min_cells=p.link["pseudobulk_min_cells"])
        st = mal.uns["clone_assignment"].get(patient, next(iter(mal.uns["clone_assignment"].values()), {}))
        link_status = {"link_status": st.get("status", ""), "link_assignment_rate": st.get("assignment_rate"),
                       "link_informative_genes": st.get("n_informative_genes", st.get("n_genes"))}
    else:
        link_status = {"link_status": "no malignant cells"}
summary = summary.assign(patient_id=patient, cnv_status=status["status"], **link_status)
writers.write_table(cells.rename_axis("cell_id").reset_index(), out.cells, sep="\t", index=False)
writers.write_table(summary, out.summary, sep="\t", index=False)
writers.write_h5ad(pseudobulk, out.pseudobulk, compression="gzip")
writers.save_figure(cnv.plot_cnv_heatmap(rna), out.heatmap, dpi=110, bbox_inches="tight")
print(summary.T.to_string(), file=sys.stderr)
