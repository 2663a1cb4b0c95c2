"""Third-party NIR readers on our exports: extra checks, never the reference.

docs/THIRD_PARTY_READERS.md has the table and the minimal reproductions. In short:

- nirtorch 2.6 `nir_to_torch` with a node map for LIF and Threshold (written here from
  docs/SEMANTICS.md; nirtorch maps Input/Output/Conv1d itself and wires and sums the
  edges): reads the DT and agrees with the reference simulator bit for bit in float64.
- snnTorch 1.0 `import_from_nir`: cannot read the DT (no Threshold in its node map); its
  LIF mapping hard-codes dt = 1e-4 s, ours is 1e-3 s.
- norse 1.1.0 `from_nir`: cannot read the DT (no Conv1d, no Threshold; ignores LIF `r`).
- The portable export (`export --target nir --portable`, export/nir/portable.py): nirtorch's
  `nir_to_torch` (its own default map, norse's LIF mapping: nirtorch maps no neuron),
  snnTorch's `import_from_nir` and norse's `from_nir`, each given the file as written, run
  real closed-loop decisions of a trained DT with every spike of every LIF and every action
  equal to the reference simulator's.

Each "cannot read" test pins today's failure: if upstream starts reading our graphs, the
test fails and tells us to turn it into an agreement test.

Every reader test records a row (loads / runs / agrees / measured numbers / blocker) in
THIRD_PARTY_RESULTS; with SPIKINGMIND_THIRD_PARTY_RESULTS=path set, the rows are written
there as JSON when the module finishes, and scripts/third_party_table.py renders them into
docs/THIRD_PARTY_READERS.md and docs/results/third_party.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikingmind import units
from spikingmind.export.nir.readers import (
    READERS,
    agreement,
    build_reader,
    decoded_actions,
    reader_version,
    run_module,
    run_reader,
)
from spikingmind.export.nir import checkpoint_to_graph, model_to_graph
from spikingmind.export.reference import ReferenceSimulator
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.tokens import Normalization, TokenLayout, step_tokens, window_indices, windows

ACTION = 2  # token index of the action within a step (return-to-go, state, action)

# norse's first import scripts its functions with torch.jit.script, deprecated in torch 2.13
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

#: reader row key -> what the test measured (see the module docstring)
THIRD_PARTY_RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_third_party_results():
    yield
    target = os.environ.get("SPIKINGMIND_THIRD_PARTY_RESULTS")
    if target:
        Path(target).write_text(json.dumps(THIRD_PARTY_RESULTS, indent=2, default=float) + "\n")


@contextlib.contextmanager
def reader_row(key: str, **fields):
    """Record a reader's row; an exception on the way is the row's blocker (and still raised)."""
    row = {"loads": False, "runs": False, "agrees": False, "blocker": None, **fields}
    THIRD_PARTY_RESULTS[key] = row
    try:
        yield row
    except Exception as error:  # the row says where the reader stopped; pytest sees the error
        message = " ".join(str(error).split()) or type(error).__name__
        row["blocker"] = row["blocker"] or f"{type(error).__name__}: {message}"[:300]
        raise


# ---------------------------------------------------------------------------- inputs and graphs


@pytest.fixture(scope="module")
def tiny_graph() -> nir.NIRGraph:
    """A spiking DT for CartPole (11 features, K=2 -> L=6) with BatchNorm statistics that
    make every LIF layer both fire and stay silent."""
    torch.manual_seed(0)
    model = DecisionTransformer(ModelConfig(width=8, n_blocks=1, context_length=2), n_features=11, n_out=2).eval()
    return model_to_graph(model)


def cartpole_decisions(context_length: int, n: int = 16, seed: int = 0, norm: Normalization | None = None) -> np.ndarray:
    """Real CartPole decision windows as the policy sees them: (n, D_in, L), channels first.

    A random-action episode is tokenised by `tokens.step_tokens`; each window ends at a
    step whose action is still unknown (zeroed), early windows are left-padded. `norm`:
    a checkpoint's normalization (default: the episode's own statistics).
    """
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, actions = [], []
    while len(observations) < n:
        action = int(rng.integers(2))
        observations.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset(seed=seed + len(observations))
    env.close()
    observations = np.asarray(observations, dtype=np.float32)
    rewards_to_go = 50.0 - np.arange(n, dtype=np.float64)
    layout = TokenLayout(obs_dim=4, act_dim=2, discrete=True, context_length=context_length)
    if norm is None:
        norm = Normalization.from_observations(observations, return_scale=500.0, max_episode_steps=500)
    rows = step_tokens(layout, norm, observations, np.asarray(actions), rewards_to_go, np.arange(n))
    rows_unknown_action = rows.copy()
    rows_unknown_action[:, ACTION, layout.act_slice] = 0.0
    index, valid = window_indices(np.arange(n), np.zeros(n, dtype=np.int64), context_length)
    batch = windows(rows, index, valid)
    # the window's last step is the current one: its action is not known yet
    batch[:, -1, :] = rows_unknown_action[np.arange(n), ACTION]
    return np.ascontiguousarray(batch.transpose(0, 2, 1)).astype(np.float64)


def input_shape(graph: nir.NIRGraph) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(graph.nodes["input"].input_type["input"]).reshape(-1))


def lif_graph(dt: float, channels=4, features=3, tokens=5, beta=0.5, seed=0) -> nir.NIRGraph:
    """Input -> Conv1d k=1 -> LIF -> Conv1d k=1 -> Output, parameters as our exporter writes
    them (tau = dt / (1 - beta), r = tau / dt, v_leak = v_reset = 0), dyadic weights so that
    float32 and float64 agree exactly. The DT without its Threshold (AND) nodes."""
    rng = np.random.default_rng(seed)
    grid = (channels, tokens)
    p = units.lif_parameters(np.full(grid, beta), dt)

    def conv(c_out, c_in):
        return nir.Conv1d(input_shape=tokens, weight=np.round(rng.normal(0, 1, (c_out, c_in, 1)) * 16) / 16,
                          stride=1, padding=0, dilation=1, groups=1, bias=np.round(rng.normal(0, 0.5, c_out) * 16) / 16)

    nodes = {
        "input": nir.Input({"input": np.array([features, tokens])}),
        "fc1": conv(channels, features),
        "lif": nir.LIF(tau=p["tau"], r=p["r"], v_leak=p["v_leak"], v_threshold=np.ones(grid), v_reset=np.zeros(grid)),
        "fc2": conv(2, channels),
        "output": nir.Output({"output": np.array([2, tokens])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "time_steps": 6})


def dyadic_inputs(graph: nir.NIRGraph, n=4, seed=1) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0, 1, (n, *input_shape(graph))) * 16) / 16


# ---------------------------------------------------------------------------- nirtorch 2.6


class NirLIF(torch.nn.Module):
    """NIR LIF stepped as docs/SEMANTICS.md says. nirtorch passes `state` (None at the start
    of a decision) and stores what we return; we return (membrane, spikes) so that the
    spikes of every LIF can be compared with the reference records."""

    def __init__(self, node: nir.LIF, dt: float):
        super().__init__()
        tau, r = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (node.tau, node.r))
        self.register_buffer("beta", 1 - dt / tau)
        self.register_buffer("gain", dt * r / tau)
        self.register_buffer("drive", dt * torch.as_tensor(np.asarray(node.v_leak, dtype=np.float64)) / tau)
        self.register_buffer("v_threshold", torch.as_tensor(np.asarray(node.v_threshold, dtype=np.float64)))
        self.register_buffer("v_reset", torch.as_tensor(np.asarray(node.v_reset, dtype=np.float64)))

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state[0]
        v = self.beta * v + self.gain * x + self.drive
        fired = v > self.v_threshold
        spikes = fired.to(x.dtype)
        return spikes, (torch.where(fired, self.v_reset, v), spikes)


class NirThreshold(torch.nn.Module):
    def __init__(self, node: nir.Threshold):
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(np.asarray(node.threshold, dtype=np.float64)))

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


def nirtorch_module(graph: nir.NIRGraph, dtype=torch.float64):
    import nirtorch  # a dev dependency: never skipped
    dt = float(graph.metadata["dt"])
    node_map = {nir.LIF: lambda node: NirLIF(node, dt), nir.Threshold: NirThreshold}
    return nirtorch.nir_to_torch(graph, node_map, dtype=dtype)


def run_nirtorch(module, inputs: np.ndarray, time_steps: int):
    """T steps of constant input from zero state: outputs (T, B, ...) and LIF spikes by node."""
    state, outputs, spikes = None, [], {}
    x = torch.as_tensor(inputs, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(time_steps):
            y, state = module(x, state)
            outputs.append(y.numpy())
            for name, value in state.items():
                if isinstance(value, tuple):
                    spikes.setdefault(name, []).append(value[1].numpy())
    return np.stack(outputs), {name: np.stack(steps) for name, steps in spikes.items()}


def assert_nirtorch_agrees(graph: nir.NIRGraph, inputs: np.ndarray) -> None:
    time_steps = int(graph.metadata["time_steps"])
    reference = ReferenceSimulator(graph).run(inputs, time_steps, record=True)
    outputs, spikes = run_nirtorch(nirtorch_module(graph), inputs, time_steps)
    lifs = [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    assert sorted(spikes) == sorted(name.replace(".", "_") for name in lifs)
    fired = 0
    for name in lifs:
        np.testing.assert_array_equal(spikes[name.replace(".", "_")], reference.records[name], err_msg=name)
        fired += int(reference.records[name].sum())
    assert 0 < fired < sum(reference.records[name].size for name in lifs)  # a non-trivial check
    # observed bit-exact; nirtorch sums the edges into a node in set order, not edge-list
    # order, so allow float64 reassociation error
    np.testing.assert_allclose(outputs, reference.outputs["output"], rtol=0, atol=1e-12)


def test_nirtorch_reads_tiny_dt_and_agrees_with_reference(tiny_graph):
    assert_nirtorch_agrees(tiny_graph, cartpole_decisions(context_length=2))


def test_nirtorch_reads_trained_dt_and_agrees_with_reference(snn_checkpoint):
    from spikingmind.export.nir import graph_metadata

    graph = checkpoint_to_graph(snn_checkpoint)
    meta = graph_metadata(graph)
    # the first 24 steps of a CartPole episode, windows of the trained context length
    # (the early ones are padded), normalised with the checkpoint's statistics
    decisions = cartpole_decisions(meta["context_length"], n=24, norm=Normalization(**meta["normalization"]))
    import nirtorch

    with reader_row("nirtorch/standard", reader="nirtorch", version=nirtorch.__version__, graph="standard",
                    entry_point="nirtorch.nir_to_torch(graph, node_map) with our LIF and Threshold modules "
                                "(written from SEMANTICS.md)", dtype="float64", decisions=len(decisions)) as row:
        row["loads"] = row["runs"] = True  # assert_nirtorch_agrees builds and runs it before comparing
        assert_nirtorch_agrees(graph, decisions)
        row["agrees"] = True


def test_nirtorch_fresh_state_each_decision(tiny_graph):
    """state=None starts from zero membranes every call: no state leaks between decisions."""
    module = nirtorch_module(tiny_graph)
    inputs = cartpole_decisions(context_length=2, n=4)
    first, _ = run_nirtorch(module, inputs, 4)
    second, _ = run_nirtorch(module, inputs, 4)
    np.testing.assert_array_equal(first, second)


def test_nirtorch_has_no_neuron_mapping_of_its_own(tiny_graph):
    import nirtorch  # a dev dependency: never skipped
    with pytest.raises(ValueError, match="Unknown node type .*LIF.*mapping does not exist"):
        nirtorch.nir_to_torch(tiny_graph, {})


def test_nirtorch_default_map_traps_we_avoid():
    """Affine drops the bias (we never emit Affine); Conv1d swaps in/out channels in the
    module's attributes, harmless because the weight tensor is copied whole (we emit
    Conv1d, and the agreement tests above pass through it)."""
    import nirtorch  # a dev dependency: never skipped
    from nirtorch.nir_interpreter import DEFAULT_MAP

    affine = DEFAULT_MAP[nir.Affine](nir.Affine(weight=np.ones((2, 3)), bias=np.array([100.0, -100.0])))
    assert not torch.equal(affine.bias.detach().double(), torch.tensor([100.0, -100.0], dtype=torch.float64))
    conv = DEFAULT_MAP[nir.Conv1d](nir.Conv1d(input_shape=5, weight=np.ones((2, 3, 1)), stride=1, padding=0,
                                              dilation=1, groups=1, bias=np.zeros(2)))
    assert (conv.in_channels, conv.out_channels) == (2, 3)  # swapped: the weight is (C_out=2, C_in=3, 1)
    assert conv(torch.ones(1, 3, 5, dtype=torch.float64)).shape == (1, 2, 5)
    del nirtorch


# ---------------------------------------------------------------------------- snnTorch 1.0


def snntorch_import():
    from snntorch.import_nir import import_from_nir

    return import_from_nir


def test_snntorch_cannot_read_the_dt_threshold_unsupported(tiny_graph):
    import snntorch

    import_from_nir = snntorch_import()
    with reader_row("snntorch/standard", reader="snntorch", version=snntorch.__version__, graph="standard",
                    entry_point="snntorch.import_nir.import_from_nir(graph)") as row:
        with pytest.raises(ValueError, match="Unknown node type .*Threshold.*mapping does not exist") as caught:
            with contextlib.redirect_stdout(io.StringIO()):
                import_from_nir(tiny_graph)
        row["blocker"] = f"ValueError: {caught.value}"


def run_snntorch(net, inputs: np.ndarray, time_steps: int) -> np.ndarray:
    import snntorch.utils

    snntorch.utils.reset(net)  # its Leaky (init_hidden=True) keeps membranes across calls
    state, outputs = None, []
    for _ in range(time_steps):
        y, state = net(torch.as_tensor(inputs, dtype=torch.float32), state)
        outputs.append(y.detach().numpy())
    return np.stack(outputs)


@pytest.mark.parametrize("dt, agrees", [(1e-4, True), (units.DT, False)])
def test_snntorch_lif_import_assumes_dt_1e4(dt, agrees, capsys):
    """On the DT minus its AND nodes, snnTorch agrees only when the graph's dt is 1e-4 s:
    it computes beta = 1 - 1e-4/tau and scales the threshold by 1/(1e-4 r / tau)."""
    import_from_nir = snntorch_import()
    graph = lif_graph(dt)
    inputs = dyadic_inputs(graph)
    reference = ReferenceSimulator(graph).run(inputs, 6, record=True)
    assert 0 < reference.records["lif"].sum() < reference.records["lif"].size
    outputs = run_snntorch(import_from_nir(graph), inputs, 6)
    capsys.readouterr()  # snnTorch prints its weight-scaling warnings
    assert np.array_equal(outputs, reference.outputs["output"]) is agrees
    assert units.DT == 1e-3  # if our dt becomes 1e-4, snnTorch's LIF mapping becomes exact


# ---------------------------------------------------------------------------- norse 1.1.0


def norse_from_nir():
    import norse.torch  # installed by `make venv` (--no-deps): never skipped

    return norse.torch.from_nir


@pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated")
def test_norse_cannot_read_the_dt_conv1d_unsupported(tiny_graph):
    """norse maps Conv1d (and Threshold) to nothing; nirtorch.load then misses the node."""
    from_nir = norse_from_nir()
    import norse

    with reader_row("norse/standard", reader="norse", version=norse.__version__, graph="standard",
                    entry_point="norse.torch.from_nir(graph, dt)") as row:
        with pytest.raises(KeyError, match="embed") as caught:
            from_nir(tiny_graph, dt=units.DT, ignore_warnings=True)
        row["blocker"] = (f"KeyError: {caught.value} (Conv1d and Threshold map to nothing, so nirtorch.load "
                          "loses the node)")


@pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated")
@pytest.mark.parametrize("our_r, agrees", [(True, False), (False, True)])
def test_norse_lif_ignores_r(our_r, agrees):
    """norse's LIF integrates dt/tau * (v_leak - v + I): it drops `r`. Our r = tau/dt
    (unit gain) makes it disagree; the same graph with r = 1 agrees."""
    from_nir = norse_from_nir()
    channels, features = 4, 3
    rng = np.random.default_rng(0)
    p = units.lif_parameters(np.full(channels, 0.5))
    r = p["r"] if our_r else np.ones(channels)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input({"input": np.array([features])}),
            "fc": nir.Affine(weight=np.round(rng.normal(0, 1, (channels, features)) * 16) / 16,
                             bias=np.round(rng.normal(0, 0.5, channels) * 16) / 16),
            "lif": nir.LIF(tau=p["tau"], r=r, v_leak=p["v_leak"], v_threshold=np.ones(channels),
                           v_reset=np.zeros(channels)),
            "output": nir.Output({"output": np.array([channels])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": units.DT, "time_steps": 6},
    )
    inputs = np.round(rng.normal(0, 2, (8, features)) * 16) / 16
    reference = ReferenceSimulator(graph).run(inputs, 6).outputs["output"]
    assert reference.sum() > 0
    logging.disable(logging.WARNING)
    try:
        net = from_nir(graph, dt=units.DT)
    finally:
        logging.disable(logging.NOTSET)
    state, outputs = None, []
    for _ in range(6):
        y, state = net(torch.as_tensor(inputs, dtype=torch.float32), state)
        outputs.append(y.detach().numpy())
    assert np.array_equal(np.stack(outputs), reference) is agrees


# ---------------------------------------------------------------------------- the portable export
#
# `export --target nir --portable` of the trained tiny DT, read back from the file by each
# library's own importer. Decisions are real: closed-loop CartPole episodes of the exported
# policy in the reference simulator. Every LIF of the graph is observed (forward hooks on the
# modules the importers build, named like the NIR nodes with "." -> "_").


@pytest.fixture(scope="module")
def portable_file(snn_checkpoint, tmp_path_factory) -> Path:
    from spikingmind.export import export

    return export("nir", snn_checkpoint, tmp_path_factory.mktemp("portable") / "model-portable.nir", portable=True)


@pytest.fixture(scope="module")
def portable_reference(portable_file):
    """Recorded decisions (N, D_in, 1, L) and the reference simulator's LIF spikes, outputs and actions."""
    from spikingmind.export.nir import NIRPolicy
    from spikingmind.export.nir.portable import portable_inputs
    from spikingmind.export.reference import load_graph
    from spikingmind.rollout import record_decision_inputs

    graph = load_graph(portable_file)
    decisions = portable_inputs(record_decision_inputs(NIRPolicy(graph), episodes=12, seed=3))
    assert len(decisions) >= 100
    lifs = [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    result = ReferenceSimulator(graph).run(decisions, record=lifs)
    assert all(0 < result.records[name].sum() < result.records[name].size for name in lifs[-3:])
    return {"graph": graph, "decisions": decisions, "lifs": lifs, "spikes": result.records,
            "outputs": result.outputs["output"], "actions": decoded_actions(result.outputs["output"])}


PORTABLE_ATOL = {"float64": 1e-12, "float32": 1e-5}  # outputs; float32: the same spikes, float32 rounding
PORTABLE_RUNS = [("nirtorch", "float64"), ("nirtorch", "float32"), ("snntorch", "float32"), ("norse", "float64"),
                 ("norse", "float32")]


@pytest.mark.parametrize("reader, dtype", PORTABLE_RUNS, ids=[f"{r}-{d}" for r, d in PORTABLE_RUNS])
def test_third_party_reader_runs_the_portable_export_spike_for_spike(portable_file, portable_reference, reader, dtype):
    """Each importer as its library ships it (export/nir/readers.py: nirtorch.nir_to_torch with its
    default map and norse's LIF mapping, as nirtorch maps no neuron; snntorch.import_nir.import_from_nir,
    float32 only, its spikes are float32 whatever the module's dtype; norse.torch.from_nir with the
    graph's dt). Every LIF's spikes and every action must equal the reference simulator's."""
    graph = nir.read(str(portable_file))  # the file as written, through the plain NIR reader
    with reader_row(f"{reader}/portable/{dtype}", reader=reader, version=reader_version(reader), graph="portable",
                    dtype=dtype, entry_point=READERS[reader].entry_point) as row:
        net = build_reader(reader, graph, dtype)
        row["loads"] = True
        outputs, spikes = run_module(reader, net, graph, portable_reference["decisions"], dtype,
                                     portable_reference["lifs"])
        row["runs"] = True
        measured = agreement(portable_reference["outputs"], portable_reference["spikes"], outputs, spikes)
        row.update(measured, output_tolerance=PORTABLE_ATOL[dtype])
        row["agrees"] = measured["spike_mismatches"] == 0 and measured["actions_agreeing"] == measured["decisions"]
        assert measured["layers_differing"] == []
        np.testing.assert_array_equal(decoded_actions(outputs), portable_reference["actions"])
        scale = max(1.0, float(np.abs(portable_reference["outputs"]).max()))
        assert measured["max_output_difference"] <= PORTABLE_ATOL[dtype] * scale


@pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated")
def test_norse_needs_the_schedule_nodes(portable_file, portable_reference):
    """Without the zero schedule nodes nirtorch.load's depth-first order reads last step's value on
    the AND nodes' second input: the spikes differ (this is why the export adds them)."""
    graph = nir.read(str(portable_file))
    schedule = [name for name in graph.nodes if name.endswith(".schedule")]
    assert len(schedule) == 2  # one block: q_lif -> k, k_lif -> v
    graph.nodes = {name: node for name, node in graph.nodes.items() if name not in schedule}
    graph.edges = [(a, b) for a, b in graph.edges if a not in schedule and b not in schedule]
    outputs, spikes = run_reader("norse", graph, portable_reference["decisions"], "float64", portable_reference["lifs"])
    lifs = portable_reference["lifs"]
    differ = {name for name in lifs if not np.array_equal(spikes[name], portable_reference["spikes"][name])}
    assert "blocks.0.attn.kv_and" in differ or "blocks.0.attn.qkv_and" in differ


# ---------------------------------------------------------------------------- rockpool 3.1.0


def test_rockpool_cannot_read_the_portable_export(portable_file):
    """rockpool.nn.modules.torch.nir.from_nir maps no Conv1d or Conv2d, and its LIF mapping reads
    `node.tau_mem`, which NIR's LIF does not have (it is CubaLIF's name)."""
    import importlib.metadata

    from rockpool.nn.modules.torch.nir import from_nir

    graph = nir.read(str(portable_file))
    with reader_row("rockpool/portable", reader="rockpool", version=importlib.metadata.version("rockpool"),
                    graph="portable", entry_point="rockpool.nn.modules.torch.nir.from_nir(graph)") as row:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(NotImplementedError, match="Cannot convert .*Conv2d.* to rockpool module") as conv:
                from_nir(graph)
            lif = graph.nodes["head.lif"]  # the LIF alone
            alone = nir.NIRGraph(nodes={"input": nir.Input(lif.input_type), "lif": lif,
                                        "output": nir.Output(lif.output_type)},
                                 edges=[("input", "lif"), ("lif", "output")])
            with pytest.raises(AttributeError, match="'LIF' object has no attribute 'tau_mem'") as tau:
                from_nir(alone)
        row["blocker"] = f"NotImplementedError: {conv.value}; a LIF alone: AttributeError: {tau.value}"


# ---------------------------------------------------------------------------- upstream bugs we work around


def test_nir_conv2d_infers_its_kernel_size_from_one_axis():
    """nir 1.0.8 (nir/ir/conv.py, Conv2d.__post_init__) passes weight.shape[2] as the kernel size
    of both axes: a (1, 3) kernel's output type is wrong, and reading the file back fails its type
    check. Hence the portable export's square kernels. docs/THIRD_PARTY_READERS.md has the repro."""
    weight = np.ones((2, 2, 1, 3))
    expected = F.conv2d(torch.ones(1, 2, 1, 8, dtype=torch.float64), torch.from_numpy(weight), padding=(0, 1))
    conv = nir.Conv2d(input_shape=(1, 8), weight=weight, stride=1, padding=(0, 1), dilation=1, groups=1,
                      bias=np.zeros(2))
    assert tuple(expected.shape[1:]) == (2, 1, 8)
    assert tuple(conv.output_type["output"]) == (2, 1, 10)  # the bug; (2, 1, 8) once fixed


@pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated")
def test_nirtorch_load_runs_depth_first_not_in_topological_order():
    """nirtorch 2.6 `load` (GraphExecutor, used by norse and sinabs) runs nodes in depth-first
    pre-order: c = a + b runs before b, reads b's previous step (nothing at step 0), and the
    executor returns the last node it ran (b), not the Output. Hence the schedule nodes."""
    import nirtorch

    def affine(w):
        return nir.Affine(weight=np.array([[w]]), bias=np.array([0.0]))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input({"input": np.array([1])}), "a": affine(1.0), "b": affine(10.0), "c": affine(1.0),
               "output": nir.Output({"output": np.array([1])})},
        edges=[("input", "a"), ("input", "b"), ("a", "c"), ("b", "c"), ("c", "output")])

    def model_map(node):
        if isinstance(node, nir.Affine):
            module = torch.nn.Linear(1, 1)
            module.weight.data = torch.tensor(node.weight).float()
            module.bias.data = torch.tensor(node.bias).float()
            return module

    net = nirtorch.load(graph, model_map)
    assert [node.name for node in net.execution_order] == ["input", "a", "c", "output", "b"]
    seen, state = [], None
    for x in (1.0, 2.0):
        y, state = net(torch.tensor([[x]]), state)
        seen.append((state.cache["c"].item(), y.item()))
    assert seen == [(1.0, 10.0), (12.0, 20.0)]  # a topological run: (11, 11), (22, 22)
