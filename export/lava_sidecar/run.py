"""Lava sidecar: runs a spikingmind Lava plan inside the Python 3.10 venv (no torch).

Started by `spikingmind.export.lava` as a subprocess in its own process group, as
`python -m spikingmind.export.lava_sidecar.run` (spikingmind is installed into the Lava venv
without dependencies, see `spikingmind.export.lava_env`). Talks to its parent only through
JSON and npz files (never pickle):

    ... run --job JOB.json             one run: JOB = {plan_dir, mode, host_data, n_steps,
                                       period, record, out}; writes `out` (npz) + `out`.json
    ... run --serve PLAN_DIR MODE      persistent: one JSON job per stdin line, one JSON
                                       reply per stdout line; the network is reused

mode is "float" (Lava floating_pt models) or "fixed" (Loihi bit-accurate fixed_pt models).
A streaming plan (`Plan.streaming`, floating_pt only) is built by `build_stream_network`:
its merged processes for `batch` episodes side by side; a job's host data is then its
compact token currents (`expand_stream_inputs`), its records {"pop/<name>": (batch, size, n_steps),
"readout": (batch, n_out, n_steps)}, and a served job with "fresh": true starts new episodes
on a freshly built network.

It dies with its parent (`die_with_parent`): the parent passes its pid and the temporary
folders it made for this sidecar (SPIKINGMIND_LAVA_PARENT_PID, SPIKINGMIND_LAVA_SCRATCH); once
the parent is gone (a watchdog thread compares os.getppid() every 0.2 s; PR_SET_PDEATHSIG
sends SIGTERM at once where the parent asked for it) the sidecar removes those folders and
SIGKILLs its own process group, Lava's runtime processes included. SIGTERM does the same.

Test hooks: SPIKINGMIND_LAVA_SIDECAR_SLEEP=<seconds> sleeps before running (a hang).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing import process, util
from pathlib import Path

import numpy as np

from spikingmind.export.lava_sidecar.plan import Plan, expand_stream_inputs, process_layout


def build_network(plan: Plan, mode: str, host_data: dict[str, np.ndarray], n_steps: int,
                  period: int, record: list[str] | None, sink_dir: str):
    """Lava processes for the plan; returns (any process, sources, sinks, readout_sink).

    Sinks are NpySinks writing `<sink_dir>/<name>.npy` at the end of every n_steps."""
    from spikingmind.export.lava_sidecar.npy_sink import NpySink, NpySource
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    fixed = mode == "fixed"

    def sparse(name, key, shape, weight_exps):
        """The Sparse processes of one synapse: floating_pt one; fixed_pt one per synapse
        group (same source, same destination, own weight_exp)."""
        # num_message_bits=1: Lava's Sparse then computes weights.dot(s) (a csr mat-vec)
        # instead of weights[:, s].sum(axis=1) (csr column slicing, several times slower);
        # for 0/1 spikes both are the same sum (integers: exactly; floats: up to order)
        if fixed:
            return [Sparse(weights=csr_matrix((mant, (index[0], index[1])), shape=shape, dtype=np.int32),
                           weight_exp=exp, num_weight_bits=8, num_message_bits=1, name=f"{name}#{g}")
                    for g, (index, mant, exp) in enumerate(plan.fixed_groups(key, weight_exps))]
        index_key, value_key = (f"w_idx/{key}", f"w/{key}") if key != "readout" else ("readout_idx", "readout_w")
        index = plan.arrays[index_key]
        values = plan.arrays[value_key].astype(np.float64)
        return [Sparse(weights=csr_matrix((values, (index[0], index[1])), shape=shape, dtype=np.float64),
                       num_message_bits=1, name=name)]

    pops = {}
    for pop in plan.populations:
        interval, offset = (1, 0) if pop.stateless else (period, (pop.offset + 1) % period)
        if fixed:
            pops[pop.name] = LIFReset(
                shape=(pop.size,), du=4095, dv=pop.dv_int, vth=pop.vth_int,
                bias_mant=plan.arrays[f"bias_mant/{pop.name}"].astype(np.int32), bias_exp=pop.bias_exp,
                reset_interval=interval, reset_offset=offset, name=pop.name)
        else:
            pops[pop.name] = LIFReset(
                shape=(pop.size,), du=1.0, dv=pop.dv, vth=pop.vth,
                bias_mant=plan.arrays[f"bias/{pop.name}"].astype(np.float64), bias_exp=0,
                reset_interval=interval, reset_offset=offset, name=pop.name)
    denses = {}
    for syn in plan.synapses:
        denses[syn.name] = sparse(syn.name, syn.name, plan.matrix_shape(syn), syn.weight_exps)
        for group in denses[syn.name]:
            pops[syn.src].s_out.connect(group.s_in)
    sources = {}
    for pop in plan.populations:
        # inputs are connected in graph edge order: the float sum follows it
        for item in pop.inputs:
            if item == "host":
                path = os.path.join(sink_dir, f"source-{len(sources)}.npy")
                np.save(path, host_data[pop.name].astype(np.int32 if fixed else np.float64))
                sources[pop.name] = NpySource(shape=(pop.size,), buffer=n_steps, path=path,
                                              dtype="int32" if fixed else "float64")
                sources[pop.name].s_out.connect(pops[pop.name].a_in)
            else:
                for group in denses[item]:  # an InPort sums every connected OutPort
                    group.a_out.connect(pops[pop.name].a_in)
    sinks = {}
    for pop in plan.populations:
        if pop.record and (record is None or pop.name in record):
            sinks[pop.name] = NpySink(shape=(pop.size,), buffer=n_steps, dtype="int8",
                                      path=os.path.join(sink_dir, f"pop-{len(sinks)}.npy"))
            pops[pop.name].s_out.connect(sinks[pop.name].a_in)
    readout_sink = None
    if plan.readout is not None:
        ro = plan.readout
        groups = sparse("readout", "readout", plan.readout_shape(), ro.weight_exps)
        readout_sink = NpySink(shape=(plan.readout_shape()[0],), buffer=n_steps,
                               dtype="int64" if fixed else "float64", path=os.path.join(sink_dir, "readout.npy"))
        for group in groups:
            pops[ro.src].s_out.connect(group.s_in)
            group.a_out.connect(readout_sink.a_in)
    anchor = next(iter(pops.values()))
    return anchor, sources, sinks, readout_sink


def build_stream_network(plan: Plan, host_data: dict[str, np.ndarray], n_steps: int, batch: int,
                         record: list[str] | None, sink_dir: str):
    """A streaming plan's Lava network for `batch` episodes (rows) side by side: one LIF process
    for every spiking population (per-neuron dv, vth, bias), one S4d (a = 0: it sends its input)
    for every graded one, one Sparse per pair of processes (block-diagonal over rows), one
    NpySource of host currents into the LIF process, the readout Sparse into an NpySink.
    Returns (any process, sources, sinks, readout_sink) like `build_network`; a recorded
    process has one NpySink, split per population by `_read_stream_sinks`."""
    from spikingmind.export.lava_sidecar.npy_sink import NpySink, NpySource
    from lava.proc.lif.process import LIF
    from lava.proc.s4d.process import S4d
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import coo_matrix, csr_matrix, eye, kron

    layout = process_layout(plan)
    unknown = set(layout) - {"spiking", "trace"}
    if unknown:
        raise ValueError(f"streaming plan names unknown processes {sorted(unknown)}")
    where = {name: (proc, start) for proc, members in layout.items() for name, start, _ in members}
    width = {proc: members[-1][1] + members[-1][2] for proc, members in layout.items()}

    def per_neuron(proc, value):
        out = np.zeros(width[proc])
        for name, start, size in layout[proc]:
            out[start:start + size] = value(plan.population(name))
        return np.tile(out, batch)

    lif = LIF(shape=(batch * width["spiking"],), du=1.0, dv=per_neuron("spiking", lambda p: p.dv),
              vth=per_neuron("spiking", lambda p: p.vth), bias_exp=0, name="spiking",
              bias_mant=np.tile(np.concatenate([plan.arrays[f"bias/{name}"] for name, _, _ in layout["spiking"]]),
                                batch))
    processes = {"spiking": lif}
    if "trace" in layout:
        size = batch * width["trace"]
        processes["trace"] = S4d(shape=(size,), a=np.zeros(size), b=np.ones(size), c=np.full(size, 0.5),
                                 s4_state=np.zeros(size))
    blocks: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for syn in plan.synapses:
        (src_proc, src_start), (dst_proc, dst_start) = where[syn.src], where[syn.dst]
        index = plan.arrays[f"w_idx/{syn.name}"]
        blocks.setdefault((src_proc, dst_proc), []).append(
            (index[0] + dst_start, index[1] + src_start, plan.arrays[f"w/{syn.name}"].astype(np.float64)))

    def rowwise(parts, shape):
        rows, cols, values = (np.concatenate(x) for x in zip(*parts))
        one = coo_matrix((values, (rows, cols)), shape=shape).tocsr()
        if one.nnz != len(values):
            raise ValueError("two synapses of a streaming plan share a neuron pair")
        return csr_matrix(kron(eye(batch), one, format="csr"))

    # inputs are connected in this order; every neuron's inputs but kv_lif's (host bias + a
    # graded mix, summed exactly in any order) are spikes with dyadic-exact or rounded sums
    path = os.path.join(sink_dir, "source-0.npy")
    source_data = _stream_source(plan, layout["spiking"], host_data, n_steps, batch, width["spiking"])
    np.save(path, source_data)
    source = NpySource(shape=(batch * width["spiking"],), buffer=n_steps, path=path, dtype="float64")
    source.s_out.connect(lif.a_in)
    for (src_proc, dst_proc), parts in blocks.items():
        # num_message_bits > 0: Sparse computes weights.dot(s) (graded values, or 0/1 spikes)
        synapse = Sparse(weights=rowwise(parts, (width[dst_proc], width[src_proc])), num_message_bits=24,
                         name=f"{src_proc}->{dst_proc}")
        processes[src_proc].s_out.connect(synapse.s_in)
        synapse.a_out.connect(processes[dst_proc].a_in)
    sinks = {}
    for proc, members in layout.items():
        if any(plan.population(name).record and (record is None or name in record) for name, _, _ in members):
            sinks[proc] = NpySink(shape=(batch * width[proc],), buffer=n_steps, dtype="float64",
                                  path=os.path.join(sink_dir, f"process-{proc}.npy"))
            processes[proc].s_out.connect(sinks[proc].a_in)
    ro = plan.readout
    _, ro_start = where[ro.src]
    n_out = int(np.prod(ro.shape))
    index = plan.arrays["readout_idx"]
    readout = Sparse(weights=rowwise([(index[0], index[1] + ro_start, plan.arrays["readout_w"])],
                                     (n_out, width["spiking"])), num_message_bits=24, name="readout")
    lif.s_out.connect(readout.s_in)
    readout_sink = NpySink(shape=(batch * n_out,), buffer=n_steps, dtype="float64",
                           path=os.path.join(sink_dir, "readout.npy"))
    readout.a_out.connect(readout_sink.a_in)
    return lif, {"spiking": source}, sinks, readout_sink


def _stream_source(plan: Plan, members, host_data: dict[str, np.ndarray], n_steps: int, batch: int,
                   width: int) -> np.ndarray:
    """The LIF process's host currents (batch * width, n_steps) from {pop: (batch, size, n_steps)}."""
    data = np.zeros((batch, width, n_steps))
    for name, start, size in members:
        if name in host_data:
            data[:, start:start + size] = host_data[name]
    return data.reshape(batch * width, n_steps)


