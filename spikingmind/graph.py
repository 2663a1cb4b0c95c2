"""What a NIR graph means: the node types, their shapes, validity and evaluation order.

The one statement of which graphs are valid under docs/SEMANTICS.md, shared by everything
that reads a graph (the NumPy reference simulator in `spikingmind.export.reference`, the
energy counter in `spikingmind.energy.snn_counts`, the Lava plan), so that they agree on
which graphs they accept. It imports no torch and simulates nothing.

Time semantics (zero delay): at every SNN step each node is evaluated once, in a
topological order, and reads the *current* step's outputs of its sources. Several edges
into one node are summed in edge-list order (`acc = e0; acc = acc + e1; ...`).

Recurrence: a cycle is allowed only when it contains a stateful node (LIF, IF, LI, I,
CubaLIF, Delay). Inside a strongly connected component, every edge that *leaves* a stateful
node is a feedback edge: its destination reads the source's output of the *previous*
step (zeros at step 0), as a recurrent synapse does. All other edges are zero delay.

The order: Kahn's algorithm over the zero-delay edges with a first-in first-out queue
(sources first, in node order; each node's successors in edge-list order).

`NODE_KINDS` maps each supported NIR node type to how its input and output shapes are
checked; the reference simulator's table of step functions has exactly the same keys.

Over 500 lines on purpose: the node table, its shape rules and the validation that uses them
are one statement of which graphs are valid, read top to bottom (shapes, table, validation).

Why one file over 500 lines: it is the one statement of graph validity, shapes and
evaluation order that the simulator, the energy counter and the Lava plan share; two files
would invite two answers again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import nir
import numpy as np

from spikingmind.errors import GraphError

__all__ = [
    "NODE_KINDS",
    "STATEFUL_NODE_TYPES",
    "GraphPlan",
    "NodeKind",
    "as_int",
    "conv_geometry",
    "plan_graph",
    "validate_graph",
]

Shape = tuple[int, ...]


class _ShapeMismatch(Exception):
    """Internal: an input shape does not fit a node; carries what the node expects."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected



# --------------------------------------------------------------------------------------
# Shapes per node kind
# --------------------------------------------------------------------------------------


def as_int(value, what: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be one integer, got {value!r}")
    return int(array.reshape(-1)[0])


def _param_shape(node, names: Iterable[str]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*(np.shape(getattr(node, n)) for n in names)))
    except ValueError as exc:
        raise ValueError(
            f"parameters {', '.join(names)} have incompatible shapes "
            f"{[np.shape(getattr(node, n)) for n in names]}"
        ) from exc


def _elementwise_input(param_names: tuple[str, ...]):
    """Input shape rule of nodes acting element by element: their parameter shape."""

    def input_shape(node, candidate: Shape | None) -> Shape:
        shape = _param_shape(node, param_names)
        if shape == ():  # scalar parameters broadcast over any shape
            if candidate is None:
                raise _ShapeMismatch("an input shape (its parameters are scalars)")
            return candidate
        if candidate is not None and candidate != shape:
            raise _ShapeMismatch(str(shape))
        return shape

    return input_shape


def _same_shape(node, in_shape: Shape) -> Shape:
    return in_shape


def _fixed_input(node, candidate: Shape | None, declared) -> Shape:
    if declared is None:
        if candidate is None:
            raise _ShapeMismatch("an input shape (none declared)")
        return candidate
    shape = tuple(int(n) for n in np.asarray(declared).reshape(-1))
    if candidate is not None and candidate != shape:
        raise _ShapeMismatch(str(shape))
    return shape


def _input_shape_of_input(node, candidate):
    return _fixed_input(node, candidate, node.input_type.get("input"))


def _input_shape_of_output(node, candidate):
    return _fixed_input(node, candidate, node.output_type.get("output"))


def _matrix_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {weight.shape}")
    n_in = weight.shape[1]
    if candidate is None:
        return (n_in,)
    if len(candidate) < 1 or candidate[-1] != n_in:
        raise _ShapeMismatch(f"(..., {n_in})")
    return candidate


def _matrix_output(node, in_shape: Shape) -> Shape:
    return (*in_shape[:-1], int(np.shape(node.weight)[0]))



