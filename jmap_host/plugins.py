"""Finding installed plugins and choosing the active ones.

Every plugin, the in-repo ones included, is found through the ``jmap_host`` entry-point
group: the host has no list of its own.  ``core`` is essential (as pytest's essential
plugins are): it cannot be disabled.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .config_schema import ConfigError, ConfigProblem, _did_you_mean

ENTRY_POINT_GROUP = "jmap_host"
ESSENTIAL = ("core",)


@dataclass
class InstalledPlugin:
    """A plugin that could be activated: its name, the object holding its hooks, where it
    came from and its version."""

    name: str
    obj: Any
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    # An opt-in plugin (its object says JMAP_HOST_OPT_IN = True) is active only when the
    # configuration names it; every other installed plugin is active unless it says not.
    opt_in: bool = False


def discover() -> list[InstalledPlugin]:
    """Every plugin installed in this Python environment, by entry point, sorted by name
    with the essential ones first (so their hooks run first)."""
    found: dict[str, InstalledPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            raise RuntimeError(
                f"two installed distributions register the jmap-host plugin {ep.name!r}: "
                f"{found[ep.name].distribution} and {ep.dist.name if ep.dist else '?'}"
            )
        obj = ep.load()
        found[ep.name] = InstalledPlugin(
            name=ep.name,
            obj=obj,
            distribution=ep.dist.name if ep.dist else "",
            version=ep.dist.version if ep.dist else "",
            hooks=implemented_hooks(obj),
            opt_in=bool(getattr(obj, "JMAP_HOST_OPT_IN", False)),
        )
    return sort_plugins(found.values())


def sort_plugins(plugins: Any) -> list[InstalledPlugin]:
    return sorted(plugins, key=lambda p: (p.name not in ESSENTIAL, p.name))


def implemented_hooks(obj: Any) -> list[str]:
    names = [
        n for n in dir(hookspecs) if isinstance(getattr(hookspecs, n), type(hookspecs.startup))
    ]
    specs = {n for n in names if hasattr(getattr(hookspecs, n), "jmap_host_spec")}
    if isinstance(obj, ModuleType):
        members = vars(obj)
    else:
        members = {n: getattr(obj, n, None) for n in dir(obj)}
    return sorted(n for n in specs if n in members and hasattr(members[n], "jmap_host_impl"))


def hook_names() -> list[str]:
    """The names of every hook in :mod:`jmap_host.hookspecs`."""
    return sorted(
        n for n, v in vars(hookspecs).items() if callable(v) and hasattr(v, "jmap_host_spec")
    )


def choose_active(
    installed: list[InstalledPlugin], plugins_config: dict[str, Any], file: str
) -> tuple[list[InstalledPlugin], list[InstalledPlugin]]:
    """Split installed plugins into (active, inactive) as ``[plugins]`` says."""
    by_name = {p.name: p for p in installed}
    problems: list[ConfigProblem] = []
    enabled = plugins_config.get("enabled")
    opt_in = plugins_config.get("opt-in") or []
    disabled = plugins_config.get("disabled") or []
    for key, names in (
        ("plugins.enabled", enabled or []),
        ("plugins.opt-in", opt_in),
        ("plugins.disabled", disabled),
    ):
        for i, name in enumerate(names):
            if name not in by_name:
                installed_names = ", ".join(sorted(by_name)) or "none"
                problems.append(
                    ConfigProblem(
                        f"{key}[{i}]",
                        f"no installed plugin is called {name!r}{_did_you_mean(name, by_name)}"
                        f" (installed: {installed_names})",
                    )
                )
    for i, name in enumerate(disabled):
        if name in ESSENTIAL:
            problems.append(ConfigProblem(f"plugins.disabled[{i}]", f"{name!r} cannot be disabled"))
    for name in ESSENTIAL:
        if name not in by_name:
            problems.append(
                ConfigProblem(
                    "",
                    f"the essential plugin {name!r} is not installed "
                    f"(pip install jmap-host-{name})",
                )
            )
    if problems:
        raise ConfigError(file, problems)
    if enabled is None:
        wanted = {p.name for p in installed if not p.opt_in}
    else:
        wanted = set(enabled) | set(ESSENTIAL)
    wanted = (wanted | set(opt_in)) - set(disabled)
    active = [p for p in installed if p.name in wanted]
    inactive = [p for p in installed if p.name not in wanted]
    return active, inactive


def make_manager(active: list[InstalledPlugin]) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("jmap_host")
    pm.add_hookspecs(hookspecs)
    # pluggy calls the last registered implementation first; register in reverse so hooks
    # run in plugin order (core first) and results come back in that order.
    for plugin in reversed(active):
        pm.register(plugin.obj, name=plugin.name)
    return pm


class StartupError(Exception):
    """Plugins do not fit together (a URN, method or route registered twice...), or one
    failed while the host started."""


def call_for_each(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call ``hook`` on every active plugin, in plugin order, keeping who returned what.

    An exception from a hook becomes a :class:`StartupError` naming the plugin and hook."""
    results = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        wanted = {k: v for k, v in kwargs.items() if k in impl.argnames}
        try:
            value = impl.function(**wanted)
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"plugin {impl.plugin_name!r} failed in {hook}: {exc}") from exc
        if value is not None:
            results.append((impl.plugin_name, value))
    return results


def collect(pm: pluggy.PluginManager, hook: str, name_of: Any, what: str, **kwargs: Any) -> dict:
    """Merge the lists a registration hook returns into {name: item}, tagging each item
    with its plugin; a name registered twice is a :class:`StartupError` naming both."""
    out: dict[str, Any] = {}
    for plugin, items in call_for_each(pm, hook, **kwargs):
        for item in items:
            item.plugin = plugin
            name = name_of(item)
            if name in out:
                raise StartupError(
                    f"{what} {name!r} is registered by both {out[name].plugin!r} and {plugin!r}"
                )
            out[name] = item
    return out
