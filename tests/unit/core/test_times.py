"""The lastseen format and the clock read at the edges."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, UTC

from releng_hardware.core.times import LASTSEEN_FORMAT, format_lastseen, utcnow


def test_lastseen_has_six_fraction_digits_even_on_a_whole_second():
    assert format_lastseen(datetime(2026, 11, 20, 14, 0, 0)) == "2026-11-20T14:00:00.000000"
    assert format_lastseen(datetime(2026, 11, 20, 14, 0, 0, 305000)) == "2026-11-20T14:00:00.305000"
    text = format_lastseen(datetime(2026, 11, 20, 14, 0, 0, 7))
    assert datetime.strptime(text, LASTSEEN_FORMAT) == datetime(2026, 11, 20, 14, 0, 0, 7)


def test_lastseen_of_an_aware_time_is_the_same_instant_in_naive_utc():
    moment = datetime(2026, 11, 20, 15, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_lastseen(moment) == "2026-11-20T14:00:00.000000"


def test_utcnow_is_naive_utc_now():
    before = datetime.now(UTC).replace(tzinfo=None)
    now = utcnow()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None and before <= now <= after
