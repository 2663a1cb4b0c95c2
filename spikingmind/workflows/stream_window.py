"""A streaming spiking DT against the same network recomputing a window (issue #18's comparison).

A streaming SNN's weights do not depend on a window: the causal mix is a per-channel decay,
and the spiking DT has no position embedding. So the same network runs as a windowed model of
K steps (`windowed_copy`): every decision then recomputes its last 3K tokens from zero state,
as every spiking DT did before streaming. `compare` measures both on closed-loop episodes of
evaluation seeds: spikes, synaptic operations and energy per decision (decision-only
accounting, what a deployment computes; streaming: steady-state decisions), and the return of
each, which differ because the windowed copy forgets everything older than its window.
"""

from __future__ import annotations

from pathlib import Path

from spikingmind.checkpoint import Checkpoint, checkpoint_meta, load_checkpoint, save_checkpoint
from spikingmind.errors import ConfigError
from spikingmind.model import DecisionTransformer, ModelConfig
from spikingmind.tokens import TokenLayout

#: The windowed model issue #18 measures the streaming one against.
WINDOW_STEPS = 20


def windowed_copy(checkpoint: str | Path, out: str | Path, context_length: int = WINDOW_STEPS,
                  overwrite: bool = False) -> Path:
    """The streaming spiking DT at `checkpoint` as a windowed model of `context_length` steps,
    the same weights, written as a checkpoint folder at `out` (its metadata names the source)."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.config.kind != "snn" or not ckpt.config.streaming:
        raise ConfigError(f"{checkpoint}: a windowed copy needs a streaming spiking DT (model.history = 'stream'), "
                          f"got kind {ckpt.config.kind!r}, history {ckpt.config.history!r}")
    cfg = ModelConfig.from_dict({**ckpt.config.to_dict(), "history": "window", "context_length": context_length})
    model = DecisionTransformer(cfg, ckpt.model.n_features, ckpt.model.n_out)
    model.load_state_dict(ckpt.model.state_dict(), strict=True)  # no weight depends on the window
    model.eval()
    layout = TokenLayout(ckpt.layout.obs_dim, ckpt.layout.act_dim, ckpt.layout.discrete, context_length)
    extra = {key: value for key, value in ckpt.meta.items()
             if key not in ("format", "format_version", "versions", "model", "n_features", "n_out", "env",
                            "token_layout", "normalization")}
    meta = checkpoint_meta(model, ckpt.spec, layout, ckpt.norm, **extra,
                           windowed_copy_of={"checkpoint": str(checkpoint), "context_length": context_length})
    return save_checkpoint(out, Checkpoint(model, ckpt.spec, layout, ckpt.norm, meta), overwrite=overwrite)


def decision_figures(report) -> dict:
    """Per decision, decision-only accounting: spikes, synaptic operations (accumulates and
    multiply-accumulates, NeuroBench's effective counts) and energy per SNN profile (uJ)."""
    if report.accounting != "decision_only":
        raise ConfigError(f"expected a decision-only energy report, got {report.accounting}")
    totals = report.counts["snn"]["totals"]
    return {"spikes": totals["spikes"], "synaptic_ops": totals["effective_acs"] + totals["effective_macs"],
            "neuron_updates": totals["neuron_updates"],
            "energy_uj": {entry["profile"]: entry["snn_total_pj"] / 1e6 for entry in report.profiles},
            "decisions": report.decisions}


def compare(stream_checkpoint: str | Path, window_checkpoint: str | Path, profiles, episodes: int = 2,
            eval_episodes: int = 20, seed: int = 0) -> dict:
    """Both models on the same evaluation seeds: returns, and per-decision figures with their ratios."""
    from spikingmind.policy import TorchPolicy
    from spikingmind.rollout import run_episodes
    from spikingmind.seeds import evaluation_seeds
    from spikingmind.workflows.energy_report import estimate_energy

    result = {"window_steps": load_checkpoint(window_checkpoint).config.context_length,
              "accounting": "decision_only", "energy_episodes": episodes, "eval_episodes": eval_episodes,
              "seed": seed}
    for name, path in (("stream", stream_checkpoint), ("window", window_checkpoint)):
        returns = run_episodes(TorchPolicy(load_checkpoint(path)), evaluation_seeds(eval_episodes, seed)).returns
        report = estimate_energy(path, profiles=profiles, episodes=episodes, seed=seed)
        result[name] = {"checkpoint": str(path), "returns": list(returns),
                        "mean_return": float(sum(returns) / len(returns)), **decision_figures(report)}
    stream, window = result["stream"], result["window"]
    result["window_over_stream"] = {
        "spikes": window["spikes"] / stream["spikes"] if stream["spikes"] else None,
        "synaptic_ops": window["synaptic_ops"] / stream["synaptic_ops"] if stream["synaptic_ops"] else None,
        "energy": {p: window["energy_uj"][p] / stream["energy_uj"][p] for p in stream["energy_uj"]}}
    return result
