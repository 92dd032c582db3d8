"""sample-config/ holds configurations that run as they are (ARCHITECTURE.md, docs)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

import jmap_host

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "sample-config").glob("*.toml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_config_is_valid(path):
    host = jmap_host.load_host(path)
    assert host.config.data["server"]["listener"]


def test_default_sample_is_the_embedded_default():
    embedded = resources.files("jmap_host").joinpath("default-config.toml").read_text("utf-8")
    assert (SAMPLES[0].parent / "default.toml").read_text("utf-8") == embedded
