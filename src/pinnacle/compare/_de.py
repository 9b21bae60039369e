"""Pseudobulks per sample and cell type, pydeseq2 DE per cell type (with camera of the signatures on the
same fit), per-type file names and result tables."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from pinnacle.errors import InputError

from ._camera import CAMERA_TABLE_COLUMNS, _cell_type_camera
from ._design import Design, NotEstimable, design_matrix
from ._limma import bh


def pseudobulk_sample(adata: ad.AnnData, labels: pd.DataFrame, *, label_key: str = "cell_type",
                      sample_key: str = "sample_id", exclude: Sequence[str] = ("unknown",)) -> ad.AnnData:
    """Sum one sample's counts per cell type (decoupler), all genes.

    ``labels`` is the cohort cell table (cell id -> label); cells it does not list (removed after
    QC) and ``exclude`` labels are left out.

    Parameters
    ----------
    adata
        One sample's cells x genes: counts in ``layers['counts']`` if present, else ``X``.
    labels
        The cohort cell table, indexed by cell id (``adata``'s obs names).
    label_key
        Column of ``labels`` with the cell type.
    sample_key
        Column of ``adata.obs`` with the sample id.
    exclude
        Labels left out.

    Returns
    -------
    Types x genes with ``obs`` ``sample_id``, ``cell_type``, ``n_cells``, ``n_counts`` (obs names
    ``"{sample_id}|{cell_type}"``); ``X`` sparse float32 sums. No rows when no cell is kept.
    """
    import decoupler as dc

    if label_key not in labels:
        raise InputError("cell label table", f"has no column '{label_key}'.",
                         f"set compare.label_key to one of {list(labels.columns)}.")
    lab = labels[label_key].reindex(adata.obs_names)
    keep = lab.notna().to_numpy() & ~lab.isin(list(exclude)).to_numpy()
    sub = adata[keep].copy()
    sub.obs = pd.DataFrame({sample_key: adata.obs[sample_key].astype(str).to_numpy()[keep],
                            "cell_type": lab.to_numpy()[keep].astype(str)}, index=sub.obs_names)
    if "counts" in sub.layers:
        sub.X = sub.layers["counts"]
    if sub.n_obs == 0:
        return ad.AnnData(X=sp.csr_matrix((0, adata.n_vars), dtype=np.float32), var=adata.var[[]].copy(),
                          obs=pd.DataFrame(columns=[sample_key, "cell_type", "n_cells", "n_counts"]))
    pb = dc.pp.pseudobulk(sub, sample_col=sample_key, groups_col="cell_type", mode="sum", skip_checks=True)
    out = ad.AnnData(X=sp.csr_matrix(np.asarray(pb.X, dtype=np.float32)), var=adata.var[[]].copy())
    out.obs = pd.DataFrame({"sample_id": pb.obs[sample_key].astype(str).to_numpy(),
                            "cell_type": pb.obs["cell_type"].astype(str).to_numpy(),
                            "n_cells": pb.obs["psbulk_cells"].astype(int).to_numpy(),
                            "n_counts": pb.obs["psbulk_counts"].astype(float).to_numpy()})
    out.obs_names = out.obs["sample_id"] + "|" + out.obs["cell_type"]
    return out


def concat_pseudobulks(parts: Sequence[ad.AnnData]) -> ad.AnnData:
    """Stack per-sample pseudobulks; genes a sample lacks count as 0 (outer join).

    Parameters
    ----------
    parts
        Per-sample pseudobulks (:func:`pseudobulk_sample`).

    Returns
    -------
    All the pseudobulks, ``X`` sparse float32.
    """
    pb = ad.concat(list(parts), join="outer", fill_value=0, index_unique=None)
    pb.X = sp.csr_matrix(pb.X, dtype=np.float32)
    return pb


def _cell_type_counts(pb: ad.AnnData, cell_type: str, *, min_cells: int, min_counts: float) -> pd.DataFrame:
    """Samples x genes integer counts of one type's pseudobulks above the floors."""
    obs = pb.obs
    rows = np.flatnonzero((obs["cell_type"] == cell_type).to_numpy()
                          & (obs["n_cells"] >= min_cells).to_numpy() & (obs["n_counts"] >= min_counts).to_numpy())
    X = pb.X[rows]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return pd.DataFrame(np.rint(X).astype(np.int64), index=obs["sample_id"].to_numpy()[rows], columns=pb.var_names)


def _expressed_genes(counts: pd.DataFrame, group: pd.Series) -> np.ndarray:
    """Genes expressed enough to test: edgeR's filterByExpr rule, via decoupler."""
    import decoupler as dc

    a = ad.AnnData(X=counts.to_numpy(dtype=np.float32), obs=pd.DataFrame({"group": group.astype(str).to_numpy()},
                                                                          index=counts.index),
                   var=pd.DataFrame(index=counts.columns))
    genes = dc.pp.filter_by_expr(a, group="group", min_count=10, min_total_count=15, inplace=False)
    return np.asarray(genes)


def deseq2_test(counts: pd.DataFrame, design: Design, *, alpha: float = 0.1, shrink: bool = True,
                n_cpus: int = 1) -> pd.DataFrame:
    """pydeseq2 Wald test of ``design.coef``, with shrunken log2 fold changes and BH FDR.

    ``counts`` is samples x genes (integers) over ``design.samples``.

    Parameters
    ----------
    counts
        Samples x genes integer counts; the rows of ``design.samples`` are used.
    design
        The design (:func:`design_matrix`): ``X`` is pydeseq2's design matrix, ``coef`` the tested
        column.
    alpha
        Significance level of pydeseq2's independent filtering.
    shrink
        Shrink the log2 fold changes (pydeseq2's ``lfc_shrink``); False: ``log2fc_shrunk`` is NaN.
    n_cpus
        Processes pydeseq2 uses.

    Returns
    -------
    One row per gene: ``gene``, ``base_mean``, ``log2fc`` (MLE), ``log2fc_shrunk``, ``lfc_se``,
    ``stat``, ``pvalue``, ``padj`` (BH after pydeseq2's independent filtering, at ``alpha``).
    """
    return _deseq2_fit(counts, design, alpha=alpha, shrink=shrink, n_cpus=n_cpus)[0]


def _deseq2_fit(counts: pd.DataFrame, design: Design, *, alpha: float, shrink: bool, n_cpus: int):
    """:func:`deseq2_test`'s table and the fitted DeseqDataSet (whose size factors, dispersion
    trend and prior the leave-one-patient-out refits reuse)."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    counts = counts.loc[design.samples]
    meta = pd.DataFrame({"sample": design.samples}, index=design.samples)
    dds = DeseqDataSet(counts=counts, metadata=meta, design=design.X, quiet=True, n_cpus=n_cpus)
    dds.deseq2()
    contrast = (design.X.columns == design.coef).astype(float)
    stats = DeseqStats(dds, contrast=contrast, alpha=alpha, quiet=True, n_cpus=n_cpus)
    stats.summary()
    res = stats.results_df.copy()
    out = pd.DataFrame({"gene": res.index, "base_mean": res["baseMean"].to_numpy(),
                        "log2fc": res["log2FoldChange"].to_numpy(), "lfc_se": res["lfcSE"].to_numpy(),
                        "stat": res["stat"].to_numpy(), "pvalue": res["pvalue"].to_numpy(),
                        "padj": res["padj"].to_numpy()})
    if shrink:
        stats.lfc_shrink(coeff=design.coef)
        out["log2fc_shrunk"] = stats.results_df["log2FoldChange"].to_numpy()
    else:
        out["log2fc_shrunk"] = np.nan
    return out, dds


def _refit_genes(dds, counts: pd.DataFrame, design: Design, *, n_cpus: int) -> pd.DataFrame:
    """Wald test of ``design.coef`` for a few genes on a subset of samples, the way pydeseq2
    refits genes after replacing Cook's outliers: the full fit's size factors, dispersion trend
    and dispersion prior are kept, gene-wise and MAP dispersions and the coefficients are
    refitted. So the cost is that of the genes refitted, not of the whole type."""
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    samples = design.samples
    sub = DeseqDataSet(counts=counts.loc[samples], metadata=pd.DataFrame({"sample": samples}, index=samples),
                       design=design.X, refit_cooks=False, quiet=True, n_cpus=n_cpus)
    sub.obs["size_factors"] = dds.obs["size_factors"].reindex(samples).to_numpy()
    sub.layers["normed_counts"] = sub.X / sub.obs["size_factors"].to_numpy()[:, None]
    sub.fit_genewise_dispersions()
    sub.uns["disp_function_type"] = dds.uns["disp_function_type"]
    for key in ("trend_coeffs", "mean_disp", "_squared_logres", "prior_disp_var"):
        if key in dds.uns:
            sub.uns[key] = dds.uns[key]
    sub.var["_normed_means"] = sub.layers["normed_counts"].mean(axis=0)
    sub.var["fitted_dispersions"] = sub.disp_function(sub.var["_normed_means"])
    sub.fit_MAP_dispersions()
    sub.fit_LFC()
    contrast = (design.X.columns == design.coef).astype(float)
    stats = DeseqStats(sub, contrast=contrast, cooks_filter=False, independent_filter=False, quiet=True,
                       n_cpus=n_cpus)
    stats.run_wald_test()
    lfc = (stats.LFC.to_numpy() @ contrast) / np.log(2)
    return pd.DataFrame({"pvalue": stats.p_values.to_numpy(), "log2fc": lfc}, index=counts.columns)


LOO_COLUMNS = ("loo_max_pvalue", "loo_driven_by", "loo_n_lost", "loo_n_refits")


def leave_one_patient_out(res: pd.DataFrame, counts: pd.DataFrame, meta: pd.DataFrame, design: Design, dds, *,
                          alpha: float, response_levels: Sequence[str], timepoints: Sequence[str],
                          covariates: Sequence[str] = (), paired: bool = True,
                          n_cpus: int = 1) -> tuple[pd.DataFrame, str]:
    """Flag DE calls that one patient drives: refit each called gene leaving out each patient in turn.

    With patient terms no design row repeats, so pydeseq2's Cook's outlier replacement (which
    needs 7 replicates of a row) never acts, and one patient's extreme pseudobulk can make a call
    on its own. For each gene with ``padj`` below ``alpha``, each patient of the design is left out
    (both samples in the paired designs), the design rebuilt on the rest and the gene's Wald test
    refitted (:func:`_refit_genes`: size factors, dispersion trend and prior of the full fit). A
    left-out patient *loses the call* when the gene's p-value without them exceeds the largest
    p-value the type's BH step called with everyone (so the rejection region is the one the
    call was made with), or the fold change changes sign. Cost: one refit of the called genes
    per patient of the design, nothing for a type without calls.

    Parameters
    ----------
    res
        :func:`deseq2_test`'s table for the type (``gene``, ``pvalue``, ``padj``, ``log2fc``).
    counts
        Samples x genes counts of the type (the genes tested).
    meta
        Sample metadata indexed by sample (the design's samples are used).
    design
        The design fitted on all patients.
    dds
        The fitted pydeseq2 DeseqDataSet of the type (:func:`_deseq2_fit`).
    alpha
        FDR at which the calls were made.
    response_levels, timepoints, covariates, paired
        The design's settings (:func:`design_matrix`), to rebuild it without a patient.
    n_cpus
        Processes pydeseq2 uses.

    Returns
    -------
    ``res`` with ``loo_max_pvalue`` (largest p-value over the refits), ``loo_driven_by`` (the
    patients whose removal loses the call, ``;``-joined, worst first; "" when none does),
    ``loo_n_lost`` (how many: 1 of many is a call one patient drives, most of them a borderline
    call) and ``loo_n_refits`` (refits done), all empty for genes not called; and a note for the
    status table.
    """
    res = res.copy()
    res["loo_max_pvalue"], res["loo_driven_by"] = np.nan, ""
    res["loo_n_lost"], res["loo_n_refits"] = pd.array([pd.NA] * len(res), dtype="Int64"), \
        pd.array([pd.NA] * len(res), dtype="Int64")
    called = res["padj"].lt(alpha).fillna(False).to_numpy(dtype=bool)
    if not called.any():
        return res, "no calls to check"
    genes = res.loc[called, "gene"].to_numpy()
    p_cut = float(res.loc[called, "pvalue"].max())
    sign = np.sign(res.loc[called, "log2fc"].to_numpy())
    sample_meta = meta.loc[design.samples]
    patients = sorted(sample_meta["patient_id"].astype(str).unique())
    pvals, lost = {}, {}
    skipped = []
    for p in patients:
        rest = sample_meta[sample_meta["patient_id"].astype(str) != p]
        try:
            d = design_matrix(rest, design.name, response_levels=response_levels, timepoints=timepoints,
                              covariates=covariates, paired=paired, min_patients=1)
        except NotEstimable as why:
            skipped.append(f"{p} ({why})")
            continue
        fit = _refit_genes(dds, counts.loc[d.samples, genes], d, n_cpus=n_cpus)
        pv = fit["pvalue"].fillna(1.0).to_numpy()
        pvals[p] = pv
        lost[p] = (pv > p_cut) | (np.sign(fit["log2fc"].to_numpy()) != sign)
    if not pvals:
        return res, f"leave-one-patient-out not run: {'; '.join(skipped)}"
    P = pd.DataFrame(pvals, index=genes)
    L = pd.DataFrame(lost, index=genes)
    idx = res.index[called]
    res.loc[idx, "loo_max_pvalue"] = P.max(axis=1).to_numpy()
    order = np.argsort(-P.to_numpy(), axis=1, kind="stable")  # worst removal first
    res.loc[idx, "loo_driven_by"] = [";".join(P.columns[o][L.to_numpy()[i, o]]) for i, o in enumerate(order)]
    res.loc[idx, "loo_n_lost"] = L.sum(axis=1).to_numpy()
    res.loc[idx, "loo_n_refits"] = len(pvals)
    note = f"leave-one-patient-out: {len(pvals)} refits of {len(genes)} genes (p-value cut {p_cut:.3g})"
    if skipped:
        note += f"; not refitted without {'; '.join(skipped)}"
    return res, note


DE_COLUMNS = ("cell_type", "gene", "base_mean", "log2fc", "log2fc_shrunk", "lfc_se", "stat", "pvalue", "padj",
              "padj_design", *LOO_COLUMNS, "design", "formula", "patients", "dropped", "test")


def _with_design_padj(res: pd.DataFrame) -> pd.DataFrame:
    """``padj_design``: BH across every tested gene of every cell type of the design (muscat's
    global adjustment), next to ``padj`` (BH within the type, after pydeseq2's independent
    filtering; genes it filtered out have no padj and are left out here too)."""
    res = res.copy()
    res["padj_design"] = np.nan
    tested = res["padj"].notna().to_numpy() & res["pvalue"].notna().to_numpy()
    if tested.any():
        res.loc[tested, "padj_design"] = bh(res.loc[tested, "pvalue"].to_numpy(dtype=float))
    return res


def pseudobulk_de(pb: ad.AnnData, meta: pd.DataFrame, *, design: str, response_levels: Sequence[str],
                  timepoints: Sequence[str], covariates: Sequence[str] = (), cell_types: Sequence[str] | None = None,
                  min_cells: int = 10, min_counts: float = 1000, min_patients: int = 3, alpha: float = 0.1,
                  shrink: bool = True, paired: bool = True, leave_one_out: bool = True,
                  n_cpus: int = 1, signatures: Mapping[str, dict] | None = None,
                  camera_min_genes: int = 3) -> tuple[pd.DataFrame, ...]:
    """Pseudobulk DE of one design in every cell type (or the ``cell_types`` given, in their order).

    Returns ``(results, status)``, or ``(results, status, camera)`` when ``signatures`` is given:
    results has one row per cell type x gene with the design, its
    formula, patients per group and the test; status has one row per cell type saying whether it
    was tested, on how many samples and genes, or why not. Each type is fitted and BH-adjusted on
    its own, so calling this once per type and joining the parts with :func:`combine_de` gives
    the same tables as one call (the workflow does that, one job per design and type).
    Multiple testing: ``padj`` is BH within the cell type and design (the per-type family);
    ``padj_design`` is BH across all types of the design (one family per design, stricter).
    Each call (``padj`` < ``alpha``) is checked leaving out one patient at a time
    (:func:`leave_one_patient_out`, the ``loo_*`` columns); the status counts the calls some
    patient's removal loses (``n_loo_flagged``).
    With ``signatures``, each tested type's signatures are also tested by camera (limma's
    competitive gene-set test allowing for inter-gene correlation, :func:`camera`) on the same
    fit: the Wald ``stat`` of the genes tested in the type, and the inter-gene correlation from
    the least-squares residuals of the same design ``X`` fitted to the log-CPM (prior count 0.5,
    library size + 1, over all genes) of the same samples (residual df: samples minus the
    design's rank). So camera uses exactly the DE's samples and design. A type with fewer than 2
    residual df, or where no signature has ``camera_min_genes`` tested genes, has no camera row.

    Parameters
    ----------
    pb
        All pseudobulks (:func:`concat_pseudobulks`), ``obs`` ``sample_id``, ``cell_type``,
        ``n_cells``, ``n_counts``.
    meta
        Sample metadata indexed by sample (:func:`sample_meta`).
    design, response_levels, timepoints, covariates, min_patients, paired
        The design and its settings, as in :func:`design_matrix`; built per cell type on the samples
        with a pseudobulk of it.
    cell_types
        Cell types tested, in this order; None: every type of ``pb`` (:func:`de_cell_types`).
    min_cells, min_counts
        Pseudobulks with fewer cells or fewer total counts are left out.
    alpha
        Level of pydeseq2's independent filtering, and of the ``n_significant`` count in the status.
    shrink
        Shrunken log2 fold changes too (:func:`deseq2_test`).
    leave_one_out
        Check each call without each patient (:func:`leave_one_patient_out`); False: the
        ``loo_*`` columns stay empty (saves one refit of the called genes per patient).
    n_cpus
        Processes pydeseq2 uses.
    signatures
        Signature name -> entry with ``genes`` (:func:`load_signatures`); given: camera of each in
        each tested type, returned as a third table. None: no camera, two tables.
    camera_min_genes
        Fewest of a signature's genes among the type's tested genes for camera to test it.

    Returns
    -------
    ``(results, status)``; with ``signatures``, ``(results, status, camera)``, camera having one
    row per tested type x signature: ``design``, ``cell_type``, ``signature``,
    ``camera_correlation`` (the estimated inter-gene correlation), ``camera_direction`` (Up /
    Down) and ``camera_pvalue`` (two-sided). It has no FDR: that is BH across all the design's
    types x signatures, added by :func:`combine_camera` once every type's table is there.
    """
    if cell_types is None:
        cell_types = de_cell_types(pb.obs["cell_type"])
    results, status, cameras = [], [], []
    for ct in cell_types:
        counts = _cell_type_counts(pb, ct, min_cells=min_cells, min_counts=min_counts)
        row = {"cell_type": ct, "design": design, "n_samples": 0, "n_genes": 0, "n_significant": 0,
               "n_loo_flagged": 0, "leave_one_out": ""}
        try:
            d = design_matrix(meta.loc[meta.index.intersection(counts.index)], design,
                              response_levels=response_levels, timepoints=timepoints,
                              covariates=covariates, paired=paired, min_patients=min_patients)
        except NotEstimable as why:
            status.append({**row, "status": f"not tested: {why}"})
            continue
        counts = counts.loc[d.samples]
        genes = _expressed_genes(counts, d.X[d.coef])
        if len(genes) < 10:
            status.append({**row, "status": "not tested: fewer than 10 expressed genes"})
            continue
        res, dds = _deseq2_fit(counts[genes], d, alpha=alpha, shrink=shrink, n_cpus=n_cpus)
        if signatures is not None:
            cameras.append(_cell_type_camera(counts, d, res.set_index("gene")["stat"], signatures, cell_type=ct,
                                             min_genes=camera_min_genes))
        loo = "off (compare.leave_one_out)"
        if leave_one_out:
            res, loo = leave_one_patient_out(res, counts[genes], meta, d, dds, alpha=alpha,
                                             response_levels=response_levels, timepoints=timepoints,
                                             covariates=covariates, paired=paired, n_cpus=n_cpus)
        else:
            res = res.assign(loo_max_pvalue=np.nan, loo_driven_by="",
                             loo_n_lost=pd.array([pd.NA] * len(res), dtype="Int64"),
                             loo_n_refits=pd.array([pd.NA] * len(res), dtype="Int64"))
        res.insert(0, "cell_type", ct)
        res = res.assign(**d.describe())
        res["test"] = "pydeseq2 Wald; padj: BH within the cell type; padj_design: BH across the design's types"
        results.append(res)
        status.append({**row, **d.describe(), "n_samples": len(d.samples), "n_genes": len(genes),
                       "n_significant": int((res["padj"] < alpha).sum()),
                       "n_loo_flagged": int((res["loo_driven_by"] != "").sum()), "leave_one_out": loo,
                       "status": "tested"})
    cols = list(DE_COLUMNS)
    res = _with_design_padj(pd.concat(results, ignore_index=True))[cols] if results else pd.DataFrame(columns=cols)
    if signatures is None:
        return res, pd.DataFrame(status)
    cameras = [c for c in cameras if len(c)]
    camera = pd.concat(cameras, ignore_index=True) if cameras else pd.DataFrame(columns=CAMERA_TABLE_COLUMNS)
    return res, pd.DataFrame(status), camera


def de_cell_types(observed: Sequence[str], listed: Sequence[str] = ()) -> list[str]:
    """The cell types whose DE is tested: ``listed`` (in its order, once each) when it names any,
    else every type in ``observed`` (the pseudobulks' ``cell_type`` column), sorted. A listed
    type without pseudobulks is kept: its status row says it could not be tested.

    Parameters
    ----------
    observed
        Cell type of each pseudobulk (repeats are fine).
    listed
        Cell types named in the config (``compare.cell_types``); empty: all observed ones.
    """
    if len(listed):
        return list(dict.fromkeys(str(t) for t in listed))
    return sorted({str(t) for t in observed})


_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def cell_type_file_name(cell_type: str) -> str:
    """A file name for a cell type's per-type outputs.

    Names of letters, digits, ``_`` and ``-`` (starting with a letter or digit, at most 64
    characters) are kept as they are. Any other name (CellTypist labels such as ``CD4+ T cells``
    or ``Tem/Effector helper T cells``) becomes its letters, digits, ``_`` and ``-`` with every
    other run of characters replaced by ``_``, then ``-`` and 8 hex digits of the name's SHA-1:
    ``CD4+ T cells`` -> ``CD4_T_cells-<hash>``, so ``CD4+`` and ``CD4-`` stay apart. The same name
    gives the same file name in every run and on every machine; tables keep the real name.

    Parameters
    ----------
    cell_type
        The cell type label.
    """
    if _SAFE_FILE_NAME.fullmatch(cell_type):
        return cell_type
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", cell_type).strip("_-")[:48].rstrip("_-") or "cell_type"
    return f"{stem}-{hashlib.sha1(cell_type.encode('utf-8')).hexdigest()[:8]}"


def cell_type_file_names(cell_types: Sequence[str]) -> dict[str, str]:
    """Cell type -> file name (:func:`cell_type_file_name`), checked to be distinct even on a
    file system that ignores case.

    Parameters
    ----------
    cell_types
        The cell type labels.

    Raises
    ------
    InputError
        When two types would get file names that differ only in upper/lower case.
    """
    names = {ct: cell_type_file_name(ct) for ct in cell_types}
    seen: dict[str, str] = {}
    for ct, name in names.items():
        other = seen.setdefault(name.lower(), ct)
        if other != ct:
            raise InputError("cell type labels (compare.label_key / compare.cell_types)",
                             f"'{other}' and '{ct}' would share the file name '{name}' "
                             "(names that differ only in upper/lower case).",
                             "rename one of the two cell types in the annotation or in compare.cell_types.")
    return names


def cell_type_from_file_name(file_name: str, cell_types: Sequence[str]) -> str:
    """The cell type among ``cell_types`` whose file name (:func:`cell_type_file_name`) is
    ``file_name``.

    Parameters
    ----------
    file_name
        A name made by :func:`cell_type_file_name`.
    cell_types
        The candidate cell types (those of the pseudobulks).

    Raises
    ------
    InputError
        When none or more than one of ``cell_types`` has that file name.
    """
    hits = list(dict.fromkeys(ct for ct in map(str, cell_types) if cell_type_file_name(ct) == file_name))
    if len(hits) != 1:
        raise InputError(f"cell type file name '{file_name}'",
                         f"names {'none' if not hits else 'more than one'} of the cell types "
                         f"({', '.join(hits or map(str, cell_types)) or 'none'}).",
                         "the pseudobulks changed since the job was planned: run snakemake again.")
    return hits[0]


def cell_type_pseudobulks(pb: ad.AnnData, cell_type: str) -> ad.AnnData:
    """One type's pseudobulks (all samples, all genes) in memory; ``pb`` may be opened backed, so
    a per-type job reads only its rows of the cohort file.

    Parameters
    ----------
    pb
        The cohort's pseudobulks, in memory or opened backed; ``obs`` has ``cell_type``.
    cell_type
        The cell type whose rows are taken.
    """
    sub = pb[(pb.obs["cell_type"].astype(str) == cell_type).to_numpy()]
    return sub.to_memory() if pb.isbacked else sub.copy()


NAME_COLUMNS = ("design", "cell_type", "gene", "signature", "loo_driven_by")


def read_result_table(path) -> pd.DataFrame:
    """A comparison table written by the workflow, read back as it was written: names stay text
    ("NA" is a gene or a cell type, not a missing value) and floats read back exactly, so joined
    per-type parts equal one call over every type.

    Parameters
    ----------
    path
        A tab-separated table (per-type DE, status or camera part; a design's DE table).
    """
    return pd.read_csv(path, sep="\t", dtype=dict.fromkeys(NAME_COLUMNS, str), keep_default_na=False,
                       na_values=[""], float_precision="round_trip")


def combine_de(tables: Sequence[pd.DataFrame], statuses: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the per-type results of one design (:func:`pseudobulk_de` called on one type each)
    into the two tables one call on all those types gives, in the order given. Nothing is
    re-estimated: each type's fit and BH adjustment are its own. Raises ValueError when a type
    comes twice or the parts are of different designs. ``padj_design`` (BH across the design's
    types) is recomputed over the joined rows.

    Parameters
    ----------
    tables
        The per-type result tables (the first of :func:`pseudobulk_de`'s pair); empty ones are skipped.
    statuses
        The per-type status tables (the second of the pair); each cell type once.

    Returns
    -------
    ``(results, status)``, as :func:`pseudobulk_de` returns them.
    """
    status = pd.concat(list(statuses), ignore_index=True) if len(statuses) else pd.DataFrame()
    if len(status):
        if status["cell_type"].duplicated().any():
            twice = sorted(set(status.loc[status["cell_type"].duplicated(), "cell_type"]))
            raise ValueError(f"cell types given twice: {twice}")
        if status["design"].nunique() > 1:
            raise ValueError(f"parts of different designs: {sorted(status['design'].unique())}")
    tables = [t for t in tables if len(t)]
    cols = list(DE_COLUMNS)
    res = _with_design_padj(pd.concat(tables, ignore_index=True))[cols] if tables else pd.DataFrame(columns=cols)
    if len(res) and not set(res["cell_type"]) <= set(status.get("cell_type", ())):
        raise ValueError("result rows of cell types that have no status row")
    return res, status


def significant(table: pd.DataFrame, *, fdr: float, by: str = "cell_type") -> pd.DataFrame:
    """The rows of a result table with ``padj`` below ``fdr``, grouped by ``by`` (in the table's
    order) and by ``padj`` within each group: the short table the report shows (the full table
    stays on disk).

    Parameters
    ----------
    table
        A result table with ``padj`` (DE, composition or signature tests); without it, no rows.
    fdr
        Rows with ``padj`` below this are kept.
    by
        Column whose values group the rows.
    """
    hits = table[table["padj"].lt(fdr).fillna(False).to_numpy(dtype=bool)] if "padj" in table else table.iloc[0:0]
    if hits.empty:
        return hits.reset_index(drop=True)
    order = {k: i for i, k in enumerate(dict.fromkeys(hits[by]))}
    return (hits.assign(_group=hits[by].map(order)).sort_values(["_group", "padj"], kind="stable")
            .drop(columns="_group").reset_index(drop=True))
