"""Streaming models (model.history = "stream"): token by token from carried state equals the
windowless forward over the whole episode, and the future never reaches the past."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spikingmind.model import DecisionTransformer, ModelConfig, normalize
from tests.support.checkpoints import randomise_batch_norms

ROOT = Path(__file__).resolve().parent.parent
F = 7  # token features; the last one is the timestep


def _model(kind: str, seed: int = 0, **overrides) -> DecisionTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, width=8, n_blocks=2, context_length=4, time_steps=3, history="stream", **overrides)
    model = DecisionTransformer(cfg, F, 2).double()
    if kind == "snn":
        randomise_batch_norms(model, torch.Generator().manual_seed(seed))
    return model.eval()


def _episode(steps: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """(B, 3 * steps - 1, F): (rtg, state, action) per step, the last action not taken yet."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, 3 * steps, F, generator=generator, dtype=torch.float64) * 1.5
    tokens[..., -1] = torch.arange(3 * steps, dtype=torch.float64).div(3).floor() / 500  # t / max_steps
    return tokens[:, :-1]


def _stream(model, tokens):
    """The episode fed as a deployment does: (rtg, state) first, then (action, rtg, state) per step."""
    state, outputs, records = model.initial_state(tokens.shape[0]), [], []
    chunks = [tokens[:, :2]] + [tokens[:, i:i + 3] for i in range(2, tokens.shape[1], 3)]
    for chunk in chunks:
        record = {} if model.spiking else None
        output, state = model.step(chunk, state, record)
        outputs.append(output)
        records.append(record)
    return torch.stack(outputs, dim=1), records


@pytest.mark.parametrize("steps", [1, 9])  # 9 steps = 26 tokens: beyond the 12-token training segment
def test_spiking_stream_equals_the_windowless_forward_spike_for_spike(steps):
    model, tokens = _model("snn"), _episode(steps)
    record: dict = {}
    with torch.no_grad():
        batch = model(tokens, record)
        streamed, step_records = _stream(model, tokens)
    if steps > 1:  # two tokens are too few for every layer to fire
        assert all(0 < float(s.mean()) < 1 for s in record.values()), "a silent or saturated layer"
    for name, spikes in record.items():  # (T, B, L, C): the steps' records side by side along L
        np.testing.assert_array_equal(torch.cat([r[name] for r in step_records], dim=2).numpy(), spikes.numpy(),
                                      err_msg=name)
    np.testing.assert_allclose(streamed.numpy(), batch[:, 1::3].numpy(), rtol=0, atol=1e-12)


def test_ann_cache_equals_its_banded_full_recompute():
    """The twin's cache of the last 3K - 1 tokens is the banded attention over the whole episode."""
    model, tokens = _model("ann"), _episode(9)
    with torch.no_grad():
        batch = model(tokens)
        streamed, _ = _stream(model, tokens)
    np.testing.assert_allclose(streamed.numpy(), batch[:, 1::3].numpy(), rtol=0, atol=1e-10)
    with torch.no_grad():  # and the band matters: a longer span would read more of the past
        wider = DecisionTransformer(ModelConfig(kind="ann", width=8, n_blocks=2, context_length=9, time_steps=3,
                                                history="stream"), F, 2).double().eval()
        wider.load_state_dict(model.state_dict())
        assert not torch.allclose(wider(tokens)[:, -2], batch[:, -2])


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_future_tokens_never_change_the_past(kind):
    model, tokens = _model(kind), _episode(6)
    changed = tokens.clone()
    changed[:, 10:] += 3.0
    record_a, record_b = {}, {}
    with torch.no_grad():
        a = model(tokens, record_a if kind == "snn" else None)
        b = model(changed, record_b if kind == "snn" else None)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=0)
    assert not torch.equal(a[:, 10:], b[:, 10:])
    for name in record_a:
        assert torch.equal(record_a[name][:, :, :10], record_b[name][:, :, :10]), name


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_left_padding_of_a_training_segment_reaches_no_real_token(kind):
    """A segment at an episode's start is left-padded in a training batch: with the mask, its real
    tokens compute exactly what the unpadded episode does (eval mode: fixed statistics)."""
    model, tokens = _model(kind), _episode(3, batch=1)
    padded = torch.cat([torch.randn(1, 4, F, dtype=torch.float64) * 5, tokens], dim=1)
    valid = torch.zeros(1, padded.shape[1], dtype=torch.bool)
    valid[:, 4:] = True
    with torch.no_grad():
        np.testing.assert_allclose(model(padded, valid=valid)[:, 4:].numpy(), model(tokens).numpy(), rtol=0,
                                   atol=1e-12)
        assert not torch.allclose(model(padded)[:, 4:], model(tokens))  # without the mask it would


