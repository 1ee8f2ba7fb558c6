"""Two concurrent ensure() calls, from threads or from processes, build a sandbox once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vox_sandboxes import RunnerSource, Sandbox, SandboxManager

# Each process waits for a shared start time so that both really contend for the lock.
WORKER = """
import json, sys, time
from pathlib import Path
from vox_sandboxes import RunnerSource, SandboxManager

root, protocol, runner, fingerprint, start_at = sys.argv[1:6]
source = RunnerSource(protocol, runner, fingerprint)
lines = []
time.sleep(max(0.0, float(start_at) - time.time()))
sandbox = SandboxManager(Path(root), source).ensure("fake", log=lines.append)
print(json.dumps({"fingerprint": sandbox.fingerprint, "lines": lines}))
"""


def test_two_threads_build_once(root: Path, source: RunnerSource) -> None:
    log: list[str] = []
    results: list[Sandbox] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        manager = SandboxManager(root, source)
        barrier.wait()
        results.append(manager.ensure("fake", log=log.append))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert len(results) == 2
    assert results[0] == results[1]
    assert sum("creating sandbox for" in line for line in log) == 1
    assert sum("waiting for another build" in line for line in log) == 1


def test_two_processes_build_once(
    root: Path, source: RunnerSource, make_manager: Callable[[RunnerSource], SandboxManager]
) -> None:
    start_at = time.time() + 2.0  # both interpreters are up and waiting by then
    args = [root, source.protocol, source.runner, source.fingerprint, start_at]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]

    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out) for out, _err in outputs]
    builds = sum("creating sandbox for" in line for r in reports for line in r["lines"])
    assert builds == 1
    assert reports[0]["fingerprint"] == reports[1]["fingerprint"]
    assert make_manager(source).get("fake") is not None
    assert sorted(p.name for p in root.iterdir()) == ["fake", "fake.lock", "python-info.json"]
