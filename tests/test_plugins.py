"""The plugin host: discovery by entry point, the boundary, hooks and their docs
(ARCHITECTURE.md "The boundary that keeps it a plugin host"; STYLE.md, datasette)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trio

import jmap_host
from jmap_host import hookspecs
from jmap_host.plugins import discover, hook_names
from jmap_host.testing import running_server, write_config

ROOT = Path(__file__).resolve().parent.parent
JMAP_HOST = [sys.executable, "-m", "jmap_host"]


def test_host_never_imports_a_plugin():
    """Rule 1: jmap_host never imports a plugin package (jmap_host_*), at any depth."""
    offenders = []
    for path in (ROOT / "jmap_host").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("jmap_host_")]
    assert offenders == []


def test_in_repo_plugins_are_distributions_found_by_entry_point():
    """Rule 2: each plugins/<name>/ is its own distribution with an entry point in group
    jmap_host, and discovery finds it exactly as a third-party plugin."""
    found = {p.name: p for p in discover()}
    for directory in sorted((ROOT / "plugins").iterdir()):
        if not (directory / "pyproject.toml").exists():
            continue
        project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
        assert project["name"] == f"jmap-host-{directory.name}"
        assert project["entry-points"]["jmap_host"] == {
            directory.name: f"jmap_host_{directory.name}"
        }
        assert found[directory.name].distribution == project["name"]
        assert found[directory.name].version == project["version"]
    assert next(iter(found)) == "core"  # essential plugins' hooks run first


def test_every_hook_is_documented_in_its_spec_and_in_the_docs():
    """Each hookspec has a full docstring and a section in docs/plugin-hooks.md."""
    docs = (ROOT / "docs" / "plugin-hooks.md").read_text()
    sections = set(re.findall(r"^## (\w+)\s*$", docs, flags=re.M))
    names = hook_names()
    assert {
        "register_capabilities",
        "register_directories",
        "asgi_wrapper",
        "register_routes",
        "register_commands",
        "startup",
        "shutdown",
        "register_protocols",
        "config_keys",
    } <= set(names)
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.split()) >= 30, f"hook {name} needs a full docstring"
        assert name in sections, f"docs/plugin-hooks.md has no '## {name}' section"
    assert sections <= set(names), f"docs describe hooks that do not exist: {sections - set(names)}"


def test_plugins_command_lists_installed_and_active_plugins(tmp_path):
    """`jmap-host plugins` prints installed plugins, active or not, versions and hooks."""
    config = write_config(tmp_path, '[plugins]\ndisabled = ["example"]\n')
    out = subprocess.run(
        [*JMAP_HOST, "plugins", "-c", str(config)], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines if line and not line.startswith(" ")}
    assert set(rows) >= {"core", "memory", "headers", "cors", "example"}
    assert "inactive" in rows["example"]
    assert re.search(r"active\s+jmap-host-core \d+\.\d+", rows["core"])
    hooks_of_core = lines[lines.index(rows["core"]) + 1]
    assert "register_capabilities" in hooks_of_core and "register_protocols" in hooks_of_core


def test_active_plugins_follow_the_config(tmp_path):
    """Operators choose active plugins; core stays active; an inactive plugin's capability
    and routes are absent."""
    config = write_config(tmp_path, '[plugins]\nenabled = ["memory"]\n')
    host = jmap_host.load_host(config)
    assert [p.name for p in host.active_plugins] == ["core", "memory"]
    assert "https://jmap-host.org/ext/example" not in host.capabilities
    assert host.routes == []


class Recorder:
    """A throw-away plugin exercising the lifecycle, route and middleware hooks."""

    def __init__(self):
        self.events: list[str] = []

    @jmap_host.hookimpl
    def startup(self, host):
        async def go():
            await trio.sleep(0)
            self.events.append("startup")

        return go()

    @jmap_host.hookimpl
    def shutdown(self, host):
        self.events.append("shutdown")

    @jmap_host.hookimpl
    def register_routes(self, host):
        async def hello(request):
            return jmap_host.json_response({"user": request.principal.name})

        async def public(request):
            return jmap_host.json_response({"public": True})

        return [
            jmap_host.Route("/recorder/{thing}", hello, ("GET",)),
            jmap_host.Route("/recorder-public", public, ("GET",), auth=False),
        ]

    @jmap_host.hookimpl
    def asgi_wrapper(self, host):
        def wrap(app):
            async def wrapped(scope, receive, send):
                async def tag(message):
                    if message["type"] == "http.response.start":
                        message = {
                            **message,
                            "headers": [*message["headers"], (b"x-recorder", b"1")],
                        }
                    await send(message)

                await app(scope, receive, tag if scope["type"] == "http" else send)

            return wrapped

        return wrap


async def test_lifecycle_routes_and_middleware_hooks(tmp_path):
    recorder = Recorder()
    config = write_config(tmp_path)
    async with running_server(config, extra_plugins=[("recorder", recorder)]) as server:
        assert recorder.events == ["startup"]
        async with server.client() as anonymous:
            response = await anonymous.get("/recorder/x")
            assert response.status_code == 401  # routes authenticate by default
            assert response.headers["x-recorder"] == "1"
            response = await anonymous.get("/recorder-public")
            assert response.json() == {"public": True}
        async with server.client("alice") as client:
            assert (await client.get("/recorder/x")).json() == {"user": "alice"}
    assert recorder.events == ["startup", "shutdown"]


def test_clashing_registrations_are_startup_errors(tmp_path):
    """Duplicate URNs, method names and routes name both plugins (datasette's rule)."""

    class DuplicateEcho:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def echo(call):
                return {}

            return [
                jmap_host.Capability(
                    urn="https://x.example/dup", methods=[jmap_host.Method("Core/echo", echo)]
                )
            ]

    class DuplicateUrn:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            return [jmap_host.Capability(urn=jmap_host.CORE)]

    class DuplicateRoute:
        @jmap_host.hookimpl
        def register_routes(self, host):
            async def nothing(request):
                return jmap_host.Response(204)

            return [jmap_host.Route("/jmap/api", nothing)]

    config = write_config(tmp_path)
    for plugin, words in [
        (DuplicateEcho(), "method Core/echo is registered by both 'core' and 'dup'"),
        (DuplicateUrn(), "registered by both 'core' and 'dup'"),
        (DuplicateRoute(), "route /jmap/api from 'dup' clashes with the host"),
    ]:
        with pytest.raises(jmap_host.StartupError, match=re.escape(words)):
            jmap_host.load_host(config, extra_plugins=[("dup", plugin)])


def test_plugin_commands_join_the_cli(tmp_path):
    """register_commands: the example plugin adds `jmap-host example greet`."""
    config = write_config(
        tmp_path, '[plugins]\nopt-in = ["example"]\n[plugins.example]\ngreeting = "Howdy"\n'
    )
    out = subprocess.run(
        [*JMAP_HOST, "example", "greet", "World", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "Howdy, World!"


def test_in_repo_plugins_use_only_the_public_api():
    """Plugins reach the host only through what jmap_host/__init__.py exports (rule 1's
    other half), so the host can reorganise its modules without breaking them.  A
    plugin's test helpers (its ``testing.py``) may also use the host's, jmap_host.testing:
    that is the host's public API for tests (plugin guide, "Testing a plugin")."""
    offenders = []
    for path in (ROOT / "plugins").rglob("*.py"):
        if "tests" in path.parts or ".egg-info" in str(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if path.name == "testing.py" and isinstance(node, ast.ImportFrom) and (
                node.module == "jmap_host.testing"
            ):
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jmap_host."):
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "jmap_host":
                missing = [a.name for a in node.names if a.name not in jmap_host.__all__]
                offenders += [f"{path.relative_to(ROOT)}: {name} is not public" for name in missing]
    assert offenders == []
