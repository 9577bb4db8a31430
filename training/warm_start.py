"""Start a training run from a shipped ONNX file: warm restarts that outlive the machine.

Checkpoints (``runs/``) are not committed, so a run cannot be continued in a later
session from ``last.pt``; the exported ONNX file is committed. A config with
``"init_from_onnx": "hsrnet@b86e3aa"`` (or a bare ``"hsrnet"``: the file in the working
tree) loads that file's weights into the PyTorch model before the first epoch.

The exporter folds each BatchNorm into the convolution before it, so those weights come
back as ``W' = W * gamma / sigma`` and a bias ``b'``, and the BatchNorm's own parameters
are gone. The net computes the same function in eval mode whatever BatchNorm holds, as
long as ``BN(z) = z + b'`` for ``z = W' * x``; ``unfold_batchnorm`` picks the BatchNorm
that does so and also normalises like a trained one in train mode: running mean ``mu`` and
variance ``var`` of ``z`` measured over training batches, ``weight = sqrt(var + eps)``,
``bias = mu + b'``. Everything else is matched by name. The caller checks parity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from training.models.common import AGE_MAX
from training.onnx_weights import restore_float32_weights
from training.recipes import onnx_file

#: the attribute under which ``ExportGraph`` holds the age network; a packed gender
#: net (``ssrnet-gender``) is the same graph's ``gender_model``
AGE_PART = "age_model"
GENDER_PART = "gender_model"
#: how far the loaded gender net's P(female) may be from the file
MAX_GENDER_DIFF = 1e-3
#: how far the loaded model may be from the file (years), as at export
MAX_AGE_DIFF = 0.01
#: training faces the re-fitted BatchNorm statistics are measured on
CALIBRATION_FACES = 2048


def execution_order(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Leaf modules in the order one forward pass first calls them."""
    order: list[nn.Module] = []
    seen: set[int] = set()

    def record(module: nn.Module, _inputs: object, _output: object) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(lambda m, i: record(m, i, None)) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


def onnx_tensors(
    data: bytes, part: str = AGE_PART
) -> tuple[dict[str, np.ndarray], list[tuple[str, str | None]], list[str]]:
    """Initializers by name; the (weight, bias) names of every Conv node of ``part`` (the
    exporter names a node ``/part/...``) in graph order; the weights that ``part``'s
    MatMul nodes read (bias-free linear layers), in graph order."""
    proto = onnx.load_from_string(data)
    restore_float32_weights(proto)
    tensors = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs, matmuls, seen = [], [], set()
    for node in proto.graph.node:
        if not node.name.startswith(f"/{part}/"):
            continue
        if node.op_type == "Conv" and node.input[1] not in seen:
            seen.add(node.input[1])
            convs.append((node.input[1], node.input[2] if len(node.input) > 2 else None))
        if node.op_type == "MatMul" and node.input[1] in tensors and node.input[1] not in seen:
            seen.add(node.input[1])
            matmuls.append(node.input[1])
    return tensors, convs, matmuls


def load_onnx_weights(
    model: nn.Module, data: bytes, example: torch.Tensor, part: str = AGE_PART
) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None, torch.Tensor]]:
    """Copy the weights of the ONNX file's network ``part`` into ``model``.

    Returns the convolutions that came back folded, each with the BatchNorm it absorbed and
    the folded bias: give them to :func:`unfold_batchnorm` (until then each BatchNorm is the
    identity shift by that bias, exact in eval mode only).
    """
    tensors, convs, matmuls = onnx_tensors(data, part)
    prefix = f"{part}."
    state = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key in state:
        if prefix + key in tensors:
            loaded[key] = torch.from_numpy(tensors[prefix + key].copy())
    order = execution_order(model, example)
    names = {id(m): n for n, m in model.named_modules()}
    pending = [
        m for m in order if isinstance(m, nn.Conv2d) and f"{names[id(m)]}.weight" not in loaded
    ]
    folded_convs = [(w, b) for w, b in convs if not w.startswith(prefix)]
    if len(pending) != len(folded_convs):
        raise ValueError(
            f"{len(pending)} convolutions lack weights but the ONNX file has "
            f"{len(folded_convs)} folded ones: not this architecture's export"
        )
    folded = []
    for conv, (weight_name, bias_name) in zip(pending, folded_convs, strict=True):
        weight = torch.from_numpy(tensors[weight_name].copy())
        if weight.shape != conv.weight.shape:
            raise ValueError(
                f"{names[id(conv)]}: ONNX weight {weight_name} has shape {tuple(weight.shape)}, "
                f"the model {tuple(conv.weight.shape)}"
            )
        bias = (
            torch.from_numpy(tensors[bias_name].copy())
            if bias_name is not None
            else torch.zeros(weight.shape[0])
        )
        position = order.index(conv) + 1
        after = order[position] if position < len(order) else None
        norm = after if isinstance(after, nn.BatchNorm2d) else None
        conv_name = names[id(conv)]
        loaded[f"{conv_name}.weight"] = weight
        if norm is None:  # a convolution renamed but not folded
            if conv.bias is None and bias_name is not None:
                raise ValueError(f"{conv_name}: ONNX gives a bias, the model has none")
            if conv.bias is not None:
                loaded[f"{conv_name}.bias"] = bias
        else:
            if conv.bias is not None:
                loaded[f"{conv_name}.bias"] = torch.zeros_like(bias)
            bn = names[id(norm)]
            loaded[f"{bn}.running_mean"] = torch.zeros_like(bias)
            loaded[f"{bn}.running_var"] = torch.full_like(bias, 1.0 - norm.eps)
            loaded[f"{bn}.weight"] = torch.ones_like(bias)
            loaded[f"{bn}.bias"] = bias
        folded.append((conv, norm, bias))
    linears = [
        m for m in order if isinstance(m, nn.Linear) and f"{names[id(m)]}.weight" not in loaded
    ]
    renamed = [w for w in matmuls if not w.startswith(prefix)]
    if len(linears) != len(renamed):
        raise ValueError(
            f"{len(linears)} linear layers lack weights but the ONNX file has "
            f"{len(renamed)} unnamed MatMul weights: not this architecture's export"
        )
    for linear, weight_name in zip(linears, renamed, strict=True):
        weight = torch.from_numpy(tensors[weight_name].T.copy())  # MatMul reads W^T
        if weight.shape != linear.weight.shape or linear.bias is not None:
            raise ValueError(f"{names[id(linear)]}: ONNX MatMul weight {weight_name} does not fit")
        loaded[f"{names[id(linear)]}.weight"] = weight
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"the ONNX file holds no weights for {', '.join(missing)}")
    model.load_state_dict(loaded, strict=False)
    return folded


