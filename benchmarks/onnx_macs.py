"""Count multiply-accumulates of an ONNX graph for one face (batch 1).

Counts Conv, Gemm and MatMul (and their int8 forms), which hold all but a sliver of the
arithmetic of the models here; element-wise ops, pooling and activations are left out.
Needs the ``onnx`` package (the ``bench`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

# where each convolution keeps its weight (int8 graphs from onnxruntime's quantizers too)
CONV_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}


def count_macs(path: str | Path | bytes, *, input_shape: Sequence[int] | None = None) -> int:
    """MACs of one run of the graph at ``path`` (or its bytes): for one face, or for an
    input of ``input_shape`` (a detector's ``(1, 3, H, W)``, whose sides are dynamic)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if input_shape is not None:
            for dim, size in zip(dims, input_shape):
                dim.ClearField("dim_param")
                dim.dim_value = int(size)
            break
        for dim in dims:
            if dim.dim_param or dim.dim_value == 0:
                dim.ClearField("dim_param")
                dim.dim_value = 1  # one face; every other axis is fixed by the model
                break
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)

    total = 0
    for node in inferred.graph.node:
        if node.op_type in CONV_WEIGHT_INPUT:
            weight = shapes.get(node.input[CONV_WEIGHT_INPUT[node.op_type]])
            out = shapes.get(node.output[0])
            if weight and out and all(out):
                total += math.prod(out) * math.prod(weight[1:])
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a and out and all(out) and a[-1]:
                transposed = node.op_type == "Gemm" and any(
                    attr.name == "transA" and attr.i for attr in node.attribute
                )
                inner = a[-2] if transposed else a[-1]
                total += math.prod(out) * inner
    return int(total)
