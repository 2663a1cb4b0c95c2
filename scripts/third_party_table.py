"""The third-party NIR reader table: produced from the tests' results, never typed by hand.

    python scripts/third_party_table.py                  # run the reader tests, then render
    python scripts/third_party_table.py --results R.json # render rows a test run already wrote

The reader tests (tests/test_third_party_readers.py) record one row per reader and graph
(loads / runs / agrees / measured numbers / blocker) and, with SPIKINGMIND_THIRD_PARTY_RESULTS
set, write them as JSON. This script runs them that way (with the interpreter running it),
renders the rows into docs/THIRD_PARTY_READERS.md between its marker comments, and writes
docs/results/third_party.json (the rows and a one-line summary for the README). Readers the
test suite does not install are listed from NOT_IN_MAKE_TEST, marked as such. It renders
what the run measured, failures included, and exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "THIRD_PARTY_READERS.md"
JSON_OUT = ROOT / "docs" / "results" / "third_party.json"
START, END = "<!-- third-party-table:start -->", "<!-- third-party-table:end -->"
TESTS = "tests/test_third_party_readers.py"
MAIN_READERS = ("nirtorch", "snntorch", "norse")

#: readers `make test` does not install; "reported": what the issue's survey found, not measured here
NOT_IN_MAKE_TEST = [
    {"reader": "sinabs", "version": "3.1.3", "graph": "portable",
     "why_not": "pins nir <= 1.0.4 (its own venv with a second torch, 1.1 GB)",
     "blocker": "measured in such a venv: nir 1.0.4 cannot read a nir 1.0.8 file (`TypeError: LIF.__init__() got "
                "an unexpected keyword argument 'v_reset'`); reported: defaults to multi-spike neurons with "
                "subtractive reset"},
    {"reader": "spyx", "version": "1.0.0", "graph": "portable",
     "why_not": "needs jax and numpy 2 (we pin numpy < 2): its own venv, 791 MB",
     "blocker": "measured in such a venv: from_nir builds a Sequential along the first edge out of each node "
                "(`_order_edge_list`), so our branching graph becomes one chain; channels-first input fails in "
                "conv_general_dilated (feature dimension 12 != 11), channels-last with `TypeError: add got "
                "incompatible shapes`; reported: fires on the previous step's membrane"},
    {"reader": "lava-dl", "version": "0.6.0", "graph": "portable",
     "why_not": "needs a CUDA torch 2.3 and torchvision (no CPU build here)",
     "blocker": "reported: has no NIR reader; netx builds only layer chains (our Lava path is export --target lava)"},
]


def run_tests(results: Path) -> int:
    env = {**os.environ, "SPIKINGMIND_THIRD_PARTY_RESULTS": str(results)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def _yes(flag: bool) -> str:
    return "**yes**" if flag else "no"


def _measured(row: dict) -> str:
    if "spike_values" not in row:
        return f"{row['decisions']} decisions" if row.get("decisions") else ""
    return (f"{row['decisions']} real decisions, {row['spiking_layers']} spiking layers: "
            f"{row['spike_mismatches']} of {row['spike_values']:,} spike values differ, "
            f"{row['actions_agreeing']}/{row['decisions']} actions agree, "
            f"outputs within {row['max_output_difference']:.2g} (tolerance {row['output_tolerance']:g})")


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def render_table(rows: dict[str, dict]) -> str:
    """Markdown table of the measured rows (portable graph first), then the untested readers."""
    rank = {reader: i for i, reader in enumerate(MAIN_READERS)}
    ordered = sorted(rows.values(), key=lambda r: (r["graph"] != "portable", rank.get(r["reader"], len(rank)),
                                                   r["reader"], r.get("dtype") != "float64"))
    lines = ["| reader | version | graph | entry point | dtype | loads | runs | agrees | measured | blocker |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in ordered:
        lines.append("| " + " | ".join(_cell(value) for value in (
            row["reader"], row["version"], row["graph"], f"`{row.get('entry_point', '')}`", row.get("dtype", ""),
            _yes(row["loads"]), _yes(row["runs"]), _yes(row["agrees"]), _measured(row), row.get("blocker"))) + " |")
    tested = {row["reader"] for row in rows.values()}
    for row in NOT_IN_MAKE_TEST:
        if row["reader"] not in tested:
            lines.append("| " + " | ".join(_cell(value) for value in (
                row["reader"], row["version"], row["graph"], "", "", "not tested in make test", "", "",
                f"not tested in make test ({row['why_not']}), reproduction below", row["blocker"])) + " |")
    return "\n".join(lines)


def summary(rows: dict[str, dict]) -> str:
    """One line for the README: which readers run the portable export spike for spike, on what."""
    portable = [r for r in rows.values() if r["graph"] == "portable" and "spike_values" in r]
    agreeing = sorted({r["reader"] for r in portable if r["agrees"]}, key=MAIN_READERS.index)
    failing = sorted({r["reader"] for r in portable if not r["agrees"]})
    if not portable:
        return "Third-party NIR readers: no portable-export run recorded."
    decisions = max(r["decisions"] for r in portable)
    values = max(r["spike_values"] for r in portable)
    versions = {r["reader"]: r["version"] for r in portable}
    names = ", ".join(f"{reader} {versions[reader]}" for reader in agreeing) or "none"
    line = (f"The portable NIR export (`export --target nir --portable`) runs spike for spike in {names}: "
            f"every spike ({values:,} spike values per reader) and every action of {decisions} real CartPole "
            f"decisions equal our reference simulator's")
    if failing:
        line += f"; disagreeing: {', '.join(failing)}"
    others = [r["reader"] for r in rows.values() if r["graph"] == "portable" and "spike_values" not in r]
    others += [r["reader"] for r in NOT_IN_MAKE_TEST]
    return line + f"; {', '.join(sorted(set(others)))} cannot read it (docs/THIRD_PARTY_READERS.md)."


def replace_between_markers(text: str, block: str) -> str:
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"{DOC.relative_to(ROOT)}: markers {START} ... {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def write_outputs(rows: dict[str, dict], doc: Path = DOC, json_out: Path = JSON_OUT, exit_code: int = 0) -> str:
    note = ("<!-- generated by scripts/third_party_table.py from tests/test_third_party_readers.py; "
            "do not edit by hand -->")
    doc.write_text(replace_between_markers(doc.read_text(), f"{note}\n{render_table(rows)}"))
    line = summary(rows)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"generated_by": "scripts/third_party_table.py", "tests": TESTS, "pytest_exit_code": exit_code,
               "summary": line, "rows": rows, "not_in_make_test": NOT_IN_MAKE_TEST}
    json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="rows JSON a test run wrote (default: run the tests now)")
    args = parser.parse_args(argv)
    exit_code = 0
    if args.results is None:
        with tempfile.TemporaryDirectory() as folder:
            results = Path(folder) / "third_party.json"
            exit_code = run_tests(results)
            if not results.exists():
                print(f"the reader tests wrote no results (pytest exit {exit_code})", file=sys.stderr)
                return exit_code or 1
            rows = json.loads(results.read_text())
    else:
        rows = json.loads(args.results.read_text())
    print(write_outputs(rows, exit_code=exit_code))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
