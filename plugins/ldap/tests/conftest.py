"""A real OpenLDAP ``slapd`` on 127.0.0.1 with a throw-away database, for the LDAP tests.

Debian's ``slapd`` package (installed by ``bash dev.sh test``) provides the server, the
schemas under /etc/ldap/schema and the ``memberof`` and ``ppolicy`` overlays.  The database
(mdb) and the configuration live in a temporary directory; nothing touches /etc/ldap's own
configuration or any system service.  Without ``slapd`` the tests fail when ``CI`` is set
and are skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None)
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PW = "admin-secret"
SERVICE_DN = f"cn=jmap,ou=system,{BASE_DN}"
SERVICE_PW = "service-secret"

# mailAlias and diskQuota are not in the standard schemas (Stalwart's defaults name them);
# a private test OID arc defines them, with an auxiliary class that allows mail on groups.
TEST_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'mailAlias'
    DESC 'another address that delivers to this entry'
    EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'diskQuota'
    DESC 'storage quota in octets'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'jmapMailRecipient' SUP top AUXILIARY
    MAY ( mail $ mailAlias $ diskQuota ) )
"""

CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
include {tmp}/jmap-test.schema
pidfile {tmp}/slapd.pid
argsfile {tmp}/slapd.args
modulepath {modules}
moduleload back_mdb
moduleload memberof
moduleload ppolicy

database mdb
suffix "{base}"
rootdn "{admin}"
rootpw {admin_pw}
directory {tmp}/db
maxsize 16777216

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

overlay ppolicy

access to attrs=userPassword
    by dn.exact="{service}" read
    by anonymous auth
    by self write
    by * none