def _read_stream_sinks(plan: Plan, sinks: dict, readout_sink, batch: int) -> dict:
    """Sink files -> {"pop/<name>": (batch, size, n_steps), "readout": (batch, n_out, n_steps)}."""
    out = {}
    layout = process_layout(plan)
    for proc, sink in sinks.items():
        raw = np.load(sink.proc_params["path"])
        raw = raw.reshape(batch, -1, raw.shape[-1])
        for name, start, size in layout[proc]:
            if plan.population(name).record:
                out[f"pop/{name}"] = raw[:, start:start + size]
    raw = np.load(readout_sink.proc_params["path"])
    out["readout"] = raw.reshape(batch, -1, raw.shape[-1])
    return out


def run_config(mode: str):
    from lava.magma.core.run_configs import Loihi2SimCfg

    return Loihi2SimCfg(select_tag="fixed_pt" if mode == "fixed" else "floating_pt")


def run_job(job: dict) -> dict:
    """One fresh network: build, run n_steps, read the sinks, stop. Writes job['out']."""
    from lava.magma.core.run_conditions import RunSteps

    plan = Plan.load(job["plan_dir"])
    mode = job["mode"]
    n_steps = int(job["n_steps"])
    period = int(job.get("period") or plan.period)
    batch = int(job.get("batch") or 1)
    _check_mode(plan, mode)
    host_data = _load_host_data(plan, job["host_data"])
    t0 = time.perf_counter()
    sink_dir = tempfile.mkdtemp(prefix="sinks-", dir=os.getcwd())
    if plan.streaming:
        anchor, _, sinks, readout_sink = build_stream_network(plan, host_data, n_steps, batch, job.get("record"),
                                                              sink_dir)
    else:
        anchor, _, sinks, readout_sink = build_network(plan, mode, host_data, n_steps, period, job.get("record"),
                                                       sink_dir)
    t1 = time.perf_counter()
    # no try/finally around run(): after a failure inside a process model stop() blocks
    # forever; main() leaves at once with os._exit instead
    anchor.run(condition=RunSteps(num_steps=n_steps), run_cfg=run_config(mode))
    t2 = time.perf_counter()
    try:
        out = (_read_stream_sinks(plan, sinks, readout_sink, batch) if plan.streaming
               else _read_sinks(sinks, readout_sink))
    finally:
        anchor.stop()
    t3 = time.perf_counter()
    timing = {"build_s": t1 - t0, "run_s": t2 - t1, "read_stop_s": t3 - t2, "n_steps": n_steps}
    _write_npz(job["out"], out)
    return {"ok": True, "out": job["out"], "timing": timing}


