"""A throw-away PostgreSQL server on 127.0.0.1, for the tests of the PostgreSQL store.

```python
from jmap_host.pgcluster import PostgresCluster

with PostgresCluster(tmp_path) as cluster:      # initdb + postgres on a free port
    cluster.create_database("mail")
    url = cluster.url("mail")                   # postgresql://postgres@127.0.0.1:PORT/mail
```

Debian's server binaries (package ``postgresql``, installed by ``bash dev.sh test``) are
used from /usr/lib/postgresql/VERSION/bin, the highest version; nothing touches the
package's own clusters or services.  The superuser ``postgres`` logs in without a password
(``trust``), which is safe only because the server listens on 127.0.0.1 and on a socket in
the cluster's private directory.

PostgreSQL refuses to run as root.  Under root (CI, containers) initdb, postgres and pg_ctl
run as the system user ``postgres`` that Debian's package creates, and the cluster lives in
a private directory of its own under the system's temporary directory (that user cannot
enter a root-owned pytest ``tmp_path``), removed on exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from .testing import free_port

DEBIAN_BINARIES = "/usr/lib/postgresql"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30

# Small shared memory (many clusters may run at once on a developer's machine) and room for
# the connection pools of many servers in one test session.  Durability settings (fsync,
# synchronous_commit) keep their defaults: the store is tested as it will run.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_buffers": "16MB",
    "max_connections": "300",
}


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries (or no unprivileged user to run them as root)."""


def find_bindir(root: str = DEBIAN_BINARIES) -> Path:
    """The ``bin`` directory of the highest PostgreSQL version installed the Debian way."""
    found = [initdb.parent for initdb in Path(root).glob("*/bin/initdb")]
    if not found:
        raise PostgresNotInstalled(
            f"no PostgreSQL server under {root}/*/bin: install Debian's package "
            "postgresql (bash dev.sh test-postgresql does it)"
        )
    return max(found, key=lambda bindir: _version_key(bindir.parent.name))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: ``postgres`` under root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresNotInstalled(
            "running as root, PostgreSQL needs an unprivileged user: the user postgres "
            "does not exist (Debian's package postgresql creates it)"
        ) from None


class PostgresCluster:
    """A PostgreSQL cluster (initdb) and its server on 127.0.0.1:``port``, started by
    :meth:`start` or ``with``, stopped (and its files removed when they are its own private
    directory) by :meth:`stop` or the end of the ``with``.  ``tmpdir`` holds the server's
    log, ``postgresql.log``, and, when not running as root, the cluster itself."""

    def __init__(
        self, tmpdir: Path, *, bindir: Path | None = None, settings: dict[str, str] | None = None
    ):
        self.tmpdir = Path(tmpdir)
        # Server settings over SERVER_SETTINGS (the benchmarks give it more memory).
        self.settings = settings or {}
        self.bindir = bindir or find_bindir()
        self.user = _unprivileged_user()
        self.log = self.tmpdir / "postgresql.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.base: Path | None = None
        # One maintenance connection per thread (a connection serves one thread at a time;
        # the tests' fixtures create the next database in the background).
        self._admins: dict[int, psycopg.Connection[Any]] = {}
        self._admins_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """initdb a new cluster and start its server; returns once it accepts connections."""
        assert self.proc is None, "already started"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.base = self._private_directory()
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, killed if that fails) and remove the
        private directory.  Idempotent."""
        with self._admins_lock:
            admins, self._admins = list(self._admins.values()), {}
        for connection in admins:
            connection.close()
        if self.proc is not None:
            self._stop_server(self.proc)
            self.proc = None
        if self.base is not None and self.base != self.tmpdir:
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    @property
    def data(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "data"

    def _private_directory(self) -> Path:
        if self.user is None:
            return self.tmpdir
        base = Path(tempfile.mkdtemp(prefix="jmap-postgresql-"))
        os.chown(base, self.user.pw_uid, self.user.pw_gid)
        return base

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that run a PostgreSQL program as the unprivileged user (if root),
        in a directory it may enter."""
        if self.user is None:
            return {"cwd": self.base}
        env = {**os.environ, "HOME": self.user.pw_dir, "USER": "postgres", "LOGNAME": "postgres"}
        return {
            "cwd": self.base,
            "user": self.user.pw_uid,
            "group": self.user.pw_gid,
            "extra_groups": [],
            "env": env,
        }

    def _initdb(self) -> None:
        # --no-sync: initdb's own final fsync of a cluster that lives for one test session;
        # the server itself keeps fsync on.
        command = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres"]
        command += ["--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"]
        done = self._program([*command, "--locale=C.UTF-8"])
        if done.returncode != 0 and "locale" in done.stdout:
            # A system without the C.UTF-8 locale: the C locale (byte order) with UTF-8.
            shutil.rmtree(self.data, ignore_errors=True)
            done = self._program([*command, "--no-locale"])
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}")

    def _program(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            **self._run_as(),
        )

    def _start_server(self) -> None:
        # The free port may be taken between free_port() and the server's bind: try again.
        for _attempt in range(3):
            self.port = free_port()
            self.proc = self._spawn()
            if self._wait_ready(self.proc):
                return
            self.proc = None
            if "could not bind" not in self._log_text():
                break
        raise RuntimeError(f"postgres did not start:\n{self._log_text()}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        settings = {**SERVER_SETTINGS, **self.settings, "port": str(self.port)}
        settings["unix_socket_directories"] = str(self.base)
        command = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        with open(self.log, "ab") as log:
            # Its own session: a stray Ctrl+C does not reach it half-way through a test,
            # and the whole process group can be killed if the postmaster will not stop.
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as(),
            )

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once the server accepts connections; False if it exited."""
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self._stop_server(proc)
                    raise RuntimeError(
                        f"postgres did not accept connections within {START_TIMEOUT:.0f} s:\n"
                        f"{self._log_text()}"
                    ) from None
                time.sleep(0.05)
        return False

    def _stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            pg_ctl = [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast"]
            self._program([*pg_ctl, "-w", "-t", str(STOP_TIMEOUT)])
            try:
                proc.wait(5)
                return
            except subprocess.TimeoutExpired:
                pass
        # It would not stop (or died on its own): kill it and any backends left, which
        # share its process group (still ours while the unreaped postmaster is in it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- databases -------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """The URL that the store's configuration names: the superuser, no password."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[Any]:
        """This thread's maintenance connection (database ``postgres``, autocommit: CREATE
        and DROP DATABASE cannot run in a transaction); kept open until :meth:`stop`."""
        assert self.proc is not None, "not started"
        thread = threading.get_ident()
        with self._admins_lock:
            connection = self._admins.get(thread)
        if connection is None or connection.closed:
            connection = psycopg.connect(self.url("postgres"), autocommit=True)
            with self._admins_lock:
                self._admins[thread] = connection
        return connection

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE ``name`` (from ``template``, else the default, template1)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.admin().execute(statement)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` if it exists, ending its connections (a server that a test
        left running must not keep it)."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self.admin().execute(statement.format(sql.Identifier(name)))
