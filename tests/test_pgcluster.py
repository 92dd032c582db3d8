"""The test infrastructure of the PostgreSQL back end: jmap_host.pgcluster's throw-away
server, and jmap_host.testing's ``--backend=postgresql`` (configurations that name a fresh
database, the ``backend`` marker).  Debian's PostgreSQL (installed by ``bash dev.sh test``)
is needed: without it these tests fail when ``CI`` is set and are skipped otherwise."""

from __future__ import annotations

import errno
import os
import socket
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jmap_host.pgcluster import PostgresCluster, PostgresNotInstalled, find_bindir
from jmap_host.testing import BASE_CONFIG, config_text

pytest_plugins = ["pytester"]

URL = "postgresql://postgres@127.0.0.1:5999/jmap_test_7"


def require_postgresql() -> None:
    try:
        find_bindir()
    except PostgresNotInstalled as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    require_postgresql()
    with PostgresCluster(tmp_path_factory.mktemp("pgcluster")) as running:
        yield running


def refused(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is refused (nothing listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == errno.ECONNREFUSED


def test_create_use_and_drop_a_database(cluster: PostgresCluster) -> None:
    cluster.create_database("notes")
    with psycopg.connect(cluster.url("notes")) as connection:
        connection.execute("CREATE TABLE note (id text PRIMARY KEY, body text)")
        connection.execute("INSERT INTO note VALUES ('n1', 'été')")
        connection.commit()
        assert connection.execute("SELECT body FROM note").fetchall() == [("été",)]
        encoding = connection.execute("SHOW server_encoding").fetchone()
    assert encoding == ("UTF8",)
    cluster.drop_database("notes")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(cluster.url("notes"))
    cluster.drop_database("notes")  # IF EXISTS: dropping twice is no error


def test_a_database_from_a_template(cluster: PostgresCluster) -> None:
    cluster.create_database("model")
    with psycopg.connect(cluster.url("model"), autocommit=True) as connection:
        connection.execute("CREATE TABLE seeded AS SELECT 42 AS answer")
    cluster.create_database("copy", template="model")
    with psycopg.connect(cluster.url("copy")) as connection:
        assert connection.execute("SELECT answer FROM seeded").fetchall() == [(42,)]
    cluster.drop_database("copy")
    cluster.drop_database("model")


def test_drop_ends_the_connections_left_open(cluster: PostgresCluster) -> None:
    cluster.create_database("left_open")
    connection = psycopg.connect(cluster.url("left_open"))
    try:
        cluster.drop_database("left_open")
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    finally:
        connection.close()


def test_listens_only_on_127_0_0_1(cluster: PostgresCluster) -> None:
    with psycopg.connect(cluster.url("postgres")) as connection:
        assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        sockets = connection.execute("SHOW unix_socket_directories").fetchone()
    assert sockets == (str(cluster.base),)
    # All of 127/8 reaches this machine: another loopback address finds nothing listening.
    assert refused("127.0.0.2", cluster.port)
    if socket.has_ipv6 and Path("/proc/net/if_inet6").exists():
        assert refused("::1", cluster.port)


def test_stopped_and_gone_after_the_with(tmp_path: Path) -> None:
    require_postgresql()
    with PostgresCluster(tmp_path) as running:
        port, base = running.port, running.base
        assert running.proc is not None
        postmaster = running.proc.pid
        with psycopg.connect(running.url("postgres")) as connection:
            # Every server process (backends and the background ones) is in the view.
            rows = connection.execute("SELECT pid FROM pg_stat_activity").fetchall()
        processes = {postmaster, *(pid for (pid,) in rows)}
        assert len(processes) > 2
        if os.geteuid() == 0:  # run as the user postgres, not root
            assert os.stat(f"/proc/{postmaster}").st_uid == running.user.pw_uid
    assert refused("127.0.0.1", port)
    for pid in processes:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(postmaster, 0)
    if os.geteuid() == 0:  # its private directory is removed; tmp_path keeps the log
        assert base is not None and not base.exists()
    assert (tmp_path / "postgresql.log").exists()


# -- jmap_host.testing on --backend=postgresql ------------------------------------------


def storage_of(text: str) -> dict[str, object]:
    return tomllib.loads(text)["storage"]


def test_config_text_names_the_database(tmp_path: Path) -> None:
    text = config_text(tmp_path, '[storage.blob]\nupload-expiry = "2h"\n', postgresql=URL)
    storage = storage_of(text)
    assert storage["type"] == "postgresql"
    assert storage["postgresql"] == {"url": URL}
    # The rest of the table and the extra text stay.
    assert storage["directory"] == "memory"
    assert storage["blob"] == {"upload-expiry": "2h"}


def test_config_text_on_sqlite_is_unchanged(tmp_path: Path) -> None:
    text = config_text(tmp_path, "[plugins]\n")
    assert "type" not in storage_of(text)
    assert text == BASE_CONFIG.format(data=(tmp_path / "data").as_posix()) + "\n[plugins]\n"


def test_config_text_with_a_base_of_the_tests_own(tmp_path: Path) -> None:
    # A [storage] table (here not the first table) gets the type; none gets one added.
    base = '[plugins]\nopt-in = ["example"]\n\n[storage]  # data\npath = "{data}"\n'
    storage = storage_of(config_text(tmp_path, base=base, postgresql=URL))
    assert storage == {"type": "postgresql", "path": f"{tmp_path}/data", "postgresql": {"url": URL}}
    bare = config_text(tmp_path, '[storage.blob]\nupload-expiry = "1h"\n', base="", postgresql=URL)
    assert storage_of(bare) == {
        "type": "postgresql",
        "blob": {"upload-expiry": "1h"},
        "postgresql": {"url": URL},
    }


def test_config_text_leaves_a_chosen_storage_and_broken_toml(tmp_path: Path) -> None:
    chosen = '[storage]\ntype = "sqlite"\npath = "{data}"\n'
    assert config_text(tmp_path, base=chosen, postgresql=URL) == config_text(tmp_path, base=chosen)
    broken = "[storage]\ndirectory = \n"
    assert config_text(tmp_path, broken, postgresql=URL) == config_text(tmp_path, broken)


INNER_TESTS = """\
import time
import tomllib

import psycopg
import pytest

from jmap_host.testing import write_config

URLS = []


def url_of(config):
    storage = tomllib.loads(config.read_text())["storage"]
    assert storage["type"] == "postgresql"
    return storage["postgresql"]["url"]


def test_a_database_per_data_directory(tmp_path, storage_backend):
    assert storage_backend == "postgresql"
    url = url_of(write_config(tmp_path))
    with psycopg.connect(url) as connection:
        name = connection.execute("SELECT current_database()").fetchone()[0]
    assert name.startswith("jmap_test_")
    assert url_of(write_config(tmp_path, name="again.toml")) == url
    (tmp_path / "other").mkdir()
    assert url_of(write_config(tmp_path / "other")) != url
    URLS.append(url)


def test_dropped_when_the_test_ends(tmp_path):
    assert URLS
    deadline = time.monotonic() + 10  # (dropped in the background)
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        while time.monotonic() < deadline:
            psycopg.connect(URLS[0]).close()
            time.sleep(0.05)
    url_of(write_config(tmp_path))


@pytest.mark.backend("sqlite")
def test_on_sqlite_only():
    raise AssertionError("ran on postgresql")


@pytest.mark.backend("postgresql")
def test_on_postgresql_only(storage_backend):
    assert storage_backend == "postgresql"
"""


def test_backend_option_runs_tests_on_postgresql(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgresql()
    pytester.makepyfile(test_inner=INNER_TESTS)
    pytester.makeini("[pytest]\naddopts = -p no:randomly\n")
    monkeypatch.setenv("JMAP_TEST_BACKEND", "postgresql")  # the same as --backend=postgresql
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*runs only on the sqlite back end, not postgresql*"])


def test_backend_marker_skips_on_sqlite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner=textwrap.dedent("""\
            import pytest

            @pytest.mark.backend("postgresql")
            def test_on_postgresql_only():
                raise AssertionError("ran on sqlite")

            def test_anywhere(storage_backend):
                assert storage_backend == "sqlite"
            """)
    )
    result = pytester.runpytest_inprocess("--backend=sqlite", "-rs", "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*runs only on the postgresql back end, not sqlite*"])


def test_config_text_with_the_database_blob_store(tmp_path: Path) -> None:
    # --blob-store=database: store = "database" heads [storage.blob], added if absent; a
    # configuration that chooses its blob store (or directory) itself is left alone.
    blob = '[storage.blob]\nupload-expiry = "2h"\n'
    text = config_text(tmp_path, blob, postgresql=URL, blob_store="database")
    assert storage_of(text)["blob"] == {"store": "database", "upload-expiry": "2h"}
    text = config_text(tmp_path, postgresql=URL, blob_store="database")
    assert storage_of(text)["blob"] == {"store": "database"}
    own = '[storage.blob]\ndirectory = "/mnt/blobs"\n'
    text = config_text(tmp_path, own, postgresql=URL, blob_store="database")
    assert storage_of(text)["blob"] == {"directory": "/mnt/blobs"}
    assert "blob" not in storage_of(config_text(tmp_path, postgresql=URL))
