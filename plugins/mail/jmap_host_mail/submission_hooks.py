"""What __init__.py's hooks take from the sending side of the plugin: the
``urn:ietf:params:jmap:submission`` capability (Identity, EmailSubmission; submission.py,
identity.py), ``urn:ietf:params:jmap:vacationresponse`` (vacation.py), their
configuration keys and tables, the per-account defaults and the outbound queue runner."""

from __future__ import annotations

from typing import Any

from jmap_host import Account, Capability, Host, Key

from . import smtp, submission, vacation
from .identity import IDENTITY, provision_identities

VACATION_RESPONSE = "urn:ietf:params:jmap:vacationresponse"


def vacation_account_capability(host: Host, account: Account) -> dict[str, Any] | None:
    """§1.3.3: an empty object, for accounts that receive mail at an address."""
    return {} if account.owner.emails else None


def submission_capabilities() -> list[Capability]:
    return [
        Capability(
            urn=submission.SUBMISSION,
            session={},
            account=submission.submission_account_capability,
            methods=submission.submission_methods(),
            datatypes=[IDENTITY, submission.EMAIL_SUBMISSION],
        ),
        Capability(
            urn=VACATION_RESPONSE,
            session={},
            account=vacation_account_capability,
            datatypes=[vacation.VACATION],
        ),
    ]


def submission_config_keys() -> list[tuple[str, Key]]:
    return [*smtp.config_keys(), *vacation.config_keys()]


def submission_migrations() -> list[Any]:
    return [submission.migrations, vacation.migrations]


def submission_provisioning(db: Any, account: Account) -> None:
    """One Identity per address of the account's owner, and the VacationResponse."""
    owner = account.owner
    provision_identities(db, account.id, owner.description, owner.emails)
    vacation.provision_vacation(db, account.id)


def submission_startup(host: Host) -> None:
    if host.nursery is not None:
        # One sender among the processes sharing the store (a lease: jmap_host.leases).
        host.nursery.start_soon(
            host.store.run_leased, "mail.outbound", submission.run_outbound, host
        )


__all__ = [
    "VACATION_RESPONSE",
    "submission_capabilities",
    "submission_config_keys",
    "submission_migrations",
    "submission_provisioning",
    "submission_startup",
]
