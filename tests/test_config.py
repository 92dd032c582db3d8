"""Configuration loading and validation: ``load_host`` and ``jmap-host check-config``.

Covers the operator-config issue: the Stalwart-style keys work as written, and every
mistake is reported with the file, the dotted key and what is wrong (with a "did you mean"
hint for unknown keys), all problems in one pass, exit status 2 from ``check-config``.
RFC 8620 §2 (core capability limits) for ``[jmap.protocol]``.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

import jmap_host
from jmap_host import ConfigError, load_host
from jmap_host.config import DEFAULT_CONFIG_NAME
from jmap_host.testing import basic, running_server, write_config

JMAP_HOST = Path(sys.executable).parent / "jmap-host"

# The operator configuration exactly as the issue writes it.
SPEC_CONFIG = """\
[server.listener."jmap"]
bind = ["[::]:8080"]
url = "https://mail.example.org"
protocol = "jmap"

[storage]
directory = "memory"
path = "data"

[directory."memory"]
type = "memory"

[[directory."memory".principals]]
name = "alice"
class = "individual"
secret = "alice-password"
email = ["alice@example.org", "sales@example.org"]
description = "Alice Example"
member-of = ["sales"]

[[directory."memory".principals]]
name = "sales"
class = "group"
email = ["sales-team@example.org"]
description = "Sales"

[jmap.http]
headers = ["Cache-Control: no-store", "X-Served-By: jmap-host"]
"""

ALICE = """\
[[directory."memory".principals]]
name = "alice"
secret = "alice-password"
email = ["alice@example.org"]
"""


def config_text(
    *, bind: str = '["127.0.0.1:0"]', listener: str = "", principals: str = ALICE, extra: str = ""
) -> str:
    """A small valid configuration; ``listener`` lines go into ``[server.listener."jmap"]``,
    ``extra`` TOML is appended at the end."""
    return (
        f'[server.listener."jmap"]\nbind = {bind}\n{listener}\n'
        '[storage]\ndirectory = "memory"\npath = "data"\n\n'
        '[directory."memory"]\ntype = "memory"\n\n'
        f"{principals}\n{extra}\n"
    )


def write(directory: Path, text: str, name: str = "jmap.toml") -> Path:
    """Write ``text`` verbatim (no ``str.format``, so ``%{env:X}%`` survives)."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_host(path)
    exc = info.value
    assert exc.problems, "a ConfigError must list at least one problem"
    # Every line of the message names the file (issue: "every error names the file").
    for line in str(exc).splitlines():
        assert line.startswith(f"{path}: "), line
    assert exc.file == str(path)
    return exc


def assert_problem(exc: ConfigError, key: str, *fragments: str) -> None:
    """``exc`` has a problem at exactly ``key`` whose message contains every fragment, and
    its ``str()`` has the ``FILE: KEY: message`` line for it."""
    found = [p for p in exc.problems if p.key == key]
    assert found, f"no problem at {key!r}; got {exc.problems}"
    matching = [p for p in found if all(f in p.message for f in fragments)]
    assert matching, f"problem at {key!r} lacks {fragments}; got {found}"
    prefix = f"{exc.file}: {key}: " if key else f"{exc.file}: "
    assert any(line.startswith(prefix) for line in str(exc).splitlines()), str(exc)


def check_config(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JMAP_HOST), "check-config", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_cli_rejects(path: Path, cwd: Path, *keys: str) -> list[str]:
    """``check-config -c path`` exits 2, every stderr problem line names the file, and each
    of ``keys`` appears on one of them.  Returns the problem lines."""
    result = check_config("-c", str(path), cwd=cwd)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "OK" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("problem(s); nothing was started."), result.stderr
    problems = lines[:-1]
    assert problems
    for line in problems:
        assert line.startswith(f"{path}: "), line
    for key in keys:
        assert any(line.startswith(f"{path}: {key}: ") for line in problems), (key, problems)
    assert lines[-1] == f"{len(problems)} problem(s); nothing was started."
    return problems


# -- the operator keys from the issue --------------------------------------------------------


async def test_spec_operator_keys_load_as_written(tmp_path: Path) -> None:
    """Issue: `[server.listener."jmap"] bind/url/protocol`, `[storage] directory`,
    `[directory."memory"] type`, `[[directory."memory".principals]]`, `[jmap.http] headers`."""
    path = write(tmp_path, SPEC_CONFIG)
    host = load_host(path)
    listener = host.config.data["server"]["listener"]["jmap"]
    assert listener["bind"] == ["[::]:8080"]
    assert listener["url"] == "https://mail.example.org"
    assert listener["protocol"] == "jmap"
    assert host.config.data["storage"]["directory"] == "memory"
    assert host.config.data["storage"]["path"] == str(tmp_path / "data")  # relative to file
    assert host.config.data["directory"]["memory"]["type"] == "memory"
    assert host.plugin_config("jmap.http.headers") == [
        ("Cache-Control", "no-store"),
        ("X-Served-By", "jmap-host"),
    ]
    alice = await host.directory.principal("alice")
    assert alice is not None
    assert alice.kind == "individual"
    assert alice.emails == ("alice@example.org", "sales@example.org")
    assert alice.description == "Alice Example"
    assert alice.member_of == ("sales",)
    sales = await host.directory.principal("sales")
    assert sales is not None and sales.kind == "group"
    assert [p.name for p in await host.directory.members("sales")] == ["alice"]
    assert await host.directory.authenticate("alice", "alice-password") == alice
    assert await host.directory.authenticate("sales", "") is None


