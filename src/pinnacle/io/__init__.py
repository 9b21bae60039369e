"""Readers for the files a trial site sends: per-sample scRNA (+ CITE-seq) counts, per-sample scDNA
bin counts and one cohort-wide proteomics table, each checked and returned as AnnData.

Counts come from Cell Ranger (10x HDF5 or mtx directory) or an ``.h5ad``; scDNA from wide
(bins x cells) or long (DLP-style) tables or an ``.h5ad``; proteomics from MaxQuant, DIA-NN,
Olink or a plain matrix. The 10x HDF5/mtx readers are written here with h5py/scipy (rather than
``scanpy.read_10x_*``) so every malformed file gets a message naming the file, the key and the
fix. The scDNA table readers and the MaxQuant ``proteinGroups.txt`` (flag filtering, quantity
column prefixes, R ``make.names`` variants), DIA-NN ``pg_matrix`` and Olink NPX parsers are
hand-written because no maintained Python library reads these formats into AnnData.
Bad input raises :class:`pinnacle.errors.InputError`, and so does every file that cannot be
opened, decompressed, decoded or parsed (``docs/input_errors.md`` lists the failures and messages).

Modules (behind this public namespace): ``_common`` (helpers the readers share), ``rna``
(scRNA + CITE-seq counts), ``dna`` (scDNA bin counts), ``proteomics`` (cohort proteomics tables).
"""

from pinnacle.io.dna import check_same_bins, read_scdna
from pinnacle.io.proteomics import PROTEOMICS_FORMATS, read_proteomics
from pinnacle.io.rna import ADT, GEX, detect_rna_format, read_rna, split_features

__all__ = [
    "ADT",
    "GEX",
    "PROTEOMICS_FORMATS",
    "check_same_bins",
    "detect_rna_format",
    "read_proteomics",
    "read_rna",
    "read_scdna",
    "split_features",
]
