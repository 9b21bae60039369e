"""The scRNA side of the copy-number stage for one patient, and its cohort tables: what the
per-patient and cohort rules run (:func:`infer_cnv`, :func:`call_malignant`,
:func:`assign_clones`, :func:`clone_pseudobulk` in order), kept out of the adapters.
Written here: the order of the steps and the tables they leave."""

from __future__ import annotations

import anndata as ad
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from .infer import REFERENCE_TYPES, call_malignant, infer_cnv
from .link import assign_clones, clone_fractions_from_rna, clone_pseudobulk

__all__ = ["CALL_COLUMNS", "patient_malignant_cells", "rna_clone_fractions"]

#: per-cell columns of the call table (those the steps wrote)
CALL_COLUMNS = ("sample_id", "patient_id", "cnv_score", "malignant_call", "malignant_confidence",
                "malignant_probability", "malignant_cnv_correlation", "malignant_ebv_counts")


def patient_malignant_cells(rna: ad.AnnData, labels: pd.DataFrame, *, genes: pd.DataFrame, patient: str,
                            consensus: pd.DataFrame | None = None, reference_types=REFERENCE_TYPES,
                            min_reference_cells: int = 20, use_ebv: bool = True, min_probability: float = 0.8,
                            min_posterior: float = 0.9, min_genes: int = 10, pseudobulk_min_cells: int = 10
                            ) -> tuple[pd.DataFrame, pd.DataFrame, ad.AnnData, ad.AnnData]:
    """One patient's scRNA cells: inferred copy number, the malignant call and, with scDNA clone
    profiles, each malignant cell's clone and the clone pseudobulks.

    Parameters
    ----------
    rna
        The patient's QC-passing cells (all samples), raw counts in ``X`` (sparse), ``obs``
        ``sample_id``. Cells without a label are left out.
    labels
        The annotation's cell table indexed by cell (``cell_type_major``).
    genes
        Gene positions (``resources/genes_grch38.tsv``).
    patient
        The patient id (the summary row, ``obs['patient_id']``).
    consensus
        The patient's scDNA clone consensus profiles (clones x bins); None: no link.
    reference_types, min_reference_cells, use_ebv, min_probability
        Options of :func:`infer_cnv` and :func:`call_malignant`.
    min_posterior, min_genes
        Options of :func:`assign_clones`.
    pseudobulk_min_cells
        ``min_cells`` of :func:`clone_pseudobulk`.

    Returns
    -------
    The per-cell table (:data:`CALL_COLUMNS`, ``clone``, ``clone_posterior``), the one-row
    summary (the call's, plus the inference and link status), the clone pseudobulks (empty without
    a link) and the cells with ``obsm['X_cnv']`` (for :func:`plot_cnv_heatmap`).
    """
    if "cell_type_major" not in labels:
        raise InputError("cell labels", "no column 'cell_type_major'.", "pass the annotation's cell_labels.tsv.gz.")
    rna = rna[rna.obs_names.isin(labels.index)].copy()
    rna.layers["counts"] = sp.csr_matrix(rna.X, dtype="float32")
    rna.obs["cell_type_major"] = labels.loc[rna.obs_names, "cell_type_major"].astype(str).to_numpy()
    rna.obs["patient_id"] = patient
    status = infer_cnv(rna, genes=genes, reference_categories=reference_types, min_reference_cells=min_reference_cells)
    summary = call_malignant(rna, reference_categories=reference_types, use_ebv=use_ebv,
                             min_probability=min_probability)
    cells = rna.obs[[c for c in CALL_COLUMNS if c in rna.obs]].copy()
    cells["clone"], cells["clone_posterior"] = "", float("nan")
    link = {"link_status": "no scDNA"}
    pseudobulk = ad.AnnData(obs=pd.DataFrame(columns=["sample_id", "patient_id", "clone", "n_cells"]))
    malignant = (rna.obs["malignant_call"] == "malignant").to_numpy()
    if consensus is not None and not malignant.any():
        link = {"link_status": "no malignant cells"}
    elif consensus is not None:
        mal = rna[malignant].copy()
        assign_clones(mal, {patient: consensus}, genes=genes, min_posterior=min_posterior, min_genes=min_genes)
        cells.loc[mal.obs_names, "clone"] = mal.obs["clone"].astype(str)
        cells.loc[mal.obs_names, "clone_posterior"] = mal.obs["clone_posterior"].to_numpy()
        pseudobulk = clone_pseudobulk(mal, min_cells=pseudobulk_min_cells)
        st = mal.uns["clone_assignment"][patient]
        link = {"link_status": st.get("status", ""), "link_assignment_rate": st.get("assignment_rate"),
                "link_informative_genes": st.get("n_informative_genes")}
    summary = summary.assign(patient_id=patient, cnv_status=status["status"], **link)
    return cells.rename_axis("cell_id"), summary, pseudobulk, rna


def rna_clone_fractions(calls: pd.DataFrame) -> pd.DataFrame:
    """Clone fractions per sample from the scRNA cells of patients with a link (cells with a
    ``clone`` entry), in :func:`clone_fractions_from_rna`'s format with ``patient_id``.

    Parameters
    ----------
    calls
        Per-cell tables of :func:`patient_malignant_cells`, stacked.
    """
    linked = calls[calls["clone"].fillna("").astype(str) != ""]
    fractions = clone_fractions_from_rna(linked)
    patient_of = linked.groupby("sample_id")["patient_id"].first()
    fractions.insert(1, "patient_id", fractions["sample_id"].map(patient_of))
    return fractions
