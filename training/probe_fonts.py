"""Out-of-distribution probe: read digits rendered from the machine's fonts as box crops.

Not training data (the model never sees fonts): a rough check that the model generalises beyond
MNIST's writers. Each digit of each font is drawn into a 36-66 px box with random size, shift and
slant, light degradations (the synth clutter at half rate), normalised with rekap-mnist-v1 and
classified by the ONNX model with the card's temperature.

    training/.venv/bin/python training/probe_fonts.py --model models/digits.onnx

`--glob PATTERN` (repeatable) picks the fonts instead of every font of the machine, e.g. the
handwriting fonts of Debian's fonts-sjfonts, fonts-dkg-handwriting and fonts-breip:

    training/.venv/bin/python training/probe_fonts.py --per-font 30 \
        --glob '/usr/share/fonts/truetype/sjfonts/*.ttf' \
        --glob '/usr/share/fonts/truetype/fifthhorseman/*.ttf' \
        --glob '/usr/share/fonts/truetype/breip/*.ttf'
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rekap_train import CLASSES  # noqa: E402
from rekap_train.calibrate import softmax  # noqa: E402
from rekap_train.preprocess import normalize  # noqa: E402
from rekap_train.synth import DigitBoxSynth  # noqa: E402

FONT_GLOBS = ["/usr/share/fonts/truetype/**/*.ttf", "/usr/share/fonts/opentype/**/*.otf"]


def render(font_path: str, ch: str, rng) -> np.ndarray | None:
    font = ImageFont.truetype(font_path, 64)
    img = Image.new("L", (120, 120), 0)
    ImageDraw.Draw(img).text((20, 10), ch, fill=255, font=font)
    a = np.asarray(img).astype(np.float32) / 255
    if a.max() < 0.5:
        return None
    return a


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/digits.onnx")
    ap.add_argument("--per-font", type=int, default=3, help="renderings of each digit per font")
    ap.add_argument("--glob", action="append", default=[], metavar="PATTERN",
                    help="font files to probe (repeatable; default: every TrueType/OpenType font)")
    args = ap.parse_args()
    import onnxruntime as ort

    card = json.load(open(os.path.splitext(args.model)[0] + ".json"))
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    fonts = sorted({p for g in (args.glob or FONT_GLOBS) for p in glob.glob(g, recursive=True)})
    fonts = [f for f in fonts if "Fallback" not in f and "Symbol" not in os.path.basename(f) and "Dingbat" not in f]
    rng = np.random.default_rng(4)
    syn = DigitBoxSynth(rng, hard=0.5)
    xs, ys, font_of = [], [], []
    for f in fonts:
        for d in range(10):
            g = render(f, str(d), rng)
            if g is None:
                continue
            for _ in range(args.per_font):
                h, w = syn.box_size()
                ink = syn.stroke_style(syn.place_glyph(g, h, w))
                ink = syn.clutter(ink, None, blank=False)
                xs.append(normalize(ink))
                ys.append(d)
                font_of.append(f)
    x = np.stack(xs)
    y = np.array(ys)
    p = softmax(sess.run(["logits"], {"input": x})[0], card["temperature"])
    pred = p.argmax(1)
    print(f"{len(fonts)} fonts, {len(y)} crops: accuracy {np.mean(pred == y):.4f}")
    conf = p.max(1)
    for thr in (0.9, 0.99):
        sel = conf >= thr
        print(f"  confidence >= {thr}: {sel.mean():.3f} of crops, accuracy {np.mean(pred[sel] == y[sel]):.4f}")
    font_of = np.array(font_of)
    for f in fonts:
        sel = font_of == f
        if sel.any():
            sure_wrong = int(((conf >= 0.99) & (pred != y) & sel).sum())
            print(f"  {os.path.basename(f):28s} {np.mean(pred[sel] == y[sel]):.3f} of {int(sel.sum())}, "
                  f"wrong at p >= 0.99: {sure_wrong}")
    for d in range(10):
        sel = y == d
        wrong = np.bincount(pred[sel], minlength=12)
        top = [(CLASSES[k], int(wrong[k])) for k in np.argsort(-wrong) if k != d and wrong[k]][:3]
        print(f"  {d}: {np.mean(pred[sel] == d):.3f}  confused with {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