def test_spec_config_passes_check_config(tmp_path: Path) -> None:
    """Issue: `check-config -c FILE` exits 0 and says OK for a good file."""
    path = write(tmp_path, SPEC_CONFIG)
    result = check_config("-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK (1 listener(s), ")
    assert result.stderr == ""


def test_check_config_without_c_checks_embedded_default(tmp_path: Path) -> None:
    """Issue: no `-c` validates the embedded default configuration."""
    result = check_config(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{DEFAULT_CONFIG_NAME}: OK (1 listener(s), ")
    assert not (tmp_path / "jmap-data").exists()  # checking creates no data
    host = load_host(None)
    assert host.config.file == DEFAULT_CONFIG_NAME


def test_test_helper_config_loads(tmp_path: Path) -> None:
    """The base configuration of jmap_host.testing is itself valid (alice, bob, sales)."""
    host = load_host(write_config(tmp_path, '[jmap.http]\nheaders = ["X-A: b"]\n'))
    names = [p["name"] for p in host.config.data["directory"]["memory"]["principals"]]
    assert names == ["alice", "bob", "sales"]


# -- listeners -------------------------------------------------------------------------------


def test_several_listeners_with_several_binds(tmp_path: Path) -> None:
    """Issue: several listeners, each with several binds, IPv4 and IPv6 forms."""
    text = config_text(
        bind='["127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8081", "[::]:8082"]',
        extra=(
            '[server.listener."public"]\n'
            'bind = ["192.0.2.10:443", "[2001:db8::1]:443", "[::ffff:192.0.2.10]:8443"]\n'
            'url = "https://mail.example.org/jmap/"\n'
            'protocol = "jmap"\n'
            'graceful-timeout = "30s"\n'
        ),
    )
    host = load_host(write(tmp_path, text))
    listeners = host.config.data["server"]["listener"]
    assert list(listeners) == ["jmap", "public"]
    assert listeners["jmap"]["bind"] == [
        "127.0.0.1:8080",
        "[::1]:8080",
        "0.0.0.0:8081",
        "[::]:8082",
    ]
    assert listeners["jmap"]["protocol"] == "jmap"  # the default
    assert listeners["jmap"]["url"] is None
    assert listeners["public"]["bind"] == [
        "192.0.2.10:443",
        "[2001:db8::1]:443",
        "[::ffff:192.0.2.10]:8443",
    ]
    assert listeners["public"]["url"] == "https://mail.example.org/jmap"  # trailing / dropped
    assert listeners["public"]["graceful-timeout"] == 30.0


def test_single_string_bind_is_a_list_of_one(tmp_path: Path) -> None:
    """A single string where a list of strings is expected is unambiguous."""
    host = load_host(write(tmp_path, config_text(bind='"127.0.0.1:8080"')))
    assert host.config.data["server"]["listener"]["jmap"]["bind"] == ["127.0.0.1:8080"]


@pytest.mark.parametrize(
    ("bind", "fragment"),
    [
        ("8080", "is not an address:port"),  # no host
        ("127.0.0.1", "is not an address:port"),  # no port
        ("127.0.0.1:70000", "is not an address:port"),  # port out of range
        ("127.0.0.1:http", "is not an address:port"),
        ("::1:8080", 'IPv6 addresses need brackets: "[::1]:8080"'),
        ("[::1]", "is not an address:port"),
        ("[127.0.0.1]:8080", "is not an IPv6 address"),
        ("mail.example.org:8080", "is not an IP address"),  # a hostname
        ("localhost:8080", "needs an IP address"),
        (":8080", "needs an IP address"),
    ],
)
def test_bad_bind_forms(tmp_path: Path, bind: str, fragment: str) -> None:
    """Issue: bad bind forms are errors naming `server.listener.jmap.bind[0]`."""
    exc = load_error(write(tmp_path, config_text(bind=f'["{bind}"]')))
    assert_problem(exc, "server.listener.jmap.bind[0]", fragment)
    assert len(exc.problems) == 1


def test_bad_bind_is_named_by_index_and_listener(tmp_path: Path) -> None:
    """Issue: the error names the listener and the index of the bad bind."""
    text = config_text(
        bind='["127.0.0.1:8080", "[::]:8080", "::1:9000"]',
        extra='[server.listener."other"]\nbind = ["0.0.0.0:99999"]\n',
    )
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "server.listener.jmap.bind[2]", "brackets")
    assert_problem(exc, "server.listener.other.bind[0]", "not an address:port")
    assert len(exc.problems) == 2


def test_bad_bind_check_config(tmp_path: Path) -> None:
    """Issue: `check-config` exits 2 and names file and key on stderr."""
    path = write(tmp_path, config_text(bind='["127.0.0.1:70000"]'))
    problems = assert_cli_rejects(path, tmp_path, "server.listener.jmap.bind[0]")
    assert len(problems) == 1


def test_empty_bind_list(tmp_path: Path) -> None:
    """A listener must listen somewhere."""
    exc = load_error(write(tmp_path, config_text(bind="[]")))
    assert_problem(exc, "server.listener.jmap.bind", "at least 1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://mail.example.org", "is not an absolute http(s) URL"),
        ("mail.example.org", "is not an absolute http(s) URL"),
        ("https://", "is not an absolute http(s) URL"),
        ("https://mail.example.org/?a=1", "must not have a query or fragment"),
        ("https://mail.example.org/#top", "must not have a query or fragment"),
    ],
)
def test_bad_public_url(tmp_path: Path, url: str, fragment: str) -> None:
    """Issue: `url` not http(s) or with a query is an error naming the key."""
    exc = load_error(write(tmp_path, config_text(listener=f'url = "{url}"')))
    assert_problem(exc, "server.listener.jmap.url", fragment)


