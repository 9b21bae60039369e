"""Adapter: integration (scVI / Harmony / none), neighbours, UMAP and Leiden on the cohort."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import anndata as ad  # noqa: E402

from pinnacle import rna_integrate as ri  # noqa: E402
from pinnacle import writers  # noqa: E402

cfg = snakemake.params.integration
adata, model = ri.integrate(ad.read_h5ad(snakemake.input.h5ad), method=cfg["method"], compare=cfg["compare"],
                            batch_key=cfg["batch_key"], scvi_options=cfg["scvi"],
                            resolutions=cfg["leiden_resolutions"], n_neighbors=cfg["n_neighbors"],
                            random_state=snakemake.params.seed, n_threads=snakemake.threads)
model_dir = Path(snakemake.output.model)
model_dir.mkdir(parents=True, exist_ok=True)
if model is not None:
    model.save(str(model_dir), overwrite=True, save_anndata=False)
    print(f"scVI: {adata.uns['scvi']}", file=sys.stderr)
if cfg["method"] != "scvi":
    (model_dir / "README.txt").write_text(f"integration.method is {cfg['method']}: no scVI model is used.\n")
writers.write_h5ad(adata, snakemake.output.h5ad, compression="gzip")
