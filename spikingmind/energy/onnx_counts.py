"""Operation and memory counts of an ONNX graph (the ANN baseline), per node, batch 1.

Shapes come from `onnx.shape_inference` after fixing every dynamic batch axis to 1 (one
decision). Conventions, chosen to match the spiking side (`snn_counts`):
- MatMul / Gemm / Conv: one MAC per multiply-accumulate of the dense product; each MAC
  reads its weight when the weight is a parameter (initializer or Constant): no on-chip
  weight reuse, the same rule as one weight read per synaptic event.
- Elementwise ops count one op per output value: Add/Sub/Neg/Abs -> adds, Mul -> muls,
  Div -> divs, Relu/Max/Min/Where/comparisons -> compares, Exp/Erf/Tanh/Sigmoid/Sqrt/...
  -> transcendentals. Softmax, LayerNormalization, Gelu and reductions are expanded into
  these (see `_RULES`); a decomposed LayerNorm is counted through its parts.
- A parameter operand of an elementwise op (bias, LayerNorm gamma/beta) is read once per
  output value.
- Activation traffic: every counted node reads its non-parameter inputs once and writes its
  outputs once. Layout ops (Reshape, Transpose, Squeeze, Concat, Slice, Gather, Cast, ...)
  count 0 ops and 0 traffic (assumed fused into their neighbours' addressing).
- Any op without a rule, or whose shapes could not be inferred, is listed in `uncounted`
  with the reason: the totals are then a lower bound, and the report says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikingmind.errors import GraphError

OP_FIELDS = ("macs", "adds", "muls", "divs", "compares", "transcendentals")


@dataclass
class OnnxNodeCounts:
    """Counts of one ONNX node for one inference at batch 1."""

    name: str
    op_type: str
    macs: float = 0.0
    adds: float = 0.0
    muls: float = 0.0
    divs: float = 0.0
    compares: float = 0.0
    transcendentals: float = 0.0
    parameter_reads: float = 0.0
    activation_reads: float = 0.0
    activation_writes: float = 0.0
    parameters: int = 0
    module: str = ""  # the model module that emitted the node, where the exporter recorded it


def _module_of(node) -> str:
    """Module path recorded by torch's dynamo exporter ('blocks.0.attn.qkv'), or ''."""
    import ast

    for prop in getattr(node, "metadata_props", []):
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                return ""
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


@dataclass
class OnnxCounts:
    """Per-node counts of a whole ONNX model, plus the nodes that could not be counted."""

    model: str
    input_shapes: dict[str, list[int]]
    nodes: list[OnnxNodeCounts] = field(default_factory=list)
    uncounted: list[dict[str, str]] = field(default_factory=list)

    def total(self, name: str) -> float:
        return float(sum(getattr(node, name) for node in self.nodes))

    @property
    def parameters(self) -> int:
        return int(sum(node.parameters for node in self.nodes))

    def to_dict(self) -> dict[str, Any]:
        names = OP_FIELDS + ("parameter_reads", "activation_reads", "activation_writes")
        return {
            "model": self.model,
            "per": "inference at batch 1",
            "input_shapes": self.input_shapes,
            "totals": {name: self.total(name) for name in names} | {"parameters": self.parameters},
            "uncounted": self.uncounted,
            "nodes": [asdict(node) for node in self.nodes],
        }


