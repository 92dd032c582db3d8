"""Crash safety at the wire (issue "Data layer"): a writer imports objects in a loop while the
server is killed with SIGKILL at random moments, 20 times, and restarted; afterwards every
write the server acknowledged is there with its blob intact, nothing half-applied is
visible, and the database passes ``PRAGMA integrity_check``.

The run is reproducible from its seed: it is printed, and ``JMAP_CRASH_SEED=<seed>`` replays
the same kill delays and blob sizes (the interleaving with the writer still varies).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jmap_host.testing import BASE_CONFIG, ServerProcess, basic, free_port, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
USING = [CORE, EXAMPLE]
KILLS = 20
MAX_BLOB = 200 * 1024


class Server(ServerProcess):
    """``python -m jmap_host run -c FILE`` as a subprocess, killed and restarted at will."""

    def __init__(self, config: Path, port: int, logs: Path):
        super().__init__(config, f"http://127.0.0.1:{port}")
        self.logs = logs
        self.starts = 0
        self.start_times: list[float] = []

    def start(self) -> None:
        self.starts += 1
        began = time.monotonic()
        self.spawn(self.logs / f"server-{self.starts}.log")
        self.wait_ready(20)
        self.start_times.append(time.monotonic() - began)

    def kill(self) -> None:
        super().kill()
        assert self.proc is not None and self.proc.returncode == -signal.SIGKILL


@dataclass
class Writer:
    """Uploads random bytes and creates a Note referencing them, in a loop, recording a
    blob or a note only once its success response has arrived (acknowledged)."""

    url: str
    account: str
    rng: random.Random
    blobs: dict[str, str] = field(default_factory=dict)  # acknowledged upload: blobId -> sha256
    notes: dict[str, str] = field(default_factory=dict)  # acknowledged note: id -> blobId
    failures: int = 0  # requests that got no answer (connection refused or cut)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        pending: str | None = None  # an acknowledged upload not yet referenced by a Note
        with httpx.Client(base_url=self.url, headers=basic("alice"), timeout=10) as http:
            while not self.stop.is_set():
                try:
                    if pending is None:
                        pending = self.upload(http)
                    if pending is not None and self.create_note(http, pending):
                        pending = None
                except httpx.TransportError:
                    # Killed mid-request (or not up yet): not acknowledged, try again.  An
                    # acknowledged upload is retried in a Note after the restart, so the
                    # upload itself must have survived the crash.
                    self.failures += 1
                    time.sleep(0.01)

    def upload(self, http: httpx.Client) -> str | None:
        data = self.rng.randbytes(self.rng.randint(0, MAX_BLOB))
        response = http.post(
            f"/jmap/upload/{self.account}/",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 201:
            self.unexpected.append(f"upload {response.status_code}: {response.text}")
            return None
        body = response.json()
        assert body["size"] == len(data)
        self.blobs[body["blobId"]] = hashlib.sha256(data).hexdigest()
        return str(body["blobId"])

    def create_note(self, http: httpx.Client, blob_id: str) -> bool:
        create = {"n": {"title": f"note {len(self.notes)}", "attachment": blob_id}}
        response = http.post(
            "/jmap/api",
            json={
                "using": USING,
                "methodCalls": [["Note/set", {"accountId": self.account, "create": create}, "c"]],
            },
        )
        if response.status_code != 200:
            self.unexpected.append(f"Note/set HTTP {response.status_code}: {response.text}")
            return False
        name, result, _ = response.json()["methodResponses"][0]
        if name != "Note/set" or not result.get("created"):
            self.unexpected.append(f"Note/set answered {name} {result}")
            return True  # do not retry a blob the server refused: the failure is recorded
        self.notes[result["created"]["n"]["id"]] = blob_id
        return True


def jmap(http: httpx.Client, account: str, name: str, **args: Any) -> dict[str, Any]:
    response = http.post(
        "/jmap/api",
        json={"using": USING, "methodCalls": [[name, {"accountId": account, **args}, "c"]]},
    )
    assert response.status_code == 200, response.text
    got, result, _ = response.json()["methodResponses"][0]
    assert got == name, result
    return dict(result)


def download(http: httpx.Client, account: str, blob_id: str) -> httpx.Response:
    return http.get(f"/jmap/download/{account}/{blob_id}/b?type=application/octet-stream")


def test_acknowledged_writes_survive_sigkill(tmp_path):
    seed = int(os.environ.get("JMAP_CRASH_SEED") or random.randrange(2**32))
    print(f"crash test seed: {seed} (JMAP_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    began = time.monotonic()
    port = free_port()
    config = write_config(
        tmp_path, EXAMPLE_ON, base=BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}")
    )
    server = Server(config, port, tmp_path)
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=basic("alice"), timeout=10) as http:
            session = http.get("/jmap/session").json()
        account = session["primaryAccounts"][CORE]
        assert EXAMPLE in session["capabilities"]  # the example plugin's Note type
        writer = Writer(server.url, account, random.Random(rng.getrandbits(64)))
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        acknowledged_before: list[int] = []
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.05, 0.6))
                acknowledged_before.append(len(writer.notes))
                server.kill()
                server.start()
            time.sleep(0.3)  # a few writes against the last incarnation too
        finally:
            writer.stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        assert not writer.unexpected, writer.unexpected[:5]
        # The writer really wrote across the crashes, and was really cut off by them.
        assert len(writer.notes) >= KILLS, (len(writer.notes), acknowledged_before)
        assert writer.failures >= KILLS // 2

        # Restart once more from a kill, so the verification reads a freshly recovered
        # database rather than the state of the process that served the writes.
        server.kill()
        server.start()
        verify(server.url, account, writer)
    finally:
        server.stop()

    with sqlite3.connect(tmp_path / "data" / "jmap-host.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    elapsed = time.monotonic() - began
    print(
        f"{len(writer.notes)} notes and {len(writer.blobs)} blobs acknowledged, "
        f"{writer.failures} requests cut off, {server.starts} starts "
        f"(mean start-up {sum(server.start_times) / len(server.start_times):.2f}s), "
        f"{elapsed:.1f}s in all"
    )


def verify(url: str, account: str, writer: Writer) -> None:
    with httpx.Client(base_url=url, headers=basic("alice"), timeout=30) as http:
        query = jmap(http, account, "Note/query", calculateTotal=True)
        all_ids = query["ids"]
        assert query["total"] == len(all_ids)
        assert len(set(all_ids)) == len(all_ids)
        # Every acknowledged note is there, with the attachment it was created with.
        missing = set(writer.notes) - set(all_ids)
        assert not missing, f"{len(missing)} acknowledged notes lost, e.g. {sorted(missing)[:3]}"
        records: dict[str, dict[str, Any]] = {}
        state = None
        for i in range(0, len(all_ids), 500):
            got = jmap(http, account, "Note/get", ids=all_ids[i : i + 500])
            assert got["notFound"] == []
            state = state or got["state"]
            assert got["state"] == state
            records.update({r["id"]: r for r in got["list"]})
        assert set(records) == set(all_ids)
        for note_id, blob_id in writer.notes.items():
            assert records[note_id]["attachment"] == blob_id
            assert records[note_id]["created"] is not None  # the create hook's work is there too

        # The change log agrees: every note, and nothing else, was created; the state counts
        # exactly one change per note (no change logged for a record that is not there, no
        # record without its change).
        changes = jmap(http, account, "Note/changes", sinceState="0")
        assert changes["hasMoreChanges"] is False
        assert changes["newState"] == query["queryState"] == state
        assert sorted(changes["created"]) == sorted(all_ids)
        assert changes["updated"] == [] and changes["destroyed"] == []
        assert int(state) == len(all_ids)
        assert jmap(http, account, "Note/changes", sinceState=state)["created"] == []

        # Every acknowledged upload downloads with the bytes that were sent.
        for blob_id, digest in writer.blobs.items():
            response = download(http, account, blob_id)
            assert response.status_code == 200, (blob_id, response.text)
            assert hashlib.sha256(response.content).hexdigest() == digest
            assert blob_id == "G" + digest
        # No half-applied /set: every note there, acknowledged or not, names a blob that
        # downloads intact (content-addressed, so the id is the digest).
        for record in records.values():
            blob_id = record["attachment"]
            assert blob_id, record
            response = download(http, account, blob_id)
            assert response.status_code == 200, (record, response.text)
            assert "G" + hashlib.sha256(response.content).hexdigest() == blob_id
