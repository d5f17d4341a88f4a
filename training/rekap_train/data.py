"""MNIST IDX loading and the fixed train/validation split."""

from __future__ import annotations

import gzip
import os

import numpy as np

#: Images of the MNIST train split held out for validation and temperature calibration.
VAL_SIZE = 6000
#: Seed of the permutation that picks the held-out images (fixed: the split is part of the recipe).
SPLIT_SEED = 12345


def read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def write_idx(path: str, arr: np.ndarray) -> None:
    """Write `arr` as an unsigned-byte IDX file (gzip), the layout `read_idx` reads."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def load_split(mnist_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """split: 'train' or 't10k'. Returns uint8 images [N,28,28] and int labels [N]."""
    x = read_idx(os.path.join(mnist_dir, f"{split}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(mnist_dir, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def train_val(mnist_dir: str):
    """The MNIST train split divided into (train, held-out) parts; t10k is never touched here."""
    x, y = load_split(mnist_dir, "train")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    val, tr = perm[:VAL_SIZE], perm[VAL_SIZE:]
    return (x[tr], y[tr]), (x[val], y[val])