def test_protocol_nobody_serves(tmp_path: Path) -> None:
    """Issue: `protocol = "imap"` (no plugin serves it) names the protocols served."""
    path = write(tmp_path, config_text(listener='protocol = "imap"'))
    exc = load_error(path)
    assert_problem(exc, "server.listener.jmap.protocol", "'imap'", "served: 'jmap'")
    assert_cli_rejects(path, tmp_path, "server.listener.jmap.protocol")


def test_no_server_table(tmp_path: Path) -> None:
    """A file without `[server.listener."..."]` says the key is required."""
    text = config_text().replace('[server.listener."jmap"]\nbind = ["127.0.0.1:0"]\n', "")
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "server", "is required")


def test_empty_listener_table_is_an_error(tmp_path: Path) -> None:
    """`[server.listener]` with no listener: a server that listens nowhere is useless, and
    `check-config` must not call it OK.  (Host bug: currently accepted, "0 listener(s)".)"""
    text = config_text().replace('[server.listener."jmap"]\nbind = ["127.0.0.1:0"]\n', "")
    text = "[server.listener]\n" + text
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "server.listener")


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> Path:
    """cert.pem / key.pem for 127.0.0.1 and other-key.pem (a key that does not match)."""
    cert = ca.issue_cert("127.0.0.1")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    (tmp_path / "cert.pem").write_bytes(chain)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    return tmp_path


def tls_config(certificate: str, private_key: str) -> str:
    return config_text(
        extra=(
            '[server.listener."jmap".tls]\n'
            f'certificate = "{certificate}"\nprivate-key = "{private_key}"\n'
        )
    )


async def test_tls_certificate_and_key_load_and_serve(tls_files: Path, ca: trustme.CA) -> None:
    """Issue: `tls.certificate` / `tls.private-key` (relative to the file) serve HTTPS."""
    host = load_host(write(tls_files, tls_config("cert.pem", "key.pem")))
    tls = host.config.data["server"]["listener"]["jmap"]["tls"]
    assert tls == {
        "certificate": str(tls_files / "cert.pem"),
        "private-key": str(tls_files / "key.pem"),
    }
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with running_server(host) as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with server.client("alice", verify=context) as client:
            response = await client.get("/.well-known/jmap")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("certificate", "private_key", "key"),
    [
        ("missing-cert.pem", "key.pem", "server.listener.jmap.tls.certificate"),
        ("cert.pem", "missing-key.pem", "server.listener.jmap.tls.private-key"),
    ],
)
def test_tls_missing_file(tls_files: Path, certificate: str, private_key: str, key: str) -> None:
    """Issue: a missing certificate or key file is an error naming the key and the path."""
    path = write(tls_files, tls_config(certificate, private_key))
    exc = load_error(path)
    missing = certificate if certificate.startswith("missing") else private_key
    assert_problem(exc, key, "does not exist", str(tls_files / missing))
    assert_cli_rejects(path, tls_files, key)


def test_tls_mismatched_key(tls_files: Path) -> None:
    """Issue: a private key that does not match the certificate is an error at `tls`."""
    exc = load_error(write(tls_files, tls_config("cert.pem", "other-key.pem")))
    assert_problem(exc, "server.listener.jmap.tls", "cannot load certificate and key")
    assert len(exc.problems) == 1


def test_tls_swapped_files(tls_files: Path) -> None:
    """Certificate and key swapped: not loadable, reported at `tls`."""
    exc = load_error(write(tls_files, tls_config("key.pem", "cert.pem")))
    assert_problem(exc, "server.listener.jmap.tls", "cannot load certificate and key")


def test_tls_without_private_key(tls_files: Path) -> None:
    """`tls` needs both keys; the missing one is named."""
    text = config_text(extra='[server.listener."jmap".tls]\ncertificate = "cert.pem"\n')
    exc = load_error(write(tls_files, text))
    assert_problem(exc, "server.listener.jmap.tls.private-key", "is required")