def test_padding_rows_stay_out_of_the_batch_statistics():
    norm = torch.nn.BatchNorm1d(3).double().train()
    y = torch.randn(10, 3, dtype=torch.float64)
    rows = torch.tensor([True] * 6 + [False] * 4)
    y_padded = y.clone()
    y_padded[~rows] = 1e6  # what padding holds must not matter
    out = normalize(norm, y_padded, rows)
    reference = torch.nn.BatchNorm1d(3).double().train()
    torch.testing.assert_close(out[rows], reference(y[rows]))
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    assert torch.equal(out[~rows], torch.zeros(4, 3, dtype=torch.float64))


def test_a_window_model_carries_no_state():
    model = DecisionTransformer(ModelConfig(kind="snn", width=8, n_blocks=1, context_length=2), F, 2)
    with pytest.raises(ValueError, match="streaming"):
        model.initial_state(1)
    stream = _model("snn")
    with pytest.raises(ValueError, match="step"):
        stream.decide(_episode(2))


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_a_streaming_model_trains_and_streams_closed_loop(cartpole_dataset, tmp_path, kind):
    """train() validates a streaming model by streaming it; the PyTorch policy then drives whole
    episodes token by token, longer than the 4-step training segment, and replays exactly."""
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds
    from spikingmind.train import train
    from tests.support.checkpoints import tiny_train_config

    cfg = tiny_train_config(cartpole_dataset, kind, model={"width": 16, "n_blocks": 1, "context_length": 4,
                                                           "time_steps": 2, "kind": kind, "history": "stream"})
    checkpoint, metrics = train(tmp_path / kind, cfg)
    assert np.isfinite(metrics["final_loss"])
    policy = TorchPolicy(load_checkpoint(checkpoint), record_spikes=True)
    assert policy.streaming
    seen: list = []
    first = run_episodes(policy, evaluation_seeds(3, 0), on_decision=seen.append)
    assert {chunk.shape[1] for chunk in seen} == {2, 3} and max(first.lengths) > 4
    again = run_episodes(TorchPolicy(load_checkpoint(checkpoint)), evaluation_seeds(3, 0))
    assert again.returns == first.returns
    if kind == "snn":
        assert policy.spike_stats()["spikes_per_decision"] > 0


