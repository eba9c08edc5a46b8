"""Service principals and the bearer tokens issued for them or for a management certificate:
stored as hashes, honoured for an hour, and stopped at once when what they stand for goes;
on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from scheduler.clock import FrozenClock
from scheduler.db.models import AccessToken, ServicePrincipal
from scheduler.db.session import Database
from scheduler.security import pki
from scheduler.services.certificates import delete_certificate
from scheduler.services.errors import BadRequest, NotFound
from scheduler.services.principals import (
    TOKEN_LIFETIME,
    IssuedToken,
    NewPrincipal,
    TokenIdentity,
    create_principal,
    delete_principal,
    identity_of_token,
    issue_token_for_certificate,
    issue_token_for_secret,
    list_principals,
    token_allows,
)
from tests.support import Tenant


def create(db: Database, clock: FrozenClock, subscription_id: str, name: str = "deploy"
           ) -> NewPrincipal:
    """A new service principal, in a transaction of its own."""
    with db.transaction() as session:
        return create_principal(session, subscription_id, name, clock.now())


def token_for(db: Database, clock: FrozenClock, made: NewPrincipal) -> IssuedToken:
    """A token for a principal's right secret."""
    with db.transaction() as session:
        issued = issue_token_for_secret(session, made.client_id, made.secret, clock.now())
    assert issued is not None
    return issued


def identity(db: Database, clock: FrozenClock, text: str) -> TokenIdentity | None:
    """Who a token stands for now, read as a bearer request reads it."""
    with db.reader() as conn:
        return identity_of_token(conn, text, clock.now())


def allows(db: Database, clock: FrozenClock, found: TokenIdentity, subscription_id: str
           ) -> bool:
    """Whether the identity may act on the subscription now."""
    with db.reader() as conn:
        return token_allows(conn, found, subscription_id, clock.now())


def token_count(db: Database) -> int:
    """How many tokens are stored."""
    with db.snapshot() as session:
        return int(session.scalar(select(func.count()).select_from(AccessToken)) or 0)


