"""Bundle files: `model.nir`, `lava_plan.json`, `params_float.npz`, `params_fixed.npz`,
`manifest.json` (+ `agreement.json` from `export`), written atomically, read back as a plan."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nir
import numpy as np

from spikingmind import fixed_point as fxp
from spikingmind.errors import LavaError
from spikingmind.export.lava.plan import HostTerm, build_plan
from spikingmind.export.lava_sidecar.plan import PLAN_VERSIONS, Plan
from spikingmind.export.reference import load_graph
from spikingmind.io import atomic_dir, atomic_write_json

LAVA_VERSION = "0.10.0"
BUNDLE_VERSION = 1

# Bundle


_FIXED_KEYS = ("bias_mant/", "w_mant/", "w_group/", "readout_w_mant", "readout_w_group")


def _save_plan(plan: Plan, folder: Path) -> None:
    plan.save(folder)
    # split the arrays into the float and fixed-point parameter files named in the manifest
    with np.load(folder / "lava_plan.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    (folder / "lava_plan.npz").unlink()
    np.savez(folder / "params_float.npz", **{k: v for k, v in arrays.items() if not k.startswith(_FIXED_KEYS)})
    np.savez(folder / "params_fixed.npz", **{k: v for k, v in arrays.items() if k.startswith(_FIXED_KEYS)})


def _damaged(bundle: Path, part: str, error: Exception) -> LavaError:
    detail = " ".join(str(error).split())[:160] or type(error).__name__
    return LavaError(f"{bundle / part}: damaged Lava bundle ({type(error).__name__}: {detail}); "
                     "re-export it with `spikingmind export --target lava --force`")


def _read_json(bundle: Path, part: str) -> dict:
    try:
        value = json.loads((bundle / part).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _damaged(bundle, part, error) from None
    if not isinstance(value, dict):
        raise _damaged(bundle, part, TypeError("not a JSON object"))
    return value


def load_plan(bundle: str | Path) -> Plan:
    """The plan of a bundle (a scratch copy with the merged npz the sidecar reads); a missing
    or damaged part is a LavaError naming the file."""
    bundle = Path(bundle)
    meta = _read_json(bundle, "lava_plan.json")
    if meta.get("plan_version") not in PLAN_VERSIONS:
        raise LavaError(f"{bundle / 'lava_plan.json'}: plan_version {meta.get('plan_version')}, this spikingmind "
                        f"reads {' or '.join(map(str, PLAN_VERSIONS))}; re-export it with "
                        "`spikingmind export --target lava --force`")
    arrays = {}
    for part in ("params_float.npz", "params_fixed.npz"):
        try:
            with np.load(bundle / part, allow_pickle=False) as data:
                arrays.update({key: data[key] for key in data.files})
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # missing, damaged, or pickled
            raise _damaged(bundle, part, error) from None
    try:
        return Plan.from_json(meta, arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise _damaged(bundle, "lava_plan.json", error) from None


def export_lava_bundle(graph: nir.NIRGraph | str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write a Lava bundle for `graph` (a NIRGraph or a .nir path) into `out_dir`, atomically.

    Contents: model.nir, lava_plan.json (populations, synapses, offsets), params_float.npz,
    params_fixed.npz (8-bit weight mantissas + exponents, 13-bit biases, 12-bit decays,
    17-bit thresholds), manifest.json (Lava version, latency, dt, T, scales, saturation).
    Raises RunExistsError when out_dir exists and not force.
    """
    if isinstance(graph, (str, Path)):
        graph = load_graph(graph)
    plan_parts = build_plan(graph)
    with atomic_dir(out_dir, overwrite=force) as tmp:
        write_bundle(graph, tmp, plan_parts)
    return Path(out_dir)


def write_bundle(graph: nir.NIRGraph, tmp: Path, plan_parts=None) -> None:
    """The bundle's files into the (temporary) folder `tmp`."""
    plan, host_terms, notes = plan_parts or build_plan(graph)
    report: fxp.QuantizationReport = notes["quantization_report"]
    nir.write(tmp / "model.nir", graph)
    _save_plan(plan, tmp)
    manifest = {
        "bundle_version": BUNDLE_VERSION,
        "target": "lava",
        "lava_nc_version": LAVA_VERSION,
        "time_steps": plan.time_steps,
        "dt": plan.dt,
        "period_steps": plan.period,
        "latency_steps": plan.latency,
        "output_latency_steps": plan.readout.offset(plan) if plan.readout else None,
        "timing": ("decision k, SNN step t of population n runs at Lava step k*period + offset[n] + t "
                   "(0-based); the Output of step t appears output_latency_steps later"),
        "encoder": "host: Conv1d nodes reading the Input are computed on the host and injected as "
                   "graded currents (NpySource) into the populations they feed",
        "host_terms": [{"population": h.population, "conv": h.conv} for h in host_terms],
        "populations": [
            {"name": p.name, "kind": p.kind, "size": p.size, "offset": p.offset, "stateless": p.stateless,
             "float": {"dv": p.dv, "vth": p.vth},
             "fixed": {"scale": p.scale, "dv": p.dv_int, "vth": p.vth_int, "bias_exp": p.bias_exp}}
            for p in plan.populations
        ],
        "synapses": [{"name": s.name, "src": s.src, "dst": s.dst, "fixed_weight_exps": s.weight_exps}
                     for s in plan.synapses],
        "readout": None if plan.readout is None else {
            "output": plan.readout.name, "src": plan.readout.src, "scale": plan.readout.scale,
            "fixed_weight_exps": plan.readout.weight_exps},
        "inexact_float_decays": notes["inexact_decays"],
        "quantization_report": report.to_json(),
    }
    if plan.streaming:
        manifest["timing"] = ("decision k, token position j (0, 1, 2 = action, return-to-go, state), SNN step t "
                              "of population n runs at Lava step k*decision_steps + j*period + offset[n] + t "
                              "(0-based); the step before each slot resets the LIFs (host pulse); the state "
                              "token's Output is out within the decision's steps; one sidecar call per decision")
        manifest["streaming"] = {
            "positions": plan.streaming.positions,
            "decision_position": plan.streaming.decision_position, "decision_steps": plan.decision_steps,
            "carried_state": "per block, one graded S4d lane per token position, fed back through graded relays "
                             "(export/lava/streaming.py)",
            "modes": ["floating_pt"]}
    atomic_write_json(tmp / "manifest.json", manifest)


def bundle_host_terms(bundle: Path) -> list[HostTerm]:
    """The host terms a bundle's manifest lists."""
    manifest = _read_json(Path(bundle), "manifest.json")
    try:
        return [HostTerm(h["population"], h["conv"]) for h in manifest["host_terms"]]
    except (KeyError, TypeError) as error:
        raise _damaged(Path(bundle), "manifest.json", error) from None

