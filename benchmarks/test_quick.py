"""The benchmark suite in quick mode, so that CI runs it and it cannot rot.

Part of the default test run (pyproject's testpaths include benchmarks/), so ``bash dev.sh
test`` and CI run it; deselect it locally with ``-m "not benchmark"``.  Alone::

    .venv/bin/python -m pytest benchmarks/test_quick.py

It starts jmap-host with benchmarks/bench.toml (a free port on 127.0.0.1, data in a
temporary directory), loads 2,000 generated messages with ``load.py --generate`` (streamed:
no corpus is written, nothing comes from the network), runs every scenario of ``run.py
--quick`` and checks from its JSON that each one ran without errors.  It checks that the
suite works, never how fast: every bound is generous, for a slow shared machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jmap_host.testing import write_config

HERE = Path(__file__).resolve().parent
COUNT = 2000  # messages loaded before the scenarios
IMPORT_COUNT = 100  # scenario 7 (run.py --quick)
STREAMS = 100  # scenario 9 (run.py --quick)
HOLD_STREAMS = 200  # scenario 9's streams held together (run.py --quick), when it has them
SCENARIOS = [str(n) for n in range(1, 11)]

# generate.py by file, so that benchmarks/ is not put on the test run's sys.path.
_spec = importlib.util.spec_from_file_location("benchmarks_generate", HERE / "generate.py")
assert _spec and _spec.loader
generate_module = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_module)


def test_generator_is_deterministic():
    generate, stats = generate_module.generate, generate_module.stats
    first = [m.raw for m in generate(60, seed=5)]
    again = [m.raw for m in generate(60, seed=5)]
    other = [m.raw for m in generate(60, seed=6)]
    assert first == again
    assert first != other
    summary = stats(generate(COUNT))
    assert summary["replies"] > 0 and summary["with_html"] > 0
    assert summary["with_attachments"] > 0
    assert len(summary["charsets"]) == 5
    assert summary["share_2_20kb"] > 0.7


def bench_config(directory: Path) -> Path:
    """benchmarks/bench.toml with a free port and its data under ``directory``."""
    text = (HERE / "bench.toml").read_text(encoding="utf-8")
    text, binds = re.subn(r'(?m)^bind = \["127\.0\.0\.1:8765"\]$', 'bind = ["127.0.0.1:0"]', text)
    text, paths = re.subn(r"(?m)^path = .*$", 'path = "{data}"', text)
    assert binds == 1 and paths == 1, "bench.toml no longer has the expected bind/path lines"
    return write_config(directory, base=text, name="bench.toml")


@pytest.fixture
def bench_server(tmp_path):
    """jmap-host in its own process (its VmRSS is scenario 10's figure, and it gets a core
    of its own): yields (base URL, pid)."""
    config = bench_config(tmp_path)
    log_path = tmp_path / "server.log"
    jmap_host = Path(sys.executable).parent / "jmap-host"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(jmap_host), "run", "-c", str(config), "--log-level", "WARNING"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and process.poll() is None and time.monotonic() < deadline:
            found = re.search(r"JMAP session: (http://\S+)/\.well-known/jmap", log_path.read_text())
            if found:
                url = found.group(1)
            else:
                time.sleep(0.1)
        assert url, f"jmap-host did not report its listener:\n{log_path.read_text()[-4000:]}"
        yield url, process.pid, log_path
    finally:
        # Its data is thrown away: a short graceful stop, then a kill, to keep CI's time.
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def script(name: str, *args: str, timeout: float) -> str:
    """Run benchmarks/``name`` with the test's Python; its stdout (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, str(HERE / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n" + (
        result.stdout[-4000:] + result.stderr[-4000:]
    )
    return result.stdout


@pytest.mark.benchmark
def test_quick_mode(bench_server, tmp_path):
    url, pid, server_log = bench_server
    auth = ("--url", url, "--user", "bench", "--password", "bench")

    # Load: streamed from the generator (the default seed), nothing written to disk.
    load_json = tmp_path / "load.json"
    script("load.py", *auth, "--generate", str(COUNT), "--json", str(load_json), timeout=420)
    loaded = json.loads(load_json.read_text())
    assert loaded["imported"] == COUNT and loaded["failed"] == 0, loaded

    out = tmp_path / "run.json"
    table = script(
        "run.py", *auth, "--quick", "--server-pid", str(pid), "--out", str(out), timeout=420
    )
    assert "floor POST" in table
    result = json.loads(out.read_text())
    context = f"\n{table}\nserver log:\n{server_log.read_text()[-4000:]}"

    args = result["meta"]["args"]
    assert args["quick"] and args["seconds"] == 2, args
    assert result["account"]["emails"] == COUNT, result["account"]
    for key in ("floor", "floor_get"):
        assert result[key]["n"] >= 1 and result[key]["errors"] == 0, (key, result[key])

    scenarios = result["scenarios"]
    assert sorted(scenarios, key=int) == SCENARIOS, context
    for key, scenario in scenarios.items():
        # "ok" only: not unsupported, not partial (jmap-host has every method), no errors.
        assert scenario["status"] == "ok", (key, scenario, context)
    for key in ("1", "2", "3", "4", "5", "6"):
        s = scenarios[key]
        assert s["n"] >= 1 and s["errors"] == 0 and s["p50_ms"] > 0, (key, s)
        assert s["x_floor_p50"] > 0, (key, s)
    s7 = scenarios["7"]
    assert s7["imported"] == IMPORT_COUNT and s7["failed"] == 0, s7
    s8 = scenarios["8"]
    assert set(s8["levels"]) == {"1", "10", "50"}, s8
    for clients, level in s8["levels"].items():
        assert level["n"] >= 1 and level["errors"] == 0, (clients, level)
    s9 = scenarios["9"]
    assert s9["streams"] == STREAMS and s9["connected"] == STREAMS, s9
    assert s9["missed"] == 0 and len(s9["rounds"]) == 1, s9
    assert s9["delivery"]["n"] == STREAMS, s9
    hold = s9.get("hold")
    if hold is not None:  # the held-streams step: small in quick mode, every stream reached
        assert hold["streams"] == HOLD_STREAMS and hold["connected"] == HOLD_STREAMS, hold
        assert hold["missed"] == 0 and hold["delivery"]["n"] == HOLD_STREAMS, hold
    s10 = scenarios["10"]
    for figure in ("rss_mib_at_rest", "rss_mib_before_push", "rss_mib_streams_open"):
        assert s10[figure] > 0, (figure, s10)
    assert s10["floor_rss_mib"] > 0 and s10["streams"] == STREAMS, s10


@pytest.mark.benchmark
@pytest.mark.parametrize(
    ("name", "count", "keys"),
    [("contacts.py", "500", ("11", "12")),  # open an address book, search
     ("calendars.py", "300", ("13",))],  # the month view
)  # fmt: skip
def test_groupware_quick_mode(bench_server, tmp_path, name, count, keys):
    """benchmarks/contacts.py and calendars.py end to end on a few hundred generated
    records: they load them, run their scenarios beside the floor and report no errors."""
    url, _pid, server_log = bench_server
    out = tmp_path / "result.json"
    script(
        name, "--url", url, "--user", "bench", "--password", "bench", "--count", count,
        "--warmup", "2", "--iterations", "12", "--seconds", "5", "--json", str(out),
        timeout=300,
    )  # fmt: skip
    result = json.loads(out.read_text())
    for key in keys:
        assert result[key]["n"] >= 1 and result[key]["errors"] == 0, (key, result[key],
                                                                       server_log.read_text())
        assert result[key]["x_floor_p50"] > 0