def unfold_batchnorm(
    model: nn.Module,
    folded: list[tuple[nn.Conv2d, nn.BatchNorm2d | None, torch.Tensor]],
    batches: Iterable[torch.Tensor],
) -> None:
    """Give each absorbed BatchNorm the statistics of its convolution's output over
    ``batches`` (normalised model inputs), keeping the eval-mode function unchanged."""
    pairs = [(conv, norm, bias) for conv, norm, bias in folded if norm is not None]
    sums = {id(conv): [0.0, 0.0, 0] for conv, _, _ in pairs}

    def accumulate(conv: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        z = output.detach()
        total = sums[id(conv)]
        total[0] = total[0] + z.sum(dim=(0, 2, 3), dtype=torch.float64)
        total[1] = total[1] + (z * z).sum(dim=(0, 2, 3), dtype=torch.float64)
        total[2] += z.numel() // z.shape[1]

    handles = [conv.register_forward_hook(accumulate) for conv, _, _ in pairs]
    try:
        with torch.no_grad():
            model.eval()
            for x in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    for conv, norm, bias in pairs:
        assert norm is not None
        total, square, count = sums[id(conv)]
        if count == 0:
            raise ValueError("no calibration batches reached the convolutions")
        mean = total / count
        var = (square / count - mean * mean).clamp_min(0.0)
        scale = torch.sqrt(var + norm.eps)
        with torch.no_grad():
            norm.running_mean.copy_(mean.float())
            norm.running_var.copy_(var.float())
            norm.weight.copy_(scale.float())
            norm.bias.copy_((mean + bias.double()).float())


def warm_start(
    model: nn.Module,
    spec: str,
    inputs: Callable[[np.ndarray], torch.Tensor],
    total: int,
    rows: int = CALIBRATION_FACES,
    part: str = AGE_PART,
) -> float:
    """Load the weights of ``spec``'s ONNX network ``part`` into ``model`` and fit its
    BatchNorms on ``rows`` training faces spread evenly over the ``total`` (the cache is
    ordered by file name, so by age); ``inputs(indices)`` gives normalised model inputs.
    Returns the largest difference between the model and onnxruntime on the first 512 of
    those faces: |age| in years (over 0.01 is an error), or for the ``gender_model``
    part |P(female)| (over 1e-3).

    A file of another fixed input size (a probe of ``mobileagenet`` at 224 px started from
    the 112 px file) is calibrated and checked on the faces resized to its size; training
    then adapts the net to the new size."""
    import onnxruntime as ort

    from training.models import gender_probability

    data = onnx_file(spec)[1]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    rank = len(shape)  # single-crop files take (N, 3, S, S)
    size = shape[-1] if isinstance(shape[-1], int) else None

    def at_file_size(x: torch.Tensor) -> torch.Tensor:
        if size is None or x.shape[-1] == size:
            return x
        flat = torch.nn.functional.interpolate(
            x.reshape(-1, *x.shape[-3:]), size=(size, size), mode="bilinear", antialias=True
        )
        return flat.reshape(*x.shape[:-2], size, size)

    indices = np.unique(np.linspace(0, total - 1, min(rows, total)).astype(np.int64))
    example = at_file_size(inputs(indices[:2]))
    folded = load_onnx_weights(model, data, example, part)
    batches = [at_file_size(inputs(indices[i : i + 256])) for i in range(0, len(indices), 256)]
    unfold_batchnorm(model, folded, batches)
    gender = part == GENDER_PART
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for x in batches[:2]:
            fed = x[:, 0] if x.dim() == 5 and rank == 4 else x
            reference = session.run(["gender" if gender else "age"], {"input": fed.numpy()})[0]
            out = model(x)
            mine = gender_probability(out) if gender else out["age"].clamp(0.0, AGE_MAX)
            worst = max(worst, float(np.abs(mine.numpy() - reference).max()))
    allowed = MAX_GENDER_DIFF if gender else MAX_AGE_DIFF
    if worst > allowed:
        raise ValueError(
            f"weights loaded from {spec} give {'P(female)' if gender else 'ages'} up to "
            f"{worst:.4g} from its ONNX file (allowed {allowed}): the mapping onto the model "
            "is wrong"
        )
    return worst
