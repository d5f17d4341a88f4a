"""Exact numpy mirror of the `rekap-mnist-v1` digit normalisation.

The contract is docs/interfaces.md, section "Digit normalisation"; the Rust reference is
`segment::normalize`. Every step below is numbered like the contract. All arithmetic is f64;
the result is emitted as f32 with layout [1, 28, 28] (ink = 1, white on black, like MNIST/255).

Invariant: `normalize` is a pure function of the ink map; training data goes through it so the
model sees exactly what the Rust pipeline feeds it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Side of the square output canvas (MNIST size).
CANVAS = 28
#: Side of the box the mark is scaled into (MNIST convention: 20x20 inside 28x28).
TARGET = 20.0
#: Ink values at or above this count as "ink" for the bounding box.
INK_THRESHOLD = 0.5
#: Marks smaller than this fraction of the box height are not blown up to TARGET.
MIN_SCALE_FRACTION_OF_HEIGHT = 0.5


def round_half_up(x: float) -> int:
    """Rounding used throughout the contract: floor(x + 0.5)."""
    return int(math.floor(x + 0.5))


@functools.lru_cache(maxsize=4096)
def resample_matrix(out_n: int, in_n: int) -> np.ndarray:
    """Area-resample matrix R (out_n x in_n), step 4 of the contract.

    R[i][j] = |[i*in/out, (i+1)*in/out) ∩ [j, j+1)| / (in/out). Each row sums to 1.
    """
    step = in_n / out_n
    r = np.zeros((out_n, in_n), dtype=np.float64)
    for i in range(out_n):
        lo = i * in_n / out_n
        hi = (i + 1) * in_n / out_n
        j0 = int(math.floor(lo))
        j1 = min(in_n - 1, int(math.ceil(hi)) - 1)
        for j in range(j0, j1 + 1):
            overlap = min(hi, j + 1.0) - max(lo, float(j))
            if overlap > 0.0:
                r[i, j] = overlap / step
    r.setflags(write=False)  # cached: shared between calls
    return r


def normalize_details(ink: np.ndarray) -> tuple[np.ndarray, dict]:
    """`normalize` plus the intermediate values (for tests and parity fixtures).

    The dict holds `com_margin`: the distance of `14 - c + 0.5` (for cy and cx) from the nearest
    integer. When it is ~0 the placement is a rounding tie and an implementation that sums in a
    different order could land one pixel off; parity fixtures avoid such inputs.
    """
    ink = np.asarray(ink, dtype=np.float64)
    if ink.ndim != 2:
        raise ValueError(f"ink map must be 2-D, got shape {ink.shape}")
    h, w = ink.shape
    out = np.zeros((1, CANVAS, CANVAS), dtype=np.float32)
    # 1. mask
    mask = ink >= INK_THRESHOLD
    if not mask.any():
        return out, {"empty": True, "com_margin": 1.0}
    # 2. bounding box of the mask, crop of the real values
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1])
    x0, x1 = int(cols[0]), int(cols[-1])
    bh, bw = y1 - y0 + 1, x1 - x0 + 1
    crop = ink[y0 : y1 + 1, x0 : x1 + 1]
    # 3. scale and patch size
    s = TARGET / max(float(bh), float(bw), MIN_SCALE_FRACTION_OF_HEIGHT * h)
    oh = max(1, round_half_up(bh * s))
    ow = max(1, round_half_up(bw * s))
    # 4. area resample
    ry = resample_matrix(oh, bh)
    rx = resample_matrix(ow, bw)
    patch = ry @ crop @ rx.T
    # 5. centre of mass with pixel-centre coordinates, placement
    total = float(patch.sum())
    if total == 0.0:
        cy, cx = oh / 2.0, ow / 2.0
    else:
        cy = float((patch.sum(axis=1) * (np.arange(oh) + 0.5)).sum()) / total
        cx = float((patch.sum(axis=0) * (np.arange(ow) + 0.5)).sum()) / total
    ty = CANVAS / 2.0 - cy + 0.5
    tx = CANVAS / 2.0 - cx + 0.5
    top = min(max(int(math.floor(ty)), 0), CANVAS - oh)
    left = min(max(int(math.floor(tx)), 0), CANVAS - ow)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float64)
    canvas[top : top + oh, left : left + ow] = patch
    # 6. clip, emit f32
    out[0] = np.clip(canvas, 0.0, 1.0).astype(np.float32)
    # A 1-pixel-long axis has a centre of exactly 0.5 in any summation order: never ambiguous.
    margin_y = abs(ty - round(ty)) if oh > 1 else 1.0
    margin_x = abs(tx - round(tx)) if ow > 1 else 1.0
    margin = min(margin_y, margin_x)
    return out, {
        "empty": False,
        "bbox": (y0, y1, x0, x1),
        "scale": s,
        "patch": (oh, ow),
        "com": (cy, cx),
        "top_left": (top, left),
        "com_margin": margin,
    }


def normalize(ink: np.ndarray) -> np.ndarray:
    """Normalise one ink map (H x W, values in [0, 1]) to a float32 [1, 28, 28] tensor."""
    return normalize_details(ink)[0]


def normalize_batch(inks) -> np.ndarray:
    """Normalise a sequence of ink maps into a float32 [N, 1, 28, 28] array."""
    out = np.zeros((len(inks), 1, CANVAS, CANVAS), dtype=np.float32)
    for k, ink in enumerate(inks):
        out[k] = normalize(ink)
    return out
