"""JMAP for Mail (RFC 8621): the ``urn:ietf:params:jmap:mail`` capability.

Built on the host's standard methods: Mailbox (mailbox.py), Email and Thread (email.py)
are declared data types with the RFC's rules as hooks; message.py parses messages; the
store layer for the tables beside them is store.py.  Identity, EmailSubmission and
VacationResponse (identity.py, submission.py, vacation.py, smtp.py) come in through
submission_hooks.py.  Mail arrives through LMTP (lmtp.py) or ``jmap-host deliver``, both
on delivery.py, and ``jmap-host import`` (importer.py) brings mbox and Maildir archives.
"""

from __future__ import annotations

from typing import Any

from jmap_host import Account, Capability, Host, hookimpl, validators

from . import store
from .email import EMAIL, MAILBOX_TYPE, SORT_OPTIONS, THREAD, email_methods
from .index_merge import keep_index_merged
from .mailbox import MAX_DEPTH, default_mailboxes, mailbox_methods
from .submission_hooks import (
    submission_capabilities,
    submission_config_keys,
    submission_migrations,
    submission_provisioning,
    submission_startup,
)

MAIL = "urn:ietf:params:jmap:mail"


def mail_account_capability(host: Host, account: Account) -> dict[str, Any]:
    """RFC 8621 §1.3.1: the per-account mail capability."""
    return {
        "maxMailboxesPerEmail": None,
        "maxMailboxDepth": MAX_DEPTH,
        "maxSizeMailboxName": validators.MAX_NAME_OCTETS,
        "maxSizeAttachmentsPerEmail": host.limits.max_size_upload,
        # Only what Email/query really sorts on (email.compile_email_sort).
        "emailQuerySortOptions": SORT_OPTIONS,
        # In an account shared with the user, only inside a Mailbox with mayCreateChild.
        "mayCreateTopLevelMailbox": not account.shared,
    }


@hookimpl
def register_capabilities(host: Host) -> list[Capability]:
    return [
        Capability(
            urn=MAIL,
            session={},
            account=mail_account_capability,
            methods=[*mailbox_methods(), *email_methods()],
            # Mailbox without its standard /set: email.mailbox_set replaces it, to push the
            # Email and Thread changes of onDestroyRemoveEmails.
            datatypes=[MAILBOX_TYPE, EMAIL, THREAD],
        ),
        # Identity, EmailSubmission and VacationResponse (submission_hooks.py).
        *submission_capabilities(),
    ]


@hookimpl
def migrations(host: Host) -> list[Any]:
    from . import importer

    return [store.migrations, importer.migrations, *submission_migrations()]


@hookimpl
def account_provisioned(host: Host, account: Account) -> Any:
    """A new account gets Inbox, Drafts, Sent, Archive, Junk and Trash, an Identity per
    address and its VacationResponse."""

    def write(db: Any) -> None:
        default_mailboxes(db, account.id)
        submission_provisioning(db, account)  # Identities, the VacationResponse

    return host.store.write(write)


@hookimpl
def config_keys() -> list[tuple[str, Any]]:
    return [*submission_config_keys()]


@hookimpl
def startup(host: Host) -> None:
    submission_startup(host)  # the outbound queue runner
    if host.nursery is not None:
        # The full-text index's segments, merged by one of the processes sharing the store.
        host.nursery.start_soon(host.store.run_leased, "mail.index-merge", keep_index_merged, host)


@hookimpl
def register_mail_transport(host: Host) -> Any:
    """Mail for other plugins (jmap_host.messaging) goes on the outbound queue."""
    from jmap_host import MailTransport

    from .submission import transport_enqueue

    return MailTransport(enqueue=transport_enqueue)


@hookimpl
def register_protocols() -> list[Any]:
    """``protocol = "lmtp"``: delivery from an MTA (lmtp.py)."""
    from .lmtp import lmtp_protocol

    return [lmtp_protocol()]


@hookimpl
def register_commands(cli: Any) -> None:
    """``jmap-host deliver`` (delivery.py) and ``jmap-host import`` (importer.py)."""
    from . import delivery, importer

    delivery.register_commands(cli)
    importer.register_commands(cli)
