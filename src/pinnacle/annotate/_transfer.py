"""Label transfer (CellTypist, scANVI), the consensus of methods and the report figure of
their agreement."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from ._constants import UNKNOWN

log = logging.getLogger("pinnacle.annotate")

# --------------------------------------------------------------------------------------------
# methods 2 and 3: CellTypist and scANVI label transfer, and the consensus of all methods
# --------------------------------------------------------------------------------------------
#
# Why: a user with a trusted labelled reference (a CellTypist model, or a labelled AnnData) can
# transfer its labels instead of (or besides) the marker rule; the three answers are then
# combined into one consensus label with the fraction of methods that agree with it.
# Libraries: CellTypist (logistic regression on log1p CP10k, optional majority voting over
# clusters) and scvi-tools (scVI then SCANVI.from_scvi_model). Hand-written: input checks, the
# gene-overlap guard, the bookkeeping in ``uns`` and the small majority vote of
# :func:`consensus_labels`. Nothing is downloaded: models and references are paths given by
# the user. The labels are whatever vocabulary the model/reference uses; the consensus is only
# meaningful when that vocabulary is the one of resources/markers.yaml.


#: method name -> obs column holding its (subtype-level) label
CONSENSUS_COLUMNS = {"markers": "cell_type", "celltypist": "celltypist_label", "scanvi": "scanvi_label"}


def _log1p_cp10k_ok(X, n_check: int = 200) -> bool:
    """True when the first rows of ``X`` look log-normalised (non-negative, max below log1p(1e4));
    warns when they do not sum to 1e4 after expm1 (within 1%), as log1p(CP10k) of all genes would."""
    rows = X[: min(n_check, X.shape[0])]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    if rows.size == 0:
        return False
    if rows.min() < 0 or rows.max() > 9.22:
        return False
    sums = np.expm1(rows.astype(np.float64)).sum(axis=1)
    if not np.all(np.abs(sums - 1e4) <= 100):
        # e.g. normalised on all genes, then subset: usable, but not what CellTypist expects
        log.warning("expression rows do not sum to 10,000 after expm1 (first row: %.0f); CellTypist "
                    "expects log1p(CP10k) of all genes, predictions may be less accurate.", sums[0])
    return True


def train_celltypist_model(adata: ad.AnnData, *, label_key: str, n_jobs: int = 1, layer: str | None = None,
                           feature_selection: bool = False, use_SGD: bool = False, max_iter: int | None = None,
                           random_state: int = 0, **kwargs):
    """Train a CellTypist model on a labelled reference (thin wrapper on ``celltypist.train``).

    Save the returned model with ``model.write(path)`` and give the path to
    :func:`annotate_celltypist`.

    Parameters
    ----------
    adata
        The reference; ``X`` (or ``layers[layer]``) must hold log1p(CP10k) expression, as the
        pipeline's ``X`` does.
    label_key
        obs column of the labels (use the marker vocabulary, e.g. ``cell_type``, so that the
        consensus can compare methods).
    n_jobs
        CPU jobs for training.
    layer
        Layer with the expression; default ``X``.
    feature_selection, use_SGD, max_iter
        As in ``celltypist.train``.
    random_state
        Seed for training.
    kwargs
        Further options of ``celltypist.train`` (``top_genes``, ``C``, ``mini_batch``,
        ``epochs``, ...).
    """
    import celltypist

    where = "train_celltypist_model"
    if label_key not in adata.obs:
        raise InputError(where, f"obs column '{label_key}' (the labels) is missing.", "pass the label column.")
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise InputError(where, f"{int(labels.isna().sum())} cells have no label in '{label_key}'.",
                         "drop unlabelled cells from the reference first.")
    X = adata.layers[layer] if layer is not None else adata.X
    if not _log1p_cp10k_ok(X):
        raise InputError(where, f"{'layers[' + repr(layer) + ']' if layer else 'X'} is not log1p(CP10k) expression.",
                         "normalise to 10,000 counts per cell and log1p (pinnacle.rna_integrate.normalise).")
    if max_iter is not None:
        kwargs["max_iter"] = int(max_iter)
    return celltypist.train(X, labels=labels.astype(str).to_numpy(), genes=adata.var_names.astype(str).to_numpy(),
                            n_jobs=n_jobs, feature_selection=feature_selection, use_SGD=use_SGD,
                            random_state=random_state, **kwargs)


def annotate_celltypist(adata: ad.AnnData, model, *, majority_voting: bool = True,
                        over_clustering: str | None = None, key_prefix: str = "celltypist",
                        min_shared_genes: int = 100, layer: str | None = None) -> ad.AnnData:
    """Label cells with a CellTypist model (in place; returns ``adata``).

    Writes obs ``{key_prefix}_label`` (the majority-voting label when voting, else the per-cell
    best match), ``{key_prefix}_conf`` (the model's probability of that label for the cell) and
    ``{key_prefix}_label_cell`` (the per-cell best match); ``uns[key_prefix]`` records the model
    (path), its number of genes, the number shared with the data and the settings.
    Stops with :class:`InputError` when fewer than ``min_shared_genes`` model genes are in the data.

    Parameters
    ----------
    adata
        The cohort; ``X`` (or ``layers[layer]``) must be log1p(CP10k), as the pipeline's is.
    model
        Path to a CellTypist ``.pkl`` model or a loaded ``celltypist.models.Model``.
    majority_voting
        Smooth the per-cell predictions by majority within clusters.
    over_clustering
        obs column (e.g. a Leiden column) used as the clusters for voting; None lets CellTypist
        over-cluster itself (on a private copy; ``adata`` is not modified).
    key_prefix
        Prefix of the obs columns and the uns key.
    min_shared_genes
        Fewest model genes the data must have.
    layer
        Layer with the expression; default ``X``.
    """
    import celltypist
    from celltypist.models import Model

    where = "annotate_celltypist"
    if isinstance(model, Model):
        model_obj, model_desc = model, "<in-memory celltypist.models.Model>"
    else:
        path = Path(model)
        if not path.is_file():
            raise InputError(str(path), "CellTypist model file not found.",
                             "give the path to a .pkl model (models are not downloaded here).")
        try:
            # An absolute path: celltypist treats a bare file name as a model to download.
            model_obj = Model.load(str(path.resolve()))
        except Exception as e:  # noqa: BLE001 - any unreadable file is an input problem
            raise InputError(str(path), f"not a readable CellTypist model ({type(e).__name__}: {e}).",
                             "give a .pkl written by celltypist (model.write).") from e
        model_desc = str(path.resolve())
    features = np.asarray(model_obj.features).astype(str)
    genes = adata.var_names.astype(str)
    n_shared = int(np.isin(features, genes).sum())
    if n_shared < min_shared_genes:
        raise InputError(where, f"the model shares only {n_shared} of its {features.size} genes with the data "
                                f"({adata.n_vars} genes; at least {min_shared_genes} needed).",
                         "use a model trained on the same species and gene symbols (var_names must be symbols).")
    if n_shared < 0.5 * features.size:
        log.warning("CellTypist model: only %d of %d model genes are in the data; predictions may be poor.",
                    n_shared, features.size)
    X = adata.layers[layer] if layer is not None else adata.X
    if not _log1p_cp10k_ok(X):
        raise InputError(where, f"{'layers[' + repr(layer) + ']' if layer else 'X'} is not log1p(CP10k) expression.",
                         "normalise to 10,000 counts per cell and log1p (pinnacle.rna_integrate.normalise).")
    clusters = None
    if majority_voting and over_clustering is not None:
        if over_clustering not in adata.obs:
            raise InputError(where, f"obs column '{over_clustering}' (over_clustering) is missing.",
                             "cluster first (Leiden) or pass over_clustering=None.")
        clusters = adata.obs[over_clustering].astype(str).to_numpy()
    # private light copy: CellTypist over-clustering writes neighbours/PCA into the AnnData it gets
    X_copy = X.copy()
    if sp.issparse(X_copy):
        X_copy = sp.csr_matrix(X_copy)
    small = ad.AnnData(X=X_copy, obs=pd.DataFrame(index=adata.obs_names.copy()),
                       var=pd.DataFrame(index=genes.copy()))
    res = celltypist.annotate(small, model=model_obj, majority_voting=majority_voting,
                              over_clustering=clusters)
    pred = res.predicted_labels
    prob = res.probability_matrix
    cell = pred["predicted_labels"].astype(str)
    voted = majority_voting and "majority_voting" in pred
    label = pred["majority_voting"].astype(str) if voted else cell
    cols = prob.columns.get_indexer(label.to_numpy())
    P = prob.to_numpy()
    conf = np.where(cols >= 0, P[np.arange(P.shape[0]), np.clip(cols, 0, None)], P.max(axis=1))
    adata.obs[f"{key_prefix}_label"] = pd.Categorical(label.reindex(adata.obs_names).to_numpy())
    adata.obs[f"{key_prefix}_conf"] = pd.Series(conf, index=prob.index).reindex(adata.obs_names).to_numpy(np.float32)
    adata.obs[f"{key_prefix}_label_cell"] = pd.Categorical(cell.reindex(adata.obs_names).to_numpy())
    adata.uns[key_prefix] = {
        "model": model_desc,
        "n_genes_model": int(features.size),
        "n_genes_shared": n_shared,
        "n_cell_types_model": len(model_obj.cell_types),
        "majority_voting": bool(voted),
        "over_clustering": over_clustering if clusters is not None else ("celltypist" if voted else None),
        "celltypist_version": celltypist.__version__,
    }
    return adata


def _counts(adata: ad.AnnData, name: str):
    """Raw counts of ``adata``: ``layers['counts']`` or ``X``; must be non-negative integers."""
    M = adata.layers["counts"] if "counts" in adata.layers else adata.X
    rows = M[: min(200, M.shape[0])]
    vals = rows.data if sp.issparse(rows) else np.asarray(rows).ravel()
    if vals.size and (vals.min() < 0 or not np.allclose(vals, np.round(vals))):
        raise InputError(name, "no raw counts: layers['counts'] is absent and X is not integer counts.",
                         "keep the raw counts in layers['counts'].")
    return sp.csr_matrix(M) if sp.issparse(M) else sp.csr_matrix(np.asarray(M))


def annotate_scanvi(query: ad.AnnData, reference: ad.AnnData, *, label_key: str, batch_key: str,
                    n_latent: int = 30, n_layers: int = 2, max_epochs: int | None = None,
                    scanvi_max_epochs: int = 20, epoch_cap: int = 100, random_state: int = 0,
                    unlabeled: str = "Unknown", key_prefix: str = "scanvi", accelerator: str = "auto",
                    min_shared_genes: int = 200, n_samples_per_label: int | None = 100,
                    batch_size: int = 128, num_threads: int | None = None) -> ad.AnnData:
    """Transfer labels from a labelled ``reference`` to ``query`` with scANVI (in place on ``query``).

    The two are joined on their shared genes, scVI is trained on all cells (reference labelled,
    query labelled ``unlabeled``), then ``SCANVI.from_scvi_model`` is fine-tuned and predicts the
    query. Writes query obs ``{key_prefix}_label`` and ``{key_prefix}_conf`` (the largest soft
    prediction) and ``uns[key_prefix]`` (genes shared, epochs, device, reference label counts).

    Parameters
    ----------
    query, reference
        Raw counts (``layers['counts']``, else integer ``X``) and ``batch_key`` in obs; the
        reference also ``label_key``.
    label_key
        obs column of the reference labels.
    batch_key
        obs column of the batch, in both.
    n_latent, n_layers
        scVI latent dimensions and hidden layers.
    max_epochs
        scVI epochs; None: scvi-tools' heuristic capped at ``epoch_cap``.
    scanvi_max_epochs
        scANVI fine-tuning epochs.
    epoch_cap
        Cap of the scVI heuristic.
    random_state
        scvi-tools seed.
    unlabeled
        The label given to query cells during training (must not be a reference label).
    key_prefix
        Prefix of the obs columns and the uns key.
    accelerator
        Lightning accelerator; ``"auto"`` uses a GPU when one is visible.
    min_shared_genes
        Fewest genes the two must share.
    n_samples_per_label
        Labelled cells drawn per label in each scANVI epoch (None: all).
    batch_size
        Minibatch size.
    num_threads
        CPU threads for torch during training (restored after); give the job's threads: torch
        otherwise takes every core, and on a shared or busy machine its threads fight
        (measured: 5 scVI epochs on 1,200 cells, 2 cores under load, 1.7 s with 1 thread, 57 s
        with 2).
    """
    import scvi
    import torch

    from pinnacle.rna_integrate import scvi_max_epochs

    where = "annotate_scanvi"
    for name, obj, keys in (("reference", reference, (label_key, batch_key)), ("query", query, (batch_key,))):
        for k in keys:
            if k not in obj.obs:
                raise InputError(f"{where} ({name})", f"obs column '{k}' is missing.", "add it or pass another key.")
    ref_labels = reference.obs[label_key]
    if ref_labels.isna().any():
        raise InputError(f"{where} (reference)", f"{int(ref_labels.isna().sum())} cells have no '{label_key}'.",
                         "drop unlabelled reference cells or label them.")
    ref_labels = ref_labels.astype(str)
    if (ref_labels == unlabeled).any():
        raise InputError(f"{where} (reference)", f"the label '{unlabeled}' (unlabeled) is used by reference cells.",
                         "pass another unlabeled= value.")
    shared = reference.var_names.intersection(query.var_names)
    if len(shared) < min_shared_genes:
        raise InputError(where, f"reference and query share only {len(shared)} genes (at least {min_shared_genes} "
                                "needed).", "use the same gene symbols in both (var_names).")
    ref_c = _counts(reference, f"{where} (reference)")[:, reference.var_names.get_indexer(shared)]
    qry_c = _counts(query, f"{where} (query)")[:, query.var_names.get_indexer(shared)]
    obs = pd.DataFrame({
        "_batch": np.concatenate([("ref:" + reference.obs[batch_key].astype(str)).to_numpy(),
                                  ("query:" + query.obs[batch_key].astype(str)).to_numpy()]),
        "_label": np.concatenate([ref_labels.to_numpy(), np.full(query.n_obs, unlabeled, dtype=object)]),
    }, index=pd.Index([f"r{i}" for i in range(reference.n_obs)] + [f"q{i}" for i in range(query.n_obs)]))
    joint = ad.AnnData(X=sp.vstack([ref_c, qry_c]).tocsr().astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=pd.Index(shared.astype(str))))

    scvi.settings.seed = random_state
    scvi.model.SCVI.setup_anndata(joint, batch_key="_batch", labels_key="_label")
    vae = scvi.model.SCVI(joint, n_latent=n_latent, n_layers=n_layers)
    epochs = int(max_epochs) if max_epochs else scvi_max_epochs(joint.n_obs, cap=epoch_cap)
    threads_before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        vae.train(max_epochs=epochs, accelerator=accelerator, batch_size=batch_size)
        lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=unlabeled, labels_key="_label")
        lvae.train(max_epochs=int(scanvi_max_epochs), n_samples_per_label=n_samples_per_label,
                   accelerator=accelerator, batch_size=batch_size)
    finally:
        torch.set_num_threads(threads_before)
    q_idx = np.arange(reference.n_obs, joint.n_obs)
    soft = lvae.predict(joint, indices=q_idx, soft=True)
    if isinstance(soft, tuple):
        soft = soft[0]
    soft = soft.drop(columns=[c for c in soft.columns if str(c) == unlabeled], errors="ignore")
    P = soft.to_numpy()
    labels = soft.columns.astype(str).to_numpy()[P.argmax(axis=1)]
    query.obs[f"{key_prefix}_label"] = pd.Categorical(labels)
    query.obs[f"{key_prefix}_conf"] = P.max(axis=1).astype(np.float32)
    device = str(lvae.device) if hasattr(lvae, "device") else ("cuda" if torch.cuda.is_available() else "cpu")
    query.uns[key_prefix] = {
        "n_genes_shared": len(shared),
        "n_reference_cells": int(reference.n_obs),
        "reference_label_counts": {str(k): int(v) for k, v in ref_labels.value_counts().items()},
        "scvi_epochs": epochs,
        "scanvi_epochs": int(scanvi_max_epochs),
        "n_latent": int(n_latent),
        "device": device,
        "random_state": int(random_state),
        "scvi_tools_version": scvi.__version__,
    }
    return query


def consensus_labels(obs: pd.DataFrame, *, methods: list[str] | None = None,
                     columns: Mapping[str, str] | None = None, unknown: str = UNKNOWN) -> pd.DataFrame:
    """Majority vote of the annotation methods, per cell.

    A missing or ``unknown`` label is an abstention (no vote). The consensus is the most voted label; a tie
    goes to the markers' label when it is among the tied, else to the first tied method in
    ``methods`` order; a cell where all abstain is ``unknown``. ``cell_type_agreement`` = methods
    whose label equals the consensus / methods used (abstentions count against it; 0 when unknown).

    Parameters
    ----------
    obs
        The cohort's obs with the methods' label columns.
    methods
        Names among ``columns``; None: every method whose column is in ``obs``; a named method
        whose column is absent is skipped.
    columns
        ``{method: obs column}``; default :data:`CONSENSUS_COLUMNS` (markers -> ``cell_type``,
        celltypist -> ``celltypist_label``, scanvi -> ``scanvi_label``).
    unknown
        The abstention label.

    Returns
    -------
    A DataFrame (index of ``obs``) with ``cell_type_consensus`` and ``cell_type_agreement``; the
    ``uns``-free design lets the caller assign it to ``adata.obs``.
    """
    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    if methods is None:
        methods = [m for m, c in columns.items() if c in obs]
    bad = [m for m in methods if m not in columns]
    if bad:
        raise InputError("consensus_labels", f"unknown method(s) {bad}.", f"use names among {sorted(columns)}.")
    used = [m for m in methods if columns[m] in obs]
    if not used:
        raise InputError("consensus_labels", f"none of the label columns of {list(methods)} is in obs.",
                         "run at least one annotation method first.")
    order = (["markers"] if "markers" in used else []) + [m for m in used if m != "markers"]
    votes = pd.DataFrame({m: obs[columns[m]].astype(object).where(obs[columns[m]].notna(), None)
                          for m in order}, index=obs.index)
    cons, agree = [], []
    n = len(used)
    for row in votes.itertuples(index=False):
        labs = [str(v) for v in row if v is not None and str(v) != unknown]
        if not labs:
            cons.append(unknown)
            agree.append(0.0)
            continue
        counts: dict[str, int] = {}
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
        top = max(counts.values())
        # first in ``order`` (markers first) among the most voted
        best = next(lab for lab in labs if counts[lab] == top)
        cons.append(best)
        agree.append(top / n)
    return pd.DataFrame({"cell_type_consensus": pd.Categorical(cons),
                         "cell_type_agreement": np.asarray(agree, dtype=np.float32)}, index=obs.index)



# --------------------------------------------------------------------------------------------
# agreement between annotation methods (report figure)
# --------------------------------------------------------------------------------------------



def _methods_present(obs: pd.DataFrame, methods: Iterable[str] | None, columns: Mapping[str, str]) -> list[str]:
    names = list(columns) if methods is None else list(methods)
    return [m for m in names if m in columns and columns[m] in obs]


def method_agreement(obs: pd.DataFrame, *, methods: Iterable[str] | None = None,
                     columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per marker label (``cell_type``): cells, and for each other method present the share of
    those cells to which it gives the same label (``agree_<method>``); ``mean_agreement`` is the
    mean ``cell_type_agreement`` of the consensus when present. Why: shows which labels the
    methods agree on and which one method alone calls.

    Parameters
    ----------
    obs
        The cohort's obs with the methods' label columns.
    methods
        Methods to compare; default every one present.
    columns
        ``{method: obs column}``; default :data:`CONSENSUS_COLUMNS`.
    """
    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    used = _methods_present(obs, methods, columns)
    if "markers" not in used:
        raise InputError("method_agreement", f"obs column '{columns['markers']}' (markers) is missing.",
                         "annotate with the markers first.")
    col = obs[columns["markers"]]
    ref = col.astype(str)
    table = ref.value_counts().rename("n_cells").to_frame()
    if isinstance(col.dtype, pd.CategoricalDtype):  # the vocabulary's order (markers.yaml)
        table = table.reindex([str(c) for c in col.cat.categories if str(c) in table.index])
    for m in [u for u in used if u != "markers"]:
        same = obs[columns[m]].astype(str).to_numpy() == ref.to_numpy()
        table[f"agree_{m}"] = pd.Series(same, index=obs.index).groupby(ref.to_numpy()).mean()
    if "cell_type_agreement" in obs:
        table["mean_agreement"] = obs["cell_type_agreement"].astype(float).groupby(ref.to_numpy()).mean()
    table.index.name = "label"
    return table


def _confusion(ref: pd.Series, other: pd.Series, order: list[str], max_labels: int) -> pd.DataFrame:
    """Row-normalised crosstab ref x other, rows in ``order``; columns: the labels shared with
    ``ref`` in that order, then the others by size, beyond ``max_labels`` lumped as
    ``(other labels)``."""
    tab = pd.crosstab(ref.astype(str), other.astype(str)).reindex(order, fill_value=0)
    cols = [c for c in order if c in tab.columns]
    rest = tab.drop(columns=cols).sum().sort_values(ascending=False).index.tolist()
    keep = (cols + rest)[:max_labels]
    out = tab[keep].copy()
    lumped = tab.drop(columns=keep).sum(axis=1)
    if lumped.any():
        out["(other labels)"] = lumped
    return out.div(out.sum(axis=1).replace(0, 1), axis=0)


def plot_method_agreement(obs: pd.DataFrame, *, methods: Iterable[str] | None = None,
                          columns: Mapping[str, str] | None = None, max_labels: int = 30):
    """Report figure: how the annotation methods agree. With CellTypist and/or scANVI next to
    the markers: per marker label, the share of cells each other method labels the same (bars),
    and one heatmap per other method of where the marker labels go (rows sum to 1). With the
    markers alone: the label confidence per label (box plots), titled to say that only one
    method ran. ``obs`` is not modified. Returns a Figure.

    Parameters
    ----------
    obs
        The cohort's obs with the methods' label columns.
    methods, columns
        As in :func:`method_agreement`.
    max_labels
        Columns of a heatmap before the rest are lumped as ``(other labels)``.
    """
    import matplotlib.pyplot as plt

    columns = dict(CONSENSUS_COLUMNS if columns is None else columns)
    used = _methods_present(obs, methods, columns)
    table = method_agreement(obs, methods=used, columns=columns)
    others = [m for m in used if m != "markers"]
    labels = list(table.index)
    if not others:
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.3 * len(labels)))
        ref = obs[columns["markers"]].astype(str)
        conf = obs["cell_type_confidence"] if "cell_type_confidence" in obs else pd.Series(np.nan, index=obs.index)
        ax.boxplot([conf[ref == lab].astype(float).dropna().to_numpy() for lab in labels], vert=False,
                   tick_labels=[f"{lab} ({table.loc[lab, 'n_cells']:,})" for lab in labels], showfliers=False)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("cell_type_confidence")
        ax.set_title("Only the marker method ran (no CellTypist model or scANVI reference):\n"
                     "label confidence per marker label instead of agreement between methods", fontsize=10)
        fig.tight_layout()
        plt.close(fig)
        return fig
    fig, axes = plt.subplots(1, 1 + len(others), figsize=(5 + 6 * len(others), 1.5 + 0.32 * len(labels)),
                             gridspec_kw={"width_ratios": [1] + [1.6] * len(others)}, squeeze=False)
    ax = axes[0, 0]
    y = np.arange(len(labels))
    h = 0.8 / len(others)
    for k, m in enumerate(others):
        ax.barh(y + (k - (len(others) - 1) / 2) * h, table[f"agree_{m}"].fillna(0), height=h, label=m)
    if "mean_agreement" in table:
        ax.plot(table["mean_agreement"], y, "k|", markersize=10, label="mean consensus agreement")
    ax.set_yticks(y, [f"{lab} ({n:,})" for lab, n in zip(labels, table["n_cells"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the marker label's cells given the same label")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.set_title("Agreement with the marker labels", fontsize=10, pad=12 + 9 * ((len(others) + 2) // 2))
    ref = obs[columns["markers"]].astype(str)
    for k, m in enumerate(others, start=1):
        conf = _confusion(ref, obs[columns[m]], labels, max_labels)
        axk = axes[0, k]
        im = axk.imshow(conf.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axk.set_yticks(y, labels)
        axk.set_xticks(range(conf.shape[1]), conf.columns, rotation=90, fontsize=7)
        axk.set_xlabel(f"{m} label")
        axk.set_title(f"Markers (rows) vs {m} (columns)", fontsize=10)
        fig.colorbar(im, ax=axk, fraction=0.03, label="share of row")
    fig.tight_layout()
    plt.close(fig)
    return fig
