"""totalVI (scvi-tools) on RNA + antibody counts, with a retry when the protein background prior
gives NaN."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle import progress
from pinnacle.errors import InputError

from ._dsb import _resolve_isotypes

log = logging.getLogger(__name__)


class _NonFinite(RuntimeError):
    """totalVI produced NaN/inf losses or latent values."""


def _protein_frame(rna: ad.AnnData, protein_counts, layer: str | None, where: str) -> pd.DataFrame:
    """Cells of ``rna`` x tags, float32 counts, from an AnnData or a DataFrame."""
    if isinstance(protein_counts, ad.AnnData):
        X = protein_counts.layers[layer] if layer is not None else protein_counts.X
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        df = pd.DataFrame(X, index=protein_counts.obs_names, columns=protein_counts.var_names.astype(str))
    elif isinstance(protein_counts, pd.DataFrame):
        df = protein_counts.copy()
        df.columns = df.columns.astype(str)
    else:
        raise InputError(where, f"protein_counts is a {type(protein_counts).__name__}.",
                         "give an AnnData (cells x tags) or a DataFrame indexed by cell id.")
    missing = rna.obs_names.difference(df.index)
    if len(missing):
        raise InputError(where, f"{len(missing)} cells of the RNA data have no protein counts "
                         f"(e.g. {missing[0]}).", "give the antibody counts of the same cells (same cell ids).")
    df = df.loc[rna.obs_names]
    vals = df.to_numpy(dtype=np.float64)
    if not np.isfinite(vals).all() or (vals < 0).any():
        raise InputError(where, "protein counts contain negative, NaN or infinite values.",
                         "give raw antibody counts; fill a tag a batch lacks with 0.")
    return df.astype(np.float32)


def _finite_history(model) -> bool:
    for key, frame in model.history.items():
        if ("loss" in key or "elbo" in key) and not np.isfinite(frame.to_numpy(dtype=float)).all():
            return False
    return True


def _fit(sub: ad.AnnData, *, prior, n_latent: int, max_epochs: int, accelerator: str, batch_size: int,
         seed: int):
    """One totalVI fit; raises _NonFinite when the losses or the latent are not finite."""
    import scvi

    scvi.settings.seed = seed
    model = scvi.model.TOTALVI(sub, n_latent=n_latent, empirical_protein_background_prior=prior)
    try:
        model.train(max_epochs=max_epochs, accelerator=accelerator, batch_size=batch_size,
                    enable_progress_bar=False, early_stopping=False,
                    callbacks=[progress.epoch_logger("totalVI", max_epochs, logger=log)])
    except ValueError as e:  # torch.distributions rejects NaN parameters
        if "nan" in str(e).lower() or "invalid values" in str(e):
            raise _NonFinite(str(e).splitlines()[0]) from e
        raise
    if not _finite_history(model):
        raise _NonFinite("non-finite training loss")
    latent = model.get_latent_representation()
    if not np.isfinite(latent).all():
        raise _NonFinite("non-finite latent values")
    return model, latent


def run_totalvi(rna_counts_adata: ad.AnnData, protein_counts, *, batch_key: str | None,
                isotypes: Sequence[str] | None = None, max_epochs: int = 400, accelerator: str = "auto",
                seed: int = 0, layer: str | None = "counts", protein_layer: str | None = None,
                n_latent: int = 20, batch_size: int = 256,
                empirical_protein_background_prior: bool | None = None, n_samples: int = 10,
                model_dir: str | Path | None = None, key_added: str = "X_totalVI",
                denoised_key: str = "totalVI_denoised_protein"):
    """totalVI: a joint RNA + protein latent space and background-free protein values.

    Why: totalVI models each tag as foreground + background with the RNA of the same cell, so its
    latent uses both modalities and its denoised protein has the ambient part removed, across
    batches (the cohort's samples). Isotype controls are left out (they carry only background).
    The empirical background prior (scvi-tools' default with > 10 proteins) gives NaN losses
    on some data; then the fit is repeated once with the prior off, and ``uns['totalvi']``
    says so.

    Parameters
    ----------
    rna_counts_adata
        Cells x genes; ``layers[layer]`` raw counts; ``var['highly_variable']`` (when present)
        selects the genes. Results are added in place.
    protein_counts
        Antibody counts of the same cells (AnnData cells x tags, or DataFrame by cell id); a tag
        a batch did not measure is 0 in that batch (totalVI treats it as missing).
    batch_key
        obs column of the batch (sample); None: one batch.
    isotypes
        Isotype controls to leave out; None: found by name (:data:`ISOTYPE_PATTERN`).
    max_epochs
        Training epochs.
    accelerator
        Lightning accelerator (``'auto'``: GPU when visible).
    seed
        scvi-tools seed.
    layer
        Layer of the RNA counts; None: X.
    protein_layer
        Layer of the protein counts when ``protein_counts`` is an AnnData; None: X.
    n_latent
        Latent dimensions.
    batch_size
        Minibatch size.
    empirical_protein_background_prior
        scvi-tools' option; None: its default.
    n_samples
        Posterior samples averaged for the denoised protein.
    model_dir
        Folder to save the model to (overwritten); None: not saved.
    key_added
        obsm key of the latent.
    denoised_key
        obsm key of the denoised protein (DataFrame cells x proteins, float32).

    Returns
    -------
    ``(rna_counts_adata, model)``; ``uns['totalvi']`` records the proteins, the isotypes left
    out, epochs, device, whether the prior fallback ran and why, and the final loss.
    """
    import scvi
    import torch

    where = "run_totalvi"
    adata = rna_counts_adata
    if layer is not None and layer not in adata.layers:
        raise InputError(where, f"layer '{layer}' with the RNA counts is missing.",
                         f"use one of {list(adata.layers)} or layer=None (X).")
    if batch_key is not None and batch_key not in adata.obs:
        raise InputError(where, f"obs column '{batch_key}' is missing.", "name the sample column, or batch_key=None.")
    prot = _protein_frame(adata, protein_counts, protein_layer, where)
    iso = _resolve_isotypes(pd.Index(prot.columns), isotypes, where)
    prot = prot.drop(columns=iso)
    if prot.shape[1] < 2:
        raise InputError(where, f"{prot.shape[1]} proteins left after removing isotypes {iso}.",
                         "give the CITE-seq antibody counts with their panel.")
    genes = adata.var["highly_variable"].to_numpy(bool) if "highly_variable" in adata.var else slice(None)
    sub = ad.AnnData(X=adata.layers[layer] if layer is not None else adata.X, obs=adata.obs[[]].copy(),
                     var=adata.var[[]].copy())[:, genes].copy()
    if batch_key is not None:
        sub.obs["_batch"] = adata.obs[batch_key].astype(str).to_numpy()
    sub.obsm["protein_expression"] = prot
    scvi.model.TOTALVI.setup_anndata(sub, protein_expression_obsm_key="protein_expression",
                                     batch_key="_batch" if batch_key is not None else None)
    # scvi-tools' own default: the empirical prior with more than 10 proteins
    prior = (bool(empirical_protein_background_prior) if empirical_protein_background_prior is not None
             else prot.shape[1] > 10)
    fallback = None
    try:
        model, latent = _fit(sub, prior=prior, n_latent=n_latent,
                             max_epochs=max_epochs, accelerator=accelerator, batch_size=batch_size, seed=seed)
    except _NonFinite as e:
        if not prior:
            raise InputError(where, f"totalVI gave NaN ({e}) with the empirical background prior off.",
                             "check the protein counts (cells with no tag counts, tags all 0), or lower the "
                             "learning rate.") from None
        fallback = f"{e} with the empirical protein background prior; refitted without it"
        log.warning("totalVI: %s", fallback)
        try:
            model, latent = _fit(sub, prior=False, n_latent=n_latent, max_epochs=max_epochs,
                                 accelerator=accelerator, batch_size=batch_size, seed=seed)
        except _NonFinite as e2:
            raise InputError(where, f"totalVI gave NaN ({e2}) also with the empirical background prior off.",
                             "check the protein counts (cells with no tag counts, tags all 0).") from None
    adata.obsm[key_added] = latent.astype(np.float32)
    _, denoised = model.get_normalized_expression(n_samples=n_samples, gene_list=[sub.var_names[0]],
                                                  return_mean=True, return_numpy=False)
    adata.obsm[denoised_key] = pd.DataFrame(np.asarray(denoised, dtype=np.float32), index=adata.obs_names,
                                            columns=prot.columns)
    if model_dir is not None:
        model.save(str(model_dir), overwrite=True, save_anndata=False)
    hist = model.history.get("elbo_train")
    adata.uns["totalvi"] = {
        "proteins": list(prot.columns), "isotypes_left_out": list(iso), "n_genes": int(sub.n_vars),
        "batch_key": batch_key or "none", "max_epochs": int(max_epochs), "n_latent": int(n_latent),
        "seed": int(seed), "device": str(model.device), "cuda_available": bool(torch.cuda.is_available()),
        "empirical_protein_background_prior": bool(prior and fallback is None),
        "prior_fallback": fallback is not None, "prior_fallback_reason": fallback or "",
        "final_elbo_train": float(hist.iloc[-1, 0]) if hist is not None else float("nan"),
        "model_dir": str(model_dir) if model_dir is not None else "",
        "scvi_tools_version": scvi.__version__,
    }
    return adata, model
