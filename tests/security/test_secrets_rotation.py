"""Rotating the key of the secrets at rest while the API and the engine keep running."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select, update

from scheduler.cli import main
from scheduler.clock import FrozenClock
from scheduler.db.models import EXECUTIONS, JOBS, Execution, Job
from scheduler.db.session import Database
from scheduler.security.secrets import SecretBox, read_key_file
from scheduler.services.secrets import (
    add_secret_key,
    drop_old_secret_keys,
    reencrypt_secrets,
    rotate_secret_keys,
)
from scheduler.settings import Settings
from tests.engine.harness import MakeDriver, Receiver
from tests.support import JOBS as JOBS_PATH
from tests.support import Tenant, http_job

EXECUTIONS_PATH = "/cloudservices/cs1/resources/scheduler/~/jobcollections/jc1/executions"
PASSWORD = {"action.authentication.password": "pw"}


def key_file(settings: Settings) -> Path:
    """The home's key file."""
    return settings.path(settings.security.secret_key_file)


def put_job_with_password(collection: Tenant, job_id: str, uri: str = "http://example.com/"
                          ) -> None:
    """A job whose request authenticates with Basic, its password kept as a secret."""
    job = http_job(startTime="2026-03-01T12:00:10Z")
    job["action"]["request"].update(uri=uri, authentication={
        "type": "Basic", "username": "svc", "password": "pw"})
    response = collection.call("PUT", f"{JOBS_PATH}/{job_id}", job)
    assert response.status_code == 201, response.data


def stored_secrets(db: Database, job_id: str) -> bytes:
    """A job's sealed secrets as the database holds them."""
    with db.snapshot() as session:
        sealed = session.scalar(select(Job.secrets).where(Job.job_id == job_id))
    assert sealed is not None
    return sealed


def running_box(app: Flask) -> SecretBox:
    """The box the API loaded when it started, before any rotation."""
    box: SecretBox = app.extensions["scheduler"].box
    return box


def test_a_one_key_file_as_init_writes_it_still_works(settings: Settings) -> None:
    raw = key_file(settings).read_bytes()
    assert b"\n" not in raw.strip()
    box = SecretBox.from_file(key_file(settings))
    assert box.keys == (raw.strip(),)
    assert box.open(box.seal(PASSWORD)) == PASSWORD


def test_a_box_seals_with_the_newest_key_and_opens_with_any(tmp_path: Path) -> None:
    newest, older = SecretBox.new_key(), SecretBox.new_key()
    path = tmp_path / "secret.key"
    path.write_bytes(newest + b"\n" + older + b"\n")
    box = SecretBox.from_file(path)
    assert box.open(SecretBox(older).seal(PASSWORD)) == PASSWORD
    sealed = box.seal(PASSWORD)
    assert sealed is not None and Fernet(newest).decrypt(sealed)


def test_a_job_sealed_before_rotation_opens_after_with_new_ciphertext(
        collection: Tenant, app: Flask, db: Database, settings: Settings) -> None:
    before_keys = read_key_file(key_file(settings))
    put_job_with_password(collection, "job1")
    sealed_before = stored_secrets(db, "job1")

    rotation = rotate_secret_keys(db, key_file(settings))

    assert (rotation.jobs, rotation.executions, rotation.unreadable) == (1, 0, 0)
    keys = read_key_file(key_file(settings))
    assert len(keys) == 2 and keys[1:] == before_keys and keys[0] not in before_keys
    assert oct(key_file(settings).stat().st_mode & 0o777) == "0o600"
    sealed_after = stored_secrets(db, "job1")
    assert sealed_after != sealed_before
    assert Fernet(keys[0]).decrypt(sealed_after)
    assert SecretBox.from_file(key_file(settings)).open(sealed_after) == PASSWORD
    # The API process loaded the one old key: it reads the new file when it meets the new one.
    assert running_box(app).open(sealed_after) == PASSWORD
    assert running_box(app).keys == tuple(keys)
    patched = collection.call("PATCH", f"{JOBS_PATH}/job1",
                              {"action": {"request": {"body": "changed"}}})
    assert patched.status_code == 200, patched.data
    assert running_box(app).open(stored_secrets(db, "job1")) == PASSWORD


