"""Tests of the rekap-mnist-v1 numpy mirror (run: training/.venv/bin/python -m pytest training/tests)."""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from rekap_train.preprocess import normalize, normalize_details, resample_matrix  # noqa: E402

PARITY = os.path.join(HERE, "..", "..", "testdata", "parity")


def reference_normalize(ink: np.ndarray) -> np.ndarray:
    """Independent slow implementation: area resample as integer box filter (repeat, then mean).

    Scaling coordinates by `oh` turns [i*bh/oh, (i+1)*bh/oh) x [j, j+1) into integer intervals,
    so repeating each input row `oh` times and averaging blocks of `bh` rows is exact.
    """
    h, _ = ink.shape
    ys, xs = np.nonzero(ink >= 0.5)
    if len(ys) == 0:
        return np.zeros((1, 28, 28), np.float32)
    c = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    bh, bw = c.shape
    s = 20 / max(bh, bw, 0.5 * h)
    oh = max(1, math.floor(bh * s + 0.5))
    ow = max(1, math.floor(bw * s + 0.5))
    r = np.repeat(np.repeat(c, oh, axis=0), ow, axis=1)
    p = r.reshape(oh, bh, ow * bw).mean(axis=1).reshape(oh, ow, bw).mean(axis=2)
    tot = p.sum()
    ii, jj = np.mgrid[0:oh, 0:ow]
    cy = (p * (ii + 0.5)).sum() / tot if tot else oh / 2
    cx = (p * (jj + 0.5)).sum() / tot if tot else ow / 2
    top = min(max(math.floor(14 - cy + 0.5), 0), 28 - oh)
    left = min(max(math.floor(14 - cx + 0.5), 0), 28 - ow)
    out = np.zeros((28, 28))
    out[top : top + oh, left : left + ow] = p
    return np.clip(out, 0, 1).astype(np.float32)[None]


def test_empty_and_faint_give_zeros():
    assert not normalize(np.zeros((40, 30))).any()
    assert not normalize(np.full((40, 30), 0.4999)).any()
    assert normalize(np.zeros((40, 30))).shape == (1, 28, 28)


def test_resample_rows_sum_to_one_and_columns_to_ratio():
    for out_n, in_n in [(1, 1), (1, 7), (20, 20), (20, 57), (13, 5), (20, 3), (7, 90)]:
        r = resample_matrix(out_n, in_n)
        assert r.shape == (out_n, in_n)
        np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(r.sum(axis=0), out_n / in_n, atol=1e-12)
    np.testing.assert_array_equal(resample_matrix(20, 20), np.eye(20))


def test_identity_when_mark_is_20_high():
    ink = np.zeros((40, 40))
    ink[10:30, 16:24] = np.linspace(0.5, 1.0, 8)[None, :]
    out, info = normalize_details(ink)
    assert info["scale"] == 1.0 and info["patch"] == (20, 8)
    top, left = info["top_left"]
    np.testing.assert_allclose(out[0, top : top + 20, left : left + 8], ink[10:30, 16:24], atol=1e-7)
    assert out.sum() == pytest.approx(ink.sum(), rel=1e-6)


def test_small_mark_not_blown_up():
    ink = np.zeros((60, 60))
    ink[28:31, 20:38] = 1.0  # a dash 3 px high, box 60 high: scale = 20/30
    _, info = normalize_details(ink)
    assert info["scale"] == pytest.approx(20 / 30)
    assert info["patch"] == (2, 12)


def test_matches_independent_reference_on_random_maps():
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = rng.integers(3, 80, size=2)
        ink = rng.random((h, w)) ** rng.uniform(0.3, 4)
        ink[rng.random((h, w)) < rng.uniform(0, 0.9)] = 0
        np.testing.assert_allclose(normalize(ink), reference_normalize(ink), atol=1e-6)


def test_centre_of_mass_lands_at_canvas_centre():
    rng = np.random.default_rng(3)
    for _ in range(100):
        ink = np.zeros((50, 40))
        y, x = rng.integers(5, 25), rng.integers(5, 20)
        ink[y : y + rng.integers(10, 25), x : x + rng.integers(3, 20)] = rng.random() * 0.5 + 0.5
        out = normalize(ink)[0].astype(np.float64)
        ii, jj = np.mgrid[0:28, 0:28]
        cy = (out * (ii + 0.5)).sum() / out.sum()
        cx = (out * (jj + 0.5)).sum() / out.sum()
        assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9


def test_parity_fixtures_reproduce():
    with open(os.path.join(PARITY, "expected.json")) as fh:
        expected = json.load(fh)
    assert len(expected) >= 16
    for item in expected:
        u8 = np.asarray(Image.open(os.path.join(PARITY, item["file"])))
        assert u8.dtype == np.uint8 and u8.ndim == 2
        got = normalize(u8.astype(np.float64) / 255.0).reshape(-1)
        want = np.asarray(item["tensor"], dtype=np.float32)
        assert want.shape == (784,)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=item["file"])
        np.testing.assert_allclose(reference_normalize(u8 / 255.0).reshape(-1), want, atol=1e-6)
