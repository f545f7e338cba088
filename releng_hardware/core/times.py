"""The one time format the service stores and serves, and parsing of what it reads."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, UTC

from dateutil.parser import isoparse

# Naive UTC with six fraction digits: the proof of concept wrote this, and
# on-duty tools parse it with strptime(s, LASTSEEN_FORMAT) against utcnow().
LASTSEEN_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
# What that format writes is this long; anything else came from elsewhere.
LASTSEEN_LENGTH = len("2018-11-08T08:47:50.939514")
# A time further ahead than this is a broken clock, and would pin lastseen in the
# future, since lastseen never moves backwards.
MAX_CLOCK_SKEW = timedelta(hours=1)
# Settings and query parameters write durations as 90, 90s, 15m, 6h or 2d, with at most nine
# digits on each side of the point: every such duration is finite, and the OpenAPI document
# states the whole rule by this one pattern. ASCII only, so it means the same to Python and to
# the document's readers.
DURATION_PATTERN = r"^ *([0-9]{1,9}(?:\.[0-9]{1,9})?) *([smhd]?) *$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '15m', '6h' or '2d'; ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text[:40]!r} is not a duration like 90, 90s, 15m, 6h or 2d "
                         "(at most nine digits each side of the point)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def to_naive_utc(moment: datetime) -> datetime:
    """The same instant as a naive UTC datetime (naive input is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def format_lastseen(moment: datetime) -> str:
    """'2018-11-08T08:47:50.939514': naive UTC, always six fraction digits."""
    if moment.tzinfo is not None:
        moment = to_naive_utc(moment)
    # the listener formats a few times per message: isoformat() without arguments is the
    # fastest, and writes the six digits whenever there is a fraction
    return moment.isoformat() if moment.microsecond else moment.isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """Naive UTC from ISO 8601 with or without fraction or offset; ValueError otherwise."""
    if not isinstance(text, str) or not 19 <= len(text) <= 40:
        raise ValueError(f"{str(text)[:40]!r} is not an ISO 8601 time")
    if text[-1] == "Z" and text[10] == "T":
        # the queue's own form (UTC, 'Z'): read naive, skipping two timezone conversions
        try:
            return datetime.fromisoformat(text[:-1])
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        # dateutil reads the ISO 8601 forms the standard library does not
        try:
            moment = isoparse(text)
        except (ValueError, OverflowError):
            raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if "T" not in text[:11] and " " not in text[:11]:
        raise ValueError(f"{text!r} has no time of day")
    return to_naive_utc(moment)


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_seconds(moment: datetime) -> float:
    """Seconds since 1970 of a naive UTC datetime."""
    return (moment - _EPOCH).total_seconds()


def epoch_microseconds(moment: datetime) -> int:
    """A naive UTC time as whole microseconds since the epoch (exact)."""
    return (moment - _EPOCH) // _MICROSECOND


def epoch_milliseconds(moment: datetime) -> int:
    """Whole milliseconds since 1970 of a naive UTC datetime (the queue's own precision)."""
    return (moment - _EPOCH) // _MILLISECOND


def from_epoch_milliseconds(milliseconds: int) -> datetime:
    """The naive UTC datetime `milliseconds` after 1970."""
    return _EPOCH + timedelta(milliseconds=milliseconds)


def utcnow() -> datetime:
    """Now as naive UTC; read only at the edges and passed inward."""
    # the listener reads it for every message: a third cheaper than
    # datetime.now(timezone.utc).replace(tzinfo=None), and the same microsecond (both truncate)
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)