# -- unknown keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "extra", "key", "suggestion"),
    [
        ('bnid = ["127.0.0.1:1"]', "", "server.listener.jmap.bnid", "bind"),
        ('protcol = "jmap"', "", "server.listener.jmap.protcol", "protocol"),
        ("", '[storage]\ndirectroy = "memory"\n', "storage.directroy", "directory"),
        ("", "[jmap.protocol.request]\nmax-call = 4\n", "jmap.protocol.request.max-call",
         "max-calls"),
        ("", "[jmap.protocol.upload]\nmax-sise = 4096\n", "jmap.protocol.upload.max-sise",
         "max-size"),
        ("", '[jmap.http]\nheader = ["X-A: b"]\n', "jmap.http.header", "headers"),
        ("", "[jmap.session]\ncore-primary-acount = true\n",
         "jmap.session.core-primary-acount", "core-primary-account"),
        ("", "[authentication]\nmax-failure = 3\n", "authentication.max-failure",
         "max-failures"),
        ("", "[storge]\npath = 'x'\n", "storge", "storage"),
        ("", '[plugins]\ndisable = ["example"]\n', "plugins.disable", "disabled"),
        (
            "",
            '[plugins]\nopt-in = ["example"]\n[plugins.example]\ngreting = "Hi"\n',
            "plugins.example.greting",
            "greeting",
        ),
        ("", '[jmap.http.cors]\nallowed-origin = ["*"]\n', "jmap.http.cors.allowed-origin",
         "allowed-origins"),
    ],
)
def test_unknown_key_did_you_mean(
    tmp_path: Path, listener: str, extra: str, key: str, suggestion: str
) -> None:
    """Issue: unknown keys at every depth are errors with a "did you mean" hint."""
    text = config_text(listener=listener, extra=extra)
    if extra.startswith("[storage]"):  # replace, not repeat, the [storage] table
        text = text.replace('[storage]\ndirectory = "memory"\npath = "data"\n', "")
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, key, "unknown key", f"did you mean {suggestion!r}?")


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    """An unknown key with nothing close is still an error, without a bogus hint."""
    exc = load_error(write(tmp_path, config_text(extra="[jmap.http]\nzzzzzz = 1\n")))
    assert_problem(exc, "jmap.http.zzzzzz", "unknown key")
    assert "did you mean" not in exc.problems[0].message


def test_unknown_principal_key(tmp_path: Path) -> None:
    """Issue: an unknown key in a memory-directory principal is named with its index."""
    principals = ALICE + (
        '\n[[directory."memory".principals]]\nname = "bob"\nsecret = "b"\nemial = ["b@x.org"]\n'
    )
    path = write(tmp_path, config_text(principals=principals))
    exc = load_error(path)
    assert_problem(exc, "directory.memory.principals[1].emial", "unknown key",
                   "did you mean 'email'?")
    assert len(exc.problems) == 1
    assert_cli_rejects(path, tmp_path, "directory.memory.principals[1].emial")


def test_unknown_key_in_directory_table(tmp_path: Path) -> None:
    """Keys of `[directory."x"]` are those of its type; others are unknown."""
    text = config_text().replace('type = "memory"\n', 'type = "memory"\nprincipal = []\n')
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "directory.memory.principal", "did you mean 'principals'?")


def test_unknown_directory_type(tmp_path: Path) -> None:
    """`type` must be one an active plugin provides."""
    text = config_text().replace('type = "memory"', 'type = "nis"')
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "directory.memory.type", "'nis'", "no active plugin provides it")


# -- types and limits (RFC 8620 §2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "extra", "key", "fragment"),
    [
        ("", '[jmap.protocol.request]\nmax-calls = "16"\n', "jmap.protocol.request.max-calls",
         "expected an integer, got a string"),
        ("", "[jmap.protocol.get]\nmax-objects = 1.5\n", "jmap.protocol.get.max-objects",
         "expected an integer, got a number"),
        ("", "[jmap.protocol.set]\nmax-objects = true\n", "jmap.protocol.set.max-objects",
         "expected an integer, got a boolean"),
        ("", "[jmap.http]\nheaders = 5\n", "jmap.http.headers", "expected a list, got an integer"),
        ("", '[jmap.session]\ncore-primary-account = "yes"\n',
         "jmap.session.core-primary-account", "expected true or false"),
        ("", "[authentication]\nrealm = 5\n", "authentication.realm", "expected a string"),
        ("", '[authentication]\nfailure-window = "soon"\n', "authentication.failure-window",
         "is not a duration"),
        ('graceful-timeout = "10x"', "", "server.listener.jmap.graceful-timeout",
         "is not a duration"),
        ("protocol = 1", "", "server.listener.jmap.protocol", "expected a string"),
        ("", "[jmap]\nprotocol = 3\n", "jmap.protocol", "expected a table, got an integer"),
    ],
)
def test_wrong_types(tmp_path: Path, listener: str, extra: str, key: str, fragment: str) -> None:
    """Issue: wrong types (string where int, int where list, ...) name the key."""
    exc = load_error(write(tmp_path, config_text(listener=listener, extra=extra)))
    assert_problem(exc, key, fragment)


