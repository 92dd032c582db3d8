"""Test helpers for jmap-host and its plugins (a pytest plugin, registered as ``pytest11``).

```python
from jmap_host.testing import write_config, running_server

async def test_greet(tmp_path):
    config = write_config(tmp_path)                 # 127.0.0.1:0, users alice and bob
    async with running_server(config) as server:    # a real hypercorn on a free port
        async with server.client("alice") as client:   # httpx, Basic auth as alice
            response = await client.get("/.well-known/jmap")
```

Storage back ends: ``pytest --backend=postgresql`` (or ``JMAP_TEST_BACKEND=postgresql``) runs
the tests on a throw-away PostgreSQL server (:mod:`jmap_host.pgcluster`, started once per
session when a test first writes a configuration) instead of SQLite files: every data
directory that :func:`write_config` names gets a database of its own, dropped when the test
ends, and the configuration's ``[storage]`` says ``type = "postgresql"`` with its URL.
``@pytest.mark.backend("sqlite")`` keeps a test to one back end; the ``storage_backend``
fixture names the one in use.  With it, ``--blob-store=database`` (or
``JMAP_TEST_BLOB_STORE=database``) also keeps the blobs in that database
(``[storage.blob] store = "database"``) instead of files.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .host import Host, load_host

if TYPE_CHECKING:
    from .pgcluster import PostgresCluster

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}

BASE_CONFIG = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "memory"
path = "{data}"

[directory."memory"]
type = "memory"

[[directory."memory".principals]]
name = "alice"
secret = "alice-password"
email = ["alice@example.org", "sales@example.org"]
description = "Alice Example"
member-of = ["sales"]

[[directory."memory".principals]]
name = "bob"
secret = "bob-password"
email = ["bob@example.org"]
description = "Bob Example"

[[directory."memory".principals]]
name = "sales"
class = "group"
email = ["sales-team@example.org"]
description = "Sales"
"""


BACKENDS = ("sqlite", "postgresql")
BLOB_STORES = ("directory", "database")

# The PostgreSQL databases of this test session while --backend=postgresql is in force
# (set by the jmap_storage_session fixture); None on SQLite.
_postgresql: PostgresDatabases | None = None
# The blob store of the test configurations on PostgreSQL (--blob-store).
_blob_store = "directory"


def write_config(
    directory: Path, extra: str = "", *, base: str | None = None, name: str = "jmap.toml"
) -> Path:
    """Write a test configuration into ``directory``: one JMAP listener on 127.0.0.1 with a
    free port, data under ``directory/data``, users alice and bob (passwords in
    :data:`PASSWORDS`) and the group sales.  ``extra`` TOML is appended.  On the PostgreSQL
    back end the data directory's own database is the storage (see :func:`config_text`)."""
    url = _postgresql.url_for(directory / "data") if _postgresql is not None else None
    path = directory / name
    text = config_text(directory, extra, base=base, postgresql=url, blob_store=_blob_store)
    path.write_text(text, encoding="utf-8")
    return path


def config_text(
    directory: Path,
    extra: str = "",
    *,
    base: str | None = None,
    postgresql: str | None = None,
    blob_store: str = "directory",
) -> str:
    """The text :func:`write_config` writes.  With a ``postgresql`` URL the storage is that
    database: ``type = "postgresql"`` heads the first ``[storage]`` table (one is added if
    there is none) and a ``[storage.postgresql]`` table with the URL is appended; with
    ``blob_store="database"`` too, ``store = "database"`` heads ``[storage.blob]`` (added
    if there is none).  A configuration that chooses its storage type itself, or is not
    valid TOML (a test of the configuration errors), is left as it is."""
    text = (base if base is not None else BASE_CONFIG).format(data=(directory / "data").as_posix())
    text = text + "\n" + textwrap.dedent(extra)
    return text if postgresql is None else _with_postgresql(text, postgresql, blob_store)


_STORAGE_HEADER = re.compile(r"^[ \t]*\[[ \t]*storage[ \t]*\][ \t]*(#.*)?$", re.MULTILINE)
_BLOB_HEADER = re.compile(
    r"^[ \t]*\[[ \t]*storage[ \t]*\.[ \t]*blob[ \t]*\][ \t]*(#.*)?$", re.MULTILINE
)


