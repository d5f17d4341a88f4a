"""Write the training part of the MNIST train split (54,000 images, without the 6,000 that
train.py holds out) as IDX files, for `rekap synth --digits`: pipeline crops made from it never
show the held-out images, so held-out MNIST accuracy stays a clean measure.

    training/.venv/bin/python training/write_train_part.py --mnist ../shared/data/mnist \
        --out training/data/mnist-trainpart
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rekap_train.data import train_val, write_idx  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default="../shared/data/mnist")
    ap.add_argument("--out", required=True, help="prefix: PREFIX-images-idx3-ubyte.gz, PREFIX-labels-idx1-ubyte.gz")
    args = ap.parse_args()
    (xt, yt), (xv, _) = train_val(args.mnist)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_idx(args.out + "-images-idx3-ubyte.gz", xt)
    write_idx(args.out + "-labels-idx1-ubyte.gz", yt.astype(np.uint8))
    print(f"{len(xt)} training-part images ({len(xv)} held out) -> {args.out}-*.gz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
