"""The digit CNN in plain JAX (NHWC), and its ONNX export (NCHW, batch norm folded).

Architecture (inference): [conv3x3 -> BN -> ReLU -> maxpool2] x 3 with CHANNELS channels
(28 -> 14 -> 7 -> 3), flatten, dense HIDDEN + ReLU (+ dropout 0.3 in training), dense 12.
train.py sets CHANNELS and HIDDEN from its --channels and --hidden options before building.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

CHANNELS = (32, 64, 128)
HIDDEN = 128
N_CLASSES = 12
DROPOUT = 0.3
BN_EPS = 1e-5
BN_MOMENTUM = 0.95
#: Fine-tuning an exported model (train.py --init): its batch norm is already folded into the
#: convolutions, so training uses the stored statistics (identity) instead of batch statistics.
FROZEN_BN = False


def init_params(key):
    params, state = {}, {}
    cin = 1
    for i, c in enumerate(CHANNELS):
        key, k = jax.random.split(key)
        params[f"conv{i}"] = {
            "w": jax.random.normal(k, (3, 3, cin, c)) * np.sqrt(2.0 / (9 * cin)),
            "gamma": jnp.ones(c),
            "beta": jnp.zeros(c),
        }
        state[f"bn{i}"] = {"mean": jnp.zeros(c), "var": jnp.ones(c)}
        cin = c
    flat = 3 * 3 * CHANNELS[-1]
    key, k1, k2 = jax.random.split(key, 3)
    params["fc1"] = {"w": jax.random.normal(k1, (flat, HIDDEN)) * np.sqrt(2.0 / flat), "b": jnp.zeros(HIDDEN)}
    params["fc2"] = {"w": jax.random.normal(k2, (HIDDEN, N_CLASSES)) * np.sqrt(1.0 / HIDDEN), "b": jnp.zeros(N_CLASSES)}
    return params, state


def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def apply(params, state, x_nchw, train: bool, key=None):
    """Logits for x [N,1,28,28]. In training returns (logits, new_state)."""
    x = jnp.transpose(x_nchw, (0, 2, 3, 1))
    new_state = {}
    for i in range(len(CHANNELS)):
        p = params[f"conv{i}"]
        x = _conv(x, p["w"])
        if train and not FROZEN_BN:
            mean = x.mean(axis=(0, 1, 2))
            var = x.var(axis=(0, 1, 2))
            old = state[f"bn{i}"]
            new_state[f"bn{i}"] = {
                "mean": BN_MOMENTUM * old["mean"] + (1 - BN_MOMENTUM) * mean,
                "var": BN_MOMENTUM * old["var"] + (1 - BN_MOMENTUM) * var,
            }
        else:
            mean, var = state[f"bn{i}"]["mean"], state[f"bn{i}"]["var"]
            if train:
                new_state[f"bn{i}"] = state[f"bn{i}"]
        x = (x - mean) * (p["gamma"] / jnp.sqrt(var + BN_EPS)) + p["beta"]
        x = _pool(jax.nn.relu(x))
    x = x.reshape(x.shape[0], -1)  # (h, w, c) order
    x = jax.nn.relu(x @ params["fc1"]["w"] + params["fc1"]["b"])
    if train:
        keep = jax.random.bernoulli(key, 1 - DROPOUT, x.shape)
        x = jnp.where(keep, x / (1 - DROPOUT), 0.0)
    logits = x @ params["fc2"]["w"] + params["fc2"]["b"]
    return (logits, new_state) if train else logits


def params_from_onnx(path: str):
    """Parameters and state equal to an exported model (the inverse of `export_onnx`): each
    convolution takes the folded weights, its batch norm becomes the identity (gamma 1, beta =
    the folded bias, mean 0, var 1 - BN_EPS) and must stay frozen (FROZEN_BN) while training."""
    import onnx
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    params, state = {}, {}
    for i in range(len(CHANNELS)):
        w = init[f"conv{i}.w"]  # OIHW
        if w.shape[0] != CHANNELS[i]:
            raise ValueError(f"{path}: conv{i} has {w.shape[0]} channels, --channels says {CHANNELS[i]}")
        c = w.shape[0]
        params[f"conv{i}"] = {"w": jnp.asarray(np.transpose(w, (2, 3, 1, 0))), "gamma": jnp.ones(c),
                              "beta": jnp.asarray(init[f"conv{i}.b"])}
        state[f"bn{i}"] = {"mean": jnp.zeros(c), "var": jnp.full(c, 1.0 - BN_EPS)}
    c = CHANNELS[-1]
    w1 = init["fc1.w"]  # rows in (c, h, w) order
    if w1.shape[1] != HIDDEN:
        raise ValueError(f"{path}: hidden layer has {w1.shape[1]} units, --hidden says {HIDDEN}")
    w1 = w1.reshape(c, 3, 3, HIDDEN).transpose(1, 2, 0, 3).reshape(-1, HIDDEN)
    params["fc1"] = {"w": jnp.asarray(w1), "b": jnp.asarray(init["fc1.b"])}
    params["fc2"] = {"w": jnp.asarray(init["fc2.w"]), "b": jnp.asarray(init["fc2.b"])}
    return params, state


def count_params(params) -> int:
    return int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params)))


def export_onnx(params, state, path: str, opset: int = 17) -> None:
    """Write the inference graph: input `input` [N,1,28,28] -> output `logits` [N,12]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    cur = "input"
    for i in range(len(CHANNELS)):
        p, s = params[f"conv{i}"], state[f"bn{i}"]
        w = np.asarray(p["w"], np.float64)  # HWIO
        scale = np.asarray(p["gamma"], np.float64) / np.sqrt(np.asarray(s["var"], np.float64) + BN_EPS)
        bias = np.asarray(p["beta"], np.float64) - np.asarray(s["mean"], np.float64) * scale
        w_oihw = np.transpose(w * scale, (3, 2, 0, 1))
        nodes.append(helper.make_node("Conv", [cur, const(f"conv{i}.w", w_oihw), const(f"conv{i}.b", bias)],
                                      [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        nodes.append(helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
        cur = f"p{i}"
    nodes.append(helper.make_node("Flatten", [cur], ["flat"], axis=1))  # (c, h, w) order
    c = CHANNELS[-1]
    w1 = np.asarray(params["fc1"]["w"]).reshape(3, 3, c, HIDDEN).transpose(2, 0, 1, 3).reshape(-1, HIDDEN)
    nodes.append(helper.make_node("Gemm", ["flat", const("fc1.w", w1), const("fc1.b", params["fc1"]["b"])], ["h1"]))
    nodes.append(helper.make_node("Relu", ["h1"], ["h1r"]))
    nodes.append(helper.make_node("Gemm", ["h1r", const("fc2.w", params["fc2"]["w"]), const("fc2.b", params["fc2"]["b"])], ["logits"]))
    graph = helper.make_graph(
        nodes, "rekap_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="rekap-training")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
