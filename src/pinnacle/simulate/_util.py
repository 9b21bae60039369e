"""Small helpers shared by the simulator's modules: seeded random streams, argument checks,
file hashes and 10x-style barcodes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pinnacle.errors import InputError


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, keys)]))


def _check(cond: bool, where: str, problem: str, fix: str) -> None:
    if not cond:
        raise InputError(where, problem, fix)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct random 16-mer 10x-style barcodes with suffix "-1", sorted."""
    if n == 0:
        return np.array([], dtype=object)
    draws = np.unique(rng.integers(0, 4 ** 16, size=int(n * 1.05) + 16, dtype=np.uint64))
    while len(draws) < n:  # practically never
        draws = np.unique(np.concatenate([draws, rng.integers(0, 4 ** 16, size=n, dtype=np.uint64)]))
    draws = np.sort(rng.choice(draws, size=n, replace=False))
    shifts = np.arange(30, -1, -2, dtype=np.uint64)
    digits = ((draws[:, None] >> shifts[None, :]) & np.uint64(3)).astype(np.int64)
    letters = np.array([b"A", b"C", b"G", b"T"], dtype="S1")[digits]
    seqs = letters.view("S16").ravel()
    return np.array([s.decode() + "-1" for s in seqs], dtype=object)
