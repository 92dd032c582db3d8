"""The keys of a ``[directory."<name>"] type = "ldap"`` table.

Names follow Stalwart's LDAP directory (``url``, ``base-dn``, ``timeout``, ``tls.enable``,
``tls.allow-invalid-certs``, ``bind.dn``, ``bind.secret``, ``bind.auth.method``,
``bind.auth.template``, ``filter.name``, ``filter.email``, ``attributes.*``,
``pool.max-connections``, ``cache.entries``, ``cache.ttl.positive/negative``), so an
operator coming from Stalwart recognises them.  ``tls.ca-file``, ``filter.member-of`` and
``filter.active`` are jmap-host's own.  Nothing here connects: a configuration validates
without the server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from jmap_host import Bool, Choice, Context, Duration, Int, Invalid, Key, List, Secret, Str, Table

DEFAULT_FILTER_NAME = (
    "(|(&(|(objectClass=inetOrgPerson)(objectClass=posixAccount))(uid=?))"
    "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
    "(cn=?)))"
)
DEFAULT_FILTER_EMAIL = "(|(mail=?)(mailAlias=?))"

# objectClass values (any case) that make an entry a group; anything else is an individual.
GROUP_CLASSES = frozenset(
    {"groupofnames", "groupofuniquenames", "posixgroup", "group", "groupofurls"}
)
# ...that make it a resource (RFC 4519 device) or a location (RFC 4524 room): RFC 9670's
# principal types.
RESOURCE_CLASSES = frozenset({"device"})
LOCATION_CLASSES = frozenset({"room"})

DEFAULT_ATTRIBUTES: dict[str, tuple[list[str], str]] = {
    "name": (["uid", "cn"], "the login name: the first of these attributes the entry has"),
    "class": (
        ["objectClass"],
        "an entry is a group when a value is groupOfNames, groupOfUniqueNames, posixGroup, "
        "groupOfURLs or group (any case), a resource when one is device, a location when one "
        "is room; otherwise an individual",
    ),
    "description": (["displayName", "description"], "display name: the first one present"),
    "secret": (
        ["userPassword"],
        'password hash, read only with bind.auth.method = "default" (or "hash")',
    ),
    "groups": (["memberOf"], "DNs of the groups the entry is a member of"),
    "email": (["mail"], "addresses; the first value is the primary"),
    "email-alias": (["mailAlias"], "more addresses that deliver to the entry (aliases)"),
    "quota": (["diskQuota"], "storage quota in octets"),
    "time-zone": ([], "IANA time zone name (e.g. an attribute of your schema; none by default)"),
}


def _check_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("ldap", "ldaps"):
        raise Invalid(f"{value!r}: use ldap://host[:port] or ldaps://host[:port]")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise Invalid(f"{value!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise Invalid(f"{value!r}: no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Invalid(f"{value!r}: only scheme, host and port (put the base DN in base-dn)")


def _check_urls(values: list[str]) -> None:
    for value in values:
        _check_url(value)


def _check_dn(value: str | None) -> None:
    if value is None:
        return
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parse_dn(value)
    except LDAPInvalidDnError:
        raise Invalid(f"{value!r} is not a distinguished name (like dc=example,dc=org)") from None


def check_filter(value: str, placeholder: bool) -> None:
    """An RFC 4515 filter in parentheses; with ``placeholder``, at least one ``?``."""
    text = value.strip()
    if not text:
        return
    if not (text.startswith("(") and text.endswith(")")):
        raise Invalid("an LDAP filter is written in parentheses, like (uid=?)")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise Invalid("unbalanced parentheses")
    if placeholder and "?" not in text:
        raise Invalid("needs a '?' where the looked-up value goes, like (uid=?)")
    if not placeholder and "?" in text:
        raise Invalid("takes no '?' (it is combined with the other filters as it is)")


def _filter_key(name: str, default: str, doc: str, placeholder: bool = True) -> Key:
    def check(value: str) -> str:
        check_filter(value, placeholder)
        return value.strip()

    return Key(name, Str(), default=default, doc=doc, check=check)


def _check_directory(table: dict[str, Any], key: str, ctx: Context) -> None:
    bind = table.get("bind") or {}
    auth = bind.get("auth") or {}
    method = auth.get("method")
    if bind.get("secret") and not bind.get("dn"):
        ctx.problem(f"{key}.bind.secret", "needs bind.dn (the account the secret belongs to)")
    if bind.get("dn") and "secret" in bind and not bind.get("secret"):
        ctx.problem(f"{key}.bind.secret", f"the password of {bind['dn']!r} is needed")
    if method == "template" and "{username}" not in (auth.get("template") or ""):
        ctx.problem(
            f"{key}.bind.auth.template",
            'bind.auth.method = "template" needs a DN with {username}, like '
            '"uid={username},ou=people,dc=example,dc=org"',
        )
    attributes = table.get("attributes") or {}
    if method in ("default", "hash") and "secret" in attributes and not attributes["secret"]:
        ctx.problem(
            f"{key}.attributes.secret",
            f"bind.auth.method = {method!r} reads the password hash from this attribute",
        )
    if "name" in attributes and not attributes["name"]:
        ctx.problem(f"{key}.attributes.name", "needs at least one attribute")
    filters = table.get("filter") or {}
    if "name" in filters and not filters["name"]:
        ctx.problem(f"{key}.filter.name", "must not be empty")


def _attribute_key(name: str) -> Key:
    default, doc = DEFAULT_ATTRIBUTES[name]
    return Key(name, List(Str(non_empty=True)), default=list(default), doc=doc)


def keys() -> Table:
    return Table(
        [
            Key(
                "url",
                List(Str(non_empty=True), min_items=1),
                doc="server URL(s), ldap:// or ldaps://; several are tried in order (failover)",
                check=_check_urls,
            ),
            Key(
                "base-dn",
                Str(non_empty=True),
                doc="where searches start, like dc=example,dc=org",
                check=_check_dn,
            ),
            Key(
                "timeout",
                Duration(),
                default=5.0,
                doc="connect and response timeout per server; past it the next URL is tried, "
                "then clients get 503",
            ),
            Key(
                "tls",
                Table(
                    [
                        Key("enable", Bool(), default=False, doc="StartTLS on ldap:// URLs"),
                        Key(
                            "allow-invalid-certs",
                            Bool(),
                            default=False,
                            doc="accept any server certificate (testing only)",
                        ),
                        Key(
                            "ca-file",
                            Str(non_empty=True),
                            default=None,
                            doc="PEM file of CA certificates to trust instead of the system's",
                        ),
                    ]
                ),
                default={},
                doc="TLS for StartTLS and ldaps://",
            ),
            Key(
                "bind",
                Table(
                    [
                        Key(
                            "dn",
                            Str(non_empty=True),
                            default=None,
                            doc="the account lookups bind as; unset: anonymous",
                            check=_check_dn,
                        ),
                        Key("secret", Secret(), default=None, doc="its password"),
                        Key(
                            "auth",
                            Table(
                                [
                                    Key(
                                        "method",
                                        Choice("lookup", "template", "default", "hash"),
                                        default="lookup",
                                        doc="how a password is checked: bind as the user "
                                        "(lookup, template) or verify the hash attribute "
                                        "(default, hash)",
                                    ),
                                    Key(
                                        "template",
                                        Str(),
                                        default="",
                                        doc="with method = template: the user's DN, with "
                                        "{username}",
                                    ),
                                ]
                            ),
                            default={},
                            doc="password checking",
                        ),
                    ]
                ),
                default={},
                doc="credentials for lookups and how users' passwords are checked",
            ),
            Key(
                "filter",
                Table(
                    [
                        _filter_key(
                            "name",
                            DEFAULT_FILTER_NAME,
                            "finds a user or group by login name (? is the name)",
                        ),
                        _filter_key(
                            "email",
                            DEFAULT_FILTER_EMAIL,
                            "finds the entries that receive mail for an address (? is the address)",
                        ),
                        _filter_key(
                            "member-of",
                            "",
                            "finds the groups an entry is a member of (? is the entry's DN); "
                            '"": use attributes.groups only',
                        ),
                        _filter_key(
                            "active",
                            "",
                            "an entry must also match this to exist for jmap-host (disabled "
                            'accounts do not); "": every entry',
                            placeholder=False,
                        ),
                    ]
                ),
                default={},
                doc="search filters",
            ),
            Key(
                "attributes",
                Table([_attribute_key(name) for name in DEFAULT_ATTRIBUTES]),
                default={},
                doc="which LDAP attributes mean what",
            ),
            Key(
                "pool",
                Table(
                    [
                        Key(
                            "max-connections",
                            Int(min=1, max=1000),
                            default=10,
                            doc="connections open at once (lookups and password binds)",
                        )
                    ]
                ),
                default={},
                doc="the connection pool",
            ),
            Key(
                "cache",
                Table(
                    [
                        Key("entries", Int(min=0), default=1000, doc="entries kept; 0: no cache"),
                        Key(
                            "ttl",
                            Table(
                                [
                                    Key(
                                        "positive",
                                        Duration(),
                                        default=30.0,
                                        doc="how long an entry that was found is reused",
                                    ),
                                    Key(
                                        "negative",
                                        Duration(),
                                        default=10.0,
                                        doc="how long 'no such entry' is reused",
                                    ),
                                ]
                            ),
                            default={},
                            doc="cache lifetimes",
                        ),
                    ]
                ),
                default={},
                doc="lookup results kept in memory",
            ),
        ],
        validate=_check_directory,
    )
