"""Fixtures shared by the calendars tests (helpers: jmap_host_calendars.testing)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jmap_host_calendars.testing import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A relay on 127.0.0.1 keeping what it is sent (the mail plugin's, for iMIP out)."""
    server = Sink()
    yield server
    server.server.shutdown()
    server.server.server_close()
