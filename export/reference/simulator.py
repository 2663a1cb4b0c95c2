"""The reference simulator: steps a validated NIR graph with NumPy, exactly as docs/SEMANTICS.md states."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from spikingmind.errors import GraphError
from spikingmind.export.reference.nodes import COMPILERS, CompileContext
from spikingmind.graph import Shape, as_int, plan_graph
from spikingmind.limits import check_graph_memory


@dataclass
class SimulationResult:
    """Outputs (and optionally per-node records) of one run.

    outputs: Output node name -> array (T, B, *shape).
    records: node name -> array (T, B, *shape) of that node's output at every step
    (0/1 for spiking nodes); None when the run did not record.
    """

    outputs: dict[str, np.ndarray]
    records: dict[str, np.ndarray] | None = None
    time_steps: int = 0
    carry: "Carry | None" = None  # the state that outlives the run (streaming graphs)

    @property
    def output(self) -> np.ndarray:
        """The only Output's array (T, B, *shape); an error when there are several."""
        if len(self.outputs) != 1:
            raise ValueError(f"graph has {len(self.outputs)} outputs: {sorted(self.outputs)}")
        return next(iter(self.outputs.values()))


@dataclass
class Carry:
    """What outlives a run of a streaming graph (docs/SEMANTICS.md, "Streaming"): every Delay
    node's buffer (its step counter and history (slots, B, ...)) and the last outputs its
    feedback edges read, per batch row. Every other state starts each run at zero."""

    delays: dict[int, tuple[int, np.ndarray]]  # program index -> (steps so far, history)
    previous: dict[int, np.ndarray]  # value slot -> (B, *shape)

    def select(self, rows: np.ndarray) -> "Carry":
        """The carry of batch rows `rows` (a copy)."""
        return Carry({i: (t, history[:, rows].copy()) for i, (t, history) in self.delays.items()},
                     {slot: value[rows].copy() for slot, value in self.previous.items()})

    def put(self, rows: np.ndarray, part: "Carry") -> None:
        """Write `part` (a carry of `rows`) back into these rows."""
        for i, (t, history) in part.delays.items():
            held = self.delays[i][1]
            held[:, rows] = history
            self.delays[i] = (t, held)
        for slot, value in part.previous.items():
            self.previous[slot][rows] = value


@dataclass(frozen=True)
class _Program:
    name: str
    index: int
    step: Callable
    params: Any
    init_state: Callable[[int], Any]
    sources: tuple[int, ...]  # value slots in edge-list order; feedback edges read slot + n


