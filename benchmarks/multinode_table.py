"""The table of benchmarks/README.md's "Several nodes and workers" from run.py's JSON files:

    python benchmarks/multinode_table.py RUN.json [RUN.json ...]

Each column a deployment (its --label), each row a scenario's p50 as a multiple of that
run's own floor p50 (so that runs made minutes apart compare), and scenario 8's throughput
at each level as a fraction of the floor's at the same concurrency."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    labels = [r["meta"].get("label") or Path(p).stem for r, p in zip(runs, paths, strict=True)]
    print("| scenario | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(runs))
    for key in ("1", "2", "3", "4", "5", "6"):
        cells = []
        for run in runs:
            s = run["scenarios"].get(key, {})
            cells.append(f"{s['p50_ms']:.2f} ms ({s.get('x_floor_p50', '?')} x floor)" if
                         s.get("p50_ms") else s.get("status", "—"))  # fmt: skip
        name = next((r["scenarios"][key]["name"] for r in runs if key in r["scenarios"]), key)
        print(f"| {key} {name} | " + " | ".join(cells) + " |")
    for level in ("1", "10", "50"):
        cells = []
        for run in runs:
            lv = run["scenarios"].get("8", {}).get("levels", {}).get(level)
            cells.append(f"{lv['req_per_s']:.0f} req/s, p99 {lv['p99_ms']:.0f} ms "
                         f"({lv.get('throughput_vs_floor', '?')} of floor), "
                         f"{lv['errors']} errors" if lv else "—")  # fmt: skip
        print(f"| 8 mix, {level} clients | " + " | ".join(cells) + " |")
    cells = []
    for run in runs:
        s = run["scenarios"].get("9", {})
        first = s.get("delivery") or {}
        cells.append(f"p50 {first.get('p50_ms', '?')} ms, p99 {first.get('p99_ms', '?')} ms, "
                     f"missed {s.get('missed', '?')}" if s else "—")  # fmt: skip
    print("| 9 push, first streams | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