def test_nir_streaming_graph_runs_token_by_token_like_pytorch():
    """The streaming export: one run per token, the causal mix carried through Delay + Scale
    feedback; the reference simulator reproduces PyTorch's spikes exactly over an episode
    longer than the training segment, and the graph reads back from the file."""
    import nir

    from spikingmind.export.nir import NIRPolicy, model_to_graph

    model, tokens = _model("snn"), _episode(7, batch=3)
    graph = model_to_graph(model, {"action_kind": "discrete", "streaming": {"tokens": "one per run"},
                                   "decode": {"token_index": 0}, "time_steps": model.cfg.time_steps})
    assert {type(node).__name__ for node in graph.nodes.values()} == {"Input", "Conv1d", "LIF", "Threshold",
                                                                     "Delay", "Scale", "Output"}
    with torch.no_grad():
        expected, torch_records = _stream(model, tokens)
    policy = NIRPolicy(graph, record=True)
    assert policy.streaming
    policy.begin(3)
    rows = np.arange(3)
    chunks = [tokens[:, :2]] + [tokens[:, i:i + 3] for i in range(2, tokens.shape[1], 3)]
    spikes = 0
    for index, chunk in enumerate(chunks):
        outputs = policy.step_outputs(chunk.numpy(), rows)
        np.testing.assert_allclose(outputs, expected[:, index].numpy(), rtol=0, atol=1e-12)
        for name, values in torch_records[index].items():  # (T, B, n, C) against one run per token
            ours = np.stack([run[name][..., 0] for run in policy.last_runs], axis=2)  # (T, B, n, C)
            np.testing.assert_array_equal(ours, values.numpy(), err_msg=f"{name}, decision {index}")
            spikes += values.sum()
    assert spikes > 0
    rows_subset = np.array([0, 2])  # episodes ending at other times: the carried state follows its rows
    policy.begin(3)
    for index, chunk in enumerate(chunks[:3]):
        policy.step_outputs(chunk.numpy(), rows)
    later = policy.step_outputs(chunks[3][rows_subset].numpy(), rows_subset)
    np.testing.assert_allclose(later, expected[rows_subset, 3].numpy(), rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def streaming_snn(cartpole_dataset, tmp_path_factory):
    from spikingmind.train import train
    from tests.support.checkpoints import tiny_train_config

    cfg = tiny_train_config(cartpole_dataset, "snn", model={"width": 16, "n_blocks": 1, "context_length": 4,
                                                            "time_steps": 2, "kind": "snn", "history": "stream"})
    return train(tmp_path_factory.mktemp("stream-energy"), cfg)[0]


def test_streaming_energy_counts_every_run_of_a_decision(streaming_snn):
    """A steady-state streaming decision costs its 3 token runs: full-window, every spike
    PyTorch's stream fires; decision-only, the action and return-to-go runs skip the decision
    head (nothing later reads it), so less, yet at least the state run's cone."""
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.export.nir import load_or_export_graph
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds
    from spikingmind.workflows.energy_report import count_snn_streaming

    graph = load_or_export_graph(streaming_snn)
    episodes = 2
    counts, decisions = count_snn_streaming(graph, episodes)
    policy = TorchPolicy(load_checkpoint(streaming_snn), record_spikes=True)
    results = run_episodes(policy, evaluation_seeds(2, 0))
    assert decisions == results.decisions - episodes == sum(results.lengths) - episodes  # first steps: 2 runs
    full, decision_only = counts["full_window"], counts["decision_only"]
    spikes = sum(layer.spikes for layer in full.layers) * decisions
    first_steps = _first_step_spikes(load_checkpoint(streaming_snn), evaluation_seeds(episodes, 0))
    total = policy.spike_stats()["spikes_per_decision"] * results.decisions
    assert spikes == pytest.approx(total - first_steps, rel=1e-9)
    runs = 3
    head = [layer for layer in full.layers if layer.name.startswith("head")]
    assert head, [layer.name for layer in full.layers]
    for layer in head:  # the head runs once per decision (its state run), not once per token
        only = next(l for l in decision_only.layers if l.name == layer.name)
        size = "neurons" if layer.kind == "neuron" else "dense_ops"
        assert getattr(only, size) > 0
        assert getattr(layer, size) == pytest.approx(getattr(only, size) * runs, rel=1e-12), layer.name
    work = lambda c: sum(l.dense_ops + l.neuron_updates for l in c.layers)  # noqa: E731
    assert 0 < work(decision_only) < work(full)


def _first_step_spikes(ckpt, seeds) -> float:
    """Spikes of the episodes' first decisions (2 runs: return-to-go, state), from PyTorch."""
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes

    policy = TorchPolicy(ckpt, record_spikes=True)
    results = run_episodes(policy, seeds, max_steps=1)
    return policy.spike_stats()["spikes_per_decision"] * results.decisions


@pytest.fixture(scope="module")
def streaming_ann(cartpole_dataset, tmp_path_factory):
    from spikingmind.train import train
    from tests.support.checkpoints import tiny_train_config

    cfg = tiny_train_config(cartpole_dataset, "ann", model={"width": 16, "n_blocks": 2, "context_length": 4,
                                                            "kind": "ann", "history": "stream"})
    return train(tmp_path_factory.mktemp("stream-ann"), cfg)[0]


@pytest.fixture(scope="module")
def step_onnx(streaming_ann, tmp_path_factory):
    from spikingmind.export.onnx import export

    return export(streaming_ann, tmp_path_factory.mktemp("step") / "step.onnx")  # checked against model.step first


def test_onnx_step_graph_streams_the_ann_twin_like_pytorch(streaming_ann, step_onnx):
    """The streaming twin's ONNX graph is its step with the key/value cache as inputs and
    outputs: ONNX Runtime drives whole episodes token by token, as PyTorch does."""
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.export.onnx import OnnxPolicy
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds

    policy = OnnxPolicy(step_onnx)
    assert policy.streaming and policy.meta["streaming"]["inputs"]["keys"][1:] == [2, 1, 11, 16]
    seeds = evaluation_seeds(4, 0)
    ours = run_episodes(policy, seeds)
    torch_results = run_episodes(TorchPolicy(load_checkpoint(streaming_ann)), seeds)
    assert ours.returns == torch_results.returns and max(ours.lengths) > 4


def test_streaming_ann_decision_costs_the_step_graph(streaming_ann, step_onnx):
    """The twin's streaming decision, counted from its ONNX step graph: exactly the MACs of 3 new
    tokens through the embedding and every block against a full cache, the last block's query,
    output projection and MLP on the state token alone, and the head once."""
    from spikingmind.checkpoint import load_checkpoint
    from spikingmind.workflows.energy_report import baseline_counts

    ckpt = load_checkpoint(streaming_ann)
    cfg, F_in, n_out = ckpt.config, ckpt.model.n_features, ckpt.model.n_out
    W, hidden, keys = cfg.width, cfg.width * cfg.mlp_ratio, cfg.n_tokens + 2  # 3K - 1 cached + 3 new
    counts = baseline_counts([step_onnx])
    assert counts["decision_only"] is counts["full_window"]
    macs = sum(node.macs for node in counts["decision_only"].nodes)
    block = lambda queries: 3 * 2 * W * W + queries * W * W + 2 * queries * keys * W \
        + queries * W * W + queries * 2 * W * hidden  # noqa: E731  k, v; q; scores and mix; out; MLP
    expected = 3 * F_in * W + block(3) * (cfg.n_blocks - 1) + block(1) + W * n_out
    assert macs == expected


def test_energy_report_prices_a_streaming_pair(streaming_snn, step_onnx):
    """energy-report on a streaming SNN against the streaming twin's step graph: both sides per
    steady-state decision, under the decision-only accounting."""
    from spikingmind.workflows.energy_report import estimate_energy

    report = estimate_energy(streaming_snn, profiles=["loihi"], baselines=[step_onnx], episodes=2)
    assert report.accounting == "decision_only" and report.decisions == report.provenance["decisions"] > 0
    assert report.baselines and all(b.ann_total_pj > 0 and b.snn_over_ann > 0 for b in report.baselines)
    assert "full_window" in report.other_accountings


def test_the_windowed_copy_recomputes_what_the_stream_carries(streaming_snn, tmp_path):
    """scripts/stream_vs_window.py: the same weights as a windowed model (K = 20) cost more per
    decision than streaming them; the copy is a windowed checkpoint with identical weights."""
    import importlib.util

    from spikingmind.checkpoint import load_checkpoint

    spec = importlib.util.spec_from_file_location("stream_vs_window", ROOT / "scripts" / "stream_vs_window.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    result = script.main([str(streaming_snn), "--out", str(tmp_path / "window"), "--json", str(tmp_path / "r.json"),
                          "--window", "8", "--energy-episodes", "1", "--eval-episodes", "2"])
    stream, window = load_checkpoint(streaming_snn), load_checkpoint(tmp_path / "window")
    assert (window.config.history, window.config.context_length) == ("window", 8)
    for (name, a), b in zip(stream.model.state_dict().items(), window.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert result["window"]["decisions"] > 0 and result["stream"]["decisions"] > 0
    assert result["window_over_stream"]["synaptic_ops"] > 1.5 and result["window_over_stream"]["spikes"] > 1.5
    assert json.loads((tmp_path / "r.json").read_text())["window_steps"] == 8
