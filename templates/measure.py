#!/usr/bin/env python3
"""Measure the geometry of Model C.HASIL-PPWP (2024) from the official PDF into the rekap template.

Usage (from the repository root):

    python3 templates/measure.py [--pdf ../shared/forms/C.HASIL-PPWP.pdf] \
        [--out templates/c-hasil-ppwp-2024.toml] [--dpi 300] [--renders DIR]

Needs poppler-utils (`pdftocairo`, or `pdftoppm` with --renderer pdftoppm), python3 with numpy
and opencv-python-headless (cv2 >= 4.7, for the AprilTag cross-check). The PDF is rendered with
`pdftocairo -r DPI -png` into a temporary directory (or into --renders, which is reused if the
PNGs are already there); nothing is written into the repository except the --out TOML.
pdftocairo is the default because pdftoppm snaps thin strokes to the pixel grid (stroke
adjustment), moving box lines by up to half a pixel; the two renders give geometry that differs
by at most 0.08 mm at 300 dpi.

What it does (everything is detected in the render, nothing is typed in by hand except the labels
and the expected layout, which the script asserts):
* registration marks: filled black squares (4-connected dark components) near the page corners,
  paired into marks; `center` = the corner the two squares share;
* the AprilTag: the large dark component at the top right; its border edge is refined to
  sub-pixel precision, the 6x6 data modules are sampled at module centres, the 8x8 border ring is
  checked to be all black and the bits are decoded with OpenCV's tag36h10 dictionary to confirm
  the id printed beside the tag;
* heavy digit boxes: white 4-connected regions that are squares of 10-25 mm (page 1-3) surrounded
  by a dark line; each inside edge is refined with the area method (sum of the white fraction of
  the pixels across the edge), the line width by the dark fraction across the line;
* tally grids and the "JUMLAH TIAP BARIS" column: projection profiles along scanlines through the
  grid, dark runs classified as heavy (black) or light (grey) lines;
* bubbles: dark ring components below each vote box, least-squares circle fit to the ring pixels.

The TOML is rewritten from the top down to the marker line
`# ---- rules (hand-written; measure.py keeps everything below this line) ----`; everything from
that line on (the rules) is kept as it is in the existing --out file.

Coordinates: millimetres, origin at the top-left of the upright page; pixel i covers
[i, i+1) px, so a position p px is p * 25.4 / dpi mm.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

RULES_MARKER = "# ---- rules (hand-written; measure.py keeps everything below this line) ----"

# Grey level below which a pixel counts as ink when segmenting (black print is ~27, the grey
# tally lines ~201, the dotted 8 guides ~200 but only in small dots).
DARK_THRESHOLD = 128
# Grey level below which a profile sample belongs to a (possibly light grey) line.
LINE_THRESHOLD = 245
# A run whose darkest sample is below this is a heavy (black) line, else a light (grey) one.
HEAVY_MAX = 100
PAPER = 255.0

TAG_IDS = {1: 101, 2: 102, 3: 103}


class Page:
    def __init__(self, gray: np.ndarray, dpi: float):
        self.g = gray.astype(np.float64)
        self.dpi = dpi
        self.s = dpi / 25.4  # px per mm

    def mm(self, px: float) -> float:
        return px / self.s

    def px(self, mm: float) -> int:
        return int(round(mm * self.s))


def r2(v: float) -> float:
    return round(float(v), 2)


# ---------------------------------------------------------------- edge refinement


def inside_edge(profile: np.ndarray, start: int, step: int, ink: float) -> float:
    """Walk from `start` (a paper pixel inside a box) in direction `step` (+1/-1) until the first
    pixel fully inked, summing the paper fraction of each pixel passed: returns the edge position
    in px (pixel-edge coordinates)."""
    i = start
    acc = 0.0
    while 0 <= i < len(profile):
        w = np.clip((profile[i] - ink) / (PAPER - ink), 0.0, 1.0)
        if w <= 0.02:
            break
        acc += w
        i += step
    # start pixel's near edge: for step +1 it is `start`, for -1 it is `start + 1`.
    return start + acc if step > 0 else start + 1 - acc


def dark_width(profile: np.ndarray, start: int, step: int, ink: float) -> float:
    """From the first inked pixel at/after `start` in direction `step`, sum the ink fraction until
    paper again: the line width in px."""
    i = start
    while 0 <= i < len(profile) and (profile[i] - ink) / (PAPER - ink) > 0.98:
        i += step
    acc = 0.0
    while 0 <= i < len(profile):
        d = np.clip((PAPER - profile[i]) / (PAPER - ink), 0.0, 1.0)
        if d <= 0.02 and acc > 0:
            break
        acc += d
        i += step
    return acc


def refine_box(pg: Page, x0: int, y0: int, x1: int, y1: int):
    """Refine a white box interior found as pixel bbox [x0,x1) x [y0,y1). Returns
    ([x, y, w, h] mm of the inside edge, mean line width mm)."""
    g = pg.g
    ink = 27.0
    mx0, mx1 = x0 + (x1 - x0) // 4, x0 + 3 * (x1 - x0) // 4
    my0, my1 = y0 + (y1 - y0) // 4, y0 + 3 * (y1 - y0) // 4
    hprof = g[my0:my1, :].mean(axis=0)  # along x
    vprof = g[:, mx0:mx1].mean(axis=1)  # along y
    ink = float(min(hprof[x0 - 8 : x0].min(), hprof[x1 : x1 + 8].min()))
    # start a few pixels inside the white region (clear of any printed guide, which lies
    # >= 2 mm inside the line) and walk outwards across the edge
    k = 3
    left = inside_edge(hprof, x0 + k, -1, ink)
    right = inside_edge(hprof, x1 - 1 - k, +1, ink)
    top = inside_edge(vprof, y0 + k, -1, ink)
    bottom = inside_edge(vprof, y1 - 1 - k, +1, ink)
    widths = [
        dark_width(hprof, x0 - 1, -1, ink),
        dark_width(hprof, x1, +1, ink),
        dark_width(vprof, y0 - 1, -1, ink),
        dark_width(vprof, y1, +1, ink),
    ]
    rect = [pg.mm(left), pg.mm(top), pg.mm(right - left), pg.mm(bottom - top)]
    return rect, pg.mm(float(np.median(widths)))


# ---------------------------------------------------------------- line profiles


def line_runs(profile: np.ndarray, offset: int = 0):
    """Dark runs in a profile: list of dicts with start/end (px, pixel-edge coordinates of the
    area-equivalent line), centre, width, heavy flag."""
    d = profile < LINE_THRESHOLD
    out = []
    i = 0
    n = len(profile)
    while i < n:
        if not d[i]:
            i += 1
            continue
        j = i
        while j < n and d[j]:
            j += 1
        lo, hi = max(i - 1, 0), min(j + 1, n)
        seg = profile[lo:hi]
        ink = float(seg.min())
        frac = np.clip((PAPER - seg) / max(PAPER - ink, 1.0), 0.0, 1.0)
        width = float(frac.sum())
        centre = float(((np.arange(lo, hi) + 0.5) * frac).sum() / max(width, 1e-9))
        out.append(
            {
                "centre": centre + offset,
                "width": width,
                "start": centre + offset - width / 2,
                "end": centre + offset + width / 2,
                "heavy": ink < HEAVY_MAX,
            }
        )
        i = j
    return out


def hscan(pg: Page, y_mm: float, x0_mm: float, x1_mm: float, half: int = 3):
    y = pg.px(y_mm)
    a, b = pg.px(x0_mm), pg.px(x1_mm)
    return line_runs(pg.g[y - half : y + half + 1, a:b].mean(axis=0), a)


def vscan(pg: Page, x_mm: float, y0_mm: float, y1_mm: float, half: int = 3):
    x = pg.px(x_mm)
    a, b = pg.px(y0_mm), pg.px(y1_mm)
    return line_runs(pg.g[a:b, x - half : x + half + 1].mean(axis=1), a)


# ---------------------------------------------------------------- marks and tag


def find_marks(pg: Page):
    """Each mark prints as two filled squares touching at one corner, so it is a single dark
    component whose bounding box is a square about half filled; the squares occupy two diagonal
    quadrants of that box."""
    dark = (pg.g < DARK_THRESHOLD).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
    H, W = dark.shape
    marks = {}
    for i in range(1, n):
        x, y, w, h, a = st[i]
        if not (6 * pg.s < w < 30 * pg.s and abs(w - h) <= 3 and 0.4 < a / (w * h) < 0.6):
            continue
        near_x = x < 80 * pg.s or x + w > W - 80 * pg.s
        near_y = y < 120 * pg.s or y + h > H - 120 * pg.s
        if not (near_x and near_y):
            continue
        hw, hh = w // 2, h // 2
        quads = [(x, y), (x + hw, y), (x, y + hh), (x + hw, y + hh)]
        filled = [q for q in quads if dark[q[1] : q[1] + hh, q[0] : q[0] + hw].mean() > 0.8]
        if len(filled) != 2:
            sys.exit(f"mark at {pg.mm(x):.1f},{pg.mm(y):.1f} mm: {len(filled)} filled quadrants")
        a_, b_ = (refine_square(pg, qx, qy, hw, hh) for qx, qy in filled)
        a_, b_ = sorted([a_, b_], key=lambda s_: (s_[1], s_[0]))
        # a_ is the upper square; the shared corner is on a_'s bottom edge and b_'s top edge.
        if abs(a_[0] + a_[2] - b_[0]) < 0.5:
            cx = (a_[0] + a_[2] + b_[0]) / 2
        elif abs(b_[0] + b_[2] - a_[0]) < 0.5:
            cx = (b_[0] + b_[2] + a_[0]) / 2
        else:
            sys.exit(f"mark squares do not touch: {a_} {b_}")
        cy = (a_[1] + a_[3] + b_[1]) / 2
        name = ("top" if cy < 450 else "bottom") + ("_left" if cx < 300 else "_right")
        if name in marks:
            sys.exit(f"two marks at {name}")
        marks[name] = {"name": name, "center": [r2(cx), r2(cy)], "squares": [a_, b_]}
    order = ["top_left", "top_right", "bottom_left", "bottom_right"]
    if sorted(marks) != sorted(order):
        sys.exit(f"marks found: {sorted(marks)}")
    return [marks[k] for k in order]


def refine_square(pg: Page, x, y, w, h):
    """Outer edges of a filled dark square found as bbox, via the area method from outside."""
    g = pg.g
    my0, my1 = y + h // 4, y + 3 * h // 4
    mx0, mx1 = x + w // 4, x + 3 * w // 4
    hprof = g[my0:my1, :].mean(axis=0)
    vprof = g[:, mx0:mx1].mean(axis=1)
    # ink level of the print: the darkest samples inside (a tag's interior has white modules)
    ink = float(np.percentile(g[my0:my1, mx0:mx1], 5))
    left = inside_edge(hprof, x - 4, +1, ink)
    right = inside_edge(hprof, x + w + 3, -1, ink)
    top = inside_edge(vprof, y - 4, +1, ink)
    bottom = inside_edge(vprof, y + h + 3, -1, ink)
    return [r2(pg.mm(left)), r2(pg.mm(top)), r2(pg.mm(right - left)), r2(pg.mm(bottom - top))]


def find_tag(pg: Page, number: int):
    dark = (pg.g < DARK_THRESHOLD).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    W = dark.shape[1]
    best = None
    for i in range(1, n):
        x, y, w, h, a = st[i]
        if x > W / 2 and y < 200 * pg.s and abs(w - h) < 0.05 * w and w > 15 * pg.s:
            if best is None or a > best[4]:
                best = st[i]
    if best is None:
        sys.exit(f"page {number}: no tag found")
    x, y, w, h, _ = best
    rect = refine_square(pg, x, y, w, h)
    # sample modules in pixel space
    x0, y0 = rect[0] * pg.s, rect[1] * pg.s
    mw, mh = rect[2] * pg.s / 8, rect[3] * pg.s / 8
    grid = np.zeros((8, 8), dtype=int)
    for r in range(8):
        for c in range(8):
            cx, cy = x0 + (c + 0.5) * mw, y0 + (r + 0.5) * mh
            q = int(mw / 4)
            patch = pg.g[int(cy) - q : int(cy) + q, int(cx) - q : int(cx) + q]
            grid[r, c] = 1 if patch.mean() < DARK_THRESHOLD else 0
    ring = np.concatenate([grid[0], grid[7], grid[:, 0], grid[:, 7]])
    if not ring.all():
        sys.exit(f"page {number}: tag border ring not all black:\n{grid}")
    bits = "".join(str(b) for b in grid[1:7, 1:7].ravel())
    decoded = decode_tag(pg, rect)
    expected = TAG_IDS[number]
    if decoded != expected:
        sys.exit(f"page {number}: tag decodes to {decoded}, expected {expected}")
    return {"family": "tag36h10", "id": expected, "rect": rect, "bits": bits}


def decode_tag(pg: Page, rect):
    """Decode the tag with OpenCV's tag36h10 dictionary from a crop with a white margin."""
    x, y, w, h = (int(v * pg.s) for v in rect)
    m = w // 2
    crop = pg.g[y - m : y + h + m, x - m : x + w + m].astype(np.uint8)
    crop = cv2.resize(crop, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    det = cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h10),
        cv2.aruco.DetectorParameters(),
    )
    _, ids, _ = det.detectMarkers(crop)
    ids = np.asarray(ids if ids is not None else []).ravel()
    if len(ids) != 1:
        return None
    return int(ids[0])


