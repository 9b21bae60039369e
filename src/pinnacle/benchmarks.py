"""Collect Snakemake ``benchmark:`` files into one table of time and peak memory per job.

Usage: ``python -m pinnacle.benchmarks benchmarks/ results/benchmarks.tsv`` (``make bench``).
Speed and memory are measured here, from real runs, never in timed unit tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def collect(root: str | Path) -> pd.DataFrame:
    """One row per benchmark file: job (path below ``root``), seconds, peak RSS in MB.

    Parameters
    ----------
    root
        The ``benchmarks/`` folder of a run (searched recursively for ``*.tsv``).

    Returns
    -------
    ``job``, ``seconds``, ``max_rss_mb``, ``cpu_time``, slowest job first.
    """
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        df = pd.read_csv(path, sep="\t")
        if df.empty or "s" not in df:
            continue
        rec = df.iloc[-1]
        rows.append({"job": path.relative_to(root).with_suffix("").as_posix(), "seconds": float(rec["s"]),
                     "max_rss_mb": float(rec.get("max_rss", float("nan"))),
                     "cpu_time": float(rec.get("cpu_time", float("nan")))})
    table = pd.DataFrame(rows, columns=["job", "seconds", "max_rss_mb", "cpu_time"])
    return table.sort_values("seconds", ascending=False, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: write :func:`collect`'s table and print the slowest jobs.

    Parameters
    ----------
    argv
        ``[BENCHMARK_DIR, OUT.tsv]``; default ``sys.argv[1:]``.

    Returns
    -------
    The exit status (2 on a usage error).
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m pinnacle.benchmarks BENCHMARK_DIR OUT.tsv", file=sys.stderr)
        return 2
    table = collect(argv[0])
    Path(argv[1]).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(argv[1], sep="\t", index=False)
    print(table.head(20).to_string(index=False))
    print(f"total job seconds: {table['seconds'].sum():.0f}; peak RSS: {table['max_rss_mb'].max():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
