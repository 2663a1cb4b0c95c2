"""Export to Intel Lava (lava-nc 0.10.0): bundle, verification against the reference, policy.

Lava runs only in a Python 3.10 sidecar (`spikingmind.export.lava_sidecar.run`, venv from
`spikingmind.export.lava_env`); this package never imports Lava. It

1. turns a NIR graph of docs/SEMANTICS.md's node set into a Lava *plan*
   (`lava_sidecar/plan.py`: LIFReset populations, Sparse synapses, host sources, sinks,
   delay-balancing relays, per-population offsets) and a Loihi fixed-point version of it;
2. writes a bundle atomically: `model.nir`, `lava_plan.json`, `params_float.npz`,
   `params_fixed.npz`, `manifest.json` (+ `agreement.json` from `export`);
3. runs the bundle in the sidecar (own process group, timeout, group killed on any failure)
   and compares every layer's spikes with `spikingmind.export.reference` (floating_pt) and with the
   NumPy emulation of Loihi's integer arithmetic (fixed_pt);
4. serves closed-loop decisions (`LavaPolicy`) from one persistent sidecar;
5. `export` (the registry's entry point) does 2 and 3 on real decisions from closed-loop
   reference episodes, and keeps the bundle only once Lava has run it (see its docstring).

A streaming graph (docs/SEMANTICS.md, "Streaming") gets a streaming plan (`streaming.py`:
the carried trace in Lava, floating_pt only), is verified token by token on closed-loop
streaming episodes (`verify_stream_bundle`) and streams in `LavaPolicy` (begin / step).

Encoder: the real-valued `embed` Conv1d of the Input is computed on the host (it is
constant over the T steps of a decision) and injected as a graded current straight into
each residual-stream population (an NpySource, scheduled at that population's offset). It
is counted as MACs, not spike ops, exactly as in the energy model.

    plan.py           NIR graph -> Lava plan (1); quantize.py: its fixed-point version
    bundle.py         the bundle's files (2)
    sidecar.py        the sidecar's processes (3, 4)
    host.py           the host encoder and the records of a run
    verification.py   `verify_bundle` -> `LavaAgreement` (3)
    policy.py         `LavaPolicy` (4)
    emulation.py      the `loihi-emulation` backend: the plan's fixed point closed loop in NumPy,
                      without Lava (bit-exact against fixed_pt, one decision per batch row)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np

from spikingmind.errors import ExportError, LavaError, RunExistsError
from spikingmind.export import lava_env
from spikingmind.export.lava.bundle import export_lava_bundle, load_plan, write_bundle
from spikingmind.export.lava.plan import build_plan
from spikingmind.export.lava.policy import LavaPolicy, load_policy
from spikingmind.export.lava.sidecar import DEFAULT_TIMEOUT_S, run_sidecar
from spikingmind.export.lava.streaming import is_streaming
from spikingmind.export.lava.verification import LavaAgreement, LayerAgreement, verify_bundle, verify_stream_bundle
from spikingmind.io import atomic_dir, atomic_write_json
from spikingmind.rollout import record_decision_inputs, run_episodes
from spikingmind.seeds import evaluation_seeds

__all__ = ["LavaAgreement", "LavaPolicy", "LayerAgreement", "build_plan", "export", "export_lava_bundle",
           "load_plan", "load_policy", "real_decision_inputs", "real_stream_decisions", "run_sidecar", "verify_bundle",
           "verify_stream_bundle"]


def real_decision_inputs(graph: nir.NIRGraph, n: int, seed: int = 0) -> np.ndarray:
    """n graph inputs (n, D_in, L) from closed-loop episodes of the reference policy on
    evaluation seeds: whole episodes until at least n decisions exist, then n evenly spaced
    ones (so a long episode's late decisions, with full windows, are included)."""
    from spikingmind.export.nir import NIRPolicy

    policy = NIRPolicy(graph)
    episodes = 1
    while True:
        inputs = record_decision_inputs(policy, episodes, seed)
        if len(inputs) >= n or episodes >= 64:
            break
        episodes *= 2
    return inputs[np.unique(np.linspace(0, len(inputs) - 1, min(n, len(inputs))).round().astype(int))]


def real_stream_decisions(graph: nir.NIRGraph, n: int, seed: int = 0) -> list[list[np.ndarray]]:
    """n decisions of a streaming graph's reference policy, closed loop on evaluation seeds `seed`:
    per episode its decisions' new tokens, (n_tokens, F) each, from each episode's first step
    (the carried state needs the whole prefix); episodes one after another until n decisions."""
    from spikingmind.export.nir import NIRPolicy

    policy = NIRPolicy(graph)
    episodes: list[list[np.ndarray]] = []
    for episode_seed in evaluation_seeds(64, seed):
        left = n - sum(len(e) for e in episodes)
        if left <= 0:
            break
        decisions: list[np.ndarray] = []
        run_episodes(policy, [episode_seed], batch=1, max_steps=left,
                     on_decision=lambda tokens: decisions.append(np.asarray(tokens[0], dtype=np.float64)))
        episodes.append(decisions)
    return episodes


def export(source: str | Path, out: str | Path, force: bool = False, verify_decisions: int = 20,
           timeout: float = DEFAULT_TIMEOUT_S, seed: int = 0,
           on_agreement: Callable[[LavaAgreement, Path], None] | None = None) -> Path:
    """Registry entry point: checkpoint folder or .nir -> verified Lava bundle folder `out`.

    Writes the bundle into a temp folder next to `out`, runs `verify_decisions` real decisions
    (closed-loop reference episodes on evaluation seeds `seed`) through Lava floating_pt and
    fixed_pt, writes `agreement.json` into it and only then renames it onto `out`:

    - Lava missing, crashing or timing out (LavaError), or any other failure: nothing is
      left at `out` (an existing bundle there stays untouched);
    - Lava ran but disagreed (float spikes != reference or fixed != emulation): the bundle
      is kept for inspection with `agreement.json` saying `"passed": false`, and LavaError
      is raised after `on_agreement` has seen it.

    `on_agreement(agreement, out)` sees the agreement once the bundle is in place (the CLI
    shows it as a table); None: nothing is shown.

    A streaming graph is verified on `verify_decisions` decisions of closed-loop streaming
    episodes from their first step, token by token, floating_pt only (`verify_stream_bundle`).
    """
    from spikingmind.export.nir import load_or_export_graph

    out = Path(out)
    if out.exists() and not force:
        raise RunExistsError(f"{out} already exists; pass --force to replace it")
    if verify_decisions < 1:
        raise ExportError(f"verify_decisions must be >= 1, got {verify_decisions}")
    lava_env.find_lava_python()  # fail before any work when the sidecar cannot run
    graph = load_or_export_graph(source)
    streaming = is_streaming(graph)
    if streaming:  # closed-loop streaming episodes, replayed token by token
        inputs = real_stream_decisions(graph, verify_decisions, seed)
        kind, count = "closed-loop streaming episodes of the NIR reference policy, from their first step", sum(
            len(episode) for episode in inputs)
    else:
        inputs = real_decision_inputs(graph, verify_decisions, seed)
        kind, count = "closed-loop episodes of the NIR reference policy", len(inputs)
    with atomic_dir(out, overwrite=force) as tmp:
        write_bundle(graph, tmp)
        agreement = (verify_stream_bundle(tmp, inputs, timeout=timeout) if streaming
                     else verify_bundle(tmp, inputs, timeout=timeout))
        record = {**agreement.to_json(), "source": str(source), "decision_inputs": {
            "kind": kind, "seed": seed, "decisions": int(count),
            **({"episodes": len(inputs)} if streaming else {})}}
        atomic_write_json(tmp / "agreement.json", record)
    if on_agreement is not None:
        on_agreement(agreement, out)
    if not agreement.passed:
        raise LavaError(f"Lava disagrees: {agreement.float_mismatches} float values differ from the reference, "
                        f"{agreement.fixed_emulation_mismatches} fixed-point values from the emulation; "
                        f"the bundle is kept at {out} for inspection (agreement.json: passed false)")
    return out
