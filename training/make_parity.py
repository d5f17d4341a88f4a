"""Write the Rust/Python normalisation parity fixtures to testdata/parity/.

Each fixture is an ink map stored as an 8-bit grayscale PNG (pixel = round(ink * 255)); the
expected tensor is `rekap_train.preprocess.normalize(png / 255)`, 784 floats row-major.
The Rust test compares `segment::normalize` on the same u8/255 values within 1e-5.

Usage: python3 training/make_parity.py [--out testdata/parity]
Deterministic: fixed drawings and a fixed RNG seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rekap_train.preprocess import normalize_details  # noqa: E402

#: Fixtures whose centre-of-mass placement is this close to a rounding tie are rejected, so
#: a different (valid) summation order in Rust cannot move the patch by a pixel.
MIN_COM_MARGIN = 1e-6

AA = cv2.LINE_AA


def canvas(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


def fixtures() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240214)
    f: dict[str, np.ndarray] = {}

    f["empty_40x30.png"] = canvas(40, 30)

    a = canvas(64, 64)
    a[30, 41] = 255
    a[10, 10] = 90  # below threshold: ignored by the mask but not by the crop
    f["speck_64x64.png"] = a

    a = canvas(36, 30)
    a[5:9, 4:20] = 127  # 127/255 < 0.5: not ink
    a[20:24, 10:13] = 128  # 128/255 >= 0.5: ink
    a[22, 14] = 127  # next to the ink, outside its bbox
    a[20, 10] = 250  # breaks the symmetry (a symmetric patch is a placement rounding tie)
    f["threshold_edge_36x30.png"] = a

    a = canvas(48, 40)
    a[:] = 100  # faint everywhere, nothing reaches 0.5
    f["faint_only_48x40.png"] = a

    a = canvas(52, 44)
    cv2.polylines(a, [np.array([[9, 10], [35, 11], [18, 44]], np.int32)], False, 255, 3, AA)
    cv2.line(a, (14, 27), (30, 26), 230, 2, AA)
    f["seven_52x44.png"] = a

    a = canvas(64, 64)
    cv2.ellipse(a, (31, 33), (13, 21), 8, 0, 360, 255, 4, AA)
    f["zero_64x64.png"] = a

    a = canvas(50, 40)
    cv2.line(a, (0, 0), (3, 49), 255, 3, AA)  # touches top, left and bottom border
    cv2.line(a, (3, 0), (12, 8), 200, 2, AA)
    f["one_touching_border_50x40.png"] = a

    a = canvas(17, 90)
    cv2.line(a, (4, 1), (85, 15), 255, 2, AA)
    cv2.line(a, (6, 15), (83, 2), 255, 2, AA)
    f["wide_x_17x90.png"] = a

    a = canvas(90, 17)
    cv2.line(a, (8, 6), (9, 83), 255, 3, AA)
    f["tall_one_90x17.png"] = a

    a = canvas(56, 48)
    cv2.ellipse(a, (24, 18), (10, 9), 0, 180, 450, 255, 3, AA)
    cv2.ellipse(a, (24, 37), (11, 10), 0, 270, 540, 255, 3, AA)
    a[:, 0:2] = np.maximum(a[:, 0:2], 180)  # box-line remnant on the left edge
    a[54:56, 10:40] = np.maximum(a[54:56, 10:40], 150)  # partial remnant at the bottom
    f["three_remnants_56x48.png"] = a

    a = canvas(120, 100)
    cv2.circle(a, (50, 35), 20, 255, 7, AA)
    cv2.circle(a, (52, 82), 25, 255, 7, AA)
    f["eight_large_120x100.png"] = a

    a = canvas(8, 6)
    a[3:5, 2:4] = 255
    a[4, 4] = 140
    f["tiny_8x6.png"] = a

    a = (rng.random((60, 46)) * 110).astype(np.uint8)  # low-level background noise < 0.5
    cv2.polylines(a, [np.array([[28, 8], [10, 36], [36, 36]], np.int32)], False, 255, 3, AA)
    cv2.line(a, (28, 8), (29, 54), 255, 3, AA)
    f["four_noisy_60x46.png"] = a

    a = canvas(58, 46)
    for t in np.linspace(0, 2 * np.pi, 15, endpoint=False):  # dotted guide "8" residue
        for cy, r in ((18, 9), (39, 11)):
            y, x = int(cy + r * np.sin(t)), int(23 + r * np.cos(t))
            a[y : y + 2, x : x + 2] = 70 + int(rng.integers(0, 90))
    cv2.ellipse(a, (22, 20), (10, 9), 0, 160, 360, 255, 3, AA)
    cv2.line(a, (31, 22), (10, 48), 255, 3, AA)
    cv2.line(a, (10, 48), (36, 47), 255, 3, AA)
    f["two_guide_58x46.png"] = a

    a = canvas(60, 60)
    cv2.line(a, (22, 30), (36, 31), 255, 3, AA)  # short dash: smaller than half the box height
    f["dash_small_60x60.png"] = a

    a = canvas(50, 40)
    cv2.ellipse(a, (18, 25), (9, 16), 0, 0, 360, 255, 3, AA)
    cv2.ellipse(a, (44, 20), (8, 12), 0, 90, 270, 255, 3, AA)  # neighbour spilling in at right
    f["spill_50x40.png"] = a

    a = np.full((30, 30), 255, dtype=np.uint8)
    f["full_30x30.png"] = a

    a = rng.integers(0, 256, (33, 29)).astype(np.uint8)
    f["random_33x29.png"] = a
    return f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="testdata/parity")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    expected = []
    for name, img in fixtures().items():
        Image.fromarray(img, mode="L").save(os.path.join(args.out, name))
        back = np.asarray(Image.open(os.path.join(args.out, name)))
        assert back.dtype == np.uint8 and np.array_equal(back, img), name
        tensor, info = normalize_details(back.astype(np.float64) / 255.0)
        if info["com_margin"] < MIN_COM_MARGIN:
            raise SystemExit(f"{name}: placement is a rounding tie ({info}); change the drawing")
        expected.append({"file": name, "tensor": [float(v) for v in tensor.reshape(-1)]})
        print(f"{name:34s} {img.shape} sum={tensor.sum():8.3f} {info.get('top_left', '-')}")
    with open(os.path.join(args.out, "expected.json"), "w") as fh:
        json.dump(expected, fh)
        fh.write("\n")
    print(f"wrote {len(expected)} fixtures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
