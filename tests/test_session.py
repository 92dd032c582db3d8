"""The Session resource's state (RFC 8620 §2): "If the value of any other property on the
Session object changes, this string will change", and API responses carry it (§3.4)."""

from __future__ import annotations

from jmap_host.testing import BASE_CONFIG as TESTING_BASE
from jmap_host.testing import api, running_server, write_config

# A fixed public URL, so that servers on different ports serve the same session URLs.
BASE_CONFIG = TESTING_BASE.replace(
    'protocol = "jmap"\n', 'protocol = "jmap"\nurl = "https://mail.example.org"\n', 1
)


async def session_and_api_state(config):
    async with running_server(config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        response = await api(client, [["Core/echo", {}, "c"]])
        assert response["sessionState"] == session["state"]
        return session


async def test_state_changes_when_the_session_changes(tmp_path):
    (tmp_path / "a").mkdir()
    first = await session_and_api_state(write_config(tmp_path / "a", base=BASE_CONFIG))
    # alice leaves the sales group: her accounts change, so must the state.
    (tmp_path / "b").mkdir()
    base = BASE_CONFIG.replace('member-of = ["sales"]\n', "")
    second = await session_and_api_state(write_config(tmp_path / "b", base=base))
    assert len(second["accounts"]) == len(first["accounts"]) - 1
    assert second["state"] != first["state"]
    # A changed limit changes the capabilities, so the state too.
    (tmp_path / "c").mkdir()
    third = await session_and_api_state(
        write_config(tmp_path / "c", "[jmap.protocol.request]\nmax-calls = 20\n", base=BASE_CONFIG)
    )
    assert third["accounts"].keys() == first["accounts"].keys()  # (their core entries differ)
    assert third["state"] != first["state"]
    # The same session gives the same state (another server, same configuration).
    (tmp_path / "d").mkdir()
    again = await session_and_api_state(write_config(tmp_path / "d", base=BASE_CONFIG))
    assert again["state"] == first["state"]
