"""The exported ONNX graph and its inverse (train.py --init) describe the same network."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

jax = pytest.importorskip("jax")
pytest.importorskip("onnx")

from rekap_train import model as arch  # noqa: E402


def test_params_from_onnx_reproduce_the_exported_network(tmp_path):
    key = jax.random.PRNGKey(5)
    params, state = arch.init_params(key)
    # batch-norm statistics and affine terms away from the identity, so folding matters
    rng = np.random.default_rng(1)
    for i in range(len(arch.CHANNELS)):
        c = arch.CHANNELS[i]
        state[f"bn{i}"] = {"mean": rng.normal(0, 0.3, c).astype(np.float32),
                           "var": rng.uniform(0.5, 2.0, c).astype(np.float32)}
        params[f"conv{i}"]["gamma"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        params[f"conv{i}"]["beta"] = rng.normal(0, 0.2, c).astype(np.float32)
    x = rng.uniform(0, 1, (7, 1, 28, 28)).astype(np.float32)
    want = np.asarray(arch.apply(params, state, x, False))
    path = str(tmp_path / "m.onnx")
    arch.export_onnx(params, state, path)
    back, back_state = arch.params_from_onnx(path)
    got = np.asarray(arch.apply(back, back_state, x, False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # fine-tuning: training mode with frozen batch norm is the same function (dropout off)
    # and leaves the statistics alone
    arch.FROZEN_BN, dropout = True, arch.DROPOUT
    arch.DROPOUT = 0.0
    try:
        logits, new_state = arch.apply(back, back_state, x, True, jax.random.PRNGKey(0))
        np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)
        for k in back_state:
            np.testing.assert_array_equal(np.asarray(new_state[k]["var"]), np.asarray(back_state[k]["var"]))
    finally:
        arch.FROZEN_BN, arch.DROPOUT = False, dropout
