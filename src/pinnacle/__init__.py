"""pinnacle-sc: single-cell multi-omics for the PINNACLE immunotherapy trial.

One module per pipeline stage; functions take and return AnnData / DataFrames and never
read paths from the workflow. The workflow adapters in ``workflow/scripts`` are the only
callers that touch Snakemake.
"""

__version__ = "0.1.0"
