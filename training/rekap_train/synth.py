"""Synthetic digit-box crops in "ink map" space (0 = paper, 1 = full ink).

Every sample is rendered at box-crop resolution (a box interior of 36-66 px high), degraded the
way a photographed form box looks after the Rust pipeline has removed the printed box line, and
then normalised with `preprocess.normalize` (rekap-mnist-v1), so training sees exactly what the
pipeline feeds the model.

Degradations (each applied with its own probability, see `DigitBoxSynth`):
  * geometry: scale (mark 40-98% of the box height), aspect, rotation, shear/slant, shift,
    elastic wobble, ink cut off at the box edge;
  * stroke: width (grey dilate/erode), soft/hard edges (contrast curve), ink gain;
  * box: partial thin box-line remnants at the edges, residue of the faint dotted "8" guide
    printed inside page-2 boxes, a neighbouring digit spilling in at the left/right edge;
  * paper: uneven low-level background tone, sensor noise, specks;
  * camera: blur, down/up-sampling, JPEG artefacts.
`X` samples are two crossing strokes (varied angle, length, curvature, thickness, crossing point);
`blank` samples are empty boxes with the same clutter (remnants, guide residue, specks, tone).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import BLANK_CLASS, X_CLASS
from .preprocess import normalize

#: cv2 drawing uses fixed-point coordinates with this many fractional bits (sub-pixel strokes).
SHIFT_BITS = 4
SHIFT = 1 << SHIFT_BITS


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * SHIFT)), int(round(y * SHIFT))


class DigitBoxSynth:
    """Renders degraded box crops. One instance per process; `rng` drives everything."""

    def __init__(self, rng: np.random.Generator, hard: float = 1.0):
        self.rng = rng
        #: multiplies the degradation probabilities (0 = clean placement only).
        self.hard = hard

    # ---------- helpers ----------
    def p(self, prob: float) -> bool:
        return self.rng.random() < prob * self.hard

    def box_size(self) -> tuple[int, int]:
        r = self.rng
        h = int(r.integers(36, 67))
        w = int(round(h * r.uniform(0.7, 1.25)))
        return h, w

    def stroke(self, img, pts, thick, val):
        pts = np.array([_pt(x, y) for x, y in pts], np.int32)
        cv2.polylines(img, [pts], False, float(val), max(1, int(round(thick))), cv2.LINE_AA, SHIFT_BITS)

    def curve(self, p0, p1, bend, n=12):
        """Quadratic Bezier from p0 to p1 whose control point is pushed sideways by `bend` px."""
        (x0, y0), (x1, y1) = p0, p1
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        dx, dy = x1 - x0, y1 - y0
        ln = math.hypot(dx, dy) + 1e-9
        cx, cy = mx - dy / ln * bend, my + dx / ln * bend
        t = np.linspace(0, 1, n)
        xs = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t**2 * x1
        ys = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t**2 * y1
        return list(zip(xs, ys))

    # ---------- marks ----------
    def place_glyph(self, glyph: np.ndarray, h: int, w: int) -> np.ndarray:
        """Warp a float glyph image (ink map, any size) into an h x w box."""
        r = self.rng
        ys, xs = np.nonzero(glyph > 0.2)
        if len(ys) == 0:
            return np.zeros((h, w), np.float32)
        sy, sx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
        sh = ys.max() - ys.min() + 1
        if r.random() < 0.15:
            frac = r.uniform(0.4, 0.6)  # small writers
        else:
            frac = r.uniform(0.6, 0.98)
        k = frac * h / sh
        ax = math.exp(r.normal(0, 0.12))
        rot = math.radians(r.normal(0, 6) * self.hard)
        shear = r.normal(0, 0.18) * self.hard
        shift_y = r.normal(0, 0.06) * h
        shift_x = r.normal(0, 0.08) * w
        if self.p(0.08):  # pushed against / over an edge
            shift_x += r.choice([-1, 1]) * r.uniform(0.1, 0.3) * w
        if self.p(0.05):
            shift_y += r.choice([-1, 1]) * r.uniform(0.05, 0.2) * h
        s = np.array([[k * ax, 0], [0, k]])
        sh_m = np.array([[1, shear], [0, 1]])
        c, si = math.cos(rot), math.sin(rot)
        rm = np.array([[c, -si], [si, c]])
        a = rm @ sh_m @ s
        t = np.array([w / 2 + shift_x, h / 2 + shift_y]) - a @ np.array([sx, sy])
        m = np.hstack([a, t[:, None]]).astype(np.float64)
        return cv2.warpAffine(glyph.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)

    def elastic(self, img: np.ndarray) -> np.ndarray:
        r = self.rng
        h, w = img.shape
        alpha = r.uniform(0.5, 2.0) * h / 28
        sigma = r.uniform(3.0, 5.0) * h / 28
        dx = cv2.GaussianBlur(r.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
        dy = cv2.GaussianBlur(r.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
        nx = max(np.abs(dx).max(), np.abs(dy).max(), 1e-6)
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        return cv2.remap(img, gx + dx / nx * alpha, gy + dy / nx * alpha, cv2.INTER_LINEAR, borderValue=0.0)

    def stroke_style(self, img: np.ndarray) -> np.ndarray:
        """Stroke width and edge softness of an upsampled glyph."""
        r = self.rng
        # contrast curve: low threshold -> thicker, hard edges; high -> thinner
        lo = r.uniform(0.0, 0.35)
        hi = lo + r.uniform(0.15, 0.6)
        img = np.clip((img - lo) / (hi - lo), 0, 1)
        u = r.random()
        if u < 0.2 * self.hard:
            k = int(r.integers(2, 4))
            img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        elif u < 0.35 * self.hard:
            er = cv2.erode(img, np.ones((2, 2), np.uint8))
            if (er >= 0.5).sum() > 0.5 * (img >= 0.5).sum():
                img = er
        return img

    def x_mark(self, h: int, w: int) -> np.ndarray:
        r = self.rng
        img = np.zeros((h, w), np.float32)
        size = r.uniform(0.4, 0.95) if r.random() < 0.85 else r.uniform(0.28, 0.4)
        cx = w / 2 + r.normal(0, 0.08) * w
        cy = h / 2 + r.normal(0, 0.08) * h
        thick = min(r.uniform(0.04, 0.11), 0.2 * size) * h
        val = r.uniform(0.75, 1.0)
        base = r.uniform(-0.25, 0.25)  # overall tilt of the X
        for sign in (1, -1):
            ang = sign * math.radians(r.uniform(28, 68)) + base
            # stroke length: the X spans `size` of the box height (longer if nearly horizontal)
            length = size * h * r.uniform(0.8, 1.2) / max(abs(math.sin(ang)), 0.55)
            # invariant: both strokes extend past the crossing point on both sides (>= 25% each),
            # so the mark always is two crossing strokes (never a V, L or arrow)
            a0 = length * r.uniform(0.25, 0.75)
            a1 = length - a0
            p0 = (cx - math.cos(ang) * a0, cy - math.sin(ang) * a0)
            p1 = (cx + math.cos(ang) * a1, cy + math.sin(ang) * a1)
            bend = r.normal(0, 0.05) * h
            self.stroke(img, self.curve(p0, p1, bend), thick * r.uniform(0.8, 1.2), val)
        return img

    # ---------- clutter ----------
    def remnants(self, img: np.ndarray) -> None:
        """Partial thin box-line remnants along 1-4 edges (what line removal leaves)."""
        r = self.rng
        h, w = img.shape
        for edge in r.permutation(4)[: int(r.integers(1, 5))]:
            t = r.uniform(0.6, 2.0)
            val = r.uniform(0.35, 1.0)
            inset = r.uniform(-0.5, 3.0)
            n = w if edge < 2 else h
            a = r.uniform(0, 0.6) * n if r.random() < 0.6 else 0.0
            b = n - (r.uniform(0, 0.6) * n if r.random() < 0.6 else 0.0)
            if b - a < 3:
                continue
            tilt = r.normal(0, 0.8)
            if edge == 0:
                pts = [(a, inset), (b, inset + tilt)]
            elif edge == 1:
                pts = [(a, h - 1 - inset), (b, h - 1 - inset + tilt)]
            elif edge == 2:
                pts = [(inset, a), (inset + tilt, b)]
            else:
                pts = [(w - 1 - inset, a), (w - 1 - inset + tilt, b)]
            line = np.zeros_like(img)
            self.stroke(line, pts, t, val)
            if r.random() < 0.4:  # broken remnant
                gaps = r.random(n) < 0.15
                gaps = np.convolve(gaps, np.ones(4), "same") > 0
                if edge < 2:
                    line[:, gaps] = 0
                else:
                    line[gaps, :] = 0
            np.maximum(img, line, out=img)

    def guide8(self, img: np.ndarray) -> None:
        """Residue of the faint dotted 8 printed inside page-2 boxes."""
        r = self.rng
        h, w = img.shape
        cx = w / 2 + r.normal(0, 0.03) * w
        ry = h * r.uniform(0.17, 0.23)
        rx = w * r.uniform(0.2, 0.3)
        keep = r.uniform(0.2, 1.0)
        level = r.uniform(0.1, 0.55)
        dot = r.uniform(0.8, 2.2)
        n = int(r.integers(10, 20))
        for cyf, sc in ((0.5 - 0.21, 0.9), (0.5 + 0.21, 1.0)):
            for t in np.linspace(0, 2 * math.pi, n, endpoint=False):
                if r.random() > keep:
                    continue
                x = cx + rx * sc * math.cos(t)
                y = h * cyf + ry * sc * math.sin(t)
                v = float(np.clip(level + r.normal(0, 0.12), 0, 1))
                cv2.circle(img, _pt(x, y), int(dot * SHIFT), v, -1, cv2.LINE_AA, SHIFT_BITS)

    def spill(self, img: np.ndarray, glyph_pool) -> None:
        """A neighbouring mark entering from the left or right edge."""
        r = self.rng
        h, w = img.shape
        if glyph_pool is not None and r.random() < 0.6:
            g = glyph_pool[int(r.integers(len(glyph_pool)))].astype(np.float32) / 255.0
            other = self.place_glyph(g, h, w)
            dx = int(r.uniform(0.6, 0.92) * w) * (1 if r.random() < 0.5 else -1)
            m = np.float64([[1, 0, dx], [0, 1, r.normal(0, 0.05) * h]])
            other = cv2.warpAffine(other, m, (w, h), borderValue=0.0)
            np.maximum(img, np.clip(other * 1.6, 0, 1), out=img)
        else:
            x = r.uniform(0, 0.15) * w if r.random() < 0.5 else w - 1 - r.uniform(0, 0.15) * w
            y0, y1 = sorted(r.uniform(0, h, 2))
            self.stroke(img, self.curve((x, y0), (x + r.normal(0, 3), y1), r.normal(0, 4)), r.uniform(1.5, 4), r.uniform(0.6, 1))

    def specks(self, img: np.ndarray) -> None:
        r = self.rng
        h, w = img.shape
        for _ in range(int(r.integers(1, 5))):
            cv2.circle(img, _pt(r.uniform(0, w), r.uniform(0, h)), int(r.uniform(0.5, 2.0) * SHIFT), float(r.uniform(0.3, 1.0)), -1, cv2.LINE_AA, SHIFT_BITS)

    def paper(self, img: np.ndarray) -> np.ndarray:
        """Uneven background tone (ink-map terms: low-level offset) and noise."""
        r = self.rng
        h, w = img.shape
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = r.uniform(0, 2 * math.pi)
        ramp = (gx * math.cos(ang) + gy * math.sin(ang)) / max(h, w)
        tone = r.uniform(0, 0.12) + r.uniform(0, 0.12) * ramp
        noise = r.normal(0, r.uniform(0.0, 0.05), (h, w)).astype(np.float32)
        return np.maximum(img, np.clip(tone + noise, 0, 0.35))

    def camera(self, img: np.ndarray) -> np.ndarray:
        r = self.rng
        h, w = img.shape
        if self.p(0.3):
            f = r.uniform(0.4, 0.85)
            small = cv2.resize(img, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.p(0.35):
            img = cv2.GaussianBlur(img, (0, 0), r.uniform(0.4, 1.3))
        if self.p(0.3):
            u8 = np.clip((1 - img) * 255 + 0.5, 0, 255).astype(np.uint8)  # as a photo: dark ink
            ok, enc = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(25, 90))])
            if ok:
                img = 1 - cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        return np.clip(img, 0, 1)

    def clutter(self, img: np.ndarray, glyph_pool, blank: bool) -> np.ndarray:
        boost = 1.6 if blank else 1.0
        if self.p(0.35 * boost):
            self.remnants(img)
        if self.p(0.2 * boost):
            self.guide8(img)
        if self.p(0.12 * boost):
            self.spill(img, glyph_pool)
        if self.p(0.12 * boost):
            self.specks(img)
        if self.p(0.45):
            img = self.paper(img)
        return self.camera(img)

    # ---------- samples ----------
    def flag_one(self, g: np.ndarray) -> np.ndarray:
        """Give an MNIST "1" (mostly a plain bar) the top flag, and sometimes the foot, that many
        writers outside the US (Indonesian officers included) put on a 1."""
        r = self.rng
        ys, xs = np.nonzero(g > 0.5)
        if len(ys) < 5:
            return g
        g = g.copy()
        top, bot = ys.min(), ys.max()
        tx = xs[ys <= top + 1].mean()
        bx = xs[ys >= bot - 1].mean()
        thick = max(1, int(round(r.uniform(1.5, 2.8))))
        ln = (bot - top) * r.uniform(0.15, 0.4)
        ang = math.radians(r.uniform(30, 65))  # below the horizontal, pointing left (a 7 bar is ~flat)
        p1 = (tx - ln * math.cos(ang), top + 0.5 + ln * math.sin(ang))
        self.stroke(g, [(tx, top + 0.5), p1], thick, 1.0)
        if r.random() < 0.3:
            half = (bot - top) * r.uniform(0.15, 0.3)
            self.stroke(g, [(bx - half, bot), (bx + half, bot + r.normal(0, 0.5))], thick, 1.0)
        return g

    def digit(self, mnist_u8: np.ndarray, glyph_pool=None, label: int = -1) -> np.ndarray:
        """Ink map of a box holding one MNIST digit (uint8 28x28)."""
        r = self.rng
        h, w = self.box_size()
        g = mnist_u8.astype(np.float32) / 255.0
        g = cv2.copyMakeBorder(g, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=0.0)
        if label == 1 and r.random() < FLAG_ONE_PROB:
            g = self.flag_one(g)
        if self.p(0.5):
            g = self.elastic(g)
        img = self.place_glyph(g, h, w)
        img = self.stroke_style(img) * r.uniform(0.75, 1.0) ** self.hard
        if img.max() < 0.6:
            img = img / max(img.max(), 1e-6) * 0.8
        return self.clutter(img, glyph_pool, blank=False)

    def direct_digit(self, mnist_u8: np.ndarray) -> np.ndarray:
        """The 28x28 MNIST image itself as the ink map (H = 28, as the t10k test set is read),
        with the classic small distortions: a DIRECT_PLAIN share unchanged, the rest a random
        rotation/shear/scale about the centre and, half of the time, an elastic wobble of at
        most 0.5-2 px. No box, no clutter: this keeps the plain-MNIST view (which box rendering
        at 36-66 px resamples and blurs) in the training mix."""
        r = self.rng
        g = mnist_u8.astype(np.float32) / 255.0
        if r.random() < DIRECT_PLAIN:
            return g
        rot = math.radians(float(np.clip(r.normal(0, 7), -15, 15)))
        shear = float(np.clip(r.normal(0, 0.15), -0.35, 0.35))
        sx, sy = math.exp(r.normal(0, 0.08)), math.exp(r.normal(0, 0.08))
        c, si = math.cos(rot), math.sin(rot)
        a = np.array([[c, -si], [si, c]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
        ctr = np.array([13.5, 13.5])
        m = np.hstack([a, (ctr - a @ ctr)[:, None]])
        g = cv2.warpAffine(g, m, (28, 28), flags=cv2.INTER_LINEAR, borderValue=0.0)
        if r.random() < 0.5:
            g = self.elastic(g)
        return np.clip(g, 0, 1)

    def x(self, glyph_pool=None) -> np.ndarray:
        h, w = self.box_size()
        img = self.x_mark(h, w)
        if self.p(0.3):
            img = self.elastic(img)
        return self.clutter(img, glyph_pool, blank=False)

    def blank(self, glyph_pool=None) -> np.ndarray:
        """An empty box with clutter.

        Clutter whose ink (>= 0.5) forms one tall thin mark (a long vertical remnant, a spilled
        stroke) normalises to the same picture as a "1": such blanks are mostly redrawn
        (kept with probability BAR_BLANK_KEEP), so the model does not learn to call thin 1s blank.
        Telling such a bar from a 1 needs where it sits in the box, which the 28x28 tensor no
        longer shows: the Rust side should check edge-hugging ink itself.
        """
        for _ in range(20):
            h, w = self.box_size()
            img = self.clutter(np.zeros((h, w), np.float32), glyph_pool, blank=True)
            if not is_bar_like(img) or self.rng.random() < BAR_BLANK_KEEP:
                break
        return img


#: Share of training "1"s given a flag (and sometimes a foot), see DigitBoxSynth.flag_one.
FLAG_ONE_PROB = 0.4
#: Share of the direct (plain 28x28) digit samples left undistorted, see DigitBoxSynth.direct_digit.
DIRECT_PLAIN = 0.25
#: Share of bar-like blank samples kept (see DigitBoxSynth.blank).
BAR_BLANK_KEEP = 0.05
#: A mark is "bar-like" when its ink is taller than this share of the box...
BAR_MIN_HEIGHT = 0.45
#: ...and narrower than this share of its own height.
BAR_MAX_ASPECT = 0.4


def is_bar_like(img: np.ndarray) -> bool:
    ys, xs = np.nonzero(img >= 0.5)
    if len(ys) == 0:
        return False
    bh = ys.max() - ys.min() + 1
    bw = xs.max() - xs.min() + 1
    return bh > BAR_MIN_HEIGHT * img.shape[0] and bw < BAR_MAX_ASPECT * bh


def make_batch(seed: int, mnist_x: np.ndarray, mnist_y: np.ndarray, n_x: int, n_blank: int,
               hard: float = 1.0, clean_frac: float = 0.15, glyph_pool=None, n_direct: int = 0):
    """Normalised tensors for every MNIST digit given (augmented) plus n_x X and n_blank blanks.

    A `clean_frac` share of digits is placed with `hard=0` (no degradations) to keep the clean
    MNIST look in the mix. `n_direct` more samples are digits drawn at random from `mnist_x`
    and normalised straight from their 28x28 image (`DigitBoxSynth.direct_digit`).
    Returns (x [N,1,28,28] float32, y [N] int32), shuffled.
    """
    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    pool = mnist_x if glyph_pool is None else glyph_pool
    syn = DigitBoxSynth(rng, hard)
    clean = DigitBoxSynth(rng, 0.0)
    n = len(mnist_x) + n_x + n_blank + n_direct
    xs = np.zeros((n, 1, 28, 28), np.float32)
    ys = np.zeros(n, np.int32)
    k = 0
    for img, lab in zip(mnist_x, mnist_y):
        s = clean if rng.random() < clean_frac else syn
        for _ in range(5):  # a degradation may erase the digit: redraw
            t = normalize(s.digit(img, pool, int(lab)))
            if t.sum() > 3.0:
                break
        xs[k], ys[k] = t, lab
        k += 1
    for _ in range(n_x):
        for _ in range(5):
            t = normalize(syn.x(pool))
            if t.sum() > 3.0:
                break
        xs[k], ys[k] = t, X_CLASS
        k += 1
    for _ in range(n_blank):
        xs[k], ys[k] = normalize(syn.blank(pool)), BLANK_CLASS
        k += 1
    for i in (rng.integers(0, len(mnist_x), n_direct) if n_direct else ()):
        xs[k], ys[k] = normalize(syn.direct_digit(mnist_x[i])), mnist_y[i]
        k += 1
    perm = rng.permutation(n)
    return xs[perm], ys[perm]


def make_batch_args(args):
    """`make_batch(*args)`, for multiprocessing pools."""
    return make_batch(*args)
