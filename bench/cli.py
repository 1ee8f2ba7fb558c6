"""How long a `vox` command takes from exec to exit: the start-up a person feels per command.

Starts a real `vox serve` (no models needed), then times `vox --version`, `vox list`,
`vox ps` and `vox search whisper` as the installed console script runs them, each --runs
times, commands alternating. Python writes bytecode as it would for a user (the variable
PYTHONDONTWRITEBYTECODE is removed), and one untimed run per command warms it. Goal (issue
14): under 0.3 s for the commands that only talk HTTP. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import VoxServer  # noqa: E402

COMMANDS = (("--version",), ("list",), ("ps",), ("search", "whisper"))
GOAL_S = 0.3


def timed(vox: str, args: tuple[str, ...], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([vox, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--out", type=Path, default=Path("bench-cli.json"))
    args = parser.parse_args()
    vox = shutil.which("vox", path=str(Path(sys.executable).parent)) or "vox"
    home = Path(tempfile.mkdtemp(prefix="vox-bench-cli-"))
    server = VoxServer(home / "home", home / "server.log", {"VOX_PULL_DEFAULTS": "false"})
    server.start()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["VOX_HOST"] = server.url
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    try:
        for command in COMMANDS:
            timed(vox, command, env)  # writes the bytecode a first run writes
        for _ in range(args.runs):
            for command in COMMANDS:
                times[" ".join(command)].append(timed(vox, command, env))
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    results = {
        name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)}
        for name, t in times.items()
    }
    print(f"{'command':<18} {'median':>8} {'min':>8} {'max':>8}  goal <= {GOAL_S} s")
    for name, r in results.items():
        verdict = "met" if r["median_s"] <= GOAL_S else "MISSED"
        print(
            f"vox {name:<14} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s  "
            f"{verdict}"
        )
    args.out.write_text(json.dumps({"runs": args.runs, "goal_s": GOAL_S, "results": results}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
