"""The scRNA-seq cohort: per-sample files joined into one AnnData.

At trial scale (~106 samples, up to 1M cells) the full-gene cohort does not fit in memory, so
the join is done on disk with ``anndata.experimental.concat_on_disk``, which streams the sparse
matrices. This function therefore takes paths, the one exception to the AnnData-in/AnnData-out
rule of the library.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd
from anndata.experimental import concat_on_disk

from pinnacle.errors import InputError

log = logging.getLogger(__name__)


def merge_samples_on_disk(paths: Sequence[str | Path], out: str | Path, *,
                          join: str = "inner") -> pd.DataFrame:
    """Concatenate per-sample h5ad files (cells ``{sample}:{barcode}``) into ``out``.

    Genes are joined with ``join`` (``inner``: genes measured in every sample). Returns the
    cohort's obs table. The output is written to a temporary name and renamed at the end, so an
    interrupted merge never leaves a file that looks complete.
    """
    if not paths:
        raise InputError("sample sheet", "no sample has an 'rna' file.", "give at least one scRNA-seq matrix.")
    var_sets = []
    n_obs = 0
    obs_names: list[str] = []
    for p in paths:
        backed = ad.read_h5ad(p, backed="r")
        var_sets.append(set(backed.var_names))
        obs_names.extend(backed.obs_names)
        n_obs += backed.n_obs
        backed.file.close()
    if len(set(obs_names)) != len(obs_names):
        raise InputError(", ".join(map(str, paths)), "cell ids repeat across samples.",
                         "cell ids must be '{sample_id}:{barcode}' with unique sample ids.")
    common = set.intersection(*var_sets)
    union = set.union(*var_sets)
    if not common:
        raise InputError(", ".join(map(str, paths)), "the samples share no gene.",
                         "quantify all samples against the same reference.")
    if len(common) < len(union):
        log.warning("%d of %d genes are missing from at least one sample and are dropped (join=%s)",
                    len(union) - len(common), len(union), join)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    concat_on_disk([str(p) for p in paths], str(tmp), join=join, merge="same")
    os.replace(tmp, out)
    obs = ad.read_h5ad(out, backed="r").obs.copy()
    return obs
