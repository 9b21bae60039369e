"""Adapter: gather each stage's results and compare them with the simulated truth (every truth
table is a declared input: common.smk truth_check_inputs)."""
import json
import sys

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import pandas as pd  # noqa: E402

from pinnacle import truth_check as tc  # noqa: E402
from pinnacle import writers  # noqa: E402

inp = snakemake.input
truth_cells = pd.read_csv(inp.truth_cells, sep="\t")
truth_samples = pd.read_csv(inp.truth_samples, sep="\t")
with open(inp.truth_params) as fh:
    params = json.load(fh)
cells = pd.concat([pd.read_csv(p, sep="\t", index_col="cell_id") for p in inp.cells])
qc_summary = pd.read_csv(inp.qc_summary, sep="\t")
cohort = pd.read_csv(inp.cohort_cells, sep="\t", index_col="cell_id")

rows = tc.check_rna_reading(cells, truth_cells) + tc.check_qc_metrics(cells, truth_cells)
rows += tc.check_adt(qc_summary, n_tags=int(params["n_antibody_tags"]))
rows += tc.check_qc_filtering(cells, truth_cells) + tc.check_doublets(cells, truth_cells)
rows += tc.check_ambient(qc_summary, truth_samples)
rows.append(tc.row("cohort_has_kept_cells", float(set(cohort.index) == set(cells.index[cells["keep"]])), 1.0,
                   detail=f"{len(cohort)} cells in the cohort"))
integrated = ad.read_h5ad(inp.integrated, backed="r")
rows += tc.check_integration(integrated.obs, {k: integrated.obsm[k][:] for k in integrated.obsm.keys()},
                             truth_cells, method_key=integrated.uns["integration"]["embedding"],
                             batch_key=integrated.uns["integration"]["batch_key"])
rows += tc.check_annotation(pd.read_csv(inp.labels, sep="\t", index_col="cell_id"), truth_cells)
if "label_stability" in inp.keys():
    rows += tc.check_label_stability(pd.read_csv(inp.label_stability, sep="\t"))
if inp.dna_qc:
    truth_dna = pd.read_csv(inp.truth_dna_cells, sep="\t")
    dna_ids = [i for p in inp.dna_qc for i in pd.read_csv(p, sep="\t", usecols=["cell_id"])["cell_id"]]
    rows += tc.check_dna_reading(dna_ids, truth_dna)
    # copy number and clones (cnv stage)
    clones = {str(a.obs["patient_id"].iat[0]): a for a in map(ad.read_h5ad, inp.clones)}
    sex = snakemake.params.sex
    rows += tc.check_scdna_clones(clones, truth_dna, pd.read_csv(inp.truth_clones, sep="\t", keep_default_na=False),
                                  sex)
    rows += tc.check_clone_dynamics(
        pd.read_csv(inp.clone_shares, sep="\t"), pd.concat([a.obs["clone"] for a in clones.values()]), truth_dna,
        pd.read_csv(inp.truth_effects, sep="\t"), levels=snakemake.params.levels,
        timepoints=snakemake.params.timepoints)
if "malignant_calls" in inp.keys():
    calls = pd.read_csv(inp.malignant_calls, sep="\t", index_col="cell_id")
    rows += tc.check_malignant_calls(calls, truth_cells)
    if inp.dna_qc:
        rows += tc.check_rna_clones(calls, truth_cells, pd.concat([a.obs["clone"] for a in clones.values()]),
                                    truth_dna)
if "proteomics" in inp.keys():
    prot = ad.read_h5ad(inp.proteomics)
    truth_prot = pd.read_csv(inp.truth_proteins, sep="\t")
    truth_prot = truth_prot[~truth_prot["kind"].isin(["contaminant", "reverse", "only_by_site"])]
    rows += tc.check_proteomics_reading(prot.var["protein_id"], prot.n_obs, truth_prot, len(truth_samples))
rows += tc.check_protein_evidence(pd.read_csv(inp.protein_evidence, sep="\t", index_col="cell_id"), truth_cells)
# --- protein (CITE-seq) normalisation: DSB rows (pinnacle.truth_check._protein) ---
if inp.protein_norm:
    rows += tc.check_dsb({p.split("/")[-2]: ad.read_h5ad(p) for p in inp.protein_norm}, truth_cells)
# --- end protein ---
effects = pd.read_csv(inp.truth_effects, sep="\t")
fdr = snakemake.params.fdr
composition = pd.read_csv(inp.composition, sep="\t")
rows += tc.check_composition(composition, effects, fdr=fdr)
rows += tc.check_composition_state_only(composition, effects, design=f"on_treatment_{snakemake.params.levels[0]}",
                                        fdr=fdr)
rows += tc.check_differential_expression(pd.concat([pd.read_csv(p, sep="\t") for p in inp.de]), effects, fdr=fdr)
if "proteomics_tests" in inp.keys():
    rows += tc.check_proteomics_tests(pd.read_csv(inp.proteomics_tests, sep="\t"), effects, fdr=fdr)
rows += tc.check_enrichment(pd.read_csv(inp.enrichment, sep="\t"), fdr=fdr)
table = tc.truth_table(rows)
writers.write_table(table, snakemake.output[0], sep="\t", index=False)
print(table.to_string(), file=sys.stderr)