def test_int_where_list_for_bind(tmp_path: Path) -> None:
    """Issue: an integer where the list of binds is expected."""
    path = write(tmp_path, config_text(bind="8080"))
    exc = load_error(path)
    assert_problem(exc, "server.listener.jmap.bind", "expected a list, got an integer")
    assert_cli_rejects(path, tmp_path, "server.listener.jmap.bind")


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ("[jmap.protocol.request]\nmax-calls = 0\n", "jmap.protocol.request.max-calls",
         "must be at least 1, got 0"),
        ("[jmap.protocol.request]\nmax-size = 100\n", "jmap.protocol.request.max-size",
         "must be at least 1024, got 100"),
        ("[jmap.protocol.request]\nmax-json-depth = 2\n", "jmap.protocol.request.max-json-depth",
         "must be at least 8"),
        ("[jmap.protocol.upload]\nmax-concurrent = 0\n", "jmap.protocol.upload.max-concurrent",
         "must be at least 1"),
        ("[jmap.protocol.get]\nmax-objects = -5\n", "jmap.protocol.get.max-objects",
         "must be at least 1, got -5"),
        ("[authentication]\nmax-failures = 0\n", "authentication.max-failures",
         "must be at least 1"),
    ],
)
def test_limits_below_minimum(tmp_path: Path, extra: str, key: str, fragment: str) -> None:
    """Issue: limits below their minimum (`max-calls = 0`) are errors; RFC 8620 §2."""
    path = write(tmp_path, config_text(extra=extra))
    exc = load_error(path)
    assert_problem(exc, key, fragment)
    assert len(exc.problems) == 1


def test_limits_reach_the_session_object(tmp_path: Path) -> None:
    """RFC 8620 §2: configured limits are what the core capability advertises."""
    extra = (
        "[jmap.protocol.request]\nmax-calls = 3\nmax-size = 2048\nmax-concurrent = 2\n"
        "[jmap.protocol.get]\nmax-objects = 7\n"
        "[jmap.protocol.upload]\nmax-size = 4096\n"
    )
    host = load_host(write(tmp_path, config_text(extra=extra)))
    session = host.limits.session_object()
    assert session["maxCallsInRequest"] == 3
    assert session["maxSizeRequest"] == 2048
    assert session["maxConcurrentRequests"] == 2
    assert session["maxObjectsInGet"] == 7
    assert session["maxObjectsInSet"] == 500  # default
    assert session["maxSizeUpload"] == 4096


# -- secrets -------------------------------------------------------------------------------


def secret_principal(secret: str) -> str:
    return (
        '[[directory."memory".principals]]\nname = "alice"\n'
        f'secret = "{secret}"\nemail = ["alice@example.org"]\n'
    )


async def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue: `secret = "%{env:NAME}%"` reads the environment; log in with it over HTTP."""
    monkeypatch.setenv("JMAP_TEST_ALICE_SECRET", "from-the-environment")
    text = config_text(principals=secret_principal("%{env:JMAP_TEST_ALICE_SECRET}%"))
    path = write(tmp_path, text)
    async with running_server(path) as server:
        async with server.client() as client:
            ok = await client.get(
                "/.well-known/jmap", headers=basic("alice", "from-the-environment")
            )
            literal = await client.get(
                "/.well-known/jmap", headers=basic("alice", "%{env:JMAP_TEST_ALICE_SECRET}%")
            )
    assert ok.status_code == 200, ok.text
    assert literal.status_code == 401


async def test_secret_from_file_relative_to_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue: `secret = "%{file:secret.txt}%"` is read relative to the config file (not the
    working directory), trailing newline dropped; log in with it over HTTP."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "secret.txt").write_text("from-a-file\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the secret is not in the working directory
    path = write(etc, config_text(principals=secret_principal("%{file:secret.txt}%")))
    result = check_config("-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    async with running_server(path) as server:
        async with server.client("alice", "from-a-file") as client:
            ok = await client.get("/.well-known/jmap")
        async with server.client("alice", "from-a-file\n") as client:
            newline = await client.get("/.well-known/jmap")
    assert ok.status_code == 200, ok.text
    assert ok.json()["username"] == "alice"
    assert newline.status_code == 401


def test_secret_env_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue: a missing environment variable is an error naming the key and the variable."""
    monkeypatch.delenv("JMAP_TEST_UNSET_SECRET", raising=False)
    text = config_text(principals=secret_principal("%{env:JMAP_TEST_UNSET_SECRET}%"))
    path = write(tmp_path, text)
    exc = load_error(path)
    assert_problem(
        exc,
        "directory.memory.principals[0].secret",
        "environment variable 'JMAP_TEST_UNSET_SECRET' is not set",
    )
    problems = assert_cli_rejects(path, tmp_path, "directory.memory.principals[0].secret")
    assert any("JMAP_TEST_UNSET_SECRET" in line for line in problems)