def test_an_engine_started_before_rotation_fires_a_rotated_job_with_its_password(
        collection: Tenant, db: Database, clock: FrozenClock, settings: Settings,
        make_driver: MakeDriver, receiver: Receiver) -> None:
    engine_box = SecretBox.from_file(key_file(settings))  # as the engine process loads it
    put_job_with_password(collection, "job1", receiver.url("/hook"))
    rotate_secret_keys(db, key_file(settings))
    rotate_secret_keys(db, key_file(settings))  # the engine's key is now gone from the file
    driver = make_driver(box=engine_box)
    clock.advance(timedelta(seconds=10))
    assert driver.step() == 1
    (received,) = receiver.requests
    assert received.header("Authorization") == "Basic " + base64.b64encode(b"svc:pw").decode()


def test_an_inline_run_s_secrets_are_rotated_too(
        collection: Tenant, app: Flask, db: Database, settings: Settings) -> None:
    body = {"action": {"type": "http", "request": {
        "uri": "http://example.com/", "method": "PUT",
        "authentication": {"type": "Basic", "username": "u", "password": "secret"}}}}
    assert collection.call("POST", EXECUTIONS_PATH, body).status_code == 202
    with db.snapshot() as session:
        before = session.scalar(select(Execution.secrets))

    rotation = rotate_secret_keys(db, key_file(settings))

    assert (rotation.jobs, rotation.executions) == (0, 1)
    with db.snapshot() as session:
        after = session.scalar(select(Execution.secrets))
    assert after is not None and after != before
    assert running_box(app).open(after) == {"action.authentication.password": "secret"}


def test_a_job_sealed_with_the_old_key_during_rotation_still_opens_after(
        collection: Tenant, app: Flask, db: Database, settings: Settings) -> None:
    path = key_file(settings)
    # A process that read the key file just before the rotation wrote the new key, and has
    # not looked at it since.
    stale_box = SecretBox(read_key_file(path))
    put_job_with_password(collection, "job1")
    put_job_with_password(collection, "job2")

    box = add_secret_key(path)
    assert reencrypt_secrets(db, JOBS, box) == (2, 0)
    with db.transaction() as session:
        session.execute(update(Job).where(Job.job_id == "job2")
                        .values(secrets=stale_box.seal(PASSWORD)))
    assert drop_old_secret_keys(path, box) == 0  # one old key: it is the previous one, kept

    assert SecretBox.from_file(path).open(stored_secrets(db, "job2")) == PASSWORD
    assert running_box(app).open(stored_secrets(db, "job2")) == PASSWORD
    rotation = rotate_secret_keys(db, path)
    assert (rotation.jobs, rotation.keys_dropped) == (2, 1)
    assert stale_box.keys[0] not in read_key_file(path)
    assert SecretBox.from_file(path).open(stored_secrets(db, "job2")) == PASSWORD


def test_rotation_goes_through_every_row_in_batches(
        collection: Tenant, db: Database, settings: Settings) -> None:
    for number in range(5):
        put_job_with_password(collection, f"job{number}")
    assert collection.call("PUT", f"{JOBS_PATH}/plain", http_job()).status_code == 201
    before = {n: stored_secrets(db, f"job{n}") for n in range(5)}
    box = add_secret_key(key_file(settings))

    assert reencrypt_secrets(db, JOBS, box, batch_size=2) == (5, 0)
    assert reencrypt_secrets(db, EXECUTIONS, box, batch_size=2) == (0, 0)
    for number, sealed in before.items():
        after = stored_secrets(db, f"job{number}")
        assert after != sealed and Fernet(box.keys[0]).decrypt(after)


def test_secrets_no_key_opens_are_counted_and_left_alone(
        collection: Tenant, db: Database, settings: Settings) -> None:
    put_job_with_password(collection, "job1")
    foreign = SecretBox(SecretBox.new_key()).seal(PASSWORD)
    with db.transaction() as session:
        session.execute(update(Job).values(secrets=foreign))

    rotation = rotate_secret_keys(db, key_file(settings))

    assert (rotation.jobs, rotation.unreadable) == (0, 1)
    assert stored_secrets(db, "job1") == foreign


def test_the_rotate_command_prints_what_it_re_encrypted(
        collection: Tenant, home: dict[str, Any], settings: Settings,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", settings.database_url)
    put_job_with_password(collection, "job1")
    put_job_with_password(collection, "job2")
    before = read_key_file(key_file(settings))

    assert main(["secrets", "rotate", "--home", home["home"]]) == 0

    out = capsys.readouterr().out
    assert "re-encrypted 2 job secrets, 0 execution secrets" in out
    assert read_key_file(key_file(settings))[1:] == before


def test_the_rotate_command_refuses_a_directory_that_is_no_home(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secrets", "rotate", "--home", str(tmp_path / "nowhere")]) == 2
    assert "is not a scheduler home" in capsys.readouterr().err