def _with_postgresql(text: str, url: str, blob_store: str = "directory") -> str:
    import tomllib

    try:
        storage = tomllib.loads(text).get("storage", {})
    except tomllib.TOMLDecodeError:
        return text
    if "type" in storage or "postgresql" in storage:
        return text
    text = _heading(text, _STORAGE_HEADER, "[storage]", 'type = "postgresql"')
    blob = storage.get("blob", {})
    if blob_store != "directory" and "store" not in blob and "directory" not in blob:
        text = _heading(text, _BLOB_HEADER, "[storage.blob]", f'store = "{blob_store}"')
    return text.rstrip("\n") + f'\n\n[storage.postgresql]\nurl = "{url}"\n'


def _heading(text: str, header: re.Pattern[str], table: str, line: str) -> str:
    """``line`` first in the TOML ``table`` of ``text`` (appended if there is none)."""
    found = header.search(text)
    if found is None:
        return text.rstrip("\n") + f"\n\n{table}\n{line}\n"
    return text[: found.end()] + "\n" + line + text[found.end() :]


TEMPLATE_DATABASE = "jmap_template"


class PostgresDatabases:
    """The databases of a ``--backend=postgresql`` session: one per data directory, in a
    cluster started on first use.  Those made during a test are dropped when it ends
    (:meth:`end_test`), the others (a module's fixtures) at :meth:`close`.

    CREATE DATABASE takes 0.1 to 0.3 s (it copies template0, some 7 MB, through the WAL),
    more than many tests: the next database is created in the background while a test runs,
    so that a configuration is written without waiting, and databases are dropped in the
    background too (one thread: creating the next waits for the drops before it)."""

    def __init__(self, tmpdir: Path):
        self.tmpdir = tmpdir
        self.cluster: PostgresCluster | None = None
        self.by_directory: dict[Path, str] = {}
        self.in_test: list[Path] | None = None  # directories given databases in this test
        self.created = 0
        self.template: str | None = None
        self.empty = False  # this test's databases start empty (not from the template)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jmap-pg")
        self._spare: Future[str] | None = None
        self._dropping: list[Future[None]] = []

    def url_for(self, data: Path) -> str:
        name = self.by_directory.get(data)
        if name is None:
            name = self._create(self._next_name(), empty=True) if self.empty else self._take_spare()
            self.by_directory[data] = name
            if self.in_test is not None:
                self.in_test.append(data)
        return self._cluster().url(name)

    def _take_spare(self) -> str:
        spare, self._spare = self._spare, None
        name = spare.result() if spare is not None else self._create(self._next_name())
        self._spare = self._background.submit(self._create, self._next_name())
        return name

    def _next_name(self) -> str:
        self.created += 1
        return f"jmap_test_{self.created}"

    def _create(self, name: str, empty: bool = False) -> str:
        template = "template0" if empty else self._template()
        self._cluster().create_database(name, template=template)
        return name

    def _template(self) -> str:
        """A database every migration of the in-repo plugins has been applied to, which
        test databases are copies of: a server then starts on it in milliseconds, where
        migrating a new database takes half a second (some fifty sets of DDL).  A test of
        the migrations themselves asks for an empty one (``@pytest.mark.empty_database``)."""
        if self.template is None:
            from .host import load_host

            cluster = self._cluster()
            cluster.create_database(TEMPLATE_DATABASE, template="template0")
            directory = self.tmpdir / "template"
            directory.mkdir(exist_ok=True)
            text = config_text(directory, '[plugins]\nopt-in = ["example"]\n',
                               postgresql=cluster.url(TEMPLATE_DATABASE))  # fmt: skip
            config = directory / "jmap.toml"
            config.write_text(text, encoding="utf-8")
            store = load_host(config).store
            try:
                store.migrate()
            finally:
                store.close()
            self.template = TEMPLATE_DATABASE
        return self.template

    def _cluster(self) -> PostgresCluster:
        if self.cluster is None:
            from .pgcluster import PostgresCluster

            cluster = PostgresCluster(self.tmpdir)
            cluster.start()
            self.cluster = cluster
        return self.cluster

    def begin_test(self, empty: bool = False) -> None:
        self.in_test = []
        self.empty = empty

    def end_test(self) -> None:
        directories, self.in_test = self.in_test or [], None
        for data in directories:
            self._drop(data)

    def close(self) -> None:
        """Drop what is left, wait for the drops, stop the server (whatever failed)."""
        try:
            for data in list(self.by_directory):
                self._drop(data)
            self._background.shutdown()
            spare, self._spare = self._spare, None
            if spare is not None and spare.exception() is None:
                self._cluster().drop_database(spare.result())
            dropped, self._dropping = self._dropping, []
            for drop in dropped:
                drop.result()  # a database that would not drop: say so at the session's end
        finally:
            if self.cluster is not None:
                self.cluster.stop()
                self.cluster = None

    def _drop(self, data: Path) -> None:
        name = self.by_directory.pop(data)
        assert self.cluster is not None
        # (Keep only the drops not known to have gone well, for close() to report.)
        self._dropping = [drop for drop in self._dropping if not drop.done() or drop.exception()]
        self._dropping.append(self._background.submit(self.cluster.drop_database, name))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot be
    asked to bind port 0 and say which they got)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``python -m jmap_host run -c CONFIG`` as a subprocess, for what only a process of
    its own shows: a kill -9, several nodes on one database.  :meth:`spawn` starts it
    (its output to ``log``), :meth:`wait_ready` waits until it serves, :meth:`kill` is a
    SIGKILL, :meth:`stop` a SIGTERM (then a SIGKILL if it does not stop)."""

    def __init__(self, config: Path, url: str):
        self.config, self.url = config, url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None

    def spawn(self, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jmap_host", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None and self.log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"Ctrl+C" in self.log.read_bytes():  # (hypercorn's "Running on ...")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.proc.kill()
        raise AssertionError(
            f"{self.config} did not start:\n{self.log.read_text('utf-8', 'replace')}"
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_tls_config(directory: Path, extra: str = "") -> tuple[Path, Path]:
    """:func:`write_config` with its listener on TLS, a certificate for 127.0.0.1 and
    localhost from a throw-away CA (trustme); returns (config, CA file).  Clients built on
    requests (jmapc) trust the CA through ``REQUESTS_CA_BUNDLE``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    config = write_config(directory, extra)
    text = config.read_text().replace(
        'protocol = "jmap"\n',
        'protocol = "jmap"\ntls.certificate = "cert.pem"\ntls.private-key = "key.pem"\n',
        1,
    )
    config.write_text(text)
    return config, directory / "ca.pem"


