"""ONNX graph edits used at export time that need only ``onnx`` and numpy."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import helper, numpy_helper


def store_weights_as_float16(
    model: onnx.ModelProto, min_elements: int = 1024, op_types: Collection[str] | None = None
) -> int:
    """Keep large float32 initializers as float16, each read through a Cast to float32.

    Halves the file; onnxruntime folds the Casts when it loads the graph, so inference
    still computes in float32 on weights rounded to float16. With ``op_types`` only the
    weights that nodes of those types (alone) read are converted, e.g. ``{"Gemm"}`` for
    the fully connected layers. Returns how many tensors.
    """
    graph = model.graph
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    casts, converted = [], 0
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        if op_types is not None and not readers.get(tensor.name, set()) <= set(op_types):
            continue
        array = numpy_helper.to_array(tensor)
        if array.size < min_elements:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float16), f"{name}_fp16"))
        casts.append(
            helper.make_node(
                "Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_cast"
            )
        )
        converted += 1
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


def restore_float32_weights(model: onnx.ModelProto) -> int:
    """Undo :func:`store_weights_as_float16`: float32 initializers, no Casts (for tools,
    such as onnxruntime's quantizers, that look for float32 weights). Returns how many."""
    graph = model.graph
    halves = {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    keep, restored = [], 0
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == onnx.TensorProto.FLOAT and node.input[0] in halves:
            half = halves[node.input[0]]
            array = numpy_helper.to_array(half).astype(np.float32)
            half.CopyFrom(numpy_helper.from_array(array, node.output[0]))
            restored += 1
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return restored