# ---------------------------------------------------------------- boxes


def find_boxes(pg: Page, min_mm=10.0, max_mm=25.0):
    """Heavy square-ish digit boxes: white regions enclosed by a black line."""
    white = (pg.g >= DARK_THRESHOLD).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(white, connectivity=4)
    out = []
    for i in range(1, n):
        x, y, w, h, a = st[i]
        wm, hm = pg.mm(w), pg.mm(h)
        if not (min_mm < wm < max_mm and min_mm < hm < max_mm and a > 0.9 * w * h):
            continue
        if abs(wm - hm) > 1.0:
            continue
        # the surrounding line must be black on all four sides
        ring = [
            pg.g[y - 3 : y - 1, x + w // 4 : x + 3 * w // 4],
            pg.g[y + h + 1 : y + h + 3, x + w // 4 : x + 3 * w // 4],
            pg.g[y + h // 4 : y + 3 * h // 4, x - 3 : x - 1],
            pg.g[y + h // 4 : y + 3 * h // 4, x + w + 1 : x + w + 3],
        ]
        if max(r.mean() for r in ring) > HEAVY_MAX:
            continue
        rect, line = refine_box(pg, x, y, x + w, y + h)
        out.append((rect, line))
    return out


def rows_of(boxes, tol=2.0):
    """Group boxes into rows by their top edge, rows top to bottom, boxes left to right."""
    rows = []
    for b in sorted(boxes, key=lambda b: (b[0][1], b[0][0])):
        if rows and abs(rows[-1][0][0][1] - b[0][1]) < tol:
            rows[-1].append(b)
        else:
            rows.append([b])
    return [sorted(r, key=lambda b: b[0][0]) for r in rows]


def groups_of(row, gap_mm=9.0):
    """Split a row of boxes into groups separated by a gap wider than gap_mm."""
    groups = [[row[0]]]
    for b in row[1:]:
        prev = groups[-1][-1][0]
        if b[0][0] - (prev[0] + prev[2]) > gap_mm:
            groups.append([b])
        else:
            groups[-1].append(b)
    return groups


def rect_r(r):
    return [r2(v) for v in r]


# ---------------------------------------------------------------- tally grid and row totals


def measure_grid(pg: Page, box_top_mm: float, box_left_mm: float, name: str):
    """Tally grid + row-totals column to the left of the digit boxes whose top is at box_top_mm.
    Returns (col_edges, row_edges, row_total_boxes[5][2], line widths)."""
    # vertical scan through the first tally column to find the grid's top heavy line (just above
    # the boxes) and the 4 grey + 1 heavy line below it.
    xs = hscan(pg, box_top_mm + 8.0, 100.0, box_left_mm - 2.0)
    heavy = [r for r in xs if r["heavy"]]
    if len(heavy) < 3:
        sys.exit(f"{name}: expected >= 3 heavy vertical lines, got {len(heavy)}")
    sep, right, left = heavy[-1], heavy[-2], heavy[-3]
    inner = [r for r in xs if not r["heavy"] and left["centre"] < r["centre"] < right["centre"]]
    rt = [r for r in xs if not r["heavy"] and right["centre"] < r["centre"] < sep["centre"]]
    if len(inner) != 11 or len(rt) != 3:
        sys.exit(f"{name}: expected 11 grid + 3 row-total lines, got {len(inner)} + {len(rt)}")
    col_x = pg.mm((left["centre"] + inner[0]["centre"]) / 2)
    ys = vscan(pg, col_x, box_top_mm - 20.0, box_top_mm + 100.0)
    top_i = max(i for i, r in enumerate(ys) if r["heavy"] and pg.mm(r["centre"]) < box_top_mm)
    rows = ys[top_i : top_i + 6]
    if len(rows) != 6 or not rows[-1]["heavy"] or any(r["heavy"] for r in rows[1:5]):
        sys.exit(f"{name}: expected heavy, 4 grey, heavy horizontal lines, got {rows}")
    # each line's own centre, measured by scans across it in the middle of the grid
    cols = [left] + inner + [right]
    col_edges = [r2(pg.mm(r["centre"])) for r in cols]
    row_edges = [r2(pg.mm(r["centre"])) for r in rows]
    # row totals: 2 boxes between the 3 grey lines; inside edges of the lines; per row, the
    # horizontal lines re-measured by a vertical scan through each box column.
    rtx = [(rt[0]["end"], rt[1]["start"]), (rt[1]["end"], rt[2]["start"])]
    boxes = [[None, None] for _ in range(5)]
    for c, (a, b) in enumerate(rtx):
        yl = vscan(pg, pg.mm((a + b) / 2), box_top_mm - 20.0, box_top_mm + 100.0)
        ti = max(i for i, r in enumerate(yl) if r["heavy"] and pg.mm(r["centre"]) < box_top_mm)
        lines = yl[ti : ti + 6]
        for k in range(5):
            t, btm = lines[k]["end"], lines[k + 1]["start"]
            boxes[k][c] = rect_r([pg.mm(a), pg.mm(t), pg.mm(b - a), pg.mm(btm - t)])
    widths = {
        "grid_grey": r2(pg.mm(float(np.median([r["width"] for r in inner])))),
        "rt_grey": r2(pg.mm(float(np.median([r["width"] for r in rt])))),
    }
    return col_edges, row_edges, boxes, widths


# ---------------------------------------------------------------- bubbles


def find_bubbles(pg: Page, boxes, name: str):
    """10 bubbles below each box of a vote field (digits 0..9 top to bottom)."""
    dark = (pg.g < DARK_THRESHOLD).astype(np.uint8)
    columns = []
    radii = []
    for rect in boxes:
        x0, x1 = pg.px(rect[0] - 2), pg.px(rect[0] + rect[2] + 2)
        y0, y1 = pg.px(rect[1] + rect[3] + 2), pg.px(rect[1] + rect[3] + 130)
        sub = dark[y0:y1, x0:x1]
        n, lab, st, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
        cents = []
        for i in range(1, n):
            x, y, w, h, a = st[i]
            if 5 * pg.s < w < 12 * pg.s and abs(w - h) < 0.1 * w and a < 0.5 * w * h:
                ys_, xs_ = np.nonzero(lab == i)
                wgt = (PAPER - pg.g[ys_ + y0, xs_ + x0]) / PAPER
                cx, cy, r = fit_circle(xs_ + x0 + 0.5, ys_ + y0 + 0.5, wgt)
                cents.append([pg.mm(cx), pg.mm(cy)])
                radii.append(pg.mm(r))
        cents.sort(key=lambda c: c[1])
        if len(cents) != 10:
            sys.exit(f"{name}: expected 10 bubbles below box {rect}, found {len(cents)}")
        columns.append([[r2(c[0]), r2(c[1])] for c in cents])
    return columns, r2(float(np.median(radii)))


def fit_circle(x, y, w):
    """Weighted algebraic (Kasa) circle fit: returns centre x, y and radius."""
    A = np.stack([x, y, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
    b = (x**2 + y**2) * np.sqrt(w)
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    r = np.sqrt(sol[2] + cx**2 + cy**2)
    return cx, cy, r


# ---------------------------------------------------------------- labels

COLS = [
    ("l", "laki-laki", "male"),
    ("p", "perempuan", "female"),
    ("lp", "jumlah (L+P)", "total (M+F)"),
]
PAGE1_ROWS = [
    (
        "dpt",
        "Jumlah Pemilih dalam Daftar Pemilih Tetap (DPT)",
        "Voters on the permanent voter list (DPT)",
    ),
    (
        "b1",
        "Jumlah pengguna hak pilih dalam Daftar Pemilih Tetap (DPT)",
        "Voters who voted, from the permanent voter list (DPT)",
    ),
    (
        "b2",
        "Jumlah pengguna hak pilih dalam Daftar Pemilih Tambahan (DPTb)",
        "Voters who voted, from the additional voter list (DPTb)",
    ),
    (
        "b3",
        "Jumlah pengguna hak pilih dalam Daftar Pemilih Khusus (DPK)",
        "Voters who voted, from the special voter list (DPK)",
    ),
    (
        "b4",
        "Jumlah Pengguna Hak Pilih (B.1 + B.2 + B.3)",
        "Total voters who voted (B.1 + B.2 + B.3)",
    ),
]
BALLOTS = [
    (
        "ballots.received",
        "Jumlah surat suara yang diterima, termasuk surat suara cadangan 2% dari DPT",
        "Ballots received, including the 2% reserve ballots",
    ),
    (
        "ballots.used",
        "Jumlah surat suara yang digunakan",
        "Ballots used",
    ),
    (
        "ballots.returned",
        "Jumlah surat suara yang dikembalikan oleh pemilih (karena rusak atau keliru coblos)",
        "Ballots returned by voters (damaged or wrongly marked)",
    ),
    (
        "ballots.unused",
        "Jumlah surat suara yang tidak digunakan/tidak terpakai, termasuk sisa surat suara cadangan",
        "Ballots not used, including leftover reserve ballots",
    ),
]
DISABLED = (
    "disabled",
    "Jumlah seluruh Pemilih disabilitas yang menggunakan hak pilih",
    "Voters with disabilities who voted",
)


# ---------------------------------------------------------------- TOML output


def fmt_list(v):
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_list(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(round(v, 2))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def field_toml(f):
    lines = ["[[fields]]"]
    for k in (
        "id",
        "page",
        "kind",
        "label_id",
        "label_en",
        "boxes",
        "line_mm",
        "guide",
        "guide_dots",
        "guide_grey",
        "of",
        "row",
        "columns",
        "radius_mm",
        "col_edges_mm",
        "row_edges_mm",
    ):
        if k in f:
            lines.append(f"{k} = {fmt_list(f[k])}")
    return "\n".join(lines)


def page_toml(p):
    lines = [
        "[[pages]]",
        f"number = {p['number']}",
        "width_mm = 600.0",
        "height_mm = 900.0",
    ]
    for m in p["marks"]:
        lines += [
            "[[pages.marks]]",
            f'name = "{m["name"]}"',
            f"center = {fmt_list(m['center'])}",
            f"squares = {fmt_list(m['squares'])}",
        ]
    t = p["tag"]
    lines += [
        "[pages.tag]",
        f'family = "{t["family"]}"',
        f"id = {t['id']}",
        f"rect = {fmt_list(t['rect'])}",
        f'bits = "{t["bits"]}"',
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def render(pdf: str, dpi: int, outdir: str, renderer: str):
    paths = [os.path.join(outdir, f"p-{i}.png") for i in (1, 2, 3)]
    if not all(os.path.exists(p) for p in paths):
        subprocess.run(
            [renderer, "-r", str(dpi), "-png", pdf, os.path.join(outdir, "p")], check=True
        )
    return paths


# The printed guide's dots: grey between the black of the lines and the white paper.
GUIDE_DARKEST = 100
GUIDE_LIGHTEST = 245
# Boxes of one field must carry the same guide, dot for dot, within this (mm).
GUIDE_MATCH_MM = 0.1


def guide_dots(pg: Page, rect):
    """The dots of the guide printed inside box `rect` (inside edge, mm): a list of
    [x, y, w, h] mm relative to the box's top-left corner (row by row), and the darkest grey of
    the dots (0-255). The box's lines are left out by a 1 mm inset."""
    x0, y0 = pg.px(rect[0] + 1.0), pg.px(rect[1] + 1.0)
    x1, y1 = pg.px(rect[0] + rect[2] - 1.0), pg.px(rect[1] + rect[3] - 1.0)
    sub = pg.g[y0:y1, x0:x1]
    m = ((sub > GUIDE_DARKEST) & (sub < GUIDE_LIGHTEST)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m)
    dots = []
    for x, y, w, h, a in stats[1:n]:
        if a < 4:
            continue
        dots.append([pg.mm(x0 + x) - rect[0], pg.mm(y0 + y) - rect[1], pg.mm(w), pg.mm(h)])
    dots.sort(key=lambda d: (round(d[1], 1), d[0]))
    grey = int(sub[m > 0].min()) if dots else 255
    return [[r2(v) for v in d] for d in dots], grey


def field_guide(pg: Page, fid, boxes):
    """The guide dots shared by every box of field `fid` (see `guide_dots`)."""
    first, grey = guide_dots(pg, boxes[0][0])
    if not first:
        sys.exit(f"{fid}: no guide dots found")
    for b in boxes[1:]:
        dots, _ = guide_dots(pg, b[0])
        same = len(dots) == len(first) and all(
            abs(u - v) <= GUIDE_MATCH_MM for d, e in zip(dots, first) for u, v in zip(d, e)
        )
        if not same:
            sys.exit(f"{fid}: the boxes' guides differ")
    return first, grey


def digits_field(fid, page, boxes, label_id, label_en, guide=None, kind="digits"):
    f = {
        "id": fid,
        "page": page,
        "kind": kind,
        "label_id": label_id,
        "label_en": label_en,
        "boxes": [rect_r(b[0]) for b in boxes],
        "line_mm": r2(float(np.median([b[1] for b in boxes]))),
    }
    if guide:
        f["guide"] = guide
    return f


def measure(paths, dpi):
    pages_out = []
    fields = []
    for number, path in enumerate(paths, start=1):
        g = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        pg = Page(g, dpi)
        w_mm, h_mm = pg.mm(g.shape[1]), pg.mm(g.shape[0])
        if abs(w_mm - 600) > 0.2 or abs(h_mm - 900) > 0.2:
            sys.exit(f"page {number}: size {w_mm:.2f} x {h_mm:.2f} mm, expected 600 x 900")
        pages_out.append({"number": number, "marks": find_marks(pg), "tag": find_tag(pg, number)})
        boxes = find_boxes(pg)
        rows = rows_of(boxes)
        if number == 1:
            sizes = [len(r) for r in rows]
            if sizes != [9, 9, 9, 9, 9, 3, 3, 3, 3, 9]:
                sys.exit(f"page 1: unexpected box rows {sizes}")
            for (key, lid, len_), row in zip(PAGE1_ROWS + [DISABLED], rows[:5] + [rows[9]]):
                for (suf, cid, cen), grp in zip(COLS, groups_of(row)):
                    fields.append(
                        digits_field(f"{key}.{suf}", 1, grp, f"{lid}, {cid}", f"{len_}, {cen}")
                    )
            for (fid, lid, len_), row in zip(BALLOTS, rows[5:9]):
                fields.append(digits_field(fid, 1, row, lid, len_))
        elif number == 2:
            sizes = [len(r) for r in rows]
            if sizes != [3, 3, 3]:
                sys.exit(f"page 2: unexpected box rows {sizes}")
            for n, row in enumerate(rows, start=1):
                vid = f"votes.{n}"
                fields.append(
                    digits_field(
                        vid,
                        2,
                        row,
                        f"Jumlah suara sah pasangan calon nomor urut {n}",
                        f"Valid votes for candidate pair number {n}",
                        guide="dotted8",
                    )
                )
                fields[-1]["guide_dots"], fields[-1]["guide_grey"] = field_guide(pg, vid, row)
                top, left = row[0][0][1], row[0][0][0]
                cols, radius = find_bubbles(pg, [b[0] for b in row], vid)
                fields.append(
                    {
                        "id": f"{vid}.bubbles",
                        "page": 2,
                        "kind": "bubbles",
                        "label_id": f"Bulatan suara sah pasangan calon nomor urut {n}"
                        " (hitamkan bulatan ini sesuai dengan isian angka pada kotak)",
                        "label_en": f"Digit bubbles for the votes of candidate pair {n}",
                        "of": vid,
                        "columns": cols,
                        "radius_mm": radius,
                    }
                )
                fields += grid_fields(
                    pg,
                    2,
                    vid,
                    top,
                    left,
                    f"pasangan calon nomor urut {n}",
                    f"candidate pair {n}",
                    "suara sah",
                    "valid votes",
                )
        else:
            sizes = [len(r) for r in rows]
            if sizes != [3, 3, 3, 8]:
                sys.exit(f"page 3: unexpected box rows {sizes}")
            labels = [
                (
                    "valid",
                    "Jumlah seluruh suara sah (IV.1 + IV.2 + IV.3)",
                    "Total valid votes (IV.1 + IV.2 + IV.3)",
                ),
                ("invalid", "Jumlah suara tidak sah", "Invalid votes"),
                (
                    "total",
                    "Jumlah seluruh suara sah dan suara tidak sah (V.A + V.B)",
                    "Total valid and invalid votes (V.A + V.B)",
                ),
            ]
            for (fid, lid, len_), row in zip(labels, rows[:3]):
                fields.append(digits_field(fid, 3, row, lid, len_))
            top, left = rows[1][0][0][1], rows[1][0][0][0]
            fields += grid_fields(
                pg,
                3,
                "invalid",
                top,
                left,
                "suara tidak sah",
                "invalid votes",
                "suara tidak sah",
                "invalid votes",
            )
            # date boxes: a row of 8 boxes of thinner line, touching within a group
            grps = groups_of(rows[3])
            if [len(gp) for gp in grps] != [2, 2, 4]:
                sys.exit(f"page 3: date box groups {[len(gp) for gp in grps]}")
            for fid, lid, len_, gp in zip(
                ("date.day", "date.month", "date.year"),
                ("Tanggal", "Bulan", "Tahun"),
                ("Day", "Month", "Year"),
                grps,
            ):
                fields.append(
                    digits_field(
                        fid,
                        3,
                        gp,
                        f"Ditetapkan, {lid.lower()}",
                        f"Date the record was adopted: {len_.lower()}",
                        kind="date",
                    )
                )
    return pages_out, fields


def grid_fields(pg, page, of, top, left, who_id, who_en, what_id, what_en):
    col_edges, row_edges, rboxes, widths = measure_grid(pg, top, left, of)
    out = []
    for k in range(5):
        out.append(
            {
                "id": f"{of}.row{k + 1}",
                "page": page,
                "kind": "row_totals",
                "label_id": f"Jumlah tiap baris {k + 1}, rincian perolehan {what_id}"
                + (f" {who_id}" if who_id != what_id else ""),
                "label_en": f"Row {k + 1} total of the tally of {what_en}"
                + (f", {who_en}" if who_en != what_en else ""),
                "boxes": rboxes[k],
                "line_mm": widths["rt_grey"],
                "of": of,
                "row": k + 1,
            }
        )
    out.append(
        {
            "id": f"{of}.tally",
            "page": page,
            "kind": "tally_grid",
            "label_id": f"Rincian perolehan {what_id}" + (f" {who_id}" if who_id != what_id else ""),
            "label_en": f"Tally of {what_en}" + (f", {who_en}" if who_en != what_en else ""),
            "of": of,
            "col_edges_mm": col_edges,
            "row_edges_mm": row_edges,
        }
    )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--pdf", default=os.path.join(here, "..", "..", "shared", "forms", "C.HASIL-PPWP.pdf"))
    ap.add_argument("--out", default=os.path.join(here, "c-hasil-ppwp-2024.toml"))
    ap.add_argument("--dpi", type=int, default=300)
    ap.add_argument("--renders", help="directory for the page renders (default: a temp dir)")
    ap.add_argument(
        "--renderer",
        default="pdftocairo",
        choices=["pdftocairo", "pdftoppm"],
        help="poppler renderer; pdftocairo (default) anti-aliases without snapping strokes to the "
        "pixel grid (pdftoppm's stroke adjustment moves thin lines by up to half a pixel)",
    )
    args = ap.parse_args()
    if not os.path.exists(args.pdf):
        alt = os.path.join(here, "..", "..", "..", "shared", "forms", "C.HASIL-PPWP.pdf")
        if os.path.exists(alt):
            args.pdf = alt
        else:
            sys.exit(f"PDF not found: {args.pdf}")

    if args.renders:
        os.makedirs(args.renders, exist_ok=True)
        pages, fields = measure(render(args.pdf, args.dpi, args.renders, args.renderer), args.dpi)
    else:
        with tempfile.TemporaryDirectory() as d:
            pages, fields = measure(render(args.pdf, args.dpi, d, args.renderer), args.dpi)

    rules = ""
    if os.path.exists(args.out):
        text = open(args.out, encoding="utf-8").read()
        i = text.find(RULES_MARKER)
        if i >= 0:
            rules = text[i:]
    if not rules:
        rules = RULES_MARKER + "\n"

    head = [
        "# Model C.HASIL-PPWP (2024) template for rekap. Format: docs/interfaces.md, templates/README.md.",
        "# Everything above the rules marker is generated by templates/measure.py; do not edit by hand.",
        "schema = 1",
        'id = "c-hasil-ppwp-2024"',
        'title_id = "Berita acara, sertifikat dan catatan hasil penghitungan perolehan suara di tempat'
        ' pemungutan suara dalam pemilihan umum Presiden dan Wakil Presiden Republik Indonesia tahun 2024'
        ' (Model C.HASIL-PPWP)"',
        'title_en = "Record and certificate of the vote count at the polling station, 2024 election of the'
        ' President and Vice President of the Republic of Indonesia (Model C.HASIL-PPWP)"',
        f'source = "Measured by templates/measure.py from the official KPU PDF C.HASIL-PPWP.pdf'
        f' (3 pages, 1700.79 x 2551.18 pt) rendered with {args.renderer} at {args.dpi} dpi:'
        ' connected components, projection profiles and circle fits; edges refined to sub-pixel."',
        "",
    ]
    body = "\n\n".join([page_toml(p) for p in pages] + [field_toml(f) for f in fields])
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(head) + "\n" + body + "\n\n" + rules)
    print(f"wrote {args.out}: {len(pages)} pages, {len(fields)} fields", file=sys.stderr)


if __name__ == "__main__":
    main()
