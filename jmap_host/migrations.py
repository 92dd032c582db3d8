"""The host's own migration set ("host"); each plugin registers its own set."""

from __future__ import annotations

import sqlite_utils

from .blobs import create_blob_access, create_blob_data, create_blob_table
from .objectstore import create_changelog, create_destroyed_for
from .principals import create_overlay_table
from .pushsubscription import create_push_tables
from .quota import create_usage_table
from .sharing import add_share_prefs, create_member_prefs, create_share_tables
from .tokens import create_app_passwords

ACCOUNT_TABLE = "host_account"


def create_accounts(db: sqlite_utils.Database) -> None:
    """Accounts that have been provisioned (``account_provisioned`` ran for them)."""
    db[ACCOUNT_TABLE].create({"id": str, "principal": str, "created": int}, pk="id")


host_migrations = sqlite_utils.Migrations("host")
host_migrations(name="app_passwords")(create_app_passwords)
host_migrations(name="blobs")(create_blob_table)
host_migrations(name="accounts")(create_accounts)
host_migrations(name="blob_access")(create_blob_access)
host_migrations(name="changelog")(create_changelog)
host_migrations(name="push_subscriptions")(create_push_tables)
host_migrations(name="quota_usage")(create_usage_table)
host_migrations(name="principals")(create_overlay_table)
host_migrations(name="sharing")(create_share_tables)
host_migrations(name="share_prefs")(add_share_prefs)
host_migrations(name="member_prefs")(create_member_prefs)
host_migrations(name="destroyed_for")(create_destroyed_for)
host_migrations(name="blob_data")(create_blob_data)
