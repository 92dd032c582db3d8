"""The host's tests use the example plugin's Note type as their sample data type.  The
example plugin is opt-in (a deployment never advertises it unless asked), so the test
configuration of these tests opts in."""

from __future__ import annotations

from pathlib import Path

import pytest

from jmap_host.testing import write_config

EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'


@pytest.fixture
def jmap_config(tmp_path: Path) -> Path:
    """jmap_host.testing's configuration with the example plugin active."""
    return write_config(tmp_path, EXAMPLE_ON)
