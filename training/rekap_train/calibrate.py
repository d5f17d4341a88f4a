"""Temperature scaling and calibration metrics."""

from __future__ import annotations

import numpy as np

ECE_BINS = 10


def softmax(logits: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits, y, t) -> float:
    p = softmax(logits, t)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean())


def fit_temperature(logits, y) -> float:
    """Minimise NLL over T on a log grid, then refine (NLL is unimodal in T)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 241))
    best = grid[int(np.argmin([nll(logits, y, t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.03, 0.03, 121))
    return float(fine[int(np.argmin([nll(logits, y, t) for t in fine]))])


def reliability(logits, y, t: float = 1.0):
    """(ece, rows) with rows = (lo, hi, count, mean confidence, accuracy) over 10 equal bins."""
    p = softmax(logits, t)
    conf = p.max(axis=1)
    ok = p.argmax(axis=1) == y
    edges = np.linspace(0, 1, ECE_BINS + 1)
    rows, ece = [], 0.0
    for i in range(ECE_BINS):
        sel = (conf > edges[i]) & (conf <= edges[i + 1]) if i else (conf >= 0) & (conf <= edges[1])
        n = int(sel.sum())
        if n:
            mc, acc = float(conf[sel].mean()), float(ok[sel].mean())
            ece += n / len(y) * abs(mc - acc)
        else:
            mc, acc = float("nan"), float("nan")
        rows.append((edges[i], edges[i + 1], n, mc, acc))
    return ece, rows


def format_table(rows) -> str:
    out = ["  bin         count   conf    acc"]
    for lo, hi, n, mc, acc in rows:
        out.append(f"  {lo:.1f}-{hi:.1f}  {n:8d}  {mc:6.4f}  {acc:6.4f}" if n else f"  {lo:.1f}-{hi:.1f}  {n:8d}       -       -")
    return "\n".join(out)
