"""Write testdata/models/tiny.onnx + tiny.json: a fixed Gemm 784 -> 12 standing in for the digit
model in tests (same input/output names, shapes and card format as models/digits.onnx).

logits[n, k] = sum_p x[n, p] * W[p, k] + b[k] with
  W[p, k] = (((p * 7 + k * 13) % 17) - 8) / 100,   b[k] = (k - 5) / 10.
The Rust tests recompute this formula, so keep both in step. An all-zero input gives logits = b,
whose argmax is class 11 ("blank").

Usage (needs the `onnx` package, e.g. training/.venv): python3 testdata/models/make_tiny.py
"""

import hashlib
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = [str(d) for d in range(10)] + ["X", "blank"]


def main() -> None:
    p = np.arange(784)[:, None]
    k = np.arange(12)[None, :]
    w = ((((p * 7 + k * 13) % 17) - 8) / 100.0).astype(np.float32)
    b = ((np.arange(12) - 5) / 10.0).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        "rekap_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 12])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(HERE, "tiny.onnx")
    data = model.SerializeToString()
    with open(path, "wb") as fh:
        fh.write(data)
    card = {
        "schema": "rekap-model/1",
        "name": "rekap-tiny-test",
        "classes": CLASSES,
        "input": {
            "name": "input",
            "shape": [-1, 1, 28, 28],
            "dtype": "float32",
            "preprocessing": "rekap-mnist-v1",
        },
        "output": {"name": "logits"},
        "temperature": 1.0,
        "sha256": hashlib.sha256(data).hexdigest(),
        "training": {
            "data": "none: fixed weights for tests",
            "licence": "same as rekap",
            "command": "python3 testdata/models/make_tiny.py",
        },
        "metrics": {},
    }
    with open(os.path.join(HERE, "tiny.json"), "w") as fh:
        json.dump(card, fh, indent=2)
        fh.write("\n")
    print(f"wrote {path} ({len(data)} bytes) sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
