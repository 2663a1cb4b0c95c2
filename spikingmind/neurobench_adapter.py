"""NeuroBench (neurobench 2.3.0) on a spiking DT: what its hooks need to see, and its silent zeros.

NeuroBench measures a model through forward hooks: connection layers are found by type
(torch Linear / Conv / RNN modules), neurons as snnTorch `SpikingNeuron` modules (or ReLU,
Sigmoid) called once per time step. Our LIF layers run all T steps in one call of their own
code, so NeuroBench sees none of them. `with_snntorch_neurons` returns a copy of the model
whose every LIF layer steps an `snntorch.Leaky` (zero reset, same beta and threshold, strict
`>`: docs/SEMANTICS.md) T times; `compare_records` checks the copy fires the same spikes and
gives the same outputs as the original. What stays invisible to NeuroBench either way: the
causal decay mix (an einsum / bmm, no module) and the AND gates (products of spike tensors).

A NeuroBench workload metric that raises is caught by NeuroBench and reported as 0.0 (and
when it raised in one batch only, a later batch may leave a partial count: SynapticOperations
drops the hook of a layer it failed on), and its activation metrics return 0.0 when no
activation module was found. `run_neurobench` reports all of these as not measured (None)
with the reason, never as a number.

neurobench is an optional dependency, installed without its own dependencies (`make venv`;
by hand `pip install --no-deps neurobench==2.3.0 tqdm==4.70.1`, see pyproject.toml): it is
imported inside the functions that use it, so the core package does not need it.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from spikingmind.model import LIF, DecisionTransformer

#: The NeuroBench metrics this module runs, by class name (static, workload).
STATIC_METRICS = ("Footprint", "ConnectionSparsity")
WORKLOAD_METRICS = ("SynapticOperations", "ActivationSparsity", "MembraneUpdates")
#: Workload metrics that read NeuroBench's activation hooks (0.0 when there are none).
ACTIVATION_METRICS = ("ActivationSparsity", "MembraneUpdates", "ActivationSparsityByLayer")


# ---------------------------------------------------------------------------- the model NeuroBench sees


class SnnTorchLIF(nn.Module):
    """Our LIF layer stepped through an `snntorch.Leaky`: currents (T, ...) -> spikes (T, ...).

    snnTorch zero reset with its default reset_delay zeroes the membrane at the start of the
    step after a spike, which gives our step (v = beta v + I; s = v > threshold; v = 0 where
    s) spike for spike. The Leaky is registered under `name` (the layer's path with `_` for
    `.`), the name NeuroBench's by-layer metrics use (it keys layers by child name only).
    """

    def __init__(self, lif: LIF, name: str):
        super().__init__()
        import snntorch as snn

        self.beta, self.threshold, self.slope = lif.beta, lif.threshold, lif.slope  # read by the attention
        self.neuron_name = name
        self.add_module(name, snn.Leaky(beta=lif.beta, threshold=lif.threshold, reset_mechanism="zero"))

    @property
    def neuron(self) -> nn.Module:
        return getattr(self, self.neuron_name)

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        neuron = self.neuron
        neuron.mem = torch.zeros_like(currents[0])  # every decision starts at rest
        spikes = [neuron(current)[0] for current in currents]
        neuron.mem = torch.zeros(0, dtype=currents.dtype)  # no state kept between decisions (nor in Footprint)
        return torch.stack(spikes).to(currents.dtype)  # snnTorch's Heaviside returns float32


def with_snntorch_neurons(model: DecisionTransformer) -> DecisionTransformer:
    """A copy of a spiking DT whose every LIF layer is an `SnnTorchLIF` (same weights, dtype)."""
    if not model.spiking:
        raise ValueError("with_snntorch_neurons: the ANN twin has no LIF layers")
    adapted = copy.deepcopy(model)
    dtype = next(model.parameters()).dtype
    for path, module in list(adapted.named_modules()):
        if type(module) is LIF:
            parent_path, _, attr = path.rpartition(".")
            parent = adapted.get_submodule(parent_path) if parent_path else adapted
            setattr(parent, attr, SnnTorchLIF(module, path.replace(".", "_")))
    return adapted.to(dtype).eval()  # Leaky's beta / threshold buffers in the model's dtype


class DecisionOutputs(nn.Module):
    """The network NeuroBench runs: tokens (B, L, F) -> decision-token outputs (B, n_out).

    It computes every token (`model.forward`, the work the NIR graph and our counts cover),
    not the `decide` shortcut. `route_through_modules`: model.py fuses the q/k/v LIF layers
    into one call that bypasses their modules at inference; with an input that requires grad
    every LIF layer runs through its own module (same spikes: tests/test_model.py), so
    NeuroBench's hooks see them. The graph autograd builds is dropped with the output.
    """

    def __init__(self, model: DecisionTransformer, route_through_modules: bool = False):
        super().__init__()
        self.model = model
        self.decision_token = model.decision_token
        self.route_through_modules = route_through_modules

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.route_through_modules:
            with torch.no_grad():
                return self.model(tokens)[:, self.decision_token]
        with torch.enable_grad():
            outputs = self.model(tokens.detach().requires_grad_(True))[:, self.decision_token]
        return outputs.detach()


def compare_records(original: DecisionTransformer, adapted: DecisionTransformer, windows: np.ndarray,
                    batch: int = 64, on_chunk: Callable[[np.ndarray, dict], None] | None = None) -> dict[str, Any]:
    """Run both models on `windows` (N, L, F) and compare outputs and every spike record.

    The original runs its inference path, the adapted one as NeuroBench runs it
    (`DecisionOutputs(route_through_modules=True)`). Returns {"outputs_equal", "spikes_equal",
    "max_output_difference", "spike_mismatches": {layer: neuron-steps that differ}, "windows"}.
    `on_chunk(windows, record)` sees each chunk with the original's spike record (T, B, L, C)
    per layer, so a caller can compare them with another simulator in the same pass.
    """
    dtype = next(original.parameters()).dtype
    mismatches: dict[str, int] = defaultdict(int)
    outputs_equal, max_diff = True, 0.0
    for start in range(0, len(windows), batch):
        tokens = torch.as_tensor(windows[start:start + batch], dtype=dtype)
        ref_record, new_record = {}, {}
        with torch.inference_mode():
            ref = original(tokens, ref_record)
        with torch.enable_grad():
            new = adapted(tokens.clone().requires_grad_(True), new_record).detach()
        outputs_equal &= bool(torch.equal(ref, new))
        max_diff = max(max_diff, float((ref - new).abs().max()))
        if set(ref_record) != set(new_record):
            raise ValueError(f"records name different layers: {sorted(set(ref_record) ^ set(new_record))}")
        for name, spikes in ref_record.items():
            mismatches[name] += int((spikes != new_record[name].detach()).sum())
        if on_chunk is not None:
            on_chunk(windows[start:start + batch], ref_record)
    return {"windows": int(len(windows)), "outputs_equal": outputs_equal, "max_output_difference": max_diff,
            "spikes_equal": not any(mismatches.values()), "spike_mismatches": dict(mismatches)}


def neuron_layers(adapted: DecisionTransformer) -> dict[str, str]:
    """NeuroBench's name of each snnTorch stand-in (its child name) -> the LIF layer's module path."""
    return {m.neuron_name: path for path, m in adapted.named_modules() if isinstance(m, SnnTorchLIF)}


def nir_node_name(module_path: str) -> str:
    """The NIR node (export/nir/emitters.py) a torch Linear or LIF layer of the spiking DT becomes."""
    if module_path == "head":
        return "head.readout"
    if module_path == "head_lif":
        return "head.lif"
    return module_path.removesuffix(".linear")  # TokenLinear's Linear: its BatchNorm is folded in


# ---------------------------------------------------------------------------- running NeuroBench


@dataclass
class NeuroBenchRun:
    """What one `Benchmark.run` gave, with its silent zeros turned into reasons.

    `metrics[name]` is NeuroBench's value, or None where `not_measured[name]` says why.
    `raw` is NeuroBench's own result dict, zeros included, for the record.
    """

    metrics: dict[str, Any]
    not_measured: dict[str, str]
    raw: dict[str, Any]
    synops_by_layer: dict[str, dict[str, float]]
    connection_layers: list[str]
    activation_layers: list[str]
    samples: int
    notes: list[str] = field(default_factory=list)


def _guarded(metric_cls: type, errors: dict[str, str]) -> type:
    """`metric_cls` under its own name, recording the first exception it raises (then re-raising
    it, so NeuroBench's own fallback still runs and its raw result stays NeuroBench's)."""

    def __call__(self, *args):
        try:
            return metric_cls.__call__(self, *args)
        except Exception as error:
            errors.setdefault(metric_cls.__name__, f"{type(error).__name__}: {error}")
            raise

    return type(metric_cls.__name__, (metric_cls,), {"__call__": __call__, "__module__": __name__})


def _synops_by_layer_metric(names: dict[int, str]) -> type:
    """SynapticOperations per connection layer: the loop of NeuroBench's
    `SynapticOperations.__call__` with NeuroBench's `single_layer_MACs`, kept per layer."""
    from neurobench.metrics.abstract import AccumulatedMetric
    from neurobench.metrics.utils.layers import single_layer_MACs

    class SynapticOperationsByLayer(AccumulatedMetric):
        def __init__(self):
            super().__init__(requires_hooks=True)
            self.reset()

        def reset(self):
            self.layers = defaultdict(lambda: {"Effective_MACs": 0, "Effective_ACs": 0, "Dense": 0})
            self.total_samples = 0

        def __call__(self, model, preds, data):
            for hook in model.connection_hooks:
                layer = self.layers[names.get(id(hook.layer), f"<unnamed {type(hook.layer).__name__}>")]
                for spikes in hook.inputs:
                    if len(spikes) == 1:
                        spikes = spikes[0]
                    hook.hook.remove()  # as NeuroBench: its binary copy of the layer must not re-enter the hook
                    operations, spiking = single_layer_MACs(spikes, hook.layer)
                    dense, _ = single_layer_MACs(spikes, hook.layer, total=True)
                    layer["Dense"] += dense
                    layer["Effective_ACs" if spiking else "Effective_MACs"] += operations
                    hook.register_hook()
            self.total_samples += data[0].size(0)
            return self.compute()

        def compute(self):
            n = max(self.total_samples, 1)
            return {name: {k: v / n for k, v in counts.items()} for name, counts in self.layers.items()}

    return SynapticOperationsByLayer


