"""The metadata an exported NIR graph carries: everything a stranger needs to run the policy
from the .nir file alone (written here, read back by `spikingmind.metadata`)."""

from __future__ import annotations

import gymnasium
import nir

import spikingmind
from spikingmind import units
from spikingmind.export.nir.emitters import OUTPUT
from spikingmind.metadata import parse_metadata


def token_table(layout, norm, spec) -> dict:
    """The token layout as a table a runner can follow from the file alone (docs/SEMANTICS.md):
    channel ranges half-open [start, stop), read off `spikingmind.tokens.TokenLayout`."""
    def span(part: slice) -> list[int]:
        return [part.start, part.stop]

    action_value = ("one-hot of the action index sent to the env" if layout.discrete else
                    "the action sent to the env (after the host's squashing into [action_low, action_high])")
    return {
        "channel_ranges": "half-open [start, stop): channels start, start + 1, ..., stop - 1",
        "n_features": layout.n_features,
        "window": f"L = 3 K = {layout.n_tokens} tokens, oldest step first: (return_to_go_1, state_1, action_1, ..., "
                  "return_to_go_K, state_K, action_K); the last step is the current one",
        "padding": "fewer than K steps so far: the window is left-padded with all-zero tokens (every channel 0, "
                   "token type included)",
        "rows": [
            {"feature": "return_to_go", "channels": [0, 1], "tokens": ["return_to_go", "state"],
             "value": "return_gain * sign(R) * log1p(|R|) / log1p(return_scale), R this step's return-to-go "
                      "(see return_to_go); return_gain and return_scale in normalization"},
            {"feature": "observation", "channels": span(layout.obs_slice), "tokens": ["state"],
             "value": "(obs - obs_mean) / obs_std per observation dimension, in the env's order"},
            {"feature": "action", "channels": span(layout.act_slice), "tokens": ["action"],
             "value": f"{action_value}; all 0 on the current step's action token (not chosen yet)"},
            {"feature": "token_type", "channels": span(layout.type_slice), "tokens": ["return_to_go", "state", "action"],
             "value": "one-hot: channel start + 0 on return-to-go tokens, start + 1 on state tokens, start + 2 on "
                      "action tokens"},
            {"feature": "timestep", "channels": [layout.time_channel, layout.time_channel + 1],
             "tokens": ["return_to_go", "state", "action"],
             "value": "t / max_episode_steps for all three tokens of step t (see timestep)"},
        ],
        "other_channels": "none: every channel of a token belongs to exactly one row; channels a row does not "
                          "set for a token type are 0",
        "decision_token": layout.decision_token,
        "max_episode_steps": norm.max_episode_steps,
        "target_return": spec.target_return,
    }


def streaming_metadata(ckpt) -> dict:
    """What a streaming export means (docs/SEMANTICS.md, "Streaming"): its decode section and the
    `streaming` section that says how runs, tokens and carried state fit together."""
    return {
        "decode": {
            "output_node": OUTPUT,
            "reduce": "mean over the time_steps steps",
            "token_index": 0,
            "per_run": "the graph takes one token per run; the run of each state token decodes the next action, "
                       "the runs of return-to-go and action tokens only carry the history on",
            "action": "argmax" if ckpt.spec.discrete else "action_low + (tanh(y) + 1) / 2 * (action_high - action_low)",
            "action_low": list(ckpt.spec.action_low),
            "action_high": list(ckpt.spec.action_high),
        },
        "streaming": {
            "tokens": "one token per run of time_steps steps, in episode order: return_to_go_0, state_0 (decide), "
                      "action_0, return_to_go_1, state_1 (decide), ... ; no padding, no window",
            "state": "Delay nodes and the outputs their feedback edges carry keep their state from run to run "
                     "within an episode and start at 0 with it; every other node (LIF membranes) starts each run "
                     "at 0, as a windowed export's decision does",
            "causal_mix": "per block, {mix}.trace = g * (the trace time_steps steps back) + kv_and through "
                          "{mix}.delay (Delay (time_steps - 1) dt) and the feedback edge into {mix}.decay (Scale g): "
                          "the trace of the previous token at the same SNN step",
            "decision_tokens": "state tokens",
        },
    }


def export_metadata(ckpt) -> dict:
    """Everything a stranger needs to run the policy from the .nir file alone."""
    meta = ckpt.meta
    spec, layout = ckpt.spec, ckpt.layout
    return {
        "format": "spikingmind-nir",
        "format_version": 1,
        "spikingmind_version": spikingmind.__version__,
        "nir_version": nir.__version__,
        "dt": units.DT,
        "time_steps": ckpt.config.time_steps,
        "neuron": {
            "discretization": "forward Euler of NIR LIF with step dt: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) v_leak "
                              "+ (dt/tau) r I[t]; exported so that this is v[t] = beta v[t-1] + I[t]",
            "reset": "to v_reset (0) at the step of the spike",
            "threshold_compare": ">",
            "state_init": "all membranes 0 at the start of every decision",
            "edge_summation": "inputs of a node are summed in edge-list order",
            "time": "zero delay: every node is evaluated once per step in topological order",
        },
        # flat keys: enough to decode actions without the env (spikingmind.metadata reads both forms)
        "action_kind": spec.action_kind,
        "action_low": list(spec.action_low),
        "action_high": list(spec.action_high),
        "context_length": layout.context_length,
        "token_features": layout.n_features,
        "env": meta["env"],
        "token_layout": meta["token_layout"],
        "normalization": meta["normalization"],
        "model": meta["model"],
        "decode": {
            "output_node": OUTPUT,
            "reduce": "mean over the time_steps steps",
            "token_index": layout.decision_token,
            "action": "argmax" if spec.discrete else "action_low + (tanh(y) + 1) / 2 * (action_high - action_low)",
            "action_low": list(spec.action_low),
            "action_high": list(spec.action_high),
        },
        "dataset": meta.get("dataset", {}),
        "source_checkpoint_versions": meta.get("versions", {}),
        # the rules a runner written from this file alone needs (docs/SEMANTICS.md, "Running a policy")
        "token_table": token_table(layout, ckpt.norm, spec),
        "return_to_go": {
            "initial": f"the target return at reset (this env's default: {spec.target_return}; a runner may ask "
                       "for another)",
            "update": "R[t+1] = R[t] - reward[t] after every env.step, unclipped: it may go below 0",
            "on_tokens": "step t's return-to-go and state tokens carry R[t]",
        },
        "timestep": {
            "origin": "t = 0 for the observation env.reset() returns, t + 1 after each env.step",
            "feature": "t / max_episode_steps (normalization.max_episode_steps), the same on all three tokens of a step",
        },
        "gymnasium_version": gymnasium.__version__,
        **(streaming_metadata(ckpt) if ckpt.config.streaming else {}),
    }



def graph_metadata(graph: nir.NIRGraph, source: str = "graph") -> dict:
    """The spikingmind metadata of an exported graph as a dict (GraphError naming `source`)."""
    return parse_metadata(graph.metadata.get("spikingmind"), source)
