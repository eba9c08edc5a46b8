"""How many PostgreSQL connections one `scheduler serve` holds under load, and what its
clients get meanwhile."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import create_engine, text

from tests.e2e.support import create_collection
from tests.support import POSTGRES_URL, http_job

# Two API workers of database.pool_size (8) connections each, plus the TLS trust store's
# one and one more of each worker, plus the engine's five and two more.
MOST_CONNECTIONS = 2 * (8 + 2) + 5 + 2
CLIENTS, REQUESTS_EACH = 50, 10


def test_fifty_clients_get_no_500_and_a_serve_stays_within_its_connections(
        server_factory: Any, postgres_schema: tuple[str, str]) -> None:
    schema, url = postgres_schema
    name = f"pool_{schema}"
    server = server_factory(env={"SCHEDULER_DATABASE_URL": f"{url}&application_name={name}"})
    _session, jobs_url = create_collection(server, "P20Premium")
    admin = create_engine(POSTGRES_URL)
    peak, done = [0], threading.Event()

    def sample() -> None:
        with admin.connect() as conn:
            while not done.is_set():
                count = conn.execute(text("SELECT count(*) FROM pg_stat_activity "
                                          "WHERE application_name = :name"),
                                     {"name": name}).scalar_one()
                peak[0] = max(peak[0], int(count))
                conn.rollback()

    def client(number: int) -> list[tuple[int, str | None]]:
        answers = []
        with server.session() as session:
            for request in range(REQUESTS_EACH):
                job = f"{jobs_url}/c{number}r{request}?api-version=2014-04-01"
                for response in (
                        session.put(job, json=http_job(startTime="2030-01-01T00:00:00Z")),
                        session.get(job), session.get(jobs_url)):
                    answers.append((response.status_code, response.headers.get("Retry-After")))
        return answers

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [answer for result in pool.map(client, range(CLIENTS))
                       for answer in result]
    finally:
        done.set()
        sampler.join()
        admin.dispose()
    statuses = Counter(status for status, _retry in answers)
    assert set(statuses) <= {200, 201, 503}, statuses
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert 0 < peak[0] <= MOST_CONNECTIONS, peak[0]
