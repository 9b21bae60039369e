"""One scDNA sample: reads per 1 Mb bin of normal cells and the sample's clones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._tables import CELL_TYPES
from ._util import _barcodes, _rng


def _simulate_dna(bins: pd.DataFrame, bin_arms: np.ndarray, design: dict, sample_id: str, *,
                  n_cells: int, enrichment: float, seed: int):
    sinfo = design["samples"][sample_id]
    pinfo = design["patients"][sinfo["patient_id"]]
    rng = _rng(seed, 20, sinfo["index"])
    mal_frac = min(0.9, enrichment * float(sinfo["pi"][list(CELL_TYPES).index("malignant")]))
    n_mal = round(n_cells * mal_frac)
    clones = pinfo["clones"]
    per_clone = rng.multinomial(n_mal, sinfo["clone_fr"])
    labels = np.array(["normal"] * (n_cells - n_mal)
                      + [c["name"] for c, k in zip(clones, per_clone) for _ in range(k)], dtype=object)
    rng.shuffle(labels)
    B = len(bins)
    chrom = bins["chrom"].to_numpy()
    base_cn = np.full(B, 2.0)
    if pinfo["sex"] == "male":
        base_cn[chrom == "chrX"] = 1.0
    profiles = {"normal": base_cn}
    for c in clones:
        cn = base_cn.copy()
        for arm, v in c["events"].items():
            cn[bin_arms == arm] = v
        profiles[c["name"]] = cn
    CN = np.vstack([profiles[lab] for lab in labels]) if n_cells else np.zeros((0, B))
    gc = bins["gc"].to_numpy() - 0.42
    a1 = rng.normal(0, 1.5, size=(n_cells, 1))
    a2 = rng.normal(-12, 4, size=(n_cells, 1))
    bias = np.exp(a1 * gc[None, :] + a2 * gc[None, :] ** 2)
    bias /= bias.mean(axis=1, keepdims=True)
    depth = np.exp(rng.normal(np.log(90), 0.3, size=(n_cells, 1)))
    alpha = rng.uniform(0.01, 0.04, size=(n_cells, 1))
    mu = depth * CN / 2.0 * bias
    mu = mu * rng.standard_gamma(1 / alpha, size=mu.shape) * alpha
    reads = rng.poisson(mu).astype(np.int64)
    bc = _barcodes(rng, n_cells)
    truth = pd.DataFrame({"cell_id": [f"{sample_id}:{b}" for b in bc], "sample_id": sample_id,
                          "clone": labels, "depth": np.round(depth.ravel(), 2)})
    return reads, bc, truth, mal_frac
