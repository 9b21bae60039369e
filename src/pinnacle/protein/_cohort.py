"""The protein stage around the normalisation: one sample end to end (empty droplets, tag QC,
DSB or CLR), the cohort's protein modality (shared tags of the samples' panels), the table of
which method each sample got, the inputs and result of totalVI, and the cohort MuData."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from ._dsb import (
    EMPTY_ADT_RANGE,
    EMPTY_RNA_RANGE,
    ISOTYPE_PATTERN,
    find_isotypes,
    normalise_protein,
    select_empty_droplets,
)
from ._qc import TAG_QC_COLUMNS, tag_qc

log = logging.getLogger(__name__)

#: columns of :func:`tag_table` rows after normalisation: the tag QC plus what normalisation did
TAG_TABLE_COLUMNS = [*TAG_QC_COLUMNS, "normalised", "dropped_reason"]
#: columns of :func:`normalisation_table`
NORMALISATION_COLUMNS = ["sample_id", "method", "reason", "n_cells", "n_tags", "n_normalised", "isotypes",
                         "n_empties", "dropped", "n_isotype_outliers"]
#: ``uns`` key and layer of the normalised values (as :func:`normalise_protein` writes them)
NORM_KEY = "protein_norm"
#: ``method`` of a sample without antibody tags
NO_TAGS = "none"
#: obs columns of ``rna`` copied to the MuData's own obs
_SHARED_OBS = ("sample_id", "patient_id", "timepoint", "response", "cell_type_major", "cell_type")


def normalise_sample(prot: ad.AnnData, raw: ad.AnnData | None = None, *, method: str = "auto",
                     isotype_pattern: str = ISOTYPE_PATTERN,
                     adt_counts_range: tuple[float, float] = EMPTY_ADT_RANGE,
                     rna_counts_range: tuple[float, float] | None = EMPTY_RNA_RANGE,
                     max_empties: int | None = 10_000, min_empties: int = 100, n_mads: float = 5.0,
                     random_state: int = 0, where: str = "normalise_sample") -> tuple[ad.AnnData, pd.DataFrame]:
    """One sample's antibody tags: empty droplets, tag QC, then DSB (with empties) or CLR.

    Why one function: the empty droplets feed both the tag table and DSB, and the record of what
    was done (method and why, isotypes, empty-droplet windows, dropped tags) has to travel with
    the values. A sample without antibody tags (RNA only) is not an error: it comes back with 0
    tags and method ``'none'``, and the cohort leaves its cells out of the protein modality.

    Parameters
    ----------
    prot
        The sample's QC-passing cells x antibody tags, raw counts in ``X`` (``results/rna/{sample}/prot.h5ad``).
    raw
        The sample's raw matrix (all droplets, genes and tags, :func:`pinnacle.io.read_rna`), or
        None: then there are no empty droplets, and CLR is used (``method='auto'``).
    method
        ``'auto'`` (DSB when at least ``min_empties`` empty droplets are found, else CLR), ``'dsb'``
        (an error without them) or ``'clr'``.
    isotype_pattern
        Regular expression (case-insensitive) of isotype-control tag names; a panel without a
        match is normalised without isotypes (DSB's technical component is then the per-cell
        background alone), which the log says.
    adt_counts_range, rna_counts_range
        Windows of a droplet's total tag and gene counts that make it an empty droplet
        (:func:`select_empty_droplets`).
    max_empties
        Most empty droplets kept (seeded random subsample).
    min_empties
        Fewest empty droplets for DSB.
    n_mads
        Tag QC: MADs above the median isotype signal that flag a cell (:func:`tag_qc`).
    random_state
        Seed of the empty-droplet subsample and DSB's per-cell mixtures.
    where
        Named in errors (e.g. the sample id).

    Returns
    -------
    ``(normalised, table)``: the normalised AnnData (:func:`normalise_protein`; obs also
    ``isotype_counts`` and ``isotype_outlier``, ``uns['tag_qc']``, and ``uns['protein_norm']``
    with ``empty_droplets`` and ``isotype_pattern``), and one row per tag of the panel
    (:data:`TAG_TABLE_COLUMNS`).
    """
    if prot.n_vars == 0:
        out = ad.AnnData(X=np.zeros((prot.n_obs, 0), dtype=np.float32), obs=prot.obs.copy())
        out.obs["isotype_counts"] = np.float32(0)
        out.obs["isotype_outlier"] = False
        out.uns[NORM_KEY] = {"method": NO_TAGS, "reason": "no antibody tags in the sample", "n_empties": 0,
                             "isotypes": [], "dropped": [], "dropped_reason": [], "isotype_pattern": isotype_pattern}
        out.uns["tag_qc"] = {"isotypes": [], "n_flagged": 0, "n_empties": 0}
        return out, pd.DataFrame(columns=TAG_TABLE_COLUMNS)
    iso = find_isotypes(prot.var_names, pattern=isotype_pattern)
    if not iso:
        log.warning("%s: no tag matches the isotype pattern %r; normalised without isotype controls",
                    where, isotype_pattern)
    empties = None
    if raw is not None:
        try:
            empties = select_empty_droplets(raw, prot.obs_names, adt_counts_range=adt_counts_range,
                                            rna_counts_range=rna_counts_range, max_empties=max_empties,
                                            random_state=random_state)
        except InputError as e:
            raise InputError(f"{where} (raw matrix, rna_raw)", e.problem, e.fix) from None
        missing = prot.var_names.difference(empties.var_names)
        if len(missing):
            raise InputError(f"{where} (raw matrix, rna_raw)",
                             f"{len(missing)} antibody tags of the cells are not in the raw matrix: "
                             f"{', '.join(map(str, missing[:8]))}.",
                             "give the raw_feature_bc_matrix of the same Cell Ranger run as the filtered one.")
        empties = empties[:, prot.var_names].copy()
    cells = prot.copy()
    table = tag_qc(cells, empties=empties, isotypes=iso, n_mads=n_mads)
    out = normalise_protein(cells, empties=empties, isotypes=iso, method=method, min_empties=min_empties,
                            key_added=NORM_KEY, random_state=random_state)
    out.uns["tag_qc"] = cells.uns["tag_qc"]
    rec = out.uns[NORM_KEY]
    rec["isotype_pattern"] = isotype_pattern
    rec["n_empties"] = 0 if empties is None else int(empties.n_obs)
    if empties is not None:
        rec["empty_droplets"] = dict(empties.uns["empty_droplets"])
    reasons = dict(zip(rec["dropped"], rec["dropped_reason"], strict=True))
    table["normalised"] = table["tag"].isin(out.var_names)
    table["dropped_reason"] = table["tag"].map(reasons).fillna("")
    return out, table[TAG_TABLE_COLUMNS]


def normalisation_table(samples: Mapping[str, ad.AnnData]) -> pd.DataFrame:
    """Which normalisation each sample got, and why: one row per sample.

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}`` from :func:`normalise_sample`.
    """
    rows = []
    for sample, a in samples.items():
        rec = a.uns.get(NORM_KEY, {})
        dropped = [str(d) for d in rec.get("dropped", [])]
        flag = a.obs["isotype_outlier"].to_numpy(bool) if "isotype_outlier" in a.obs else np.zeros(a.n_obs, bool)
        rows.append({"sample_id": sample, "method": str(rec.get("method", "")), "reason": str(rec.get("reason", "")),
                     "n_cells": int(a.n_obs), "n_tags": int(a.n_vars) + len(dropped), "n_normalised": int(a.n_vars),
                     "isotypes": ",".join(map(str, rec.get("isotypes", []))),
                     "n_empties": int(rec.get("n_empties", 0)), "dropped": ",".join(dropped),
                     "n_isotype_outliers": int(flag.sum())})
    return pd.DataFrame(rows, columns=NORMALISATION_COLUMNS)


def cohort_protein(samples: Mapping[str, ad.AnnData], obs: pd.DataFrame, *, sample_key: str = "sample_id",
                   where: str = "cohort_protein") -> ad.AnnData:
    """The cohort's protein modality: every cell of ``obs`` from a sample with tags, on the tags
    all those samples share.

    Why shared tags only: a tag missing from one panel is missing, not 0, in its cells; a matrix
    with holes would mislead every cohort-level plot and model. Tags are matched by their exact
    name; a tag DSB dropped in one sample (hardly detected) counts as missing there. What was
    left out is recorded in ``uns['protein_cohort']`` and logged. Samples without antibody tags
    (method ``'none'``) contribute no cells: their cells stay in the RNA modality only.
    Normalised values of samples normalised differently (DSB and CLR) are on different scales;
    ``obs['protein_norm_method']`` says which each cell has.

    Parameters
    ----------
    samples
        ``{sample id: normalised AnnData}`` (:func:`normalise_sample`), one per sample of ``obs``.
    obs
        The cohort's cells (index: cell ids) with ``sample_key``; their order and columns are kept.
    sample_key
        obs column of the sample id.
    where
        Named in errors.

    Returns
    -------
    Cells x shared tags: ``X`` the normalised values (float32), ``layers['counts']`` the counts
    (CSR), obs = ``obs`` of those cells plus ``protein_norm_method``, ``isotype_counts`` and
    ``isotype_outlier``; ``uns['protein_cohort']`` with ``shared_tags``, ``dropped_tags``
    (with the samples that lack each), ``samples_with_tags``, ``samples_without_tags`` and
    ``methods``.

    Raises
    ------
    InputError
        When a sample of ``obs`` has no entry in ``samples``, a cohort cell is missing from its
        sample's tags, or the samples with tags share no tag.
    """
    if sample_key not in obs:
        raise InputError(where, f"obs has no column '{sample_key}'.", "give the cohort's cell table with sample ids.")
    order = list(dict.fromkeys(obs[sample_key].astype(str)))
    absent = [s for s in order if s not in samples]
    if absent:
        raise InputError(where, f"samples without a normalised protein file: {', '.join(absent)}.",
                         "run rule protein_sample for every scRNA sample.")
    with_tags = [s for s in order if samples[s].n_vars > 0]
    without = [s for s in order if samples[s].n_vars == 0]
    methods = {s: str(samples[s].uns.get(NORM_KEY, {}).get("method", "")) for s in order}
    if not with_tags:
        out = ad.AnnData(X=np.zeros((0, 0), dtype=np.float32))
        out.uns["protein_cohort"] = {"shared_tags": [], "dropped_tags": [], "dropped_tags_missing_in": [],
                                     "samples_with_tags": [], "samples_without_tags": without, "methods": methods}
        return out
    shared = [str(t) for t in samples[with_tags[0]].var_names
              if all(t in samples[s].var_names for s in with_tags[1:])]
    union = list(dict.fromkeys(str(t) for s in with_tags for t in samples[s].var_names))
    dropped = [t for t in union if t not in shared]
    lacking = {t: [s for s in with_tags if t not in samples[s].var_names] for t in dropped}
    if not shared:
        panels = "; ".join(f"{s}: {', '.join(map(str, samples[s].var_names[:5]))}, ..." for s in with_tags[:4])
        raise InputError(where, f"the {len(with_tags)} samples with antibody tags share no tag ({panels}).",
                         "name the same antibodies alike in every sample's feature reference, or analyse "
                         "the panels separately.")
    if dropped:
        log.warning("%s: %d tags are not in every panel (or were dropped by DSB) and are left out: %s",
                    where, len(dropped), "; ".join(f"{t} (missing in {', '.join(s)})" for t, s in lacking.items()))
    sid = obs[sample_key].astype(str)
    parts = []
    for s in with_tags:
        a = samples[s]
        cells = obs.index[(sid == s).to_numpy()]
        missing = cells.difference(a.obs_names)
        if len(missing):
            raise InputError(where, f"{len(missing)} cells of sample {s} are not in its protein file "
                             f"(e.g. {missing[0]}).", f"rerun rule protein_sample for {s} (the QC changed).")
        part = a[cells, shared]
        counts = part.layers["counts"] if "counts" in part.layers else sp.csr_matrix(part.shape, dtype=np.float32)
        X = part.X.toarray() if sp.issparse(part.X) else np.asarray(part.X)
        p = ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(index=cells),
                       var=pd.DataFrame(index=pd.Index(shared)))
        p.layers["counts"] = sp.csr_matrix(counts, dtype=np.float32)
        p.obs["protein_norm_method"] = methods[s]
        for col, fill in (("isotype_counts", np.float32(0)), ("isotype_outlier", False)):
            p.obs[col] = part.obs[col].to_numpy() if col in part.obs else fill
        parts.append(p)
    out = ad.concat(parts, merge="first") if len(parts) > 1 else parts[0]
    keep = obs.index[sid.isin(with_tags).to_numpy()]
    out = out[keep].copy()
    extra = out.obs
    out.obs = obs.loc[keep].copy()
    for col in extra:
        out.obs[col] = extra[col].to_numpy()
    var = samples[with_tags[0]].var
    for col in ("feature_types", "gene_ids"):
        if col in var:
            out.var[col] = var.loc[shared, col].astype(str).to_numpy()
    out.var["is_isotype"] = [any(t in samples[s].uns.get(NORM_KEY, {}).get("isotypes", []) for s in with_tags)
                             for t in shared]
    out.uns["protein_cohort"] = {
        "shared_tags": shared, "dropped_tags": dropped,
        "dropped_tags_missing_in": [f"{t}: {', '.join(lacking[t])}" for t in dropped],
        "samples_with_tags": with_tags, "samples_without_tags": without, "methods": methods,
        "mixed_scales": len({methods[s] for s in with_tags}) > 1,
    }
    return out


def tag_umap(prot: ad.AnnData, *, n_neighbors: int = 15, n_pcs: int = 20, random_state: int = 0) -> ad.AnnData:
    """A UMAP of the cells on their normalised tags (isotypes left out): ``obsm['X_umap']`` and
    ``obsm['X_pca']`` are added in place (scanpy's PCA, neighbours and UMAP, seeded).

    Parameters
    ----------
    prot
        The cohort's protein modality (:func:`cohort_protein`), normalised values in ``X``.
    n_neighbors
        Neighbours of the graph.
    n_pcs
        Most principal components (at most the number of tags - 1).
    random_state
        Seed of PCA and UMAP.
    """
    import scanpy as sc

    iso = prot.var["is_isotype"].to_numpy(bool) if "is_isotype" in prot.var else np.zeros(prot.n_vars, bool)
    sub = ad.AnnData(X=np.asarray(prot.X, dtype=np.float32)[:, ~iso])
    if sub.n_obs < 3 or sub.n_vars < 2:
        prot.obsm["X_umap"] = np.full((prot.n_obs, 2), np.nan, dtype=np.float32)
        return prot
    n_comps = max(1, min(n_pcs, sub.n_vars - 1, sub.n_obs - 1))
    sc.pp.pca(sub, n_comps=n_comps, random_state=random_state)
    sc.pp.neighbors(sub, n_neighbors=min(n_neighbors, sub.n_obs - 1), use_rep="X_pca", random_state=random_state)
    sc.tl.umap(sub, random_state=random_state)
    prot.obsm["X_pca"] = sub.obsm["X_pca"].astype(np.float32)
    prot.obsm["X_umap"] = sub.obsm["X_umap"].astype(np.float32)
    prot.uns["tag_umap"] = {"n_neighbors": int(n_neighbors), "n_pcs": int(n_comps), "random_state": int(random_state),
                            "tags": [str(t) for t in prot.var_names[~iso]]}
    return prot


def cohort_totalvi(rna: ad.AnnData, prot: ad.AnnData, *, batch_key: str | None, isotype_pattern: str = ISOTYPE_PATTERN,
                   max_epochs: int = 400, accelerator: str = "auto", seed: int = 0,
                   model_dir: str | Path | None = None) -> ad.AnnData:
    """totalVI (:func:`run_totalvi`) on the cohort: raw RNA counts of the HVGs and raw counts of
    the shared tags without isotypes; cells of samples without tags get 0 for every tag, which
    totalVI takes as not measured in that batch.

    Parameters
    ----------
    rna
        The cohort object (``layers['counts']``, ``var['highly_variable']``, ``batch_key`` in obs);
        not changed.
    prot
        The cohort's protein modality (:func:`cohort_protein`), counts in ``layers['counts']``.
    batch_key
        obs column of the batch (the integration's); None: one batch.
    isotype_pattern
        Regular expression of isotype names (left out of the model).
    max_epochs
        Training epochs.
    accelerator
        Lightning accelerator (``'auto'``: the GPU when visible).
    seed
        scvi-tools seed.
    model_dir
        Folder the model is saved to; None: not saved.

    Returns
    -------
    Cells of ``rna`` x the modelled proteins: ``X`` the denoised protein (foreground, float32),
    ``obsm['X_totalVI']`` the joint latent, ``uns['totalvi']`` the settings and whether the
    background-prior fallback ran.
    """
    from ._totalvi import run_totalvi

    where = "cohort_totalvi"
    if prot.n_vars == 0:
        raise InputError(where, "no sample of the cohort has antibody tags.",
                         "set protein.totalvi: false (totalVI needs CITE-seq).")
    if "counts" not in rna.layers:
        raise InputError(where, "the cohort object has no layers['counts'].", "give results/cohort/annotated.h5ad.")
    if batch_key is not None and batch_key not in rna.obs:
        raise InputError(where, f"obs column '{batch_key}' is missing.", "name the integration's batch column.")
    # a light object on the same counts: run_totalvi adds its results to it, rna stays as it was
    sub = ad.AnnData(obs=rna.obs[[batch_key]].copy() if batch_key is not None else rna.obs[[]].copy(),
                     var=rna.var[[c for c in ("highly_variable",) if c in rna.var]].copy(),
                     layers={"counts": rna.layers["counts"]})
    frame = _counts_frame(prot, rna.obs_names)
    iso = find_isotypes(frame.columns, pattern=isotype_pattern)
    sub, _ = run_totalvi(sub, frame, batch_key=batch_key, isotypes=iso, max_epochs=max_epochs,
                         accelerator=accelerator, seed=seed, model_dir=model_dir)
    den = sub.obsm["totalVI_denoised_protein"]
    out = ad.AnnData(X=den.to_numpy(dtype=np.float32), obs=pd.DataFrame(index=rna.obs_names),
                     var=pd.DataFrame(index=pd.Index(den.columns.astype(str))))
    out.obsm["X_totalVI"] = sub.obsm["X_totalVI"]
    out.uns["totalvi"] = sub.uns["totalvi"]
    return out


def build_mudata(rna: ad.AnnData, prot: ad.AnnData | None, *, totalvi: ad.AnnData | None = None,
                 denoised_layer: str = "totalvi_denoised"):
    """The cohort MuData: ``rna`` (the cohort object) and ``prot`` (the normalised tags of the
    same cells), with totalVI's latent and denoised protein when given.

    Cells of samples without tags are in ``rna`` only (MuData keeps the union of cells; a
    ``prot`` view of them does not exist). With no sample with tags (``prot`` None or empty)
    the MuData has ``rna`` only. The MuData's own obs holds the sample and label columns of
    ``rna`` (:data:`_SHARED_OBS`); ``uns['protein_cohort']`` says which tags were shared.

    Parameters
    ----------
    rna
        The cohort object (``results/cohort/annotated.h5ad``); changed in place when
        ``totalvi`` is given.
    prot
        :func:`cohort_protein` output, or None.
    totalvi
        :func:`cohort_totalvi` output, or None: ``obsm['X_totalVI']`` goes to ``rna.obsm`` and the
        MuData's ``obsm``; the denoised protein to ``prot.layers[denoised_layer]`` (NaN for the
        isotypes, which the model leaves out).
    denoised_layer
        Layer name of the denoised protein.
    """
    import mudata as md

    where = "build_mudata"
    mods = {"rna": rna}
    has_prot = prot is not None and prot.n_obs > 0 and prot.n_vars > 0
    if has_prot:
        missing = prot.obs_names.difference(rna.obs_names)
        if len(missing):
            raise InputError(where, f"{len(missing)} cells with tags are not in the RNA object (e.g. {missing[0]}).",
                             "build the protein modality from the same cohort (rule protein_cohort).")
        mods["prot"] = prot
    if totalvi is not None:
        missing = rna.obs_names.difference(totalvi.obs_names)
        if len(missing):
            raise InputError(where, f"{len(missing)} cells have no totalVI latent (e.g. {missing[0]}).",
                             "rerun rule protein_totalvi on this cohort.")
        rna.obsm["X_totalVI"] = np.asarray(totalvi[rna.obs_names].obsm["X_totalVI"], dtype=np.float32)
        rna.uns["totalvi"] = dict(totalvi.uns.get("totalvi", {}))
        if has_prot:
            den = pd.DataFrame(np.asarray(totalvi[prot.obs_names].X, dtype=np.float32), index=prot.obs_names,
                               columns=totalvi.var_names.astype(str))
            prot.layers[denoised_layer] = den.reindex(columns=prot.var_names.astype(str)).to_numpy(np.float32)
    with md.set_options(pull_on_update=False):  # mudata's coming default; no columns copied implicitly
        mdata = md.MuData(mods)
    for col in _SHARED_OBS:
        if col in rna.obs:
            mdata.obs[col] = rna.obs[col].reindex(mdata.obs_names).to_numpy()
    if totalvi is not None:
        mdata.obsm["X_totalVI"] = pd.DataFrame(rna.obsm["X_totalVI"], index=rna.obs_names).reindex(
            mdata.obs_names).to_numpy(np.float32)
    mdata.uns["protein_cohort"] = dict(prot.uns.get("protein_cohort", {})) if prot is not None else {}
    return mdata


def _counts_frame(prot: ad.AnnData, cells: Sequence[str]) -> pd.DataFrame:
    """Raw tag counts of ``cells`` (cells x tags, float32; 0 for cells without tags)."""
    counts = prot.layers["counts"]
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    frame = pd.DataFrame(counts.astype(np.float32), index=prot.obs_names, columns=prot.var_names.astype(str))
    return frame.reindex(pd.Index(cells)).fillna(0).astype(np.float32)
