"""Genomic bins for scDNA copy number: a GC / blacklist reference, bin filtering, joining the
samples of one patient, and a reader for per-cell ratio tables (e.g. CopyKit segment ratios).

GC and blacklist fractions come from a bin reference table (``resources/bins_1mb_grch38.tsv.gz``
for the demo); bins of another width get overlap-weighted means of the reference bins they
cover. Everything here is bookkeeping on pandas/numpy: no library does bin annotation for
AnnData.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from pinnacle.errors import InputError

__all__ = ["annotate_bins", "combine_samples", "filter_bins", "read_bin_reference", "read_ratio_table"]

_AUTOSOMES = {f"chr{i}" for i in range(1, 23)}


def _norm_chrom(values) -> np.ndarray:
    s = pd.Series(values, dtype=str).str.strip()
    return np.where(s.str.lower().str.startswith("chr"), "chr" + s.str[3:], "chr" + s).astype(str)


def is_autosome(chrom) -> np.ndarray:
    """Boolean mask of chr1..chr22 among chromosome names (with or without ``chr``).

    Parameters
    ----------
    chrom
        Chromosome names, one per bin.
    """
    return np.isin(_norm_chrom(chrom), list(_AUTOSOMES))


def read_bin_reference(path) -> pd.DataFrame:
    """Read a bin reference table (chrom, start, end, gc and optionally blacklist).

    Parameters
    ----------
    path
        Tab-separated table, optionally gzipped, e.g. ``resources/bins_1mb_grch38.tsv.gz``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "bin reference table not found.",
                         "pass the path of a table with chrom, start, end, gc (and blacklist), "
                         "e.g. resources/bins_1mb_grch38.tsv.gz.")
    ref = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    return _check_reference(ref, str(path))


def _check_reference(ref: pd.DataFrame, where: str) -> pd.DataFrame:
    cols = {c.lower(): c for c in ref.columns}
    if "gc_content" in cols and "gc" not in cols:
        cols["gc"] = cols["gc_content"]
    need = [c for c in ("chrom", "start", "end", "gc") if c not in cols]
    if need:
        raise InputError(where, f"bin reference lacks column(s) {need} (has {list(ref.columns)[:8]}).",
                         "give chrom, start, end and gc (GC fraction 0-1), optionally blacklist (0-1).")
    out = pd.DataFrame({"chrom": _norm_chrom(ref[cols["chrom"]]),
                        "start": pd.to_numeric(ref[cols["start"]], errors="coerce"),
                        "end": pd.to_numeric(ref[cols["end"]], errors="coerce"),
                        "gc": pd.to_numeric(ref[cols["gc"]], errors="coerce")})
    if "blacklist" in cols:
        out["blacklist"] = pd.to_numeric(ref[cols["blacklist"]], errors="coerce")
    if out[["start", "end"]].isna().any().any():
        raise InputError(where, "bin reference has non-numeric start/end.", "give integer positions.")
    return out.sort_values(["chrom", "start"]).reset_index(drop=True)


def _overlap_mean(var: pd.DataFrame, ref: pd.DataFrame, column: str) -> np.ndarray:
    """Overlap-length-weighted mean of ``ref[column]`` over each bin of ``var`` (NaN: no overlap)."""
    out = np.full(len(var), np.nan)
    chrom = _norm_chrom(var["chrom"])
    start = var["start"].to_numpy(dtype=np.int64)
    end = var["end"].to_numpy(dtype=np.int64)
    for c, r in ref.groupby("chrom", sort=False):
        idx = np.flatnonzero(chrom == c)
        if not idx.size:
            continue
        rs, re_ = r["start"].to_numpy(np.int64), r["end"].to_numpy(np.int64)
        rv = r[column].to_numpy(dtype=float)
        lo = np.searchsorted(re_, start[idx], side="right")  # first ref bin ending after start
        hi = np.searchsorted(rs, end[idx], side="left")  # ref bins starting before end
        for k, i in enumerate(idx):
            sl = slice(lo[k], hi[k])
            w = np.minimum(re_[sl], end[i]) - np.maximum(rs[sl], start[i])
            v = rv[sl]
            ok = (w > 0) & np.isfinite(v)
            if ok.any():
                out[i] = float(np.sum(w[ok] * v[ok]) / np.sum(w[ok]))
    return out


