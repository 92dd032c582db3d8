"""Several jmap-host nodes on one database, for the benchmarks (benchmarks/README.md).

    python benchmarks/cluster.py --nodes 3 -- python benchmarks/run.py --nodes '{nodes}'
    python benchmarks/cluster.py --nodes 1 --workers 2 --backend sqlite -- python ...

Starts a throw-away PostgreSQL server (jmap_host.pgcluster: Debian's binaries, 127.0.0.1,
a free port) with a database for the deployment, unless ``--backend sqlite``; writes one
configuration per node from ``bench.toml`` (the same data directory for blobs, the listener
on port ``--port`` + node number) and starts each node with ``jmap-host run``.  When every
node answers its session resource, runs the command after ``--``, in which ``{url}`` is the
first node's base URL, ``{nodes}`` the others' (comma-separated) and ``{pid}`` the first
node's process id; then stops the nodes and the database.  Without a command it waits for
Ctrl+C.  Everything listens on 127.0.0.1; the data lives under ``--data`` (deleted first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from jmap_host.pgcluster import PostgresCluster  # noqa: E402

# A benchmark server's PostgreSQL: more memory than the tests' 16 MB, durability as shipped.
BENCH_SETTINGS = {"shared_buffers": "512MB", "max_connections": "400"}


def node_config(args: argparse.Namespace, node: int, url: str | None) -> str:
    text = (HERE / "bench.toml").read_text(encoding="utf-8")
    text = text.replace('bind = ["127.0.0.1:8765"]', f'bind = ["127.0.0.1:{args.port + node}"]')
    data = (args.data / "shared").as_posix()
    storage = f'[storage]\ndirectory = "memory"\npath = "{data}"\n'
    if url is not None:
        storage += f'type = "postgresql"\npostgresql.url = "{url}"\n'
        storage += f"postgresql.pool-size = {args.pool_size}\n"
    text = text.replace('[storage]\ndirectory = "memory"\npath = ".data/server"\n', storage)
    if args.workers > 1:
        text = text.replace("[server.listener.", f"[server]\nworkers = {args.workers}\n\n"
                            "[server.listener.", 1)  # fmt: skip
    return text


def wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"node {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/.well-known/jmap", auth=("bench", "bench")).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"node {url} did not answer in {seconds} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=3, help="jmap-host nodes (3)")
    p.add_argument("--workers", type=int, default=1, help="[server] workers of each node (1)")
    p.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--port", type=int, default=8765, help="first node's port (8765)")
    p.add_argument("--pool-size", type=int, default=20, help="storage.postgresql.pool-size")
    p.add_argument("--data", type=Path, default=HERE / ".data" / "cluster")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = p.parse_args(argv)
    if args.backend == "sqlite" and args.nodes > 1:
        p.error("several nodes need --backend postgresql (SQLite is one machine's file)")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    shutil.rmtree(args.data, ignore_errors=True)
    args.data.mkdir(parents=True)
    cluster = None
    url = None
    if args.backend == "postgresql":
        cluster = PostgresCluster(args.data / "postgresql", settings=BENCH_SETTINGS)
        cluster.start()
        cluster.create_database("jmap")
        url = cluster.url("jmap")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        jmap_host = str(Path(sys.executable).parent / "jmap-host")
        urls = []
        for node in range(args.nodes):
            config = args.data / f"node{node}.toml"
            config.write_text(node_config(args, node, url), encoding="utf-8")
            log = open(args.data / f"node{node}.log", "ab")  # noqa: SIM115 (the node's)
            # One node first: it applies the migrations the others then find done.
            procs.append(subprocess.Popen([jmap_host, "run", "-c", str(config)],
                                          stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
            urls.append(f"http://127.0.0.1:{args.port + node}")
            wait_ready(urls[-1], procs[-1])
        print(f"{args.nodes} node(s) ready: {' '.join(urls)}", flush=True)
        if not command:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0
        fill = {"url": urls[0], "nodes": ",".join(urls[1:]), "pid": str(procs[0].pid)}
        return subprocess.call([part.format(**fill) for part in command])
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
