"""Adapter: write the demo cohort (pinnacle.simulate) where the sample sheet expects it."""
import logging
import sys

sys.stderr = open(snakemake.log[0], "w")
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

from pinnacle.simulate import simulate_cohort  # noqa: E402

p = snakemake.params
summary = simulate_cohort(p.outdir, n_patients=p.n_patients, n_responders=p.n_responders,
                          cells_per_sample=p.cells_per_sample,
                          dna_cells_per_sample=p.dna_cells_per_sample, doublet_rate=p.doublet_rate,
                          seed=p.seed, interferon_twin=p.interferon_twin,
                          normal_epithelial=p.normal_epithelial, ebv=p.ebv)
logging.info("demo cohort written: %s", summary)
