"""`make bench`: the pipeline's RNA stages against a bare scanpy script at several cohort sizes.

For each size: simulate a cohort (``pinnacle-simulate``; 10 patients x 2 timepoints, cells split
evenly), run QC .. annotation through Snakemake as real data (sheets) with Harmony, then again
with scVI (only integration onward reruns), and ``tools/baseline_scanpy.py`` on the same files.
Time and peak memory per rule come from the rules' ``benchmark:`` files; the whole-run wall time
from this script. Writes ``docs/benchmarks.md`` (tables, ratios, log-log slope per rule) and the
raw tables next to it in the work folder.

Usage: ``python tools/bench.py --sizes 20000 100000 300000 [--workdir bench] [--out docs/benchmarks.md]``
(1,000,000 is an opt-in size: about an hour of simulation alone on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pinnacle.benchmarks import per_rule
from pinnacle.config import merge as merge_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = ["results/rna/qc_summary.tsv", "results/cohort/annotated.h5ad", "results/figures/umap_integration.png",
           "results/tables/integration_metrics.tsv"]
PATIENTS = 10  # default; --patients 53 gives the trial's shape (106 samples of ~9,400 cells at 1M)




def _config(run: Path, cohort: Path, *, method: str, scvi_epochs: int) -> Path:
    """config/config.yaml for the simulated files given as real data: no truth, no proteomics,
    the expected doublet rate given as a user must."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = merge_config(cfg, {
        "demo": {"enabled": False}, "samples": str(cohort / "samples.tsv"), "patients": str(cohort / "patients.tsv"),
        "truth": "", "proteomics": {"path": ""}, "qc": {"doublets": {"expected_rate": 0.05}},
        "integration": {"method": method, "compare": [], "scvi": {"max_epochs": scvi_epochs}},
    })
    path = run / f"config_{method}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _simulate(cohort: Path, cells: int, seed: int, patients: int = PATIENTS) -> None:
    if (cohort / "samples.tsv").exists():
        return
    per_sample = cells // (2 * patients)
    subprocess.run([str(BIN / "pinnacle-simulate"), "--out", str(cohort), "--patients", str(patients),
                    "--cells", str(per_sample), "--empty", str(per_sample), "--dna-cells", "0",
                    "--seed", str(seed), "--quiet"], check=True)
    samples = pd.read_csv(cohort / "samples.tsv", sep="\t")  # RNA only: the bench is about cells
    samples.drop(columns=[c for c in ("dna",) if c in samples]).to_csv(cohort / "samples.tsv", sep="\t", index=False)


def _snakemake(run: Path, config: Path, cores: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, "--snakefile", str(REPO / "Snakefile"), "--directory",
                    str(run), "--configfile", str(config), "--cores", str(cores), "--quiet", "rules"],
                   check=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    return time.perf_counter() - start


def slopes(tables: dict[int, pd.DataFrame], column: str) -> pd.Series:
    """Least-squares slope of log(column) on log(cells) per rule (1: linear in cells)."""
    long = pd.concat([t.assign(cells=n) for n, t in tables.items()])
    out = {}
    for rule, g in long.groupby("rule"):
        g = g[g[column] > 0]
        if g["cells"].nunique() >= 2:
            out[rule] = float(np.polyfit(np.log(g["cells"]), np.log(g[column]), 1)[0])
    return pd.Series(out, name=f"slope_{column}")