def load_onnx(path: str | Path):
    """onnx.load, with a GraphError naming the file when it cannot be read."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError, OSError, ...
        raise GraphError(f"{path}: cannot read ONNX model: {' '.join(str(error).split())[:200]}") from None
    if not model.graph.node:  # a zero-byte file parses as an empty model
        raise GraphError(f"{path}: not an ONNX model with a graph (empty or not an ONNX file); nothing to count")
    return model


def count_onnx(model_or_path, input_shapes: dict[str, tuple[int, ...]] | None = None,
               label: str | None = None) -> OnnxCounts:
    """Count ops and memory traffic of every node of an ONNX model at batch 1.

    `input_shapes`: concrete shapes for graph inputs whose non-batch axes are dynamic.
    `label` names a model passed as a ModelProto in errors (a path names itself).
    Raises GraphError when the model cannot be read or an input shape stays unknown.
    """
    import onnx

    from_path = isinstance(model_or_path, (str, Path))
    label = str(model_or_path) if from_path else (label or "<model>")
    model = load_onnx(model_or_path) if from_path else model_or_path
    model = _fix_input_shapes(model, input_shapes or {}, label)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as error:
        raise GraphError(f"{label}: ONNX shape inference failed: {error}") from None
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[info.name] = _shape_of(info)
    constants: dict[str, np.ndarray | None] = {}
    for init in graph.initializer:
        constants[init.name] = onnx.numpy_helper.to_array(init)
        shapes[init.name] = tuple(init.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            value = _constant_value(node)
            constants[node.output[0]] = value
            if value is not None:
                shapes[node.output[0]] = tuple(value.shape)

    counts = OnnxCounts(
        model=label,
        input_shapes={i.name: list(shapes[i.name] or ()) for i in graph.input if i.name not in constants},
    )
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type in LAYOUT_OPS:
            continue
        rule = _RULES.get(node.op_type)
        if rule is None:
            counts.uncounted.append({"name": name, "op_type": node.op_type, "reason": "no counting rule"})
            continue
        in_shapes = [shapes.get(x) if x else None for x in node.input]
        out_shapes = [shapes.get(x) for x in node.output if x]
        if any(s is None for s in out_shapes) or any(s is None for x, s in zip(node.input, in_shapes) if x):
            counts.uncounted.append({"name": name, "op_type": node.op_type, "reason": "shape not inferred"})
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        is_const = [bool(x) and x in constants for x in node.input]
        result = OnnxNodeCounts(name=name, op_type=node.op_type, module=_module_of(node))
        rule(result, in_shapes, out_shapes, attrs, is_const, [constants.get(x) for x in node.input])
        result.activation_reads = float(sum(_size(s) for s, c, x in zip(in_shapes, is_const, node.input) if x and not c))
        result.activation_writes = float(sum(_size(s) for s in out_shapes))
        seen = set()
        for x, c in zip(node.input, is_const):
            if c and x not in seen and constants[x] is not None:
                seen.add(x)
                result.parameters += int(constants[x].size)
        counts.nodes.append(result)
    return counts


def _fix_input_shapes(model, overrides: dict, label: str):
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's model
    initializers = {init.name for init in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        wanted = overrides.get(graph_input.name)
        if wanted is not None:
            if len(wanted) != len(dims):
                raise GraphError(f"{label}: input {graph_input.name!r} has rank {len(dims)}, got shape {tuple(wanted)}")
            for dim, value in zip(dims, wanted):
                dim.Clear()
                dim.dim_value = int(value)
            continue
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if axis == 0:
                dim.Clear()
                dim.dim_value = 1  # batch of one decision
            else:
                raise GraphError(
                    f"{label}: input {graph_input.name!r} axis {axis} is dynamic; pass its shape in input_shapes"
                )
    return model


def _shape_of(info) -> tuple[int, ...] | None:
    tensor = info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for dim in tensor.shape.dim:
        if not dim.HasField("dim_value"):
            return None
        dims.append(int(dim.dim_value))
    return tuple(dims)


def _constant_value(node) -> np.ndarray | None:
    import onnx

    for attr in node.attribute:
        if attr.name == "value":
            return onnx.numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
        if attr.name in ("value_floats", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
    return None


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None else 0


# ---- counting rules: (counts, in_shapes, out_shapes, attrs, is_const, const_values) -> None

Rule = Callable[[OnnxNodeCounts, list, list, dict, list, list], None]


def _matmul(c, ins, outs, attrs, is_const, values):
    a = ins[0]
    inner = a[-1] if len(a) >= 1 else 1
    c.macs = float(_size(outs[0]) * inner)
    if is_const[1] or is_const[0]:
        c.parameter_reads = c.macs


def _gemm(c, ins, outs, attrs, is_const, values):
    a = ins[0]
    inner = a[0] if attrs.get("transA", 0) else a[1]
    n = _size(outs[0])
    c.macs = float(n * inner)
    if is_const[1] or is_const[0]:
        c.parameter_reads = c.macs
    if len(ins) > 2 and ins[2] is not None:
        c.adds = float(n)
        if is_const[2]:
            c.parameter_reads += n
        if attrs.get("beta", 1.0) != 1.0:
            c.muls += n
    if attrs.get("alpha", 1.0) != 1.0:
        c.muls += n


def _conv(c, ins, outs, attrs, is_const, values):
    weight = ins[1]
    n = _size(outs[0])
    c.macs = float(n * _size(weight[1:]))
    if is_const[1]:
        c.parameter_reads = c.macs
    if len(ins) > 2 and ins[2] is not None:
        c.adds = float(n)
        if is_const[2]:
            c.parameter_reads += n


def _elementwise(kind: str, per_value: float = 1.0) -> Rule:
    def rule(c, ins, outs, attrs, is_const, values):
        n = _size(outs[0])
        operands = max(1, len([s for s in ins if s is not None]) - 1) if kind in ("adds", "muls", "compares") else 1
        setattr(c, kind, getattr(c, kind) + float(n) * per_value * operands)
        c.parameter_reads += float(n) * _tensor_parameters(is_const, values)

    return rule


def _tensor_parameters(is_const, values) -> int:
    """Parameter operands read per output value; a scalar constant stays in a register."""
    return sum(1 for k, v in zip(is_const, values) if k and (v is None or v.size > 1))


def _pow(c, ins, outs, attrs, is_const, values):
    n = _size(outs[0])
    exponent = values[1] if len(values) > 1 else None
    if exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0:
        c.muls = float(n)  # x**2 is one multiply
    else:
        c.transcendentals = float(n)
    c.parameter_reads += float(n) * _tensor_parameters(is_const[:1], values[:1])


def _where(c, ins, outs, attrs, is_const, values):
    n = _size(outs[0])
    c.compares = float(n)  # a select per value
    c.parameter_reads += float(n) * _tensor_parameters(is_const, values)


def _clip(c, ins, outs, attrs, is_const, values):
    c.compares = 2.0 * _size(outs[0])


def _leaky_relu(c, ins, outs, attrs, is_const, values):
    n = _size(outs[0])
    c.compares, c.muls = float(n), float(n)


def _gelu(c, ins, outs, attrs, is_const, values):
    # 0.5 * x * (1 + erf(x / sqrt(2))): 3 multiplies, 1 add, 1 erf per value
    n = float(_size(outs[0]))
    c.muls, c.adds, c.transcendentals = 3 * n, n, n


def _softmax(c, ins, outs, attrs, is_const, values):
    # max (compare), x - max (add), exp, running sum (add), divide: per value
    n = float(_size(outs[0]))
    c.compares, c.adds, c.transcendentals, c.divs = n, 2 * n, n, n


def _log_softmax(c, ins, outs, attrs, is_const, values):
    n = float(_size(outs[0]))
    shape = outs[0]
    axis = attrs.get("axis", -1) % max(1, len(shape))
    rows = n / shape[axis] if shape else n
    c.compares, c.adds, c.transcendentals = n, 3 * n, n + rows


def _layer_norm(c, ins, outs, attrs, is_const, values):
    shape = ins[0]
    axis = attrs.get("axis", -1) % len(shape)
    n = float(_size(shape))
    rows = float(_size(shape[:axis]))
    # mean: sum + scale; var: subtract, square, sum, scale, + eps; rsqrt; normalise, gamma, beta
    c.adds = 3 * n + rows
    c.muls = 3 * n + 2 * rows
    c.transcendentals = rows
    if len(ins) > 2 and ins[2] is not None:
        c.adds += n
    c.parameter_reads = n * sum(1 for k in is_const[1:] if k)


def _batch_norm(c, ins, outs, attrs, is_const, values):
    # inference: folded per-channel scale and shift
    n = float(_size(outs[0]))
    c.muls, c.adds = n, n
    c.parameter_reads = 2 * n


def _reduce(kind: str, extra: str | None = None) -> Rule:
    def rule(c, ins, outs, attrs, is_const, values):
        n_in, n_out = float(_size(ins[0])), float(_size(outs[0]))
        setattr(c, kind, n_in - n_out)
        if extra == "mean":
            c.muls = n_out
        elif extra == "square":
            c.muls = n_in
        elif extra == "l2":
            c.muls, c.transcendentals = n_in, n_out

    return rule


def _argmax(c, ins, outs, attrs, is_const, values):
    c.compares = float(_size(ins[0]))


def _gather(c, ins, outs, attrs, is_const, values):
    if is_const[0]:
        c.parameter_reads = float(_size(outs[0]))  # embedding-table lookup


#: Ops that move or relabel data: 0 ops and 0 traffic (see module docstring).
LAYOUT_OPS = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Slice",
    "Concat", "Split", "Constant", "ConstantOfShape", "Cast", "CastLike", "Expand", "Range", "Dropout", "Tile",
    "Pad",
})

_TRANSCENDENTAL = ("Exp", "Log", "Erf", "Tanh", "Sigmoid", "Sqrt", "Reciprocal", "Softplus", "Sin", "Cos",
                   "HardSigmoid", "Elu", "Selu", "Mish", "HardSwish")
_COMPARE = ("Relu", "Max", "Min", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And",
            "Or", "Xor", "Sign")

_RULES: dict[str, Rule] = {
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Conv": _conv,
    "Add": _elementwise("adds"),
    "Sub": _elementwise("adds"),
    "Sum": _elementwise("adds"),
    "Neg": _elementwise("adds"),
    "Abs": _elementwise("adds"),
    "Mul": _elementwise("muls"),
    "Div": _elementwise("divs"),
    "Pow": _pow,
    "Where": _where,
    "Clip": _clip,
    "LeakyRelu": _leaky_relu,
    "Gelu": _gelu,
    "Softmax": _softmax,
    "LogSoftmax": _log_softmax,
    "LayerNormalization": _layer_norm,
    "BatchNormalization": _batch_norm,
    "ReduceSum": _reduce("adds"),
    "ReduceMean": _reduce("adds", "mean"),
    "ReduceMax": _reduce("compares"),
    "ReduceMin": _reduce("compares"),
    "ReduceSumSquare": _reduce("adds", "square"),
    "ReduceL2": _reduce("adds", "l2"),
    "CumSum": _elementwise("adds"),
    "ArgMax": _argmax,
    "ArgMin": _argmax,
    "Gather": _gather,
    **{op: _elementwise("transcendentals") for op in _TRANSCENDENTAL},
    **{op: _elementwise("compares") for op in _COMPARE},
}
