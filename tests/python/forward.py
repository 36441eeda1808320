"""The forward pass of an exported murmur model in numpy.

Loads a PyTorch state dict written by `murmur-node export --torch` and a test set (a
safetensors file with `x`, float32 [n, features], and `y`, the labels), runs the model as the
PyTorch module of docs/pytorch.md would, and prints the accuracy as JSON. Only MLPs and logistic
regression (dense layers with ReLU between them) are handled here.

    python3 tests/python/forward.py MODEL.safetensors TEST.safetensors
"""

import json
import sys

import numpy as np
from safetensors.numpy import load_file


def forward(state, x):
    layers = sorted(
        {int(k.split(".")[1]) for k in state if k.startswith("dense.")}
    )
    h = x.astype(np.float32)
    for i in layers:
        w, b = state[f"dense.{i}.weight"], state[f"dense.{i}.bias"]
        h = h @ w.T + b  # nn.Linear: weight is [out, in]
        if i != layers[-1]:
            h = np.maximum(h, 0.0)
    return h


def main():
    state = load_file(sys.argv[1])
    data = load_file(sys.argv[2])
    x, y = data["x"], data["y"].astype(np.int64)
    logits = forward(state, x)
    correct = int((logits.argmax(axis=1) == y).sum())
    print(json.dumps({"correct": correct, "samples": len(y), "accuracy": correct / len(y)}))


if __name__ == "__main__":
    main()