def _read_sinks(sinks: dict, readout_sink) -> dict:
    out = {f"pop/{name}": np.load(sink.proc_params["path"]) for name, sink in sinks.items()}
    if readout_sink is not None:
        out["readout"] = np.load(readout_sink.proc_params["path"])
    return out


def _write_npz(path: str, arrays: dict) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class _Network:
    """A built Lava network kept between jobs of the same length (see `serve`)."""

    def __init__(self, plan: Plan, mode: str, host_data: dict, n_steps: int, period: int, record,
                 batch: int = 1):
        self.key = (n_steps, period, None if record is None else tuple(record), batch)
        self.plan, self.mode, self.n_steps, self.batch = plan, mode, n_steps, batch
        sink_dir = tempfile.mkdtemp(prefix="sinks-", dir=os.getcwd())
        if plan.streaming:
            self.anchor, self.sources, self.sinks, self.readout_sink = build_stream_network(
                plan, host_data, n_steps, batch, record, sink_dir)
        else:
            self.anchor, self.sources, self.sinks, self.readout_sink = build_network(
                plan, mode, host_data, n_steps, period, record, sink_dir)
        self.fresh = True

    def run(self, host_data: dict) -> dict:
        from lava.magma.core.run_conditions import RunSteps

        if not self.fresh:
            fixed = self.mode == "fixed"
            for name, source in self.sources.items():  # NpySource re-reads its file
                tmp = source.proc_params["path"] + ".tmp.npy"
                if self.plan.streaming:
                    members = process_layout(self.plan)[name]
                    data = _stream_source(self.plan, members, host_data, self.n_steps, self.batch,
                                          members[-1][1] + members[-1][2])
                else:
                    data = host_data[name].astype(np.int32 if fixed else np.float64)
                np.save(tmp, data)
                os.replace(tmp, source.proc_params["path"])
        self.fresh = False
        # every job runs exactly n_steps = the ring buffers' length, a multiple of the
        # period: sources, sinks and LIF resets see the same phase in every job
        self.anchor.run(condition=RunSteps(num_steps=self.n_steps), run_cfg=run_config(self.mode))
        if self.plan.streaming:
            return _read_stream_sinks(self.plan, self.sinks, self.readout_sink, self.batch)
        return _read_sinks(self.sinks, self.readout_sink)

    def stop(self) -> None:
        self.anchor.stop()


