"""NIR export: standard nodes only, exact spike agreement with PyTorch, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikingmind.checkpoint import load_checkpoint
from spikingmind.errors import GraphError, UnsupportedModuleError
from spikingmind.export.nir import NIRPolicy, checkpoint_to_graph, model_to_graph, write_graph
from spikingmind.export.reference import ReferenceSimulator, load_graph
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.policy import TorchPolicy
from spikingmind.rollout import run_episodes
from spikingmind.seeds import evaluation_seeds
from spikingmind.units import DT
from tests.support import graphs as g
from tests.support.graph_checks import assert_same_graph

STANDARD = (nir.Input, nir.Output, nir.Conv1d, nir.LIF, nir.Threshold)


@pytest.fixture(scope="module")
def exported(snn_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "model.nir"
    write_graph(checkpoint_to_graph(snn_checkpoint), path)
    return path


@pytest.fixture(scope="module")
def real_windows(snn_checkpoint):
    """>= 50 decisions' windows from closed-loop episodes of the checkpoint."""
    windows = []
    run_episodes(TorchPolicy(load_checkpoint(snn_checkpoint)), evaluation_seeds(12, 5), on_decision=windows.append)
    stacked = np.concatenate(windows)
    assert len(stacked) >= 50
    return stacked[:80]


def test_graph_uses_standard_nodes_and_reads_back(exported, snn_checkpoint):
    graph = checkpoint_to_graph(snn_checkpoint)
    assert {type(node) for node in graph.nodes.values()} <= set(STANDARD)
    loaded = nir.read(str(exported))  # the plain NIR reader, not ours
    # every field of every node (padding, stride, groups, shapes, ...) and the metadata, bit for bit
    assert_same_graph(graph, loaded)
    assert float(loaded.metadata["dt"]) == 1e-3 and int(loaded.metadata["time_steps"]) == 4


def test_reference_spikes_equal_pytorch_exactly_in_float64(exported, snn_checkpoint, real_windows):
    ckpt = load_checkpoint(snn_checkpoint, dtype=torch.float64)
    record: dict = {}
    with torch.no_grad():
        outputs = ckpt.model(torch.as_tensor(real_windows, dtype=torch.float64), record)
    policy = NIRPolicy(load_graph(exported), record=True)
    logits = policy.outputs(real_windows)
    total_spikes = 0
    for name, spikes in record.items():
        ours = spikes.numpy().transpose(0, 1, 3, 2)  # (T, B, L, C) -> NIR (T, B, C, L)
        np.testing.assert_array_equal(policy.last_records[name], ours, err_msg=name)
        total_spikes += ours.sum()
    assert total_spikes > 0
    torch_logits = outputs[:, ckpt.layout.decision_token].numpy()
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=1e-12)
    assert (logits.argmax(-1) == torch_logits.argmax(-1)).all()


def test_closed_loop_returns_equal_episode_by_episode(exported, snn_checkpoint):
    seeds = evaluation_seeds(2, 9)
    from_nir = run_episodes(NIRPolicy.from_file(exported), seeds)
    from_checkpoint = run_episodes(TorchPolicy(load_checkpoint(snn_checkpoint, dtype=torch.float64)), seeds)
    assert from_nir.returns == from_checkpoint.returns


def test_the_return_to_go_encoding_travels_with_the_graph(exported, snn_checkpoint):
    """The host builds tokens from the graph's metadata: the gain must come along (else the
    policy would see a return-to-go four times too small)."""
    ckpt = load_checkpoint(snn_checkpoint)
    policy = NIRPolicy.from_file(exported)
    assert ckpt.norm.return_gain == 4.0  # CartPole's EnvSpec.return_gain
    assert policy.norm == ckpt.norm


def test_batch_norm_is_folded(snn_checkpoint):
    graph = checkpoint_to_graph(snn_checkpoint)
    ckpt = load_checkpoint(snn_checkpoint, dtype=torch.float64)
    linear = ckpt.model.blocks[0].attn.q
    with torch.no_grad():
        x = torch.randn(5, linear.linear.in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        expected = linear(x).numpy()
    node = graph.nodes["blocks.0.attn.q"]
    folded = x.numpy() @ node.weight[:, :, 0].T + node.bias
    np.testing.assert_allclose(folded, expected, atol=1e-12)


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


def test_unknown_module_is_named_with_its_path():
    model = DecisionTransformer(ModelConfig(width=8, n_blocks=1, context_length=2), 11, 2).eval()
    model.blocks[0].mlp.extra = Doubler()
    with pytest.raises(UnsupportedModuleError, match=r"Doubler at 'blocks\.0\.mlp\.extra'"):
        model_to_graph(model)


def test_ann_twin_is_refused_with_a_pointer_to_onnx():
    model = DecisionTransformer(ModelConfig(kind="ann", width=8, n_blocks=1, context_length=2), 11, 2)
    with pytest.raises(UnsupportedModuleError, match="--target onnx"):
        model_to_graph(model)


def test_existing_export_is_not_overwritten(exported, snn_checkpoint):
    from spikingmind.errors import RunExistsError

    before = exported.read_bytes()
    with pytest.raises(RunExistsError):
        write_graph(checkpoint_to_graph(snn_checkpoint), exported)
    assert exported.read_bytes() == before


def _corrupt_truncated(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 3])


def _corrupt_nan(src: Path, dst: Path) -> None:
    graph = nir.read(str(src))
    graph.nodes["embed"].weight[0, 0, 0] = np.nan
    nir.write(str(dst), graph)


def _corrupt_shape(src: Path, dst: Path) -> None:
    graph = nir.read(str(src))
    graph.nodes["blocks.0.attn.q_lif"].v_threshold = np.ones((3, 3))
    nir.write(str(dst), graph)


