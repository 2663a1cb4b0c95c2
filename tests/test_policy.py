"""The backend contract: the one action decoder, and the capabilities every workflow may call."""

from __future__ import annotations

import numpy as np
import pytest

from spikingmind.envs import get_env_spec
from spikingmind.metadata import DecodeRule
from spikingmind.policy import Policy, SpikeTally, decode_actions
from spikingmind.tokens import TokenLayout


def test_discrete_actions_are_the_argmax():
    rule = DecodeRule(discrete=True, token_index=4)
    outputs = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(decode_actions(outputs, rule), [1, 0, 0])


def test_continuous_actions_are_squashed_into_the_box_in_float32():
    spec = get_env_spec("Pendulum-v1")
    rule = DecodeRule.for_env(spec, TokenLayout(spec.obs_dim, spec.act_dim, False, 2))
    outputs = np.array([[-50.0], [0.0], [50.0], [0.3]])
    actions = decode_actions(outputs, rule)
    assert actions.dtype == np.float32
    np.testing.assert_array_equal(actions[:3, 0], np.float32([-2.0, 0.0, 2.0]))
    assert actions[3, 0] == np.float32(-2.0 + (np.tanh(0.3) + 1) / 2 * 4.0)


def test_a_backend_needs_only_outputs_and_gets_every_capability_declared():
    class Constant(Policy):
        backend = "constant"
        decode = DecodeRule(discrete=True, token_index=1)

        def outputs(self, windows):
            return np.tile([0.0, 1.0], (len(windows), 1))

    with Constant() as policy:
        np.testing.assert_array_equal(policy.act(np.zeros((3, 3, 2))), [1, 1, 1])
        assert policy.spike_stats() == {} and policy.decision_stats() == {}
        assert policy.verification is None and dict(policy.dataset) == {}
    with pytest.raises(NotImplementedError, match="Policy computes no outputs"):
        Policy().outputs(np.zeros((1, 3, 2)))


def test_spike_tally_counts_per_layer_and_per_decision():
    tally = SpikeTally()
    assert tally.stats() == {}
    tally.add({"a": np.ones((2, 3, 4)), "b": np.zeros((2, 3, 4))}, decisions=3)
    stats = tally.stats()
    assert stats["spikes_per_decision"] == 24 / 3 * 1.0
    assert stats["spike_rate"] == {"a": 1.0, "b": 0.0} and stats["mean_spike_rate"] == 0.5