def serve(plan_dir: str, mode: str) -> None:
    """Answer jobs from stdin, one JSON per line, until EOF; replies go to stdout.

    The network is built on the first job and reused while jobs keep the same length
    (n_steps, a multiple of the period) and recorded set: only the sources' data is set
    and the sinks read, so a job costs its Lava steps plus a few Var transfers. Membrane
    state needs no reset between jobs: every population resets at its own first step of
    every decision (LIFReset), whatever the previous job left behind.
    """
    reply_stream = sys.stdout
    sys.stdout = sys.stderr  # Lava's own prints must not corrupt the reply channel
    plan = Plan.load(plan_dir)
    _check_mode(plan, mode)
    network = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        try:
            t0 = time.perf_counter()
            host_data = _load_host_data(plan, request["host_data"])
            n_steps = int(request["n_steps"])
            period = int(request.get("period") or plan.period)
            record = request.get("record")
            batch = int(request.get("batch") or 1)
            key = (n_steps, period, None if record is None else tuple(record), batch)
            built = False
            # a streaming job with "fresh" starts new episodes: only a new network holds no trace
            if network is None or network.key != key or request.get("fresh"):
                if network is not None:
                    network.stop()
                network = _Network(plan, mode, host_data, n_steps, period, record, batch)
                built = True
            t1 = time.perf_counter()
            out = network.run(host_data)
            t2 = time.perf_counter()
            _write_npz(request["out"], out)
            reply = {"ok": True, "out": request["out"],
                     "timing": {"build_s": t1 - t0, "run_s": t2 - t1, "n_steps": n_steps, "rebuilt": built}}
        except Exception as error:  # reported to the parent, which raises LavaError
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            reply_stream.write(json.dumps(reply) + "\n")
            reply_stream.flush()
            sys.stderr.flush()
            _exit_now(3)  # a failed Lava runtime cannot be stopped cleanly: leave at once
        reply_stream.write(json.dumps(reply) + "\n")
        reply_stream.flush()
    if network is not None:
        network.stop()


