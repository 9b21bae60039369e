"""Adapter: integration (scVI / Harmony / none), neighbours, UMAP and Leiden on the cohort."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402

from pinnacle import rna_integrate as ri  # noqa: E402

cfg, seed = snakemake.params.integration, snakemake.params.seed
adata = ad.read_h5ad(snakemake.input.h5ad)
batch = cfg["batch_key"]
model_dir = Path(snakemake.output.model)
model_dir.mkdir(parents=True, exist_ok=True)
methods = [cfg["method"]] + [m for m in cfg["compare"] if m != cfg["method"]]
keys = {"none": "X_pca", "scvi": "X_scVI", "harmony": "X_harmony"}
for method in methods:
    if method == "scvi":
        s = cfg["scvi"]
        adata, model = ri.run_scvi(adata, batch_key=batch, n_latent=s["n_latent"], n_layers=s["n_layers"],
                                   max_epochs=s["max_epochs"], epoch_cap=s["epoch_cap"],
                                   batch_size=s["batch_size"], min_steps=s["min_steps"], random_state=seed,
                                   n_threads=snakemake.threads)
        model.save(str(model_dir), overwrite=True, save_anndata=False)
        print(f"scVI: {adata.uns['scvi']}", file=sys.stderr)
    elif method == "harmony":
        ri.run_harmony(adata, batch_key=batch, random_state=seed)
if cfg["method"] != "scvi":
    (model_dir / "README.txt").write_text(f"integration.method is {cfg['method']}: no scVI model.\n")
# The unintegrated view, for the before/after figure.
ri.cluster(adata, use_rep="X_pca", resolutions=(), n_neighbors=cfg["n_neighbors"], random_state=seed)
adata.obsm["X_umap_pca"] = adata.obsm["X_umap"].copy()
ri.cluster(adata, use_rep=keys[cfg["method"]], resolutions=cfg["leiden_resolutions"],
           n_neighbors=cfg["n_neighbors"], random_state=seed)
adata.uns["integration"] = {"method": cfg["method"], "batch_key": batch, "embedding": keys[cfg["method"]],
                            "compared": methods}
adata.write_h5ad(snakemake.output.h5ad, compression="gzip")
