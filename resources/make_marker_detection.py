#!/usr/bin/env python
"""Measure marker leakage and the interferon response in real PBMC, for the simulator to draw from.

Developer script, run by hand (never by the pipeline); its two small outputs are committed and
the simulator reads them from ``resources/``, so the pipeline runs without the shared data:

- ``resources/marker_detection_pbmc.tsv``: for every marker gene of ``resources/markers.yaml``
  (positive markers and negatives, lineage and subtype sets), every gene of the simulator's
  cell-type programmes and of its state programmes (activation, stress) that the real matrix
  holds, per published fine cell type of ``symphony_pbmc_3batch`` (three public 10x PBMC sets,
  3' v1, 3' v2 and 5' chemistry; Korsunsky et al. Nat Methods 2019; labels of Kang et al.,
  Nat Commun 2021): ``n_cells``, ``n_detected`` (cells with count > 0), ``share_detected``,
  ``mean_counts`` (UMIs per cell), ``mean_cp10k`` (counts per 10,000 UMIs of the cell's whole
  library), ``median_library`` (median UMIs per cell of the type, whole library). Columns
  ``in_markers_yaml`` and ``in_simulator`` say where the gene was listed.
- ``resources/interferon_response_pbmc.tsv``: for the interferon-stimulated genes listed in
  ``ISGS`` that the panel of ``kang_ifnb_pbmc_donor101`` holds (real PBMC of one donor, control
  vs 6 h interferon-beta; Kang et al., Nat Biotechnol 36:89, 2018; the muscat example subset),
  per author cell type: cells, share detected and mean CP10k in control and stimulated cells,
  and the fold change stim / ctrl with a pseudocount of half a UMI over the type's control cells
  (in CP10k), so that genes absent from control cells get a finite fold change.

Counts: ``kang`` holds integer UMIs. ``symphony`` holds log(CP10k + 1) of the whole library; the
exact UMIs are recovered as expm1(value) x nUMI / 1e4 (integers to within 3e-12; PROVENANCE.md).

Usage::

    python resources/make_marker_detection.py [--data /work/shared/data] [--out resources]

Deterministic: no randomness; rows sorted; floats written with 6 significant digits.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from pinnacle import simulate  # noqa: E402

#: interferon-stimulated genes measured in Kang's data (those its 1,267-gene panel holds are kept)
ISGS = ["ISG15", "IFI6", "MX1", "MX2", "IFIT1", "IFIT2", "IFIT3", "IFI44L", "ISG20", "IFITM3",
        "LY6E", "OAS1", "RSAD2", "XAF1", "AIM2", "IDO1", "CXCL10", "CXCL9", "CXCL11", "GBP1", "GBP2",
        "GBP3", "GBP4", "GBP5", "STAT1", "IRF1", "IRF7", "HLA-A", "HLA-B", "HLA-C", "B2M", "TAP1",
        "PSMB9", "CD274"]
_GENE_RE = re.compile(r"^[A-Z0-9][A-Za-z0-9.\-]*$")


def yaml_genes(path: Path) -> list[str]:
    """Every gene named in a marker YAML: each list of symbols under any key (markers, negative,
    lineage or subtype lists alike); ``source`` texts are skipped."""
    found: list[str] = []

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list) and key != "source":
            if node and all(isinstance(x, str) and _GENE_RE.match(x) for x in node):
                found.extend(node)
            else:
                for x in node:
                    walk(x, key)

    walk(yaml.safe_load(path.read_text()))
    return list(dict.fromkeys(found))


def symphony_counts(folder: Path) -> tuple[sp.csr_matrix, list[str], pd.DataFrame]:
    """Cells x genes integer UMIs of the Symphony PBMC set, its genes and its cell table."""
    lognorm = scipy.io.mmread(folder / "lognorm_genes_x_cells.mtx.gz").T.tocsr()
    genes = pd.read_csv(folder / "genes.tsv.gz", sep="\t")["gene"].astype(str).tolist()
    cells = pd.read_csv(folder / "cells.tsv.gz", sep="\t")
    numi = np.repeat(cells["nUMI"].to_numpy(dtype=float), np.diff(lognorm.indptr))
    raw = np.expm1(lognorm.data) * numi / 1e4
    dev = np.abs(raw - np.rint(raw)).max() if raw.size else 0.0
    if dev > 1e-6:
        raise SystemExit(f"{folder}: expm1(value) x nUMI / 1e4 is not an integer (off by {dev}).")
    counts = lognorm.copy()
    counts.data = np.rint(raw)
    return counts, genes, cells


def marker_table(folder: Path, markers_yaml: Path) -> pd.DataFrame:
    counts, genes, cells = symphony_counts(folder)
    in_yaml = yaml_genes(markers_yaml)
    in_sim = list(dict.fromkeys(
        [g for gs in simulate.MARKER_PROGRAMMES.values() for g in gs]
        + list(simulate.ACTIVATION_PROGRAMME) + list(simulate.STRESS_PROGRAMME)))
    wanted = [g for g in dict.fromkeys(in_yaml + in_sim) if g in genes]
    col = {g: i for i, g in enumerate(genes)}
    lib = cells["nUMI"].to_numpy(dtype=float)
    rows = []
    for t in sorted(cells["cell_type"].unique()):
        m = (cells["cell_type"] == t).to_numpy()
        sub = counts[m][:, [col[g] for g in wanted]].toarray()
        cp10k = sub / lib[m, None] * 1e4
        for j, g in enumerate(wanted):
            rows.append(dict(gene=g, published_type=t, n_cells=int(m.sum()),
                             n_detected=int((sub[:, j] > 0).sum()),
                             share_detected=float((sub[:, j] > 0).mean()),
                             mean_counts=float(sub[:, j].mean()), mean_cp10k=float(cp10k[:, j].mean()),
                             median_library=float(np.median(lib[m])),
                             in_markers_yaml=g in in_yaml, in_simulator=g in in_sim))
    return pd.DataFrame(rows).sort_values(["gene", "published_type"]).reset_index(drop=True)


def interferon_table(folder: Path) -> pd.DataFrame:
    X = scipy.io.mmread(folder / "counts_genes_x_cells.mtx.gz").T.tocsr()
    genes = pd.read_csv(folder / "genes.tsv.gz", sep="\t")
    cells = pd.read_csv(folder / "cells.tsv.gz", sep="\t")
    sym = genes["symbol"].astype(str).tolist()
    keep = [g for g in ISGS if g in sym]
    cols = [sym.index(g) for g in keep]
    lib = np.asarray(X.sum(axis=1)).ravel().astype(float)
    rows = []
    for t in sorted(cells["cell_type"].unique()):
        stats = {}
        for grp in ("ctrl", "stim"):
            m = ((cells["cell_type"] == t) & (cells["group_id"] == grp)).to_numpy()
            sub = X[m][:, cols].toarray().astype(float)
            stats[grp] = dict(n=int(m.sum()), share=(sub > 0).mean(axis=0),
                              cp10k=(sub / lib[m, None] * 1e4).mean(axis=0), lib=lib[m].sum())
        pc = 0.5 * 1e4 / stats["ctrl"]["lib"]  # half a UMI over the type's control cells
        for j, g in enumerate(keep):
            c, s = stats["ctrl"]["cp10k"][j], stats["stim"]["cp10k"][j]
            fc = (s + pc) / (c + pc)
            rows.append(dict(gene=g, cell_type=t, n_ctrl=stats["ctrl"]["n"], n_stim=stats["stim"]["n"],
                             share_ctrl=float(stats["ctrl"]["share"][j]), share_stim=float(stats["stim"]["share"][j]),
                             mean_cp10k_ctrl=float(c), mean_cp10k_stim=float(s), pseudocount_cp10k=float(pc),
                             fold_change=float(fc), log2fc=float(np.log2(fc))))
    return pd.DataFrame(rows).sort_values(["gene", "cell_type"]).reset_index(drop=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"),
                    help="folder holding symphony_pbmc_3batch/ and kang_ifnb_pbmc_donor101/")
    ap.add_argument("--out", default=str(HERE), help="output folder (default: resources/)")
    a = ap.parse_args(argv)
    data, out = Path(a.data), Path(a.out)
    for sub in ("symphony_pbmc_3batch", "kang_ifnb_pbmc_donor101"):
        if not (data / sub).is_dir():
            raise SystemExit(f"{data / sub} not found: pass --data (the shared data folder).")
    mk = marker_table(data / "symphony_pbmc_3batch", HERE / "markers.yaml")
    ifn = interferon_table(data / "kang_ifnb_pbmc_donor101")
    for df, name in ((mk, "marker_detection_pbmc.tsv"), (ifn, "interferon_response_pbmc.tsv")):
        df.to_csv(out / name, sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    print(f"marker_detection_pbmc.tsv: {mk['gene'].nunique()} genes x {mk['published_type'].nunique()} "
          f"published types; interferon_response_pbmc.tsv: {ifn['gene'].nunique()} genes x "
          f"{ifn['cell_type'].nunique()} author types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