access to * by * read
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    """One slapd process on 127.0.0.1:``port``; ``stop()`` and ``start()`` keep the data."""

    base_dn = BASE_DN
    people = f"ou=people,{BASE_DN}"
    service_dn = SERVICE_DN
    service_pw = SERVICE_PW
    free_port = staticmethod(free_port)

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        (tmp / "db").mkdir(parents=True)
        (tmp / "jmap-test.schema").write_text(TEST_SCHEMA)
        self.conf = tmp / "slapd.conf"
        self.conf.write_text(
            CONFIG.format(
                schema=SCHEMA_DIR,
                tmp=tmp,
                modules=MODULE_DIR,
                base=BASE_DN,
                admin=ADMIN_DN,
                admin_pw=ADMIN_PW,
                service=SERVICE_DN,
            )
        )

    def start(self) -> None:
        assert self.proc is None
        log = open(self.tmp / "slapd.log", "ab")  # noqa: SIM115 - lives as long as slapd
        self.proc = subprocess.Popen(
            [SLAPD, "-h", f"{self.url}/", "-f", str(self.conf), "-d", "0"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                output = (self.tmp / "slapd.log").read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"slapd exited at start:\n{output}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("slapd did not answer within 15 s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        import ldap3

        try:
            server = ldap3.Server(self.url, connect_timeout=1, get_info=ldap3.NONE)
            conn = ldap3.Connection(server, ADMIN_DN, ADMIN_PW, receive_timeout=2)
            ok = conn.bind()
            conn.unbind()
            return bool(ok)
        except ldap3.core.exceptions.LDAPException:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test paused it
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def admin(self):
        import ldap3

        server = ldap3.Server(self.url, connect_timeout=2, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN_DN, ADMIN_PW, auto_bind=True, receive_timeout=5)

    def add(self, entries: list[tuple[str, dict]]) -> None:
        conn = self.admin()
        try:
            for dn, attributes in entries:
                attributes = dict(attributes)
                classes = attributes.pop("objectClass")
                if not conn.add(dn, classes, attributes):
                    raise RuntimeError(f"cannot add {dn}: {conn.result}")
        finally:
            conn.unbind()

    def modify(self, dn: str, changes: dict) -> None:
        conn = self.admin()
        try:
            if not conn.modify(dn, changes):
                raise RuntimeError(f"cannot modify {dn}: {conn.result}")
        finally:
            conn.unbind()


def _people() -> list[tuple[str, dict]]:
    from jmap_host import hash_password

    people = f"ou=people,{BASE_DN}"
    groups = f"ou=groups,{BASE_DN}"

    def user(uid: str, password: str, **extra) -> tuple[str, dict]:
        attrs = {
            "objectClass": ["inetOrgPerson", "jmapMailRecipient"],
            "uid": uid,
            "cn": uid.capitalize(),
            "sn": "Example",
            "userPassword": password,
            **extra,
        }
        return f"uid={uid},{people}", attrs

    return [
        (BASE_DN, {"objectClass": ["dcObject", "organization"], "dc": "example", "o": "Example"}),
        (f"ou=people,{BASE_DN}", {"objectClass": ["organizationalUnit"], "ou": "people"}),
        (f"ou=groups,{BASE_DN}", {"objectClass": ["organizationalUnit"], "ou": "groups"}),
        (f"ou=system,{BASE_DN}", {"objectClass": ["organizationalUnit"], "ou": "system"}),
        (
            SERVICE_DN,
            {
                "objectClass": ["organizationalRole", "simpleSecurityObject"],
                "cn": "jmap",
                "userPassword": SERVICE_PW,
            },
        ),
        # alice: an {SSHA} hash written by slappasswd's scheme (passlib makes the same).
        user(
            "alice",
            "{SSHA}" + _ssha("alice-password"),
            mail="alice@example.org",
            mailAlias=["al@example.org", "a.example@example.org"],
            displayName="Alice Example",
            diskQuota="1000000",
        ),
        # bob: {CRYPT} SHA-512-crypt; carol: argon2 (OpenLDAP cannot bind with it, so carol
        # logs in only when the directory verifies the hash itself); dave: bcrypt.
        user("bob", "{CRYPT}" + _sha512_crypt("bob-password"), mail="bob@example.org"),
        user("carol", "{CRYPT}" + hash_password("carol-password"), mail="carol@example.org"),
        user("dave", "{CRYPT}" + _bcrypt("dave-password"), mail="dave@example.org"),
        # erin is locked (ppolicy's pwdAccountLockedTime): disabled.
        user(
            "erin",
            "{SSHA}" + _ssha("erin-password"),
            mail="erin@example.org",
            pwdAccountLockedTime="000001010000Z",
        ),
        (
            f"cn=sales,{groups}",
            {
                "objectClass": ["groupOfNames", "jmapMailRecipient"],
                "cn": "sales",
                "description": "Sales",
                "mail": "sales@example.org",
                "mailAlias": "deals@example.org",
                "member": [f"uid=alice,{people}", f"uid=bob,{people}"],
            },
        ),
        # A resource and a location (RFC 9670 Principal types): a projector, a room.
        (
            f"cn=projector,{people}",
            {"objectClass": ["device"], "cn": "projector", "description": "Projector 2"},
        ),
        (
            f"cn=room-4b,{people}",
            {"objectClass": ["room"], "cn": "room-4b", "description": "Room 4B"},
        ),
        (
            f"cn=staff,{groups}",
            {
                "objectClass": ["groupOfNames"],
                "cn": "staff",
                "member": [f"uid=alice,{people}"],
            },
        ),
    ]


def _ssha(password: str) -> str:
    from passlib.hash import ldap_salted_sha1

    return ldap_salted_sha1.hash(password).removeprefix("{SSHA}")


def _sha512_crypt(password: str) -> str:
    from passlib.hash import sha512_crypt

    return sha512_crypt.using(rounds=5000).hash(password)


def _bcrypt(password: str) -> str:
    from passlib.hash import bcrypt

    return bcrypt.using(rounds=4).hash(password)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory):
    """A running slapd with users alice, bob, carol, dave, erin (locked) and the groups
    sales (alice, bob; sales@ and deals@example.org) and staff (alice)."""
    if SLAPD is None or not SCHEMA_DIR.is_dir():
        message = "slapd is not installed (bash dev.sh test installs Debian's slapd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        server.add(_people())
        yield server
    finally:
        server.stop()
