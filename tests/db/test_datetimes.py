"""UTC datetimes on SQLite: the text stored is exactly SQLAlchemy's own, and reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from scheduler.db.models import UTCDateTime

DIALECT = sqlite.dialect()
# As SQLAlchemy finds them when it runs a statement on SQLite.
OURS, THEIRS = UTCDateTime().dialect_impl(DIALECT), DateTime().dialect_impl(DIALECT)
OURS_IN, OURS_OUT = OURS.bind_processor(DIALECT), OURS.result_processor(DIALECT, None)
THEIRS_IN, THEIRS_OUT = THEIRS.bind_processor(DIALECT), THEIRS.result_processor(DIALECT, None)

aware = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60))


@given(aware)
def test_the_text_is_sqlalchemys_own_and_reads_back_as_the_same_instant(value: datetime
                                                                        ) -> None:
    assert OURS_IN is not None and OURS_OUT is not None
    assert THEIRS_IN is not None and THEIRS_OUT is not None
    text = OURS_IN(value)
    # The same text as SQLAlchemy's DATETIME: rows either wrote compare and sort alike.
    assert text == THEIRS_IN(value.astimezone(UTC).replace(tzinfo=None))
    back = OURS_OUT(text)
    assert back == value and back.tzinfo is UTC
    assert THEIRS_OUT(text).replace(tzinfo=UTC) == back


def test_naive_datetimes_and_none() -> None:
    assert OURS_IN is not None and OURS_OUT is not None
    with pytest.raises(ValueError, match="naive"):
        OURS_IN(datetime(2026, 3, 1, 12))
    assert OURS_IN(None) is None and OURS_OUT(None) is None
    assert OURS_OUT("2026-03-01 12:00:10") == datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
