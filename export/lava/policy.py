"""A Lava bundle as a closed-loop policy: every action computed by Lava in one persistent sidecar."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.errors import LavaError
from spikingmind.export.lava.bundle import bundle_host_terms, load_plan
from spikingmind.export.lava.host import (HostEncoder, graph_inputs, host_data, input_shape, lava_records, readout_values,
                                          stream_inputs)
from spikingmind.export.lava.sidecar import DEFAULT_TIMEOUT_S, SidecarServer, scratch_dir
from spikingmind.export.lava_sidecar.plan import align_stream
from spikingmind.export.reference import load_graph
from spikingmind.metadata import read_policy_metadata
from spikingmind.policy import Policy


class LavaPolicy(Policy):
    """A Lava bundle as a closed-loop policy: every action is computed by Lava (one persistent
    sidecar, floating_pt or fixed_pt), the encoder Conv1d on the host.

    act(windows (B, L, D_in)) / outputs(...) as `export.nir.NIRPolicy`; the B windows of one
    call are pipelined through the network (one every T Lava steps). `spec`, `layout`, `norm`,
    `meta`, `decode` come from the graph's spikingmind metadata (no env: None).
    `timings` holds one entry per call; `decision_stats()` summarises them. Use as a context
    manager or call close(); the sidecar's process group is killed on close, error, timeout.

    A streaming bundle (`streaming`, floating_pt only) decides with begin(batch) /
    step_outputs(tokens (B', n, F), rows) as `NIRPolicy` does: the carried trace stays in the
    sidecar's Lava network, which runs the episodes side by side, one decision (its tokens
    pipelined, one slot every T + 1 steps) per call, and is built anew by the first call after
    begin(). Episodes run in lockstep: a row left out of a call has ended and cannot come back.
    """

    model_kind = "snn"

    def __init__(self, bundle: str | Path, fixed_point: bool = False, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.bundle = Path(bundle)
        if not (self.bundle / "manifest.json").exists():
            raise LavaError(f"{self.bundle} is not a Lava bundle (no manifest.json); "
                            "write one with `spikingmind export --target lava`")
        self._server: SidecarServer | None = None
        self._plan_dir: Path | None = None
        self.mode = "fixed" if fixed_point else "float"
        self.backend = "lava-fixed_pt" if fixed_point else "lava-floating_pt"
        self.graph = load_graph(self.bundle / "model.nir")
        self.token_features, self.context_tokens = input_shape(self.graph)
        metadata = read_policy_metadata((self.graph.metadata or {}).get("spikingmind"),
                                        str(self.bundle / "model.nir"), require_env=False, n_tokens=self.context_tokens)
        self.meta, self.decode = metadata.raw, metadata.decode
        self.spec, self.layout, self.norm = metadata.spec, metadata.layout, metadata.norm
        self.plan = load_plan(self.bundle)
        self.streaming = self.plan.streaming is not None
        if self.streaming and fixed_point:
            raise LavaError(f"{self.bundle}: a streaming Lava bundle runs in floating_pt only (its carried trace "
                            "has no fixed_pt plan); drop --fixed-point")
        self._batch, self._fresh = 0, True
        self._started = self._ended = np.zeros(0, bool)
        self.encoder = HostEncoder(self.graph, bundle_host_terms(self.bundle))
        self.timeout = timeout
        self._plan_dir = scratch_dir("plan")
        self.plan.save(self._plan_dir)
        self._capacity = 1
        self.timings: list[dict] = []
        self.quantization = fxp.QuantizationReport()

    def _ensure_server(self) -> SidecarServer:
        if self._server is None or self._server.proc is None:
            self._server = SidecarServer(self._plan_dir, self.mode, self.timeout)
        return self._server

    def outputs(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (B, L, D_in) or (L, D_in) -> decision-token outputs (B, n_out) or (n_out,)."""
        if self.streaming:
            raise LavaError(f"{self.bundle} streams: decide with begin() and step(), not on windows")
        inputs, single = graph_inputs(tokens, self.context_tokens, self.token_features)  # (B, D_in, L)
        n = inputs.shape[0]
        # the sidecar keeps its network while jobs have the same length: pad to the largest
        # batch seen, and to whole periods so that every job starts at the same phase
        self._capacity = max(self._capacity, n)
        period = self.plan.time_steps
        n_steps = -(-self.plan.total_steps(self._capacity) // period) * period
        fixed = self.mode == "fixed"
        t0 = time.perf_counter()
        data = host_data(self.plan, self.encoder.currents(inputs), n_steps, fixed,
                          self.quantization if fixed else None)
        t1 = time.perf_counter()
        try:
            traces, timing = self._ensure_server().request(data, n_steps, record=[])
        except LavaError:
            self._server = None
            raise
        out = lava_records(self.plan, traces, n, fixed)[self.plan.readout.name]  # (T, B, n_out, L)
        self.timings.append({**timing, "host_s": t1 - t0, "wall_s": time.perf_counter() - t0, "decisions": n})
        outputs = self.decode.decision_outputs(out)
        return outputs[0] if single else outputs

    def begin(self, batch: int) -> None:
        """`batch` new episodes; the next step builds a fresh network for them."""
        if not self.streaming:
            raise LavaError(f"{self.bundle} is a windowed bundle: it does not stream")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._batch, self._fresh = int(batch), True
        self._started, self._ended = np.zeros(batch, bool), np.zeros(batch, bool)

    def step_outputs(self, tokens: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The tokens (B', n, F) that arrived for episodes `rows` (B',): one decision in Lava, its
        n tokens at the decision's last n positions; the Output of the state token's run,
        decoded (B', n_out). An episode's first call may bring fewer tokens than a decision has
        positions (return-to-go and state), every later one all of them."""
        if not self.streaming or self._batch == 0:
            raise LavaError(f"{self.bundle}: call begin(batch) before step()" if self.streaming
                            else f"{self.bundle} is a windowed bundle: it does not stream")
        stream = self.plan.streaming
        tokens = np.asarray(tokens, dtype=np.float64)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if tokens.ndim != 3 or tokens.shape[0] != rows.size or tokens.shape[2] != self.token_features:
            raise ValueError(f"tokens have shape {tokens.shape}; expected ({rows.size}, n, {self.token_features})")
        n = tokens.shape[1]
        if rows.size == 0 or np.unique(rows).size != rows.size or rows.min() < 0 or rows.max() >= self._batch:
            raise ValueError(f"rows {rows.tolist()} must be distinct episodes of the {self._batch} begun")
        if self._ended[rows].any():
            raise LavaError(f"{self.bundle}: episodes {rows[self._ended[rows]].tolist()} were left out of an "
                            "earlier step (ended); Lava runs the episodes of a begin() in lockstep")
        started = self._started[rows]
        if (started.any() and n != stream.positions) or not 1 <= n <= stream.positions:
            raise ValueError(f"{n} new tokens: a Lava streaming decision takes {stream.positions} (an episode's "
                             f"first at most {stream.positions})")
        if started.any() != started.all():
            raise ValueError("episodes at their first step and later ones cannot share one step")
        left_out = np.setdiff1d(np.flatnonzero(self._started), rows)
        self._ended[left_out] = True
        self._started[rows] = True
        full = np.zeros((self._batch, 1, stream.positions, self.token_features))
        present = np.zeros((self._batch, 1, stream.positions), bool)
        full[rows, 0, stream.positions - n:] = tokens
        present[rows, 0, stream.positions - n:] = True
        t0 = time.perf_counter()
        data = stream_inputs(self.plan, self.encoder, full, present)
        t1 = time.perf_counter()
        try:
            traces, timing = self._ensure_server().request(data, self.plan.decision_steps, record=[],
                                                           batch=self._batch, fresh=self._fresh)
        except LavaError:
            self._server = None
            raise
        self._fresh = False
        ro = self.plan.readout
        out = np.stack([align_stream(readout_values(self.plan, traces["readout"][row], fixed=False),
                                     ro.offset(self.plan), self.plan, ro.shape)[0, stream.decision_position]
                        for row in rows], axis=1)  # (T, B', n_out, 1)
        self.timings.append({**timing, "host_s": t1 - t0, "wall_s": time.perf_counter() - t0,
                             "decisions": int(rows.size)})
        return self.decode.decision_outputs(out)

    def decision_stats(self) -> dict:
        """Lava time per decision over every call so far (the first call builds the network,
        so `lava_ms_per_decision_warm` leaves out calls that (re)built it)."""
        if not self.timings:
            return {}
        decisions = sum(t["decisions"] for t in self.timings)
        warm = [t for t in self.timings if not t.get("rebuilt")]
        run_s = sum(t["run_s"] for t in self.timings)
        steps = sum(t["n_steps"] for t in self.timings)
        stats = {
            "lava_mode": "fixed_pt" if self.mode == "fixed" else "floating_pt",
            "lava_decisions": decisions,
            "lava_ms_per_decision": 1000.0 * sum(t["wall_s"] for t in self.timings) / decisions,
            "lava_run_ms_per_decision": 1000.0 * run_s / decisions,
            "lava_steps_per_s": steps / run_s if run_s > 0 else float("nan"),
            "lava_build_s": sum(t["build_s"] for t in self.timings if t.get("rebuilt")),
        }
        if warm:
            stats["lava_ms_per_decision_warm"] = 1000.0 * sum(t["wall_s"] for t in warm) / sum(
                t["decisions"] for t in warm)
        return stats

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._plan_dir is not None:
            shutil.rmtree(self._plan_dir, ignore_errors=True)
            self._plan_dir = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def load_policy(path: Path, fixed_point: bool = False) -> LavaPolicy:
    """Registry loader (`spikingmind.export.BACKENDS["lava"]`): a Lava bundle folder run by Lava,
    floating_pt or (`fixed_point`) Loihi's fixed_pt."""
    return LavaPolicy(path, fixed_point=fixed_point)
