"""Smoke test: the whole suite end to end on a tiny corpus (60 messages, a few iterations).

Not part of the default test run (pyproject's testpaths do not include benchmarks/); run it
with::

    .venv/bin/python -m pytest benchmarks/test_smoke.py

It starts jmap-host with benchmarks/bench.toml (a free port, data in a temporary directory),
generates a corpus, loads it with load.py, runs every scenario of run.py with tiny counts
and checks that each one ran without errors.  It checks that the suite works, not speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import generate, stats  # noqa: E402

COUNT = 60


def test_generator_is_deterministic():
    first = [m.raw for m in generate(COUNT, seed=5)]
    again = [m.raw for m in generate(COUNT, seed=5)]
    other = [m.raw for m in generate(COUNT, seed=6)]
    assert first == again
    assert first != other
    summary = stats(generate(2000))
    assert summary["replies"] > 0 and summary["with_html"] > 0
    assert summary["with_attachments"] > 0
    assert len(summary["charsets"]) == 5
    assert summary["share_2_20kb"] > 0.7


@pytest.fixture
def server(tmp_path):
    config = (HERE / "bench.toml").read_text(encoding="utf-8")
    config = config.replace('"127.0.0.1:8765"', '"127.0.0.1:0"')
    config = re.sub(r"(?m)^path = .*$", f"path = {json.dumps(str(tmp_path / 'data'))}", config)
    path = tmp_path / "bench.toml"
    path.write_text(config, encoding="utf-8")
    jmap_host = Path(sys.executable).parent / "jmap-host"
    process = subprocess.Popen(
        [str(jmap_host), "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        assert process.stdout is not None
        for _ in range(50):
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"\(jmap\): (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "jmap-host did not report its listener"
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def script(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(HERE / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_suite_end_to_end(server, tmp_path):
    url, pid = server
    corpus = tmp_path / "corpus"
    script("generate.py", "--count", str(COUNT), "--out", str(corpus))
    assert len((corpus / "manifest.jsonl").read_text().splitlines()) == COUNT
    loaded = json.loads(
        script("load.py", "--url", url, "--corpus", str(corpus), "--json", str(tmp_path / "l.json"))
    )
    assert loaded["imported"] == COUNT and loaded["failed"] == 0

    out = tmp_path / "run.json"
    table = script(
        "run.py", "--url", url, "--server-pid", str(pid), "--out", str(out),
        "--warmup", "1", "--iterations", "5", "--seconds", "10",
        "--import-count", "50", "--clients", "1,3", "--mix-seconds", "1",
        "--streams", "20", "--push-rounds", "1", "--push-timeout", "10",
    )  # fmt: skip
    assert "floor POST" in table
    result = json.loads(out.read_text())
    scenarios = result["scenarios"]
    assert sorted(scenarios, key=int) == [str(n) for n in range(1, 11)]
    for key, scenario in scenarios.items():
        assert scenario["status"] in ("ok", "partial"), (key, scenario)
    for key in ("1", "2", "3", "4", "5", "6"):
        assert scenarios[key]["n"] == 5 and scenarios[key]["x_floor_p50"] > 0
    assert scenarios["7"]["imported"] == 50
    assert set(scenarios["8"]["levels"]) == {"1", "3"}
    assert scenarios["9"]["connected"] == 20 and scenarios["9"]["missed"] == 0
    assert scenarios["10"]["rss_mib_at_rest"] > 0
