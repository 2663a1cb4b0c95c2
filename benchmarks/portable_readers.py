"""The portable NIR export of a trained checkpoint in nirtorch, snnTorch and norse: agreement
with our reference simulator on real closed-loop decisions, and what the export costs.

    python benchmarks/portable_readers.py --checkpoint runs/snn/checkpoint [--episodes 5 --max-steps 25]

Exports the checkpoint (`export --target nir` and `--portable`, the latter timed: it includes
the export's own verification), records the decision inputs of closed-loop episodes of the
standard graph in the reference simulator (evaluation seeds, each episode cut at --max-steps),
runs them through the reference (portable graph) and through each reader in
export/nir/readers.py, and counts differing spikes (every LIF), actions and the largest output
difference. Writes JSON (default benchmarks/out/portable_readers.json) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nir

ROOT = Path(__file__).resolve().parent.parent
RUNS = [("nirtorch", "float64"), ("nirtorch", "float32"), ("snntorch", "float32"), ("norse", "float64"),
        ("norse", "float32")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "portable_readers.json")
    args = parser.parse_args(argv)

    from spikingmind.export import export
    from spikingmind.export.nir import graph_metadata
    from spikingmind.io import atomic_write_json
    from spikingmind.export.nir.portable import closed_loop_decisions, portable_inputs, verify_portable
    from spikingmind.export.nir.readers import agreement, reader_version, run_reader
    from spikingmind.export.reference import ReferenceSimulator, load_graph

    with tempfile.TemporaryDirectory() as folder:
        standard_path, portable_path = Path(folder) / "model.nir", Path(folder) / "model-portable.nir"
        export("nir", args.checkpoint, standard_path)
        start = time.perf_counter()
        export("nir", args.checkpoint, portable_path, portable=True)
        export_seconds = time.perf_counter() - start
        standard, portable = load_graph(standard_path), load_graph(portable_path)
        sizes = {"standard_bytes": standard_path.stat().st_size, "portable_bytes": portable_path.stat().st_size}
        note = graph_metadata(portable)["portable"]
        decisions = closed_loop_decisions(standard, args.episodes, args.max_steps, args.seed)
        check = verify_portable(standard, portable, decisions)
        inputs = portable_inputs(decisions)
        lifs = [name for name, node in portable.nodes.items() if isinstance(node, nir.LIF)]
        reference = ReferenceSimulator(portable).run(inputs, record=lifs)
        rows = []
        for reader, dtype in RUNS:
            start = time.perf_counter()
            outputs, spikes = run_reader(reader, nir.read(str(portable_path)), inputs, dtype, lifs)
            measured = agreement(reference.outputs["output"], reference.records, outputs, spikes)
            rows.append({"reader": reader, "version": reader_version(reader), "dtype": dtype,
                         "seconds": round(time.perf_counter() - start, 3), **measured})
    meta = graph_metadata(standard)
    result = {"checkpoint": str(args.checkpoint), "model": meta["model"], "env": meta["env"]["env_id"],
              "decisions": {"episodes": args.episodes, "max_steps": args.max_steps, "seed": args.seed,
                            "count": int(len(decisions))},
              "portable_export_seconds": round(export_seconds, 2), **sizes,
              "weights": note["weights"], "nodes": {"standard": len(standard.nodes), "portable": len(portable.nodes)},
              "export_verification": note["verification"], "standard_vs_portable_on_these_decisions": check,
              "readers": rows}
    atomic_write_json(args.out, result)
    print(f"{meta['env']['env_id']} width {meta['model']['width']}, {meta['model']['n_blocks']} blocks, "
          f"K {meta['model']['context_length']}: {len(decisions)} decisions, weights portable/standard "
          f"{note['weights']['ratio']}, portable export {export_seconds:.1f} s (verification included)")
    print(f"standard vs portable (reference): {check['spike_mismatches']} of {check['spike_values']:,} spike values "
          f"differ, {check['action_mismatches']} actions")
    for row in rows:
        print(f"  {row['reader']:9s} {row['version']:6s} {row['dtype']}: {row['spike_mismatches']} of "
              f"{row['spike_values']:,} spike values differ, {row['actions_agreeing']}/{row['decisions']} actions "
              f"agree, max |output diff| {row['max_output_difference']:.2g} ({row['seconds']} s)")
    print(f"wrote {args.out}")
    failed = any(row["spike_mismatches"] or row["actions_agreeing"] != row["decisions"] for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