def test_secret_file_missing(tmp_path: Path) -> None:
    """Issue: a missing secret file is an error naming the key and the resolved path."""
    path = write(tmp_path, config_text(principals=secret_principal("%{file:nope/secret.txt}%")))
    exc = load_error(path)
    assert_problem(
        exc,
        "directory.memory.principals[0].secret",
        "cannot read secret file",
        str(tmp_path / "nope" / "secret.txt"),
    )
    assert_cli_rejects(path, tmp_path, "directory.memory.principals[0].secret")


# -- plugins -----------------------------------------------------------------------------


def test_core_cannot_be_disabled(tmp_path: Path) -> None:
    """Issue: `[plugins] disabled = ["core"]` is an error: core is essential."""
    path = write(tmp_path, config_text(extra='[plugins]\ndisabled = ["core"]\n'))
    exc = load_error(path)
    assert_problem(exc, "plugins.disabled[0]", "'core' cannot be disabled")
    assert_cli_rejects(path, tmp_path, "plugins.disabled[0]")


def test_enabled_unknown_plugin(tmp_path: Path) -> None:
    """Issue: `enabled = ["nosuch"]` lists what is installed; a near miss gets a hint."""
    path = write(tmp_path, config_text(extra='[plugins]\nenabled = ["nosuch", "memroy"]\n'))
    exc = load_error(path)
    assert_problem(exc, "plugins.enabled[0]", "no installed plugin is called 'nosuch'",
                   "installed: calendars, contacts, core, ")
    assert_problem(exc, "plugins.enabled[1]", "'memroy'", "did you mean 'memory'?")
    assert len(exc.problems) == 2
    assert_cli_rejects(path, tmp_path, "plugins.enabled[0]", "plugins.enabled[1]")


def test_disabled_unknown_plugin(tmp_path: Path) -> None:
    """A typo in `disabled` is an error too, not silently ignored."""
    exc = load_error(write(tmp_path, config_text(extra='[plugins]\ndisabled = ["exmaple"]\n')))
    assert_problem(exc, "plugins.disabled[0]", "did you mean 'example'?")


def test_configuring_a_disabled_plugin(tmp_path: Path) -> None:
    """Issue: `[jmap.http.cors]` while cors is disabled: it belongs to an inactive plugin."""
    extra = '[plugins]\ndisabled = ["cors"]\n\n[jmap.http.cors]\nallowed-origins = ["*"]\n'
    path = write(tmp_path, config_text(extra=extra))
    exc = load_error(path)
    assert_problem(exc, "jmap.http.cors", "belongs to plugin 'cors'", "not active")
    assert len(exc.problems) == 1
    assert_cli_rejects(path, tmp_path, "jmap.http.cors")


def test_enabled_keeps_core_active(tmp_path: Path) -> None:
    """Issue: `enabled = ["memory"]` activates memory and core, nothing else."""
    host = load_host(write(tmp_path, config_text(extra='[plugins]\nenabled = ["memory"]\n')))
    assert [p.name for p in host.active_plugins] == ["core", "memory"]
    assert {p.name for p in host.inactive_plugins} >= {"cors", "headers", "example"}
    assert "urn:ietf:params:jmap:core" in host.capabilities


def test_key_of_plugin_not_enabled(tmp_path: Path) -> None:
    """With `enabled = ["memory"]`, `[jmap.http] headers` belongs to inactive 'headers'."""
    extra = '[plugins]\nenabled = ["memory"]\n\n[jmap.http]\nheaders = ["X-A: b"]\n'
    exc = load_error(write(tmp_path, config_text(extra=extra)))
    assert_problem(exc, "jmap.http.headers", "belongs to plugin 'headers'", "not active")


def test_disabled_plugin_section(tmp_path: Path) -> None:
    """`[plugins.example]` while example is disabled names the inactive plugin."""
    extra = '[plugins]\ndisabled = ["example"]\n\n[plugins.example]\ngreeting = "Hi"\n'
    exc = load_error(write(tmp_path, config_text(extra=extra)))
    assert_problem(exc, "plugins.example.greeting", "belongs to plugin 'example'")


def test_default_activates_every_installed_plugin(tmp_path: Path) -> None:
    """Without `[plugins]`, every installed plugin is active, core first, but the opt-in
    one (example), which `[plugins] opt-in` activates."""
    host = load_host(write(tmp_path, config_text()))
    names = [p.name for p in host.active_plugins]
    assert names[0] == "core"
    assert {"core", "memory", "cors", "headers", "contacts", "calendars"} <= set(names)
    assert [p.name for p in host.inactive_plugins] == ["example"]
    assert all(p.opt_in for p in host.inactive_plugins)
    opted = load_host(write(tmp_path, config_text(
        extra='[plugins]\nopt-in = ["example"]\n')))  # fmt: skip
    assert "example" in {p.name for p in opted.active_plugins}
    assert not opted.inactive_plugins
    exc = load_error(write(tmp_path, config_text(extra='[plugins]\nopt-in = ["exampel"]\n')))
    assert_problem(exc, "plugins.opt-in[0]", "did you mean 'example'")


def test_plugins_wrong_type(tmp_path: Path) -> None:
    """`[plugins] enabled` must be a list of strings."""
    exc = load_error(write(tmp_path, config_text(extra="[plugins]\nenabled = 3\n")))
    assert_problem(exc, "plugins.enabled", "expected a list")