def basic(user: str, password: str | None = None) -> dict[str, str]:
    """An Authorization header for ``user`` (password from :data:`PASSWORDS` by default)."""
    secret = PASSWORDS[user] if password is None else password
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class RunningServer:
    """A server started by :func:`running_server`: its host and the URLs it listens on."""

    host: Host
    urls: dict[str, list[str]]

    @property
    def url(self) -> str:
        """Base URL of the first HTTP listener."""
        for urls in self.urls.values():
            for url in urls:
                if url.startswith("http"):
                    return url
        raise LookupError("no HTTP listener")

    def client(self, user: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
        """An ``httpx.AsyncClient`` on this server, authenticated as ``user`` if given."""
        import httpx

        headers = basic(user, password) if user else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kwargs)


@asynccontextmanager
async def running_server(
    config: Path | Host, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> AsyncIterator[RunningServer]:
    """Start a real server (hypercorn on trio) for the configuration and stop it on exit."""
    from .server import serve

    host = config if isinstance(config, Host) else load_host(config, extra_plugins=extra_plugins)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: serve(host, shutdown=shutdown, task_status=task_status)
        )
        try:
            yield RunningServer(host, urls)
        finally:
            shutdown.set()


async def api(
    client: Any, calls: list[list[Any]], using: list[str] | None = None, **extra: Any
) -> Any:
    """POST a JMAP request with ``client`` and return the decoded response (asserting 200)."""
    body = {"using": using or ["urn:ietf:params:jmap:core"], "methodCalls": calls, **extra}
    response = await client.post("/jmap/api", json=body)
    assert response.status_code == 200, response.text
    return response.json()


class AccountClient:
    """One account's JMAP client for tests: ``call`` makes one method call in the account
    with the capabilities ``using`` and answers its arguments, or ``{"error": ...}`` for a
    method error; ``ok`` fails the test on one.  ``http`` is an httpx client of the server
    (``RunningServer.client(user)``)."""

    def __init__(self, http: Any, account: str, using: list[str] | None = None):
        self.http, self.account = http, account
        self.using = using or ["urn:ietf:params:jmap:core"]

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        body = {
            "using": self.using,
            "methodCalls": [[name, {"accountId": self.account, **args}, "c"]],
        }
        reply = await self.http.post("/jmap/api", json=body)
        assert reply.status_code == 200, reply.text
        answered, result, _ = reply.json()["methodResponses"][0]
        return result if answered == name else {"error": result}

    async def ok(self, name: str, **args: Any) -> dict[str, Any]:
        result = await self.call(name, **args)
        assert "error" not in result, result
        return result

    async def session(self) -> Any:
        return (await self.http.get("/jmap/session")).json()

    async def upload(
        self, data: bytes, media: str = "application/octet-stream", account: str | None = None
    ) -> str:
        """POST ``data`` to the upload endpoint of this account (or ``account``)."""
        reply = await self.http.post(
            f"/jmap/upload/{account or self.account}/", content=data,
            headers={"Content-Type": media},
        )  # fmt: skip
        assert reply.status_code == 201, reply.text
        return str(reply.json()["blobId"])