def annotate_bins(adata: ad.AnnData, reference: pd.DataFrame, *, overwrite_gc: bool = False) -> ad.AnnData:
    """Add ``var['gc']`` (when missing) and ``var['blacklist']`` from a bin reference table.

    Matching is by coordinates: each bin takes the overlap-weighted mean of the reference bins
    it covers, so a 1 Mb reference also annotates 500 kb or variable-width bins.

    Parameters
    ----------
    adata
        Cells x bins with ``var`` chrom, start, end (as :func:`pinnacle.io.read_scdna` gives).
        Changed in place.
    reference
        Table with chrom, start, end, gc and optionally blacklist (:func:`read_bin_reference`).
    overwrite_gc
        Replace a ``var['gc']`` the input already has.
    """
    _require_coords(adata, "annotate_bins")
    ref = _check_reference(reference, "bin reference")
    if overwrite_gc or "gc" not in adata.var or not np.isfinite(adata.var["gc"].to_numpy(float)).any():
        adata.var["gc"] = _overlap_mean(adata.var, ref, "gc")
    if "blacklist" in ref:
        adata.var["blacklist"] = _overlap_mean(adata.var, ref, "blacklist")
    return adata


def _require_coords(adata: ad.AnnData, where: str) -> None:
    missing = [c for c in ("chrom", "start", "end") if c not in adata.var]
    if missing:
        raise InputError(where, f"var lacks {missing}: the bins have no genomic coordinates.",
                         "read scDNA with pinnacle.io.read_scdna (var chrom/start/end).")


def filter_bins(adata: ad.AnnData, *, reference: pd.DataFrame | None = None,
                max_blacklist: float = 0.5, gc_range: tuple[float, float] = (0.30, 0.70),
                key_added: str = "cnv_bin_pass") -> ad.AnnData:
    """Keep bins with usable GC that are not blacklisted; return the filtered copy.

    A bin is dropped when its GC is missing or outside ``gc_range`` (N-rich and extreme-GC bins
    carry no usable GC-corrected signal) or its blacklisted fraction exceeds ``max_blacklist``.
    A chromosome blacklisted end to end is taken as unannotated, not dropped: the hg38 1 Mb
    reference marks every chrX bin fully blacklisted, a property of that table, not of the
    ENCODE list. The decision depends on the annotation only, so every sample of a patient
    keeps the same bins.

    Parameters
    ----------
    adata
        Cells x bins with ``var`` chrom, start, end (and gc when the input had it).
    reference
        Bin reference (:func:`read_bin_reference`); used for GC when ``var`` has none, and for
        the blacklist. Without it and without ``var['gc']`` this stops with an InputError.
    max_blacklist
        Largest blacklisted fraction of a kept bin.
    gc_range
        Smallest and largest GC fraction of a kept bin.
    key_added
        ``var`` column of the kept flag (set on the input); ``uns['cnv_bins']`` has the counts.
    """
    _require_coords(adata, "filter_bins")
    if reference is not None:
        annotate_bins(adata, reference)
    if "gc" not in adata.var or not np.isfinite(adata.var["gc"].to_numpy(float)).any():
        raise InputError("filter_bins", "the bins have no GC content (no var['gc'] and no reference).",
                         "pass reference=read_bin_reference('resources/bins_1mb_grch38.tsv.gz') "
                         "or a bin table with a gc column.")
    gc = adata.var["gc"].to_numpy(dtype=float)
    lo, hi = gc_range
    bad_gc = ~np.isfinite(gc) | (gc < lo) | (gc > hi)
    black = np.zeros(adata.n_vars, bool)
    whole_chrom = []
    if "blacklist" in adata.var:
        bl = adata.var["blacklist"].to_numpy(dtype=float)
        black = np.nan_to_num(bl, nan=0.0) > max_blacklist
        chrom = adata.var["chrom"].astype(str).to_numpy()
        for c in pd.unique(chrom):
            m = chrom == c
            if black[m].all() and m.sum() > 1:
                black[m] = False
                whole_chrom.append(str(c))
    keep = ~bad_gc & ~black
    if not keep.any():
        raise InputError("filter_bins", f"no bin passes (GC in {gc_range}, blacklist <= {max_blacklist}).",
                         "check that the reference matches the genome build and the bin coordinates.")
    adata.var[key_added] = keep
    out = adata[:, keep].copy()
    out.uns["cnv_bins"] = {"n_bins_in": int(adata.n_vars), "n_bins_kept": int(keep.sum()),
                           "dropped_gc": int(bad_gc.sum()), "dropped_blacklist": int((black & ~bad_gc).sum()),
                           "blacklist_ignored_on": whole_chrom}
    return out


