"""float16 weight storage: half the bytes, float32 compute, outputs within rounding."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.onnx_weights import restore_float32_weights, store_weights_as_float16


def _matmul_model(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y0"]),
            helper.make_node("Add", ["y0", "b"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_large_weights_become_float16_and_outputs_stay_float32() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(128, 64)).astype(np.float32)
    bias = rng.normal(size=64).astype(np.float32)  # below min_elements: stays float32
    model = _matmul_model(weight, bias)
    x = rng.normal(size=(4, 128)).astype(np.float32)
    before, size_before = _run(model, x), len(model.SerializeToString())

    assert store_weights_as_float16(model) == 1
    onnx.checker.check_model(model)
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    assert kinds == {"w_fp16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    after = _run(model, x)
    assert after.dtype == np.float32
    # exactly what float32 maths on float16-rounded weights gives
    expected = x @ weight.astype(np.float16).astype(np.float32) + bias
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-4)
    assert not np.array_equal(after, before)
    assert len(model.SerializeToString()) < 0.6 * size_before


def test_restore_gives_back_a_float32_graph_with_the_same_outputs() -> None:
    rng = np.random.default_rng(1)
    model = _matmul_model(rng.normal(size=(64, 32)).astype(np.float32), np.zeros(32, np.float32))
    store_weights_as_float16(model)
    x = rng.normal(size=(3, 64)).astype(np.float32)
    halved = _run(model, x)

    assert restore_float32_weights(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT}
    np.testing.assert_array_equal(_run(model, x), halved)


def test_op_types_limit_which_weights_are_converted() -> None:
    rng = np.random.default_rng(2)
    model = _matmul_model(rng.normal(size=(64, 32)).astype(np.float32), np.zeros(32, np.float32))
    assert store_weights_as_float16(model, op_types={"Gemm"}) == 0  # read by a MatMul
    assert store_weights_as_float16(model, op_types={"MatMul"}) == 1
