"""Command line: ``python -m pinnacle.simulate`` and the ``pinnacle-simulate`` script."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pinnacle.errors import InputError

from ._cohort import simulate_cohort
from ._tables import STATES


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write the cohort and print :func:`simulate_cohort`'s summary as JSON.

    Parameters
    ----------
    argv
        Arguments (``--help`` lists them); default ``sys.argv[1:]``.

    Returns
    -------
    The exit status: 0, or 2 for a bad argument (the message on stderr).
    """
    ap = argparse.ArgumentParser(prog="python -m pinnacle.simulate",
                                 description="Write the simulated PINNACLE demo cohort (scRNA+CITE-seq, "
                                             "scDNA, proteomics, truth).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    ap.add_argument("--responders", type=int, default=None, help="responders (default patients // 2)")
    ap.add_argument("--cells", type=int, default=1000, help="cell-containing droplets per sample")
    ap.add_argument("--empty", type=int, default=None, help="empty droplets per sample (default 3 x cells)")
    ap.add_argument("--dna-cells", type=int, default=150, help="scDNA cells per sample (0: none)")
    ap.add_argument("--doublet-rate", type=float, default=0.05)
    ap.add_argument("--low-quality-rate", type=float, default=0.05)
    ap.add_argument("--batch-strength", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-response-effects", action="store_true",
                    help="a null cohort: plant no response effect (states stay: a state-only cohort)")
    ap.add_argument("--states", default=",".join(STATES),
                    help=f"comma-separated state programmes to switch on (default {','.join(STATES)}; "
                         "'none': none)")
    ap.add_argument("--interferon-twin", action="store_true",
                    help="also write each resection sample with the interferon state off "
                         "(truth/interferon_off/{sample}/filtered_feature_bc_matrix.h5)")
    ap.add_argument("--panel-genes", default=None,
                    help="keep only N genes (the most detected) or the genes listed in a file (one per line)")
    ap.add_argument("--no-mito-genes", action="store_true", help="drop the MT- genes from the matrices")
    ap.add_argument("--normal-epithelial", type=float, default=0.0, metavar="FRACTION",
                    help="share of the epithelial cells that are diploid normal epithelium (default 0)")
    ap.add_argument("--ebv", action="store_true",
                    help="malignant cells express Epstein-Barr virus transcripts (RPMS1, LMP2A, ... on chrEBV)")
    ap.add_argument("--gene-table", default=None, help="gene table (default resources/genes_grch38.tsv)")
    ap.add_argument("--bins", default=None, help="bin table (default resources/bins_1mb_grch38.tsv.gz)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    states = () if a.states.strip().lower() in ("", "none") else tuple(x.strip() for x in a.states.split(","))
    panel = a.panel_genes
    if panel is not None:
        if panel.strip().isdigit():
            panel = int(panel)
        elif Path(panel).is_file():
            panel = [x.strip() for x in Path(panel).read_text().splitlines() if x.strip()]
        else:
            print(f"error: --panel-genes {panel!r}: neither a number nor a file", file=sys.stderr)
            return 2
    try:
        res = simulate_cohort(a.out, n_patients=a.patients, n_responders=a.responders,
                              cells_per_sample=a.cells, empty_droplets_per_sample=a.empty,
                              dna_cells_per_sample=a.dna_cells, doublet_rate=a.doublet_rate,
                              low_quality_rate=a.low_quality_rate, batch_strength=a.batch_strength,
                              seed=a.seed, response_effects=not a.no_response_effects,
                              states=states, interferon_twin=a.interferon_twin, panel_genes=panel,
                              mito_genes=not a.no_mito_genes, normal_epithelial=a.normal_epithelial,
                              ebv=a.ebv, gene_table=a.gene_table, bins=a.bins,
                              verbose=not a.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0