# -- the memory directory ------------------------------------------------------------------


def principal(name: str, **keys: str) -> str:
    lines = ['[[directory."memory".principals]]', f'name = "{name}"']
    lines += [f"{k.rstrip('_').replace('_', '-')} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n\n"


@pytest.mark.parametrize(
    ("principals", "key", "fragments"),
    [
        (
            principal("alice", secret='"a"') + principal("alice", secret='"b"'),
            "directory.memory.principals[1].name",
            ("'alice' is already principals[0]",),
        ),
        (
            principal("alice", secret='"a"', member_of='["sales"]'),
            "directory.memory.principals[0].member-of[0]",
            ("no group principal called 'sales'",),
        ),
        (
            principal("bob", secret='"b"') + principal("alice", secret='"a"', member_of='["bob"]'),
            "directory.memory.principals[1].member-of[0]",
            ("no group principal called 'bob'",),  # bob is an individual, not a group
        ),
        (
            principal("alice", email='["alice@example.org"]'),
            "directory.memory.principals[0].secret",
            ("an individual needs a secret",),
        ),
        (
            principal("alice", secret='"a"', email='["shared@example.org"]')
            + principal("bob", secret='"b"', email='["bob@example.org", "Shared@Example.org"]'),
            "directory.memory.principals[1].email[1]",
            ("'Shared@Example.org' also belongs to 'alice'",),
        ),
        (
            principal("alice", secret='"a"', class_='"admin"'),
            "directory.memory.principals[0].class",
            ("'admin'", "'individual', 'group'"),
        ),
        (
            '[[directory."memory".principals]]\nsecret = "a"\n',
            "directory.memory.principals[0].name",
            ("is required",),
        ),
        (
            principal("alice", secret='"a"', quota="-1"),
            "directory.memory.principals[0].quota",
            ("must be at least 0",),
        ),
    ],
)
def test_memory_directory_problems(
    tmp_path: Path, principals: str, key: str, fragments: tuple[str, ...]
) -> None:
    """Issue: memory-directory mistakes name `directory.memory.principals[N]...`."""
    exc = load_error(write(tmp_path, config_text(principals=principals)))
    assert_problem(exc, key, *fragments)
    assert len(exc.problems) == 1, exc.problems


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("", "must not be empty"),
        ("%{env:JMAP_TEST_UNSET_SECRET}%", "environment variable"),
        ("%{file:no-such-secret.txt}%", "cannot read secret file"),
    ],
)
def test_bad_secret_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str, fragment: str
) -> None:
    """Issue ("every problem, once"): a secret that fails its own check is one problem, not
    also "an individual needs a secret".  (Host bug: currently reported twice.)"""
    monkeypatch.delenv("JMAP_TEST_UNSET_SECRET", raising=False)
    exc = load_error(write(tmp_path, config_text(principals=secret_principal(secret))))
    assert_problem(exc, "directory.memory.principals[0].secret", fragment)
    assert len(exc.problems) == 1, exc.problems


def test_memory_directory_problems_check_config(tmp_path: Path) -> None:
    """Issue: the memory-directory problems reach `check-config` stderr, all of them."""
    principals = (
        principal("alice", secret='"a"', email='["a@x.org"]', member_of='["ghosts"]')
        + principal("alice", secret='"b"')
        + principal("carol", email='["A@X.org"]')
    )
    path = write(tmp_path, config_text(principals=principals))
    problems = assert_cli_rejects(
        path,
        tmp_path,
        "directory.memory.principals[0].member-of[0]",
        "directory.memory.principals[1].name",
        "directory.memory.principals[2].secret",
        "directory.memory.principals[2].email[0]",
    )
    assert len(problems) == 4


def test_group_without_secret_is_fine(tmp_path: Path) -> None:
    """A group needs no secret; an individual may be member of it."""
    principals = principal("alice", secret='"a"', member_of='["sales"]') + principal(
        "sales", class_='"group"'
    )
    host = load_host(write(tmp_path, config_text(principals=principals)))
    assert [p["class"] for p in host.config.data["directory"]["memory"]["principals"]] == [
        "individual",
        "group",
    ]


# -- storage.directory -------------------------------------------------------------------


def test_storage_directory_names_missing_directory(tmp_path: Path) -> None:
    """Issue: `storage.directory` naming a directory that does not exist, with a hint."""
    text = config_text().replace('directory = "memory"\npath', 'directory = "memroy"\npath')
    path = write(tmp_path, text)
    exc = load_error(path)
    assert_problem(exc, "storage.directory", "'memroy'", "did you mean 'memory'?")
    assert_cli_rejects(path, tmp_path, "storage.directory")


def test_two_directories_need_storage_directory(tmp_path: Path) -> None:
    """Issue: two directories and no `storage.directory` is an error."""
    text = config_text(extra='[directory."other"]\ntype = "memory"\n').replace(
        'directory = "memory"\npath', "path"
    )
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "storage.directory", "several directories")