async def eventually(check: Any, timeout: float = 15.0) -> Any:
    """Await ``check()`` every 50 ms until it answers something truthy and return that;
    fail (``trio.TooSlowError``) after ``timeout`` seconds.  For what the server does in
    the background (queued mail, deliveries, alerts): generous, as the machine may be busy."""
    with trio.fail_after(timeout):
        while not (result := await check()):
            await trio.sleep(0.05)
        return result


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def pytest_addoption(parser: pytest.Parser) -> None:
        parser.getgroup("jmap-host").addoption(
            "--backend",
            choices=BACKENDS,
            default=os.environ.get("JMAP_TEST_BACKEND") or "sqlite",
            help="the storage back end of the test configurations (default: sqlite, or "
            "the environment's JMAP_TEST_BACKEND)",
        )
        parser.getgroup("jmap-host").addoption(
            "--blob-store",
            choices=BLOB_STORES,
            default=os.environ.get("JMAP_TEST_BLOB_STORE") or "directory",
            help="with --backend=postgresql, the blob store of the test configurations "
            "(storage.blob.store; default: directory, or the environment's "
            "JMAP_TEST_BLOB_STORE)",
        )

    def pytest_configure(config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers",
            "backend(*names): run the test only on these storage back ends "
            f"({', '.join(BACKENDS)}); skipped on the others",
        )
        config.addinivalue_line(
            "markers",
            "empty_database: on PostgreSQL, the test's databases start empty rather than "
            "as copies of the migrated template (a test of migrations themselves)",
        )
        # (An unknown --backend is refused by its choices; the environment's is not.)
        if config.getoption("backend") not in BACKENDS:
            raise pytest.UsageError(
                f"JMAP_TEST_BACKEND={config.getoption('backend')!r}: "
                f"not one of {', '.join(BACKENDS)}"
            )
        global _blob_store
        _blob_store = config.getoption("blob_store")
        if _blob_store not in BLOB_STORES:
            raise pytest.UsageError(
                f"JMAP_TEST_BLOB_STORE={_blob_store!r}: not one of {', '.join(BLOB_STORES)}"
            )
        if _blob_store == "database" and config.getoption("backend") != "postgresql":
            raise pytest.UsageError("--blob-store=database needs --backend=postgresql")

    def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
        backend = config.getoption("backend")
        for item in items:
            for marker in item.iter_markers("backend"):
                unknown = set(marker.args) - set(BACKENDS)
                if not marker.args or unknown:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.backend names none of {BACKENDS} "
                        f"({', '.join(sorted(unknown))})"
                    )
                if backend not in marker.args:
                    reason = f"runs only on the {' or '.join(marker.args)} back end"
                    item.add_marker(pytest.mark.skip(reason=f"{reason}, not {backend}"))

    @pytest.fixture(scope="session")
    def storage_backend(pytestconfig: pytest.Config) -> str:
        """The storage back end of this run: "sqlite" or "postgresql" (``--backend``)."""
        return str(pytestconfig.getoption("backend"))

    @pytest.fixture(scope="session", autouse=True)
    def jmap_storage_session(
        storage_backend: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[PostgresDatabases | None]:
        """On PostgreSQL, the session's databases (the server starts when a test first
        writes a configuration, and stops at the session's end); None on SQLite."""
        global _postgresql
        if storage_backend != "postgresql":
            yield None
            return
        databases = PostgresDatabases(tmp_path_factory.mktemp("postgresql"))
        _postgresql = databases
        try:
            yield databases
        finally:
            _postgresql = None
            databases.close()

    @pytest.fixture(autouse=True)
    def jmap_storage(
        jmap_storage_session: PostgresDatabases | None, request: pytest.FixtureRequest
    ) -> Iterator[None]:
        """On PostgreSQL, a fresh database for each data directory the test's
        configurations name, dropped when the test ends (after its fixtures' servers):
        a copy of the migrated template, or empty for ``@pytest.mark.empty_database``."""
        if jmap_storage_session is None:
            yield
            return
        empty = request.node.get_closest_marker("empty_database") is not None
        jmap_storage_session.begin_test(empty)
        try:
            yield
        finally:
            jmap_storage_session.end_test()

    @pytest.fixture
    def jmap_config(tmp_path: Path) -> Path:
        """A test configuration file (see :func:`write_config`)."""
        return write_config(tmp_path)