def _flatten_output(node, in_shape: Shape) -> Shape:
    ndim = len(in_shape)
    start, end = as_int(node.start_dim, "start_dim"), as_int(node.end_dim, "end_dim")
    start, end = start % ndim if ndim else 0, end % ndim if ndim else 0
    if ndim == 0 or start > end:
        raise _ShapeMismatch(f"at least {max(start, end) + 1} dimensions (start_dim..end_dim)")
    merged = int(np.prod(in_shape[start : end + 1]))
    return (*in_shape[:start], merged, *in_shape[end + 1 :])


def _flatten_input(node, candidate):
    return _fixed_input(node, candidate, node.input_type.get("input"))



# ---- Conv1d: torch.nn.functional.conv1d semantics --------------------------------------


def conv_geometry(node, n_in: int):
    weight = np.asarray(node.weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K), got shape {weight.shape}")
    c_out, c_in_group, kernel = weight.shape
    stride = as_int(node.stride, "stride")
    dilation = as_int(node.dilation, "dilation")
    groups = as_int(node.groups, "groups")
    if stride < 1 or dilation < 1 or groups < 1 or c_out % groups:
        raise ValueError(
            f"stride={stride}, dilation={dilation}, groups={groups} invalid for {c_out} output channels"
        )
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            if stride != 1:
                raise ValueError("padding='same' requires stride 1 (as in torch)")
            total = dilation * (kernel - 1)
            pad = (total // 2, total - total // 2)  # torch puts the odd element on the right
        else:
            raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
    else:
        p = as_int(padding, "padding")
        if p < 0:
            raise ValueError(f"padding must be >= 0, got {p}")
        pad = (p, p)
    n_out = (n_in + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1
    return c_out, c_in_group * groups, kernel, stride, dilation, groups, pad, n_out


def _conv_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K), got shape {weight.shape}")
    c_in = weight.shape[1] * as_int(node.groups, "groups")
    n_in = None if node.input_shape is None else as_int(node.input_shape, "input_shape")
    if candidate is None:
        if n_in is None:
            raise _ShapeMismatch(f"({c_in}, N) (input_shape not declared)")
        return (c_in, n_in)
    if len(candidate) != 2 or candidate[0] != c_in or (n_in is not None and candidate[1] != n_in):
        raise _ShapeMismatch(f"({c_in}, {'N' if n_in is None else n_in})")
    return candidate


def _conv_output(node, in_shape: Shape) -> Shape:
    c_out, *_, n_out = conv_geometry(node, in_shape[1])
    if n_out < 1:
        raise ValueError(f"input length {in_shape[1]} is too short for the kernel")
    return (c_out, n_out)



# ---- Conv2d: torch.nn.functional.conv2d semantics (the portable export's (C, 1, L) grid) ---


def _pair(value, what: str) -> tuple[int, int]:
    array = np.asarray(value)
    if array.size == 1:
        return (as_int(array, what),) * 2
    if array.shape != (2,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be one integer or two, got {value!r}")
    return int(array[0]), int(array[1])


def conv2d_geometry(node, in_hw: tuple[int, int]):
    """(C_out, C_in, (kH, kW), stride, dilation, groups, ((top, bottom), (left, right)), (H_out, W_out))."""
    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
    c_out, c_in_group, *kernel = weight.shape
    stride, dilation = _pair(node.stride, "stride"), _pair(node.dilation, "dilation")
    groups = as_int(node.groups, "groups")
    if min(*stride, *dilation, groups) < 1 or c_out % groups:
        raise ValueError(
            f"stride={stride}, dilation={dilation}, groups={groups} invalid for {c_out} output channels"
        )
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "SU":
        padding = str(padding.item()) if padding.dtype.kind == "U" else padding.item().decode()
    if isinstance(padding, str):
        if padding == "valid":
            pad = ((0, 0), (0, 0))
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' requires stride 1 (as in torch)")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pad = tuple((t // 2, t - t // 2) for t in totals)  # torch: the odd element on the right
        else:
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        p = _pair(padding, "padding")
        if min(p) < 0:
            raise ValueError(f"padding must be >= 0, got {p}")
        pad = ((p[0], p[0]), (p[1], p[1]))
    out = tuple(
        (n + lo + hi - d * (k - 1) - 1) // s + 1
        for n, (lo, hi), d, k, s in zip(in_hw, pad, dilation, kernel, stride)
    )
    return c_out, c_in_group * groups, tuple(kernel), stride, dilation, groups, pad, out


def _conv2d_input(node, candidate: Shape | None) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
    c_in = weight.shape[1] * as_int(node.groups, "groups")
    hw = None if node.input_shape is None else tuple(int(n) for n in np.asarray(node.input_shape).reshape(-1))
    if hw is not None and len(hw) != 2:
        raise ValueError(f"input_shape must be (H, W), got {node.input_shape!r}")
    if candidate is None:
        if hw is None:
            raise _ShapeMismatch(f"({c_in}, H, W) (input_shape not declared)")
        return (c_in, *hw)
    if len(candidate) != 3 or candidate[0] != c_in or (hw is not None and tuple(candidate[1:]) != hw):
        raise _ShapeMismatch(f"({c_in}, {'H, W' if hw is None else ', '.join(map(str, hw))})")
    return candidate


def _conv2d_output(node, in_shape: Shape) -> Shape:
    c_out, *_, out = conv2d_geometry(node, tuple(in_shape[1:]))
    if min(out) < 1:
        raise ValueError(f"input {tuple(in_shape[1:])} is too small for the kernel")
    return (c_out, *out)


# ---- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeKind:
    """How one NIR node type's shapes are checked, and whether it keeps state.

    input_shape(node, candidate) -> the node's input shape given the first source's
    output shape (None when unknown); raises when they cannot fit.
    output_shape(node, in_shape) -> the node's output shape (batch axis excluded).
    stateful: it keeps state across steps (a cycle through it is a recurrence);
    needs_dt: its parameters are continuous-time and need metadata['dt'].
    """

    input_shape: Callable[[Any, Shape | None], Shape]
    output_shape: Callable[[Any, Shape], Shape]
    stateful: bool = False
    needs_dt: bool = False


_LIF_PARAMS = ("tau", "r", "v_leak", "v_threshold", "v_reset")
_CUBA_PARAMS = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")

#: The supported NIR node types. Exact types: subclasses are custom nodes and are rejected.
NODE_KINDS: dict[type, NodeKind] = {
    nir.Input: NodeKind(_input_shape_of_input, _same_shape),
    nir.Output: NodeKind(_input_shape_of_output, _same_shape),
    nir.Affine: NodeKind(_matrix_input, _matrix_output),
    nir.Linear: NodeKind(_matrix_input, _matrix_output),
    nir.Scale: NodeKind(_elementwise_input(("scale",)), _same_shape),
    nir.Conv1d: NodeKind(_conv_input, _conv_output),
    nir.Conv2d: NodeKind(_conv2d_input, _conv2d_output),
    nir.Flatten: NodeKind(_flatten_input, _flatten_output),
    nir.Threshold: NodeKind(_elementwise_input(("threshold",)), _same_shape),
    nir.LIF: NodeKind(_elementwise_input(_LIF_PARAMS), _same_shape, True, True),
    nir.IF: NodeKind(_elementwise_input(("r", "v_threshold", "v_reset")), _same_shape, True),
    nir.LI: NodeKind(_elementwise_input(("tau", "r", "v_leak")), _same_shape, True, True),
    nir.I: NodeKind(_elementwise_input(("r",)), _same_shape, True, True),
    nir.CubaLIF: NodeKind(_elementwise_input(_CUBA_PARAMS), _same_shape, True, True),
    nir.Delay: NodeKind(_elementwise_input(("delay",)), _same_shape, True, True),
}

STATEFUL_NODE_TYPES = tuple(t for t, kind in NODE_KINDS.items() if kind.stateful)
_TIME_CONSTANTS = ("tau", "tau_mem", "tau_syn")
_SUPPORTED_NAMES = ", ".join(t.__name__ for t in NODE_KINDS)
_STATEFUL_NAMES = "/".join(t.__name__ for t in STATEFUL_NODE_TYPES)


# --------------------------------------------------------------------------------------
# Validation and order
# --------------------------------------------------------------------------------------


def _graph_dt(graph: nir.NIRGraph) -> float | None:
    metadata = graph.metadata if isinstance(graph.metadata, Mapping) else {}
    if "dt" not in metadata:
        return None
    dt = np.asarray(metadata["dt"], dtype=np.float64)
    if dt.size != 1 or not np.isfinite(dt).all() or float(dt.reshape(-1)[0]) <= 0:
        raise ValueError(f"metadata dt must be one positive number of seconds, got {metadata['dt']!r}")
    return float(dt.reshape(-1)[0])


@dataclass(frozen=True)
class GraphPlan:
    """What a validated graph means, derived once: evaluation order, sources, shapes, dt."""

    order: list[str]  # topological order over zero-delay edges
    sources: dict[str, list[tuple[str, bool]]]  # node -> [(source, is_feedback)] in edge order
    in_shapes: dict[str, Shape]
    out_shapes: dict[str, Shape]
    dt: float | None


def validate_graph(graph: nir.NIRGraph, source: str = "<graph>") -> dict[str, Shape]:
    """Check that `graph` means something under docs/SEMANTICS.md; raise GraphError if not.

    Returns every node's output shape (batch axis excluded).
    """
    return plan_graph(graph, source).out_shapes


def plan_graph(graph: nir.NIRGraph, source: str = "<graph>") -> GraphPlan:
    """Validate `graph` and derive order, feedback edges and shapes; GraphError names `source`."""
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"{source}: expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes: dict[str, Any] = dict(graph.nodes)
    edges = [(str(a), str(b)) for a, b in graph.edges]
    try:
        _check_node_types(nodes)
        _check_edges(nodes, edges)
        _check_parameters(nodes)
        dt = _check_dt(graph, nodes)
        incoming = _check_connectivity(nodes, edges)
        order, feedback = _order_and_feedback(nodes, edges)
        sources = {name: [(a, (a, name) in feedback) for a in incoming[name]] for name in nodes}
        in_shapes, out_shapes = _infer_shapes(nodes, edges, order, sources)
    except _Invalid as exc:
        raise GraphError(f"{source}: {exc}") from None
    return GraphPlan(order, sources, in_shapes, out_shapes, dt)


class _Invalid(Exception):
    """Internal: one validation failure, message without the file name."""


def _label(name: str, node) -> str:
    return f"node '{name}' ({type(node).__name__})"


def _check_node_types(nodes: dict[str, Any]) -> None:
    for name, node in nodes.items():
        if type(node) not in NODE_KINDS:
            raise _Invalid(
                f"node '{name}' has unsupported type {type(node).__name__} "
                f"(supported: {_SUPPORTED_NAMES})"
            )


def _check_edges(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> None:
    seen: set[tuple[str, str]] = set()
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise _Invalid(f"edge '{a}' -> '{b}' names missing node '{end}' (dangling edge)")
        if (a, b) in seen:
            raise _Invalid(f"edge '{a}' -> '{b}' appears twice")
        seen.add((a, b))
        if isinstance(nodes[b], nir.Input):
            raise _Invalid(f"edge '{a}' -> '{b}' leads into an Input node")
    for kind in (nir.Input, nir.Output):
        if not any(isinstance(n, kind) for n in nodes.values()):
            raise _Invalid(f"graph has no {kind.__name__} node")


def _check_parameters(nodes: dict[str, Any]) -> None:
    for name, node in nodes.items():
        for f in fields(node):
            value = getattr(node, f.name)
            if f.name in ("input_type", "output_type", "metadata") or value is None:
                continue
            if isinstance(value, str | bytes):
                continue
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' is not numeric") from None
            if not np.isfinite(array).all():
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' contains NaN or inf")
            if f.name in _TIME_CONSTANTS and not (array > 0).all():
                raise _Invalid(f"{_label(name, node)} parameter '{f.name}' must be > 0 seconds")


def _check_dt(graph: nir.NIRGraph, nodes: dict[str, Any]) -> float | None:
    try:
        dt = _graph_dt(graph)
    except (TypeError, ValueError) as exc:
        raise _Invalid(str(exc)) from None
    for name, node in nodes.items():
        if NODE_KINDS[type(node)].needs_dt and dt is None:
            raise _Invalid(f"{_label(name, node)} needs metadata['dt'] but the graph has none")
    return dt


def _check_connectivity(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Every node but an Input has inputs and is reachable from an Input; returns sources."""
    incoming: dict[str, list[str]] = {name: [] for name in nodes}
    outgoing: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        incoming[b].append(a)
        outgoing[a].append(b)
    for name, node in nodes.items():
        if not isinstance(node, nir.Input) and not incoming[name]:
            raise _Invalid(f"{_label(name, node)} has no incoming edges")
    reached = {n for n, node in nodes.items() if isinstance(node, nir.Input)}
    frontier = list(reached)
    while frontier:
        for nxt in outgoing[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    for name, node in nodes.items():
        if name not in reached:
            raise _Invalid(f"{_label(name, node)} is not reachable from any Input node")
    return incoming


def _order_and_feedback(
    nodes: dict[str, Any], edges: list[tuple[str, str]]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Feedback edges (inside a strongly connected component, leaving a stateful node) and a
    topological order of the rest; a cycle left over has no stateful node."""
    outgoing: dict[str, list[str]] = {name: [] for name in nodes}
    for a, b in edges:
        outgoing[a].append(b)
    component = _strongly_connected(list(nodes), outgoing)
    feedback = {
        (a, b)
        for a, b in edges
        if component[a] == component[b] and NODE_KINDS[type(nodes[a])].stateful
    }
    forward = [e for e in edges if e not in feedback]
    order = _topological_order(list(nodes), forward)
    if len(order) < len(nodes):
        cycle = _find_cycle(set(nodes) - set(order), forward, list(nodes))
        raise _Invalid(
            f"cycle {' -> '.join(repr(n) for n in cycle)} contains no stateful node "
            f"({_STATEFUL_NAMES}), so it has no defined order within a step"
        )
    return order, feedback


def _infer_shapes(nodes, edges, order, sources) -> tuple[dict[str, Shape], dict[str, Shape]]:
    """Input and output shape of every node (batch axis excluded); every edge must match."""
    in_shapes: dict[str, Shape] = {}
    out_shapes: dict[str, Shape] = {}
    for name in order:
        node, kind = nodes[name], NODE_KINDS[type(nodes[name])]
        # the first source already shaped (feedback sources later in the order are not yet)
        first = next(((a, out_shapes[a]) for a, _ in sources[name] if a in out_shapes), None)
        try:
            in_shapes[name] = kind.input_shape(node, None if first is None else first[1])
            out_shapes[name] = tuple(int(n) for n in kind.output_shape(node, in_shapes[name]))
        except _ShapeMismatch as exc:
            if first is None:
                raise _Invalid(f"{_label(name, node)} needs {exc.expected}") from None
            raise _Invalid(_mismatch(first[0], nodes[first[0]], first[1], name, node, exc.expected)) from None
        except (ValueError, TypeError, AssertionError) as exc:
            raise _Invalid(f"{_label(name, node)}: {exc}") from None
    for a, b in edges:  # every edge, feedback ones included
        if out_shapes[a] != in_shapes[b]:
            raise _Invalid(_mismatch(a, nodes[a], out_shapes[a], b, nodes[b], str(in_shapes[b])))
    return in_shapes, out_shapes


def _mismatch(src: str, src_node, shape: Shape, dst: str, dst_node, expected: str) -> str:
    return (
        f"shape mismatch on edge '{src}' -> '{dst}': '{src}' ({type(src_node).__name__}) outputs "
        f"{shape} but '{dst}' ({type(dst_node).__name__}) expects {expected}"
    )


def _strongly_connected(names: list[str], outgoing: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's algorithm, iterative; returns node -> component id."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = outgoing[node]
            if child < len(successors):
                work.append((node, child + 1))
                nxt = successors[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = index[node]
                    if member == node:
                        break
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return component


def _topological_order(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm with a first-in first-out queue: the nodes without sources in node
    order, then each node's successors as they become ready, in edge-list order (deterministic)."""
    indegree = {n: 0 for n in names}
    outgoing: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        indegree[b] += 1
        outgoing[a].append(b)
    ready = deque(n for n in names if indegree[n] == 0)
    order = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for nxt in outgoing[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order


def _find_cycle(remaining: set[str], edges: list[tuple[str, str]], order: list[str]) -> list[str]:
    """One cycle among nodes left over by Kahn's algorithm (each has a remaining predecessor)."""
    predecessor = {b: a for a, b in edges if a in remaining and b in remaining}
    node = min(remaining)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = predecessor[node]
    cycle = path[path.index(node) :][::-1]  # walked backwards: reverse into edge direction
    start = cycle.index(min(cycle, key=order.index))  # start at the earliest declared node
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]

