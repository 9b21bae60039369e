"""Time and peak memory per rule from Snakemake's ``benchmark:`` files (``tools/bench.py``,
``make bench``). The simulated cohort objects benchmarks and tests start from are
:func:`pinnacle.truth_check.simulated_cohort_object` (they need the simulator and its truth).

Speed and memory are measured from real runs, never in timed unit tests.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def per_rule(bench_dir: str | Path, *, since: float = 0.0) -> pd.DataFrame:
    """Jobs, summed and slowest seconds and peak RSS per rule from a run's ``benchmark:`` files.

    Parameters
    ----------
    bench_dir
        The ``benchmarks/`` folder of a run (searched recursively for ``*.tsv``; the file stem
        is the rule).
    since
        Only files written after this POSIX time (a rerun's jobs alone).

    Returns
    -------
    ``rule``, ``jobs``, ``seconds`` (summed), ``slowest_job_s``, ``max_rss_mb``; slowest rule
    first.
    """
    rows = []
    for path in sorted(Path(bench_dir).rglob("*.tsv")):
        if path.stat().st_mtime < since:
            continue
        df = pd.read_csv(path, sep="\t")
        if df.empty or "s" not in df:
            continue
        rec = df.iloc[-1]
        rows.append({"rule": path.stem, "seconds": float(rec["s"]),
                     "max_rss_mb": float(rec.get("max_rss", float("nan")))})
    df = pd.DataFrame(rows, columns=["rule", "seconds", "max_rss_mb"])
    return (df.groupby("rule").agg(jobs=("seconds", "size"), seconds=("seconds", "sum"),
                                   slowest_job_s=("seconds", "max"), max_rss_mb=("max_rss_mb", "max"))
            .sort_values("seconds", ascending=False).reset_index())
