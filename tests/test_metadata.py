"""The one reader of policy metadata: checkpoints, NIR and ONNX exports read into the same rule,
and every bad field is named with its file."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from spikingmind.checkpoint import read_meta
from spikingmind.envs import get_env_spec
from spikingmind.errors import CheckpointError, GraphError
from spikingmind.export.nir import checkpoint_to_graph, graph_metadata
from spikingmind.export.onnx import export_metadata as onnx_metadata
from spikingmind.metadata import DecodeRule, parse_metadata, read_policy_metadata
from spikingmind.model import ModelConfig
from tests.support.checkpoints import untrained


@pytest.fixture(scope="module")
def snn(tmp_path_factory):
    return untrained(tmp_path_factory.mktemp("meta") / "snn", ModelConfig(width=8, n_blocks=1, context_length=3))


def test_checkpoint_nir_and_onnx_metadata_read_into_the_same_policy(snn):
    from spikingmind.checkpoint import load_checkpoint

    forms = {"checkpoint": read_meta(snn), "nir": graph_metadata(checkpoint_to_graph(snn)),
             "onnx": onnx_metadata(load_checkpoint(snn))}
    read = {kind: read_policy_metadata(meta, kind) for kind, meta in forms.items()}
    spec = get_env_spec("CartPole-v1")
    for kind, policy in read.items():
        assert policy.spec == spec and policy.layout.context_length == 3, kind
        assert policy.norm == read["checkpoint"].norm, kind
        assert policy.decode.discrete and policy.decode.token_index == policy.layout.decision_token == 7, kind
        assert policy.model_kind == "snn", kind
    assert read["nir"].decode.time_steps == read["onnx"].decode.time_steps == 4
    assert read["nir"].decode.output_node == "output" and read["onnx"].decode.output_node == "action_outputs"


def test_decode_rule_of_an_env_is_what_the_exports_write(snn):
    from spikingmind.checkpoint import load_checkpoint

    ckpt = load_checkpoint(snn)
    written = read_policy_metadata(graph_metadata(checkpoint_to_graph(snn)), "nir").decode
    derived = DecodeRule.for_env(ckpt.spec, ckpt.layout, ckpt.config.time_steps)
    assert (derived.discrete, derived.token_index, derived.action_low, derived.time_steps) == (
        written.discrete, written.token_index, written.action_low, written.time_steps)


def test_short_decoding_metadata_needs_no_env():
    policy = read_policy_metadata('{"action_kind": "continuous", "action_low": [-2.0], "action_high": [1.0]}',
                                  "short.nir", require_env=False, n_tokens=6, n_out=1)
    assert policy.spec is None and policy.layout is None
    assert not policy.decode.discrete and policy.decode.token_index == 4
    assert policy.decode.action_low == (-2.0,) and policy.decode.action_high == (1.0,)
    with pytest.raises(GraphError, match="short.nir: missing field 'env.env_id'"):
        read_policy_metadata({"action_kind": "discrete"}, "short.nir", n_tokens=6)


def test_a_nir_read_back_gives_bytes_or_an_array_and_still_parses():
    raw = json.dumps({"action_kind": "discrete"})
    assert parse_metadata(np.array(raw.encode()), "x") == parse_metadata(raw.encode(), "x") == {"action_kind": "discrete"}


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("env"), "meta.json: missing field 'env.env_id'"),
    (lambda m: m["token_layout"].pop("context_length"), "meta.json: missing field 'token_layout.context_length'"),
    (lambda m: m["token_layout"].update(obs_dim=5), "meta.json: obs_dim 5 does not match CartPole-v1"),
    (lambda m: m["normalization"].update(colour=1), "meta.json: invalid field 'token_layout' or 'normalization'"),
    (lambda m: m.update(action_kind="continuous"), "meta.json: the action kind disagrees"),
    (lambda m: m.update(decode={"token_index": 3}), "meta.json: invalid field 'decode.token_index' 3"),
    (lambda m: m.update(action_kind="both"), "meta.json: metadata action_kind must be"),
])
def test_every_bad_field_is_named_with_the_file(snn, change, message):
    meta = graph_metadata(checkpoint_to_graph(snn))
    change(meta)
    with pytest.raises(CheckpointError, match=message):
        read_policy_metadata(meta, "meta.json", error=CheckpointError)


def test_absent_and_corrupt_metadata_name_the_file():
    with pytest.raises(GraphError, match="g.nir: no 'spikingmind' metadata"):
        read_policy_metadata(nir.NIRGraph(nodes={}, edges=[]).metadata.get("spikingmind"), "g.nir")
    with pytest.raises(GraphError, match="g.nir: corrupt spikingmind metadata"):
        parse_metadata("{not json", "g.nir")
    with pytest.raises(GraphError, match="g.nir: the spikingmind metadata must be a JSON object"):
        parse_metadata("[1, 2]", "g.nir")