def combine_samples(samples: Mapping[str, ad.AnnData] | Sequence[ad.AnnData]) -> ad.AnnData:
    """Join the scDNA samples of one patient (cells stacked) after checking they share bins.

    Parameters
    ----------
    samples
        AnnData per sample (a mapping sample id -> AnnData, or a list), each with the same bins
        in the same order; ``obs`` should carry ``sample_id``.
    """
    items = list(samples.items()) if isinstance(samples, Mapping) else \
        [(str(a.obs["sample_id"].iat[0]) if "sample_id" in a.obs and a.n_obs else f"#{i + 1}", a)
         for i, a in enumerate(samples)]
    if not items:
        raise InputError("combine_samples", "no sample given.", "pass the patient's scDNA samples.")
    name0, first = items[0]
    for name, a in items[1:]:
        if a.n_vars != first.n_vars or not np.array_equal(a.var_names, first.var_names):
            only_a = a.var_names.difference(first.var_names)
            only_0 = first.var_names.difference(a.var_names)
            raise InputError(
                f"scDNA sample {name}",
                f"its {a.n_vars} bins differ from sample {name0}'s {first.n_vars} bins "
                f"({len(only_a)} only in {name}, e.g. {list(only_a[:2])}; {len(only_0)} only in {name0}, "
                f"e.g. {list(only_0[:2])}{'; same bins, other order' if not len(only_a) and not len(only_0) else ''}).",
                "bin all samples of a patient on one bin set (same bin size and reference) and filter "
                "them with the same filter_bins settings.")
    out = ad.concat([a for _, a in items], axis=0, join="inner", merge="first", uns_merge="first")
    if not out.obs_names.is_unique:
        raise InputError("combine_samples", "cell ids repeat across samples.",
                         "prefix cell ids with the sample id (read_scdna(..., sample_id=...)).")
    return out


def read_ratio_table(path, *, bins: pd.DataFrame | None = None, cells: pd.DataFrame | None = None,
                     sample_id: str | None = None) -> ad.AnnData:
    """Read per-cell copy-number ratios (bins x cells, e.g. CopyKit segment ratios) as cells x bins.

    The table is read with :func:`pinnacle.io.read_scdna`; its values must be ratios to the
    cell's mean (each cell's mean near 1), not read counts. They go to ``X`` and
    ``layers['ratio']``, ready for :func:`pinnacle.cnv.call_copy_number` without GC correction.

    Parameters
    ----------
    path
        Wide table: chrom, start, end, then one column per cell.
    bins
        Optional bin annotation (chrom, start, end, then e.g. gc_content, arm) in the same
        coordinates; its columns are joined to ``var`` by coordinates.
    cells
        Optional cell annotation with a ``cell`` column; joined to ``obs``.
    sample_id
        Prefix of the cell ids (``{sample_id}:{cell}``) and ``obs['sample_id']``.
    """
    from pinnacle.io import read_scdna

    a = read_scdna(path, sample_id=sample_id)
    means = np.asarray(a.X, dtype=np.float64).mean(axis=1)
    if a.uns["scdna"].get("integer_counts") or np.median(means) > 3 or np.median(means) < 0.3:
        raise InputError(str(path), f"values look like read counts, not ratios (median cell mean "
                         f"{np.median(means):.2f}).",
                         "read raw bin counts with pinnacle.io.read_scdna and use gc_correct; this reader "
                         "is for ratio tables whose cell means are ~1.")
    if bins is not None:
        b = bins.copy()
        b["chrom"] = _norm_chrom(b["chrom"])
        key = b["chrom"] + ":" + b["start"].astype(np.int64).astype(str) + "-" + b["end"].astype(np.int64).astype(str)
        b = b.set_index(key.to_numpy()).drop(columns=["chrom", "start", "end"])
        missing = a.var_names.difference(b.index)
        if len(missing):
            raise InputError("read_ratio_table [bins]", f"{len(missing)} bins of {path} are not in the bin "
                             f"annotation, e.g. {list(missing[:2])}.", "give the annotation of the same bins.")
        b = b.loc[a.var_names]
        if "gc_content" in b and "gc" not in a.var:
            b = b.rename(columns={"gc_content": "gc"})
        for c in b.columns:
            if c not in a.var:
                a.var[c] = b[c].to_numpy()
    if cells is not None:
        if "cell" not in cells:
            raise InputError("read_ratio_table [cells]", "cell annotation has no 'cell' column.",
                             "give a table with a 'cell' column naming the table's cell columns.")
        c = cells.set_index(cells["cell"].astype(str))
        ids = a.obs["barcode"] if "barcode" in a.obs else pd.Series(a.obs_names, index=a.obs_names)
        ids = ids.astype(str).to_numpy()
        for col in c.columns.drop("cell"):
            a.obs[col] = c[col].reindex(ids).to_numpy()
    a.layers["ratio"] = np.asarray(a.X, dtype=np.float32)
    a.uns["scdna"]["values"] = "ratio"
    return a
