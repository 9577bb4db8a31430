"""faceage's ONNX input contract in numpy, and running a file on cached crops: what the
export checks parity with and the teachers of a distillation run on."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def contract_inputs(crops: np.ndarray, num_crops: int) -> np.ndarray:
    """uint8 BGR crops ``(N, K, S, S, 3)`` -> the contract's float32 input, in numpy."""
    rgb = crops[..., ::-1].astype(np.float32) / 255.0
    x = (rgb - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x = np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))
    return x[:, 0] if num_crops == 1 else x


def run_onnx(session: ort.InferenceSession, x: np.ndarray, batch: int = 256):
    names = [o.name for o in session.get_outputs()]
    outs = [session.run(None, {"input": x[i : i + batch]}) for i in range(0, len(x), batch)]
    joined = {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}
    return joined["age"], joined.get("gender")
