"""Adapter: integration (scVI / Harmony / none), neighbours, UMAP and Leiden on the cohort."""
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # line by line: `tail -f` shows progress

import logging  # noqa: E402

from pinnacle import rna_integrate as ri  # noqa: E402
from pinnacle import writers  # noqa: E402

logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
logging.getLogger("pinnacle").setLevel(logging.INFO)  # scVI's progress lines (pinnacle.progress)
cfg = snakemake.params.integration
adata, model = ri.integrate(ri.read_cohort(snakemake.input.h5ad), method=cfg["method"], compare=cfg["compare"],
                            batch_key=cfg["batch_key"], scvi_options=cfg["scvi"],
                            resolutions=cfg["leiden_resolutions"], n_neighbors=cfg["n_neighbors"],
                            random_state=snakemake.params.seed, n_threads=snakemake.threads,
                            unintegrated_cells=cfg["unintegrated_cells"])
model_dir = Path(snakemake.output.model)
model_dir.mkdir(parents=True, exist_ok=True)
if model is not None:
    model.save(str(model_dir), overwrite=True, save_anndata=False)
    print(f"scVI: {adata.uns['scvi']}", file=sys.stderr)
if cfg["method"] != "scvi":
    (model_dir / "README.txt").write_text(f"integration.method is {cfg['method']}: no scVI model is used.\n")
# lzf: an intermediate read only by the pipeline (annotated.h5ad, which users open, stays gzip)
writers.write_h5ad(adata, snakemake.output.h5ad, compression="lzf")