def _by_layer_sparsity_metric(notes: list[str]) -> type:
    """NeuroBench's ActivationSparsityByLayer, usable inside a Benchmark.

    In 2.3.0 its __init__ skips WorkloadMetric.__init__, so `requires_hooks` is missing and
    Benchmark() raises AttributeError. Checked here: if the class works as shipped it is
    used as is, otherwise a subclass that only adds the missing base-class init.
    """
    from neurobench.metrics.abstract import WorkloadMetric
    from neurobench.metrics.workload import ActivationSparsityByLayer

    try:
        ActivationSparsityByLayer().requires_hooks
        return ActivationSparsityByLayer
    except AttributeError as error:
        notes.append(f"ActivationSparsityByLayer as shipped crashes Benchmark() ({type(error).__name__}: {error}); "
                     "measured with a subclass that calls WorkloadMetric.__init__(requires_hooks=True) first")

    def __init__(self):
        WorkloadMetric.__init__(self, requires_hooks=True)
        ActivationSparsityByLayer.__init__(self)

    return type("ActivationSparsityByLayer", (ActivationSparsityByLayer,),
                {"__init__": __init__, "__module__": __name__})


def run_neurobench(net: nn.Module, windows: np.ndarray, batch: int = 64, snntorch_neurons: bool = True,
                   by_layer: bool = True) -> NeuroBenchRun:
    """NeuroBench's Benchmark over decision windows (N, L, F): Footprint, ConnectionSparsity,
    SynapticOperations, ActivationSparsity, MembraneUpdates (+ per-layer SynOps and sparsity).

    `net` maps a batch of windows to outputs (e.g. `DecisionOutputs`). `snntorch_neurons`:
    snnTorch SpikingNeuron modules count as activation layers (NeuroBench's TorchModel only
    knows ReLU and Sigmoid).
    Values are per sample = per decision, as NeuroBench normalises them.
    """
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics import static, workload
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset

    errors: dict[str, str] = {}
    notes: list[str] = []
    dtype = next(net.parameters()).dtype
    inputs = torch.as_tensor(np.asarray(windows), dtype=dtype)
    loader = DataLoader(TensorDataset(inputs, torch.zeros(len(inputs))), batch_size=batch, shuffle=False)
    model = TorchModel(net)
    if snntorch_neurons:
        import snntorch as snn

        model.add_activation_module(snn.SpikingNeuron)
    names = {id(module): name.removeprefix("model.") for name, module in net.named_modules()}
    static_metrics = [_guarded(getattr(static, n), errors) for n in STATIC_METRICS]
    workload_metrics = [_guarded(getattr(workload, n), errors) for n in WORKLOAD_METRICS]
    if by_layer:
        workload_metrics.append(_guarded(_synops_by_layer_metric(names), errors))
        workload_metrics.append(_guarded(_by_layer_sparsity_metric(notes), errors))
    benchmark = Benchmark(model, loader, [], [], [static_metrics, workload_metrics])
    try:
        raw = benchmark.run(quiet=True)
        connection_layers = [names.get(id(h.layer), "?") for h in model.connection_hooks]
        activation_layers = [h.name or "?" for h in model.activation_hooks]
        spiking_hooks = [h for h in model.activation_hooks if h.spiking]
    finally:
        benchmark.workload_metric_manager.cleanup_hooks(model)
    synops_by_layer = raw.pop("SynapticOperationsByLayer", {}) if by_layer else {}
    metrics, not_measured = {}, {}
    if "SynapticOperationsByLayer" in errors:
        synops_by_layer = {}
        not_measured["SynapticOperationsByLayer"] = f"raised {errors['SynapticOperationsByLayer']}"
    for name, value in raw.items():
        reason = _why_not_measured(name, errors, connection_layers, activation_layers, spiking_hooks)
        metrics[name] = None if reason else value
        if reason:
            not_measured[name] = reason
    return NeuroBenchRun(metrics=metrics, not_measured=not_measured, raw=dict(raw), synops_by_layer=synops_by_layer,
                         connection_layers=connection_layers, activation_layers=activation_layers,
                         samples=int(len(inputs)), notes=notes)


def _why_not_measured(name, errors, connection_layers, activation_layers, spiking_hooks) -> str | None:
    """Why NeuroBench's value of metric `name` is no measurement, or None if it is one."""
    if name in errors:
        return (f"NeuroBench raised {errors[name]} (its metric managers catch this and report 0.0 for a workload "
                "metric, None for a static one; a later batch can overwrite the 0.0 with a partial count)")
    if name in ACTIVATION_METRICS and not activation_layers:
        return ("NeuroBench found no activation module (ReLU, Sigmoid or snnTorch neuron) in the model and returns "
                "0.0 for want of any activation")
    if name == "MembraneUpdates" and not spiking_hooks:
        return "NeuroBench found no snnTorch neuron, the only modules whose membrane it reads: its 0 counts nothing"
    if name == "SynapticOperations" and not connection_layers:
        return "NeuroBench found no Linear / Conv / RNN layer: its 0 counts nothing"
    return None
