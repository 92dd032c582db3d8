"""jmap-host: a plugin-based JMAP server.

This module is the public API for plugin authors: everything a plugin may use is exported
here, and ``jmap_host.hookimpl`` marks hook implementations.  See docs/plugin-guide.md.
"""

from __future__ import annotations

from . import (
    containers,
    dates,
    jsobject,
    memquery,
    messaging,
    objectstore,
    sharing,
    standard,
    textsearch,
    tokens,
    validators,
)
from .blobapi import BLOB, blob_capability, blob_refs
from .blobparse import parse_blobs
from .blobs import (
    StagedBlobs,
    add_blob_reference,
    add_blob_references,
    blob_copy,
    blob_visible,
    blobs_visible,
    read_blob,
    remove_blob_references,
    write_blob,
)
from .capabilities import CORE, Account, Call, Capability, Method, RequestContext
from .cluster import HostEvents
from .commands import host_for_command, principal_for_command
from .config_schema import (
    REQUIRED,
    Bool,
    Choice,
    ConfigError,
    Context,
    Duration,
    Int,
    Invalid,
    Key,
    List,
    Map,
    Secret,
    Str,
    Table,
    TableList,
)
from .datatype import DataType, FilterCondition, Property, SetContext, SetError, read_and_destroy
from .directory import (
    Directory,
    DirectoryType,
    DirectoryUnavailable,
    Principal,
    account_id_for,
    check_principal_list,
    email_problem,
    name_problem,
    principal_table,
    time_zone_known,
)
from .engine import check_get_size, check_set_size, execute, set_arguments
from .errors import MethodError, RequestError
from .hookspecs import hookimpl
from .host import Host, Limits, StartupError, load_host
from .http import ASGIApp, Receive, Request, Response, Scope, Send, json_response, problem_response
from .local import LocalClient, MethodFailed
from .messaging import ForbiddenFrom, InvalidAddress, MailReceiver, MailTransport, NoMailTransport
from .numbers import parse_digits
from .passwords import hash_password, looks_like_unknown_hash
from .passwords import verify as verify_password
from .principals import PRINCIPALS, PRINCIPALS_OWNER, principals_capability, visible_principals
from .push import account_owners, publish_states
from .pushsubscription import push_capabilities, push_config_keys, push_subscription_methods
from .quota import (
    QUOTA,
    OverQuota,
    QuotaLimits,
    account_limits,
    check_quota,
    limits_for,
    quota_capability,
)
from .quota import usage as quota_usage
from .routes import Protocol, Route
from .session import accounts_for
from .sharing import Access, SharedThrough, Sharing
from .sqldialect import Dialect, dialect
from .store import StoreUnavailable, atomically, expect_long_read
from .websocket import WEBSOCKET, websocket_capability

__version__ = "0.1.0"

__all__ = [
    "BLOB",
    "CORE",
    "PRINCIPALS",
    "PRINCIPALS_OWNER",
    "QUOTA",
    "REQUIRED",
    "WEBSOCKET",
    "ASGIApp",
    "Access",
    "Account",
    "Bool",
    "Call",
    "Capability",
    "Choice",
    "ConfigError",
    "Context",
    "DataType",
    "Dialect",
    "Directory",
    "DirectoryType",
    "DirectoryUnavailable",
    "Duration",
    "FilterCondition",
    "ForbiddenFrom",
    "Host",
    "HostEvents",
    "Int",
    "Invalid",
    "InvalidAddress",
    "Key",
    "Limits",
    "List",
    "LocalClient",
    "MailReceiver",
    "MailTransport",
    "Map",
    "Method",
    "MethodError",
    "MethodFailed",
    "NoMailTransport",
    "OverQuota",
    "Principal",
    "Property",
    "Protocol",
    "QuotaLimits",
    "Receive",
    "Request",
    "RequestContext",
    "RequestError",
    "Response",
    "Route",
    "Scope",
    "Secret",
    "Send",
    "SetContext",
    "SetError",
    "SharedThrough",
    "Sharing",
    "StagedBlobs",
    "StartupError",
    "StoreUnavailable",
    "Str",
    "Table",
    "TableList",
    "account_id_for",
    "account_limits",
    "account_owners",
    "accounts_for",
    "add_blob_reference",
    "add_blob_references",
    "atomically",
    "blob_capability",
    "blob_copy",
    "blob_refs",
    "blob_visible",
    "blobs_visible",
    "check_get_size",
    "check_principal_list",
    "check_quota",
    "check_set_size",
    "containers",
    "dates",
    "dialect",
    "email_problem",
    "execute",
    "expect_long_read",
    "hash_password",
    "hookimpl",
    "host_for_command",
    "jsobject",
    "json_response",
    "limits_for",
    "load_host",
    "looks_like_unknown_hash",
    "memquery",
    "messaging",
    "name_problem",
    "objectstore",
    "parse_blobs",
    "parse_digits",
    "principal_for_command",
    "principal_table",
    "principals_capability",
    "problem_response",
    "publish_states",
    "push_capabilities",
    "push_config_keys",
    "push_subscription_methods",
    "quota_capability",
    "quota_usage",
    "read_and_destroy",
    "read_blob",
    "remove_blob_references",
    "set_arguments",
    "sharing",
    "standard",
    "textsearch",
    "time_zone_known",
    "tokens",
    "validators",
    "verify_password",
    "visible_principals",
    "websocket_capability",
    "write_blob",
]
