"""Streaming on Lava (#18): the carried causal-mix trace lives in the Lava network, and Lava
floating_pt reproduces the reference simulator token by token over whole episodes.

The Lava tests run real lava-nc 0.10 in the Python 3.10 sidecar (skipped only where no Python
3.10 exists at all, like tests/test_export_lava.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikingmind.errors import LavaError
from spikingmind.export import lava
from spikingmind.export.lava.host import HostEncoder, decision_slots, stream_data, stream_records
from spikingmind.export.lava_sidecar.plan import emulate, process_layout
from spikingmind.export.nir import NIRPolicy
from tests.support.graphs import dyadic_stream_graph, stream_episode

T = 3
STEPS = 9  # 26 tokens: beyond the 12-token segment (context 4) the model was built for


@pytest.fixture(scope="module")
def graph():
    return dyadic_stream_graph(time_steps=T)


@pytest.fixture(scope="module")
def bundle(graph, tmp_path_factory):
    return lava.export_lava_bundle(graph, tmp_path_factory.mktemp("lava-stream") / "bundle")


def reference_runs(graph, episode):
    """The reference's records of every token run of one episode, in order."""
    policy = NIRPolicy(graph, record=True)
    policy.begin(1)
    runs, outputs = [], []
    for new in episode:
        outputs.append(policy.step_outputs(new[None], np.arange(1))[0])
        runs.extend(policy.last_runs)
    return runs, outputs


# ---- plan (NumPy only) ---------------------------------------------------------------------


def test_streaming_plan_is_two_processes_and_its_emulation_is_the_reference(graph):
    plan, host_terms, _ = lava.build_plan(graph)
    assert plan.streaming is not None and plan.period == T + 1
    assert set(process_layout(plan)) == {"spiking", "trace"}
    readout = plan.readout.offset(plan)
    assert plan.decision_steps == 2 * (T + 1) + readout + T  # the state token's Output is out in time
    episode = stream_episode(STEPS)
    present = decision_slots([len(new) for new in episode], 3)
    tokens = np.zeros((1, len(episode), 3, episode[0].shape[1]))
    for d, new in enumerate(episode):
        tokens[0, d, 3 - len(new):] = new
    data = stream_data(plan, HostEncoder(graph, host_terms), tokens, present[None])
    traces, _ = emulate(plan, {name: value[0] for name, value in data.items()}, len(episode) * plan.decision_steps,
                        fixed=False)
    records = stream_records(plan, {(f"pop/{k}" if k != "readout" else k): v[None] for k, v in traces.items()}, 0)
    runs, _ = reference_runs(graph, episode)
    slots = [(d, 3 - len(new) + i) for d, new in enumerate(episode) for i in range(len(new))]
    assert len(runs) == len(slots) == 3 * STEPS - 1
    checked = set()
    for (d, position), run in zip(slots, runs):
        for name, want in run.items():
            key = f"{name}#{position}" if f"{name}#{position}" in records else name
            if key in records:
                np.testing.assert_array_equal(records[key][d, position], want[:, 0], err_msg=f"{key} at {d, position}")
                checked.add(name)
    assert {"blocks.0.attn.mix.trace", "blocks.1.attn.mix.trace", "blocks.1.attn.kv_lif", "output"} <= checked
    assert 0 < np.mean([run["blocks.1.attn.kv_lif"].mean() for run in runs]) < 1


def test_a_streaming_graph_with_another_delay_is_refused(graph):
    import nir

    from spikingmind.errors import UnsupportedModuleError

    nodes = dict(graph.nodes)
    delay = "blocks.0.attn.mix.delay"
    nodes[delay] = nir.Delay(delay=np.asarray(nodes[delay].delay) * 2)
    bad = nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=graph.metadata, type_check=False)
    with pytest.raises(UnsupportedModuleError, match=f"'{delay}'.*delay must be"):
        lava.build_plan(bad)


# ---- real Lava ------------------------------------------------------------------------------


def test_lava_streams_the_reference_token_by_token(lava_python, graph, bundle):
    """Two episodes side by side in one network (9 and 4 steps), every node at every token."""
    agreement = lava.verify_stream_bundle(bundle, [stream_episode(STEPS), stream_episode(4, seed=2)], timeout=300)
    assert agreement.passed, agreement.to_text()
    assert all(row.float_vs_reference == 0 for row in agreement.layers), agreement.to_text()
    kinds = {row.kind for row in agreement.layers}
    assert {"lif", "threshold", "trace", "output"} <= kinds
    assert agreement.decisions == STEPS + 4 and agreement.action_float_vs_reference == 1.0
    assert agreement.output_max_abs_float == 0.0  # dyadic: every sum is exact


