"""Sanity tests of the synthetic box crops (cheap: a few hundred samples)."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rekap_train import BLANK_CLASS, X_CLASS  # noqa: E402
from rekap_train.preprocess import normalize  # noqa: E402
from rekap_train.synth import DigitBoxSynth, make_batch  # noqa: E402


def fake_digits(n, rng):
    """Blobby 28x28 uint8 'digits' (no MNIST needed for the tests)."""
    out = np.zeros((n, 28, 28), np.uint8)
    for k in range(n):
        y, x = rng.integers(6, 12), rng.integers(8, 14)
        out[k, y : y + 14, x : x + 5] = 255
        out[k, y : y + 3, x : x + 9] = 255
    return out


def test_crops_are_ink_maps_of_box_size():
    rng = np.random.default_rng(1)
    s = DigitBoxSynth(rng)
    pool = fake_digits(10, rng)
    for _ in range(60):
        for img in (s.digit(pool[0], pool), s.x(pool), s.blank(pool)):
            assert img.ndim == 2 and 36 <= img.shape[0] <= 66
            assert img.dtype == np.float32 and img.min() >= 0.0 and img.max() <= 1.0


def test_x_marks_always_have_ink_and_cross():
    rng = np.random.default_rng(2)
    s = DigitBoxSynth(rng, hard=0.0)
    for _ in range(100):
        h, w = s.box_size()
        img = s.x_mark(h, w)
        t = normalize(img)
        assert t.sum() > 5
        # two crossing strokes: ink on both sides of the centre of mass, in all four quadrants
        m = t[0] >= 0.5
        assert m[:14, :14].any() and m[:14, 14:].any() and m[14:, :14].any() and m[14:, 14:].any()


def test_make_batch_labels_and_shapes():
    rng = np.random.default_rng(3)
    digits = fake_digits(40, rng)
    labels = rng.integers(0, 10, 40)
    x, y = make_batch(5, digits, labels, 12, 9)
    assert x.shape == (61, 1, 28, 28) and x.dtype == np.float32
    assert (y == X_CLASS).sum() == 12 and (y == BLANK_CLASS).sum() == 9
    assert x.min() >= 0 and x.max() <= 1
    # deterministic for a seed
    x2, y2 = make_batch(5, digits, labels, 12, 9)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_direct_digits_are_plain_28x28_ink_maps_with_their_labels():
    rng = np.random.default_rng(4)
    s = DigitBoxSynth(rng)
    digits = fake_digits(30, rng)
    changed = 0
    for d in digits:
        g = s.direct_digit(d)
        assert g.shape == (28, 28) and g.dtype == np.float32
        assert g.min() >= 0.0 and g.max() <= 1.0 and g.sum() > 10
        changed += not np.array_equal(g, d.astype(np.float32) / 255.0)
    # DIRECT_PLAIN (25%) are left as they are, the rest distorted
    assert 10 <= changed < 30
    # make_batch adds n_direct samples whose labels come from the digits given
    labels = np.full(30, 7)
    labels[:15] = 3
    x, y = make_batch(6, digits[:15], labels[:15], 0, 0, n_direct=20)
    assert x.shape == (35, 1, 28, 28) and (y == 3).all()