def _md(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int)
                                        else str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    parser.add_argument("--methods", nargs="+", default=["harmony", "scvi"], choices=["harmony", "scvi"])
    parser.add_argument("--scvi-epochs", type=int, default=10)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default="bench")
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--patients", type=int, default=PATIENTS,
                        help="patients simulated (2 samples each); cells are split evenly over the samples")
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    summary, tables = [], {m: {} for m in args.methods}
    for cells in args.sizes:
        name = f"cells_{cells}" if args.patients == PATIENTS else f"cells_{cells}_patients_{args.patients}"
        cohort, run = work / name / "cohort", work / name / "run"
        run.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        _simulate(cohort, cells, args.seed, args.patients)
        sim_s = time.perf_counter() - start
        for i, method in enumerate(args.methods):
            mark = time.time()
            wall = _snakemake(run, _config(run, cohort, method=method, scvi_epochs=args.scvi_epochs), args.cores)
            # a later method reruns integration onward only: count the jobs of its own run alone
            table = per_rule(run / "benchmarks", since=mark if i else 0.0)
            table.to_csv(run / f"per_rule_{method}.tsv", sep="\t", index=False)
            tables[method][cells] = table
            summary.append({"cells": cells, "run": f"pipeline ({method})", "wall_s": wall,
                            "peak_rss_mb": float(table["max_rss_mb"].max()),
                            "largest_job": table.loc[table["max_rss_mb"].idxmax(), "rule"]})
        out = subprocess.run([sys.executable, str(REPO / "tools" / "baseline_scanpy.py"), str(cohort / "samples.tsv")],
                             check=True, capture_output=True, text=True)
        base = json.loads(out.stdout.strip().splitlines()[-1])
        summary.append({"cells": cells, "run": "bare scanpy", "wall_s": base["seconds"],
                        "peak_rss_mb": base["max_rss_mb"], "largest_job": "-"})
        print(f"{cells} cells: simulated in {sim_s:.0f} s; {summary[-len(args.methods) - 1:]}", flush=True)
    summary = pd.DataFrame(summary)
    write_report(summary, tables, Path(args.out), args)
    return 0


def write_report(summary: pd.DataFrame, tables: dict, out: Path, args) -> None:
    """docs/benchmarks.md from the summary and per-rule tables."""
    lines = ["# Benchmarks", "",
             f"One `make bench` run (`tools/bench.py --sizes {' '.join(map(str, args.sizes))}`), "
             f"{time.strftime('%Y-%m-%d')}, on {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
             f"`--cores {args.cores}`. Simulated cohorts of {args.patients} patients x 2 timepoints "
             "(`pinnacle-simulate`), RNA only, given to the pipeline as real data through the sheets. "
             "The pipeline runs QC (ambient, Scrublet, figures), HVGs, the cohort object, integration, "
             "annotation and the integration figure and metrics; the bare script "
             "(`tools/baseline_scanpy.py`) does QC metrics, MAD filters, Scrublet, HVGs, PCA, Harmony, "
             "neighbours, UMAP and Leiden. Seconds and peak RSS per rule are from the rules' `benchmark:` "
             f"files; scVI with {args.scvi_epochs} epochs reruns only integration onward, so its rows "
             "count those jobs and its wall time is that rerun's.", "",
             "## Whole runs", "", _md(summary.assign(wall_s=summary["wall_s"].round(1))), ""]
    harmony = summary[summary["run"] == "pipeline (harmony)"].set_index("cells")
    bare = summary[summary["run"] == "bare scanpy"].set_index("cells")
    if len(harmony):
        ratio = pd.DataFrame({"cells": harmony.index, "time ratio (pipeline / bare)":
                              (harmony["wall_s"] / bare["wall_s"]).round(2).to_numpy(),
                              "peak memory ratio": (harmony["peak_rss_mb"] / bare["peak_rss_mb"]).round(2).to_numpy()})
        lines += ["## Pipeline (Harmony) / bare scanpy", "", _md(ratio), ""]
    for method, by_size in tables.items():
        for cells, table in by_size.items():
            lines += [f"## Per rule: {method}, {cells:,} cells", "", _md(table), ""]
        if len(by_size) >= 2:
            sl = pd.concat([slopes(by_size, "seconds"), slopes(by_size, "max_rss_mb")], axis=1).round(2)
            lines += [f"## Log-log slope per rule ({method}): time and peak memory against cells", "",
                      _md(sl.reset_index(names="rule")), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