def test_lava_policy_streams_like_the_reference_policy(lava_python, graph, bundle):
    episodes = [stream_episode(6, seed=3), stream_episode(6, seed=4)]
    reference = NIRPolicy(graph)
    with lava.LavaPolicy(bundle, timeout=300) as policy:
        assert policy.streaming
        for batch in (2, 2, 1):  # every begin() starts over on a fresh network, the same batch too
            policy.begin(batch)
            reference.begin(batch)
            rows = np.arange(batch)
            for d in range(len(episodes[0])):
                new = np.stack([episode[d] for episode in episodes[:batch]])
                np.testing.assert_array_equal(policy.step_outputs(new, rows), reference.step_outputs(new, rows))
        assert [t["rebuilt"] for t in policy.timings].count(True) == 3
        policy.begin(2)
        policy.step(episodes[0][0][None].repeat(2, 0), np.arange(2))
        policy.step(episodes[0][1][None].repeat(1, 0), np.array([0]))  # episode 1 ended
        with pytest.raises(LavaError, match=r"episodes \[1\] were left out"):
            policy.step(episodes[0][2][None], np.array([1]))
        with pytest.raises(ValueError, match="takes 3"):
            policy.step(episodes[0][2][None, :2], np.array([0]))


def test_a_streaming_bundle_is_floating_point_only(bundle):
    with pytest.raises(LavaError, match="floating_pt only"):
        lava.LavaPolicy(bundle, fixed_point=True)
    with pytest.raises(LavaError, match="verify_stream_bundle"):
        lava.verify_bundle(bundle, np.zeros((1, 7, 1)))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["streaming"]["modes"] == ["floating_pt"] and manifest["period_steps"] == T + 1


# ---- a trained streaming CartPole model, closed loop ----------------------------------------


@pytest.fixture(scope="module")
def cartpole_bundle(lava_python, cartpole_dataset, tmp_path_factory):
    """A tiny streaming spiking DT trained on CartPole, exported and verified by `export`."""
    from spikingmind.train import train
    from tests.support.checkpoints import tiny_train_config

    cfg = tiny_train_config(cartpole_dataset, "snn", model={"width": 16, "n_blocks": 1, "context_length": 4,
                                                            "time_steps": 2, "kind": "snn", "history": "stream"})
    checkpoint = train(tmp_path_factory.mktemp("lava-stream-train"), cfg)[0]
    return lava.export(checkpoint, tmp_path_factory.mktemp("lava-stream-export") / "bundle", verify_decisions=12,
                       timeout=300)


def test_export_verifies_a_streaming_checkpoint_on_closed_loop_episodes(cartpole_bundle):
    agreement = json.loads((cartpole_bundle / "agreement.json").read_text())
    assert agreement["passed"] and agreement["float_mismatches"] == 0
    assert agreement["decision_inputs"]["decisions"] == agreement["decisions"] == 12
    assert "streaming" in agreement["decision_inputs"]["kind"]
    assert sum(row["total"] for row in agreement["layers"] if row["kind"] == "lif") > 0
    assert agreement["action_float_vs_reference"] == 1.0


def test_lava_drives_cartpole_closed_loop_exactly_as_the_reference(cartpole_bundle):
    from spikingmind.workflows.evaluate import evaluate

    lava_run = evaluate(cartpole_bundle, episodes=2, backend="lava", max_steps=25)
    reference = evaluate(cartpole_bundle / "model.nir", episodes=2, max_steps=25)
    assert lava_run["backend"] == "lava-floating_pt"
    assert lava_run["returns"] == reference["returns"] and lava_run["lengths"] == reference["lengths"]
    assert lava_run["lava_decisions"] == lava_run["decisions"] == reference["decisions"] > 2


def test_evaluate_refuses_fixed_point_for_a_streaming_bundle_in_one_line(cartpole_bundle):
    from typer.testing import CliRunner

    from spikingmind.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(cartpole_bundle), "--backend", "lava", "--fixed-point",
                                      "--episodes", "1"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(cartpole_bundle) in lines[0] and "floating_pt only" in lines[0], result.output


def test_the_loihi_emulation_refuses_a_streaming_graph(graph):
    from spikingmind.errors import UnsupportedModuleError
    from spikingmind.export.lava.emulation import LoihiEmulationPolicy

    with pytest.raises(UnsupportedModuleError, match="streaming graph has no Loihi fixed-point plan"):
        LoihiEmulationPolicy(graph)