class ReferenceSimulator:
    """Step a validated NIR graph with NumPy, exactly as docs/SEMANTICS.md states.

    Constants (decays, Toeplitz tables of Conv1d, topological order) are computed once
    here; `run` only steps.
    """

    def __init__(self, graph: nir.NIRGraph, dtype=np.float64, *, source: str = "<graph>"):
        plan = plan_graph(graph, source)
        self.graph = graph
        self.dtype = np.dtype(dtype)
        self.dt = plan.dt
        self.output_shapes: dict[str, Shape] = dict(plan.out_shapes)
        self.input_names = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Input)]
        self.output_names = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Output)]
        self.input_shapes = {n: plan.out_shapes[n] for n in self.input_names}
        metadata = graph.metadata if isinstance(graph.metadata, Mapping) else {}
        self.time_steps: int | None = None
        if "time_steps" in metadata:
            try:
                self.time_steps = as_int(metadata["time_steps"], "metadata time_steps")
            except ValueError as exc:
                raise GraphError(f"{source}: {exc}") from None
            if self.time_steps < 1:
                raise GraphError(f"{source}: metadata time_steps must be >= 1, got {self.time_steps}")
        self.source = source
        # before anything is compiled: a 30 KB file can declare a grid or a T that fills the memory
        check_graph_memory(self.output_shapes, self.output_names, self.time_steps or 1, 1, source,
                           self.dtype.itemsize, GraphError)

        slot = {name: i for i, name in enumerate(plan.order)}
        self._names = list(plan.order)
        self._programs: list[_Program] = []
        for name in plan.order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                continue
            ctx = CompileContext(name, plan.in_shapes[name], plan.out_shapes[name], plan.dt, self.dtype)
            try:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    compiled = COMPILERS[type(node)](node, ctx)
            except (ValueError, TypeError) as exc:
                raise GraphError(f"{source}: node '{name}' ({type(node).__name__}): {exc}") from exc
            for constant in _arrays_in(compiled.params):
                if not np.isfinite(constant).all():
                    raise GraphError(
                        f"{source}: node '{name}' ({type(node).__name__}) has parameters that give "
                        f"non-finite step constants (e.g. tau = 0)"
                    )
            srcs = plan.sources[name]
            self._programs.append(
                _Program(
                    name,
                    slot[name],
                    compiled.step,
                    compiled.params,
                    compiled.init_state,
                    tuple(slot[a] + len(plan.order) * feedback for a, feedback in srcs),
                )
            )
        # nodes read one step late through a feedback edge: their "previous" output starts at 0
        self._fed_back = {a for srcs in plan.sources.values() for a, feedback in srcs if feedback}

    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        time_steps: int | None = None,
        record: bool | Iterable[str] = False,
        *,
        time_varying: bool = False,
        carry: Carry | bool | None = None,
    ) -> SimulationResult:
        """Simulate `time_steps` steps from zero state.

        carry: a streaming graph's state from the run before (its Delay buffers and fed-back
        outputs; every other state still starts at zero), or True for an episode's first run:
        the result then holds the carry after this run.

        inputs: array (B, *input_shape) presented at every step, or a dict Input name ->
        array when the graph has several Inputs. With `time_varying=True` each array is
        (T, B, *input_shape), one slice per step, and T defaults to its length.
        time_steps: defaults to graph.metadata["time_steps"].
        record: True for every node, or the node names to record.
        """
        arrays = self._input_arrays(inputs)
        if time_varying:
            lengths = {a.shape[0] for a in arrays.values()}
            if len(lengths) != 1:
                raise ValueError(f"time-varying inputs have different lengths {sorted(lengths)}")
            (length,) = lengths
            if time_steps is None:
                time_steps = length
            elif time_steps > length:
                raise ValueError(f"time_steps={time_steps} but the inputs hold {length} steps")
        if time_steps is None:
            if self.time_steps is None:
                raise ValueError("time_steps not given and the graph metadata has no 'time_steps'")
            time_steps = self.time_steps
        time_steps = int(time_steps)
        if time_steps < 1:
            raise ValueError(f"time_steps must be >= 1, got {time_steps}")

        batch = None
        for name, array in arrays.items():
            shape = array.shape[1:] if time_varying else array.shape
            want = self.input_shapes[name]
            if len(shape) != len(want) + 1 or tuple(shape[1:]) != want:
                layout = "(T, B, *shape)" if time_varying else "(B, *shape)"
                raise ValueError(
                    f"input '{name}' has shape {array.shape}; expected {layout} with shape {want}"
                )
            if batch is not None and shape[0] != batch:
                raise ValueError("inputs have different batch sizes")
            batch = shape[0]

        recorded = self._recorded_names(record)
        check_graph_memory(self.output_shapes, list(dict.fromkeys(self.output_names + recorded)), time_steps, batch,
                           self.source, self.dtype.itemsize, GraphError)
        recorded_slots = [self._names.index(n) for n in recorded]
        output_slots = [self._names.index(n) for n in self.output_names]
        n_slots = len(self._names)
        programs = [(p.index, p.step, p.params, p.sources[0], p.sources[1:]) for p in self._programs]
        states = [p.init_state(batch) for p in self._programs]
        previous: list[Any] = [
            np.zeros((batch, *self.output_shapes[n]), dtype=self.dtype) if n in self._fed_back else None
            for n in self._names
        ]
        if isinstance(carry, Carry):
            for i, state in carry.delays.items():
                states[i] = state
            for slot, value in carry.previous.items():
                previous[slot] = value
        input_items = [(self._names.index(n), arrays[n]) for n in self.input_names]
        output_steps: list[list[np.ndarray]] = [[] for _ in output_slots]
        record_steps: list[list[np.ndarray]] = [[] for _ in recorded_slots]

        # slots [0, n): this step's outputs; [n, 2n): the previous step's (feedback edges)
        for t in range(time_steps):
            values: list[Any] = [None] * n_slots + previous
            for slot, array in input_items:
                values[slot] = array[t] if time_varying else array
            for i, (slot, step, params, first, rest) in enumerate(programs):
                x = values[first]
                for source in rest:  # edge-list order: acc = e0; acc = acc + e1 ...
                    x = x + values[source]
                values[slot], states[i] = step(params, states[i], x)
            previous = values[:n_slots]
            for k, slot in enumerate(output_slots):
                output_steps[k].append(previous[slot])
            for k, slot in enumerate(recorded_slots):
                record_steps[k].append(previous[slot])

        outputs = {n: np.stack(steps) for n, steps in zip(self.output_names, output_steps)}
        records = (
            {n: np.stack(steps) for n, steps in zip(recorded, record_steps)} if record else None
        )
        carried = None
        if carry is not None and carry is not False:
            carried = Carry({i: states[i] for i, p in enumerate(self._programs)
                             if isinstance(self.graph.nodes[p.name], nir.Delay)},
                            {slot: previous[slot].copy() for slot, name in enumerate(self._names)
                             if name in self._fed_back})
        return SimulationResult(outputs, records, time_steps, carried)

    def initial_carry(self, batch: int) -> Carry:
        """The carry at an episode's start: empty Delay buffers, zero fed-back outputs."""
        return Carry({i: p.init_state(batch) for i, p in enumerate(self._programs)
                      if isinstance(self.graph.nodes[p.name], nir.Delay)},
                     {slot: np.zeros((batch, *self.output_shapes[name]), dtype=self.dtype)
                      for slot, name in enumerate(self._names) if name in self._fed_back})

    def _input_arrays(self, inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            missing = set(self.input_names) - set(inputs)
            extra = set(inputs) - set(self.input_names)
            if missing or extra:
                raise ValueError(
                    f"inputs must name the Input nodes {self.input_names}; "
                    f"missing {sorted(missing)}, unknown {sorted(extra)}"
                )
            return {n: np.asarray(inputs[n], dtype=self.dtype) for n in self.input_names}
        if len(self.input_names) != 1:
            raise ValueError(f"graph has Inputs {self.input_names}: pass a dict name -> array")
        return {self.input_names[0]: np.asarray(inputs, dtype=self.dtype)}

    def _recorded_names(self, record) -> list[str]:
        if record is True:
            return list(self._names)
        if not record:
            return []
        names = [record] if isinstance(record, str) else list(record)
        unknown = [n for n in names if n not in self.output_shapes]
        if unknown:
            raise ValueError(f"cannot record unknown nodes {unknown}")
        return names


def _arrays_in(params) -> Iterable[np.ndarray]:
    if isinstance(params, np.ndarray):
        if np.issubdtype(params.dtype, np.floating):
            yield params
    elif isinstance(params, tuple | list):
        for item in params:
            yield from _arrays_in(item)