def test_two_directories_with_storage_directory(tmp_path: Path) -> None:
    """Two directories and `storage.directory` naming one: that one authenticates."""
    text = config_text(extra='[directory."other"]\ntype = "memory"\n').replace(
        'directory = "memory"\npath', 'directory = "other"\npath'
    )
    host = load_host(write(tmp_path, text))
    assert set(host.directories) == {"memory", "other"}
    assert host.directory is host.directories["other"]


def test_single_directory_is_the_default(tmp_path: Path) -> None:
    """Without `storage.directory`, the only directory is used."""
    text = config_text().replace('directory = "memory"\npath', "path")
    host = load_host(write(tmp_path, text))
    assert host.config.data["storage"]["directory"] == "memory"
    assert host.directory is host.directories["memory"]


def test_no_directory_is_an_error(tmp_path: Path) -> None:
    """An empty `[directory]` leaves nobody to authenticate users: a config error at
    `directory`, not a KeyError later.  (Host bug: currently accepted.)"""
    text = (
        '[server.listener."jmap"]\nbind = ["127.0.0.1:0"]\n\n'
        '[storage]\npath = "data"\n\n[directory]\n'
    )
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "directory")


def test_directory_without_type(tmp_path: Path) -> None:
    """`[directory."x"]` needs a type."""
    text = config_text().replace('type = "memory"\n', "")
    exc = load_error(write(tmp_path, text))
    assert_problem(exc, "directory.memory", "needs a type", "'memory'")


# -- the file itself ---------------------------------------------------------------------


def test_toml_syntax_error(tmp_path: Path) -> None:
    """Issue: a TOML syntax error names the file; `check-config` exits 2."""
    path = write(tmp_path, '[server.listener."jmap"]\nbind = ["127.0.0.1:0"\n')
    exc = load_error(path)
    assert len(exc.problems) == 1
    assert_problem(exc, "", "not valid TOML")
    assert str(exc).startswith(f"{path}: not valid TOML: ")
    assert_cli_rejects(path, tmp_path)


def test_duplicate_key_is_a_toml_error(tmp_path: Path) -> None:
    """A key given twice is invalid TOML: a config error naming the file, not a traceback.
    (Host bug: tomlkit raises KeyAlreadyPresent, which is not a ParseError.)"""
    path = write(tmp_path, config_text(listener='bind = ["127.0.0.1:1"]'))
    exc = load_error(path)
    assert_problem(exc, "", "not valid TOML", "bind")
    assert_cli_rejects(path, tmp_path)  # (host bug: currently a traceback)


def test_missing_file(tmp_path: Path) -> None:
    """Issue: a missing file is an error naming it; `check-config` exits 2."""
    path = tmp_path / "nowhere.toml"
    exc = load_error(path)
    assert_problem(exc, "", "file not found")
    assert_cli_rejects(path, tmp_path)


def test_undecodable_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is an error naming it."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'# caf\xe9\n[server.listener."jmap"]\n')
    exc = load_error(path)
    assert_problem(exc, "", "cannot read")


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    """Issue: every problem is reported in one pass (counted), each naming file and key."""
    text = config_text(
        bind='["127.0.0.1:70000", "::1:8080"]',
        listener='url = "ftp://mail.example.org"\nprotocol = "imap"\nbnid = []',
        principals=(
            principal("alice", secret='"a"', member_of='["ghosts"]')
            + principal("alice", secret='"b"')
        ),
        extra=(
            "[jmap.protocol.request]\nmax-calls = 0\nmax-size = \"big\"\nmax-call = 3\n\n"
            "[authentication]\nrealm = \"\"\n\n[storge]\n"
        ),
    )
    path = write(tmp_path, text)
    expected = [
        "server.listener.jmap.bind[0]",
        "server.listener.jmap.bind[1]",
        "server.listener.jmap.url",
        "server.listener.jmap.protocol",
        "server.listener.jmap.bnid",
        "directory.memory.principals[0].member-of[0]",
        "directory.memory.principals[1].name",
        "jmap.protocol.request.max-calls",
        "jmap.protocol.request.max-size",
        "jmap.protocol.request.max-call",
        "authentication.realm",
        "storge",
    ]
    exc = load_error(path)
    assert sorted(p.key for p in exc.problems) == sorted(expected)
    assert len(str(exc).splitlines()) == len(expected)
    problems = assert_cli_rejects(path, tmp_path, *expected)
    assert len(problems) == len(expected)


def test_config_error_api() -> None:
    """`ConfigError` is exported, lists ConfigProblem(key, message) and renders lines."""
    from jmap_host.config_schema import ConfigProblem

    exc = jmap_host.ConfigError("f.toml", [ConfigProblem("a.b", "bad"), ConfigProblem("", "x")])
    assert str(exc) == "f.toml: a.b: bad\nf.toml: x"
    assert exc.problems[0].key == "a.b"
    assert jmap_host.load_host is load_host


def test_relative_config_path_in_messages(tmp_path: Path) -> None:
    """`check-config -c relative.toml` names the file as the operator wrote it."""
    write(tmp_path, config_text(bind='["nohost"]'), name="relative.toml")
    result = check_config("-c", "relative.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("relative.toml: server.listener.jmap.bind[0]: ")