def sha256(text: str) -> str:
    """The hex SHA-256 of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_principal_is_made_with_a_new_client_id_and_only_its_secrets_hash_is_stored(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    assert made.name == "deploy" and made.subscription_id == tenant.subscription_id
    assert len(made.client_id) == 36 and len(made.secret) >= 43
    assert made.created_at == clock.now()
    with db.snapshot() as session:
        stored = session.get(ServicePrincipal, made.client_id)
    assert stored is not None
    assert stored.secret_hash == sha256(made.secret)
    assert made.secret not in (stored.secret_hash, stored.name, stored.client_id)
    assert create(db, clock, tenant.subscription_id).client_id != made.client_id


def test_principals_are_listed_by_name_then_age_and_only_the_subscriptions_own(
        db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant) -> None:
    second_b = create(db, clock, tenant.subscription_id, "b")
    clock.advance(timedelta(seconds=1))
    first_a = create(db, clock, tenant.subscription_id, "a")
    later_b = create(db, clock, tenant.subscription_id, "b")
    create(db, clock, other_tenant.subscription_id, "a")
    with db.snapshot() as session:
        listed = list_principals(session, tenant.subscription_id)
    assert [p.client_id for p in listed] == [first_a.client_id, second_b.client_id,
                                             later_b.client_id]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_blank_or_too_long_name_is_refused_and_nothing_is_made(
        db: Database, clock: FrozenClock, tenant: Tenant, name: str) -> None:
    with pytest.raises(BadRequest), db.transaction() as session:
        create_principal(session, tenant.subscription_id, name, clock.now())
    with db.snapshot() as session:
        assert list_principals(session, tenant.subscription_id) == []


def test_a_name_of_100_characters_is_taken(db: Database, clock: FrozenClock,
                                           tenant: Tenant) -> None:
    assert create(db, clock, tenant.subscription_id, "x" * 100).name == "x" * 100


def test_a_principal_for_a_subscription_that_does_not_exist_is_refused(
        db: Database, clock: FrozenClock) -> None:
    with pytest.raises(NotFound), db.transaction() as session:
        create_principal(session, "00000000-0000-0000-0000-000000000000", "x", clock.now())


def test_the_right_secret_gets_a_token_for_an_hour_stored_by_its_hash(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    issued = token_for(db, clock, made)
    assert issued.expires_in == 3600 == TOKEN_LIFETIME.total_seconds()
    with db.snapshot() as session:
        [stored] = session.scalars(select(AccessToken)).all()
    assert stored.token_hash == sha256(issued.text) and stored.client_id == made.client_id
    assert stored.expires_at == clock.now() + TOKEN_LIFETIME and stored.thumbprint is None
    assert identity(db, clock, issued.text) == TokenIdentity(
        client_id=made.client_id, subscription_id=tenant.subscription_id, thumbprint=None,
        name="deploy")
    assert token_for(db, clock, made).text != issued.text


def test_a_wrong_secret_or_an_unknown_client_gets_no_token(
        db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    other = create(db, clock, other_tenant.subscription_id)
    attempts = [(made.client_id, made.secret + "x"), (made.client_id, ""),
                (made.client_id, other.secret), (made.client_id, sha256(made.secret)),
                ("00000000-0000-0000-0000-000000000000", made.secret),
                (made.client_id + "0", made.secret), ("x" * 1000, made.secret)]
    with db.transaction() as session:
        for client_id, secret in attempts:
            assert issue_token_for_secret(session, client_id, secret, clock.now()) is None
    assert token_count(db) == 0


def test_a_token_expires_an_hour_after_it_was_issued(db: Database, clock: FrozenClock,
                                                     tenant: Tenant) -> None:
    issued = token_for(db, clock, create(db, clock, tenant.subscription_id))
    clock.advance(TOKEN_LIFETIME - timedelta(seconds=1))
    assert identity(db, clock, issued.text) is not None
    clock.advance(timedelta(seconds=1))
    assert identity(db, clock, issued.text) is None


def test_issuing_a_token_clears_away_those_that_have_expired(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    token_for(db, clock, made)
    clock.advance(timedelta(minutes=30))
    kept = token_for(db, clock, made)
    clock.advance(timedelta(minutes=31))  # the first has expired, the second has not
    newest = token_for(db, clock, made)
    assert token_count(db) == 2
    assert identity(db, clock, kept.text) is not None
    assert identity(db, clock, newest.text) is not None


def test_a_token_the_service_never_issued_stands_for_nobody(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    issued = token_for(db, clock, made)
    for text in ["", "x", issued.text + "x", issued.text.upper(), made.secret,
                 sha256(issued.text)]:
        assert identity(db, clock, text) is None


def test_a_principals_token_allows_its_own_subscription_only(
        db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant) -> None:
    found = identity(db, clock, token_for(db, clock, create(db, clock,
                                                             tenant.subscription_id)).text)
    assert found is not None
    assert allows(db, clock, found, tenant.subscription_id)
    assert not allows(db, clock, found, other_tenant.subscription_id)
    assert not allows(db, clock, found, "")


def test_deleting_a_principal_deletes_its_tokens_and_stops_them_at_once(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    kept = create(db, clock, tenant.subscription_id, "kept")
    issued = [token_for(db, clock, made).text for _ in range(3)]
    other = token_for(db, clock, kept).text
    with db.transaction() as session:
        delete_principal(session, tenant.subscription_id, made.client_id)
    assert [identity(db, clock, text) for text in issued] == [None, None, None]
    assert identity(db, clock, other) is not None
    assert token_count(db) == 1
    with db.transaction() as session:
        assert issue_token_for_secret(session, made.client_id, made.secret,
                                      clock.now()) is None
        assert [p.client_id for p in list_principals(session, tenant.subscription_id)] \
            == [kept.client_id]


def test_a_principal_is_deleted_only_through_its_own_subscription(
        db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant) -> None:
    made = create(db, clock, tenant.subscription_id)
    for subscription_id, client_id in [(other_tenant.subscription_id, made.client_id),
                                       (tenant.subscription_id,
                                        "00000000-0000-0000-0000-000000000000"),
                                       (tenant.subscription_id, "x" * 100)]:
        with pytest.raises(NotFound), db.transaction() as session:
            delete_principal(session, subscription_id, client_id)
    assert identity(db, clock, token_for(db, clock, made).text) is not None


def test_a_registered_certificate_gets_a_token_that_allows_its_subscriptions(
        db: Database, clock: FrozenClock, tenant: Tenant, other_tenant: Tenant) -> None:
    thumbprint = tenant.certificate.thumbprint
    with db.transaction() as session:
        issued = issue_token_for_certificate(session, thumbprint.lower(), clock.now())
    assert issued is not None and issued.expires_in == 3600
    found = identity(db, clock, issued.text)
    assert found == TokenIdentity(client_id=None, subscription_id=None, thumbprint=thumbprint,
                                  name=pki.name_of_der(pki.der_bytes(tenant.certificate.certificate)))
    assert allows(db, clock, found, tenant.subscription_id)
    assert not allows(db, clock, found, other_tenant.subscription_id)
    clock.advance(TOKEN_LIFETIME)
    assert identity(db, clock, issued.text) is None


def test_a_certificate_registered_nowhere_gets_no_token(db: Database,
                                                        clock: FrozenClock) -> None:
    stranger = pki.issue_client_certificate(None, "stranger", clock.now())
    with db.transaction() as session:
        assert issue_token_for_certificate(session, stranger.thumbprint, clock.now()) is None
    assert token_count(db) == 0


def test_a_certificates_token_stops_allowing_once_the_certificate_is_unregistered(
        db: Database, clock: FrozenClock, tenant: Tenant) -> None:
    with db.transaction() as session:
        issued = issue_token_for_certificate(session, tenant.certificate.thumbprint,
                                             clock.now())
    assert issued is not None
    found = identity(db, clock, issued.text)
    assert found is not None and allows(db, clock, found, tenant.subscription_id)
    with db.transaction() as session:
        delete_certificate(session, tenant.subscription_id, tenant.certificate.thumbprint,
                           clock.now())
    assert not allows(db, clock, found, tenant.subscription_id)
    with db.transaction() as session:
        assert issue_token_for_certificate(session, tenant.certificate.thumbprint,
                                           clock.now()) is None