@pytest.mark.parametrize("corrupt, message", [
    (_corrupt_truncated, "cannot read|truncated|corrupt|not a valid"),
    (_corrupt_nan, "NaN|non-finite|nan"),
    (_corrupt_shape, "shape"),
])
def test_corrupted_graphs_give_one_clear_line_and_nonzero_exit(exported, tmp_path, corrupt, message):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    bad = tmp_path / "bad.nir"
    corrupt(exported, bad)
    with pytest.raises(GraphError, match=message):
        load_graph(bad)
    result = CliRunner().invoke(app, ["evaluate", str(bad), "--episodes", "1"])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output


def _stranger_windows(meta: dict, policy, seed: int, max_steps: int) -> list[np.ndarray]:
    """A closed-loop runner written from the export's metadata and docs/SEMANTICS.md alone (no
    spikingmind.tokens, no rollout): the token windows it shows the policy at every step."""
    import gymnasium as gym

    table, norm = meta["token_table"], meta["normalization"]
    rows = {row["feature"]: row for row in table["rows"]}
    n_features, k = table["n_features"], meta["context_length"]
    env = gym.make(meta["env"]["env_id"])
    obs, _ = env.reset(seed=seed)
    rtg, t, history, seen = float(meta["env"]["target_return"]), 0, [], []

    def channels(feature):
        start, stop = rows[feature]["channels"]  # half-open
        return slice(start, stop)

    while True:
        step = np.zeros((3, n_features))
        encoded = norm["return_gain"] * np.sign(rtg) * np.log1p(abs(rtg)) / np.log1p(norm["return_scale"])
        step[0, channels("return_to_go")] = step[1, channels("return_to_go")] = encoded
        step[1, channels("observation")] = (np.asarray(obs) - norm["obs_mean"]) / np.asarray(norm["obs_std"])
        for kind in range(3):
            step[kind, channels("token_type").start + kind] = 1.0
        step[:, channels("timestep")] = t / norm["max_episode_steps"]
        history = (history + [step])[-k:]
        window = np.concatenate([np.zeros(((k - len(history)) * 3, n_features)), *history])
        seen.append(window)
        action = int(policy.act(window.astype(np.float32)))
        history[-1][2, channels("action").start + action] = 1.0
        obs, reward, terminated, truncated, _ = env.step(action)
        rtg -= reward  # unclipped
        t += 1
        if terminated or truncated or t >= max_steps:
            return seen


def test_a_runner_written_from_the_metadata_alone_builds_the_same_windows(exported):
    """Every rule a stranger's runner needs is in the file: half-open channel ranges, the
    return-to-go update, the timestep origin (the windows equal rollout's, step for step)."""
    from spikingmind.export.nir import graph_metadata

    meta = graph_metadata(load_graph(exported))
    assert meta["token_table"]["channel_ranges"].startswith("half-open")
    assert "unclipped" in meta["return_to_go"]["update"] and "t = 0" in meta["timestep"]["origin"]
    assert meta["gymnasium_version"]
    policy = NIRPolicy.from_file(exported, record=False)
    seed = evaluation_seeds(1, 2)[0]
    ours: list[np.ndarray] = []
    run_episodes(policy, [seed], on_decision=ours.append, max_steps=25)
    theirs = _stranger_windows(meta, policy, seed, max_steps=25)
    assert len(theirs) == len(ours) > 3
    for step, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a[0], b, rtol=0, atol=1e-6, err_msg=f"step {step}")  # rollout builds float32
# ---- the NIR policy on graphs that are not exports --------------------------------------------


def test_policy_decodes_mean_over_time_at_the_last_state_token():
    D, L = 2, 6
    identity = g.conv(np.eye(D)[:, :, None], n_in=L)  # T = 2 below: (x + x) / 2 == x exactly
    meta = {"dt": DT, "time_steps": 2, "spikingmind": json.dumps({"action_kind": "discrete"})}
    graph = g.graph(
        {"in": nir.Input(np.array([D, L])), "id": identity, "out": nir.Output(np.array([D, L]))},
        [("in", "id"), ("id", "out")],
        meta,
    )
    policy = NIRPolicy(graph, record=True)
    assert policy.time_steps == 2 and policy.meta["action_kind"] == "discrete"
    tokens = np.random.default_rng(3).normal(size=(4, L, D))  # (B, L, D_in) channels-last
    np.testing.assert_array_equal(policy.outputs(tokens), tokens[:, L - 2, :])
    np.testing.assert_array_equal(policy.act(tokens), np.argmax(tokens[:, L - 2, :], axis=1))
    assert policy.last_records["out"].shape == (2, 4, D, L)
    assert policy.act(tokens[0]) == np.argmax(tokens[0, L - 2])


def test_continuous_policy_squashes_into_the_action_box(tmp_path):
    graph = g.dt_graph(action_kind="continuous", dyadic=False, beta=0.5, blocks=2)
    path = tmp_path / "policy.nir"
    nir.write(path, graph)
    policy = NIRPolicy(path)
    tokens = np.random.default_rng(4).normal(size=(2, 6, 5))
    logits = policy.outputs(tokens)
    out = ReferenceSimulator(graph).run(tokens.transpose(0, 2, 1)).output
    np.testing.assert_array_equal(logits, out[:, :, :, 4].mean(axis=0))
    actions = policy.act(tokens)
    assert actions.dtype == np.float32  # gymnasium Box actions
    np.testing.assert_allclose(actions, -2.0 + (np.tanh(logits) + 1) / 2 * 3.0, rtol=1e-6)
    assert np.all((actions >= -2.0) & (actions <= 1.0))
