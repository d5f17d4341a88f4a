"""Write a digit bank for `rekap synth --digits` from handwriting fonts (other writers than MNIST).

The model never trains on fonts; forms written with these digits test the pipeline on
handwriting it has not seen (does a misread still get flagged?). Each digit of each font is
rendered large, given a random slant, rotation, aspect and stroke weight, and stored the way
MNIST stores digits: ink 255 on 0, fitted into 20x20 keeping its aspect ratio and centred by
centre of mass in 28x28. Output: PREFIX-images-idx3-ubyte.gz and PREFIX-labels-idx1-ubyte.gz.

    training/.venv/bin/python training/make_font_digits.py --out /tmp/fonts/fonts \
        --glob '/usr/share/fonts/truetype/sjfonts/*.ttf' \
        --glob '/usr/share/fonts/truetype/fifthhorseman/*.ttf' \
        --glob '/usr/share/fonts/truetype/breip/*.ttf'
    rekap synth --digits /tmp/fonts/fonts-images-idx3-ubyte.gz --count 100 --seed 91 --out set91
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rekap_train.data import write_idx  # noqa: E402

#: Font size of the first rendering (px); the glyph is then fitted into MNIST's 20x20 box.
RENDER_SIZE = 96
#: MNIST geometry: the digit's bounding box fits 20x20 and its centre of mass sits at the
#: centre of the 28x28 image.
FIT, SIDE = 20, 28
#: Stroke weight: thin fonts shrunk to 20 px leave pale one-pixel strokes that a photo's
#: threshold erases (not how a pen writes), so each rendering takes the dilation whose ink area
#: (pixels above 128) comes closest to a target drawn from N(mean, sd) of MNIST's train split for
#: that digit (measured there: per digit 0-9), clipped to +-2 sd.
INK_MEAN = (136, 59, 117, 111, 95, 101, 108, 90, 118, 96)
INK_SD = (33, 18, 30, 30, 25, 29, 30, 24, 31, 26)
#: Square dilations tried at render size (px; 1 = the font's own stroke).
DILATIONS = (1, 3, 5, 7, 9, 11, 13)


def render(font_path: str, ch: str, rng) -> np.ndarray | None:
    font = ImageFont.truetype(font_path, RENDER_SIZE)
    base = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(base).text((50, 30), ch, fill=255, font=font)
    d = int(ch)
    target = INK_MEAN[d] + INK_SD[d] * float(np.clip(rng.normal(), -2.0, 2.0))
    geometry = rng.normal(size=3)
    best = None
    for k in DILATIONS:
        img = base if k == 1 else base.filter(ImageFilter.MaxFilter(k))
        out = fit_mnist(img, geometry)
        if out is None:
            continue
        miss = abs(float((out > 128).sum()) - target)
        if best is None or miss < best[0]:
            best = (miss, out)
    return None if best is None else best[1]


def fit_mnist(img: Image.Image, geometry: np.ndarray) -> np.ndarray | None:
    """Slant, rotate and stretch `img` by the standard-normal draws `geometry`, then store the
    glyph as MNIST does (20x20 fit, centre of mass at the centre of 28x28)."""
    # slant, rotation and aspect, as different writers would
    shear = 0.15 * geometry[0]
    angle = np.deg2rad(5.0 * geometry[1])
    sx = np.exp(0.1 * geometry[2])
    c, s = np.cos(angle), np.sin(angle)
    a = np.array([[c * sx, -s + shear], [s * sx, c]])
    inv = np.linalg.inv(a)
    cx = cy = 100.0
    off = np.array([cx, cy]) - inv @ np.array([cx, cy])
    img = img.transform(img.size, Image.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                        resample=Image.BILINEAR)
    arr = np.asarray(img).astype(np.float64)
    ys, xs = np.nonzero(arr > 30)
    if len(xs) == 0:
        return None
    crop = arr[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = crop.shape
    scale = FIT / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((nw, nh), Image.LANCZOS)).astype(np.float64)
    out = np.zeros((SIDE, SIDE))
    m = small.sum()
    if m <= 0:
        return None
    yy, xx = np.mgrid[0:nh, 0:nw]
    my, mx = (yy * small).sum() / m, (xx * small).sum() / m
    oy = int(np.clip(round(SIDE / 2 - 0.5 - my), 0, SIDE - nh))
    ox = int(np.clip(round(SIDE / 2 - 0.5 - mx), 0, SIDE - nw))
    out[oy: oy + nh, ox: ox + nw] = small
    return np.clip(out, 0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output prefix (PREFIX-images-idx3-ubyte.gz, ...)")
    ap.add_argument("--glob", action="append", required=True, metavar="PATTERN", help="font files (repeatable)")
    ap.add_argument("--per-digit", type=int, default=40, help="renderings of each digit per font")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    fonts = sorted({p for g in args.glob for p in glob.glob(g, recursive=True)})
    if not fonts:
        raise SystemExit("no font matched --glob")
    rng = np.random.default_rng(args.seed)
    images, labels = [], []
    for f in fonts:
        for d in range(10):
            for _ in range(args.per_digit):
                g = render(f, str(d), rng)
                if g is not None:
                    images.append(g)
                    labels.append(d)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_idx(args.out + "-images-idx3-ubyte.gz", np.stack(images))
    write_idx(args.out + "-labels-idx1-ubyte.gz", np.array(labels, np.uint8))
    counts = np.bincount(labels, minlength=10)
    print(f"{len(fonts)} fonts, {len(labels)} digits (per digit: {counts.tolist()}) -> {args.out}-*.gz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
