"""Time scVI training per epoch on a simulated cohort, on whatever accelerator is visible.

Used to record the GPU path of the integration stage (docs/gpu.md) and the CPU baseline of the
same data. Run from the repository root:

    python tools/scvi_benchmark.py --cells 100000 --epochs 20 --out scvi_benchmark.json

It simulates a cohort (pinnacle.simulate), builds the cohort object exactly as the pipeline
does (per-sample Seurat v3 statistics, HVGs, the cohort on the HVGs, normalise), trains
pinnacle.rna_integrate.run_scvi with accelerator="auto" and writes the device, epochs, total
and per-epoch seconds to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000, help="total cells (12 samples)")
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--n-top-genes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="scvi_benchmark.json")
    args = ap.parse_args()

    import torch

    from pinnacle import rna_integrate
    from pinnacle.truth_check import simulated_cohort_object

    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        adata, _ = simulated_cohort_object(tmp, n_patients=args.patients,
                                           cells_per_sample=args.cells // (2 * args.patients),
                                           n_top_genes=args.n_top_genes, seed=args.seed)
        timings["simulate_and_prepare_s"] = time.time() - t0
    t0 = time.time()
    adata, _ = rna_integrate.run_scvi(adata, batch_key="sample_id", max_epochs=args.epochs,
                                      batch_size=args.batch_size, random_state=args.seed)
    train = time.time() - t0
    result = {
        "cells": int(adata.n_obs), "genes": int(adata.n_vars), "epochs": args.epochs,
        "batch_size": args.batch_size, "train_s": round(train, 1),
        "s_per_epoch": round(train / args.epochs, 2), "device": adata.uns["scvi"]["device"],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": platform.python_version(),
        **{k: round(v, 1) for k, v in timings.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