def _load_host_data(plan: Plan, path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        host_data = {key: data[key] for key in data.files}
    return expand_stream_inputs(plan, host_data) if plan.streaming else host_data


def _check_mode(plan: Plan, mode: str) -> None:
    if plan.streaming and mode != "float":
        raise ValueError("a streaming Lava plan runs in floating_pt only (its graded trace has no fixed_pt plan)")


_PR_SET_PDEATHSIG = 1
_WATCH_PERIOD_S = 0.2


def _exit_now(code: int) -> None:
    """os._exit (a failed or orphaned Lava runtime cannot be stopped cleanly), after removing
    multiprocessing's pymp-* folder (Lava's manager sockets), which only a clean exit removes."""
    tempdir = process.current_process()._config.get("tempdir")
    if tempdir:
        shutil.rmtree(tempdir, ignore_errors=True)
    os._exit(code)


def _group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group `pgid` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _kill_group_but_tracker(pgid: int) -> None:
    """SIGKILL every process of our group except this one and multiprocessing's resource
    tracker: once the rest are gone the tracker unlinks the shared-memory segments Lava's
    runtime registered with it (/dev/shm/psm_*), then exits; killed with the rest, it would
    leave them behind."""
    from multiprocessing import resource_tracker

    tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    for _ in range(5):  # a process may fork while we look
        members = [pid for pid in _group_members(pgid) if pid not in (os.getpid(), tracker)]
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def die_with_parent() -> None:
    """End this sidecar and every process of its group (Lava's runtime) when its parent dies
    or it receives SIGTERM, after removing the parent's temporary folders for it (module
    docstring). Without SPIKINGMIND_LAVA_PARENT_PID (run by hand) nothing is watched."""
    parent = int(os.environ.get("SPIKINGMIND_LAVA_PARENT_PID", "0") or 0)
    if parent <= 0:
        return
    me = os.getpid()
    scratch = [p for p in os.environ.get("SPIKINGMIND_LAVA_SCRATCH", "").split(os.pathsep) if p]

    def end_group() -> None:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
        if os.getpgrp() == me:  # our own group (the parent started us in a new session): Lava's children too
            _kill_group_but_tracker(me)
        _exit_now(1)

    def on_term(signum, frame) -> None:
        if os.getpid() != me:  # a Lava child forked with this handler: die as SIGTERM says, alone
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        end_group()

    signal.signal(signal.SIGTERM, on_term)
    util.get_temp_dir()  # multiprocessing's pymp-* folder made here, not in a child: `_exit_now` knows it
    if os.environ.get("SPIKINGMIND_LAVA_PDEATHSIG") == "1":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # not Linux: the watchdog alone
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                end_group()
            time.sleep(_WATCH_PERIOD_S)

    if os.getppid() != parent:  # the parent died before we got here
        end_group()
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(description="spikingmind Lava sidecar")
    parser.add_argument("--job", help="JSON job file")
    parser.add_argument("--serve", nargs=2, metavar=("PLAN_DIR", "MODE"))
    args = parser.parse_args(argv)
    hang = float(os.environ.get("SPIKINGMIND_LAVA_SIDECAR_SLEEP", "0") or 0)
    if hang > 0:
        time.sleep(hang)
    if args.serve:
        serve(*args.serve)
        return 0
    job = json.loads(Path(args.job).read_text())
    try:
        reply = run_job(job)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        _exit_now(3)  # a failed Lava runtime cannot be stopped cleanly: leave at once
    Path(job["out"] + ".json").write_text(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
