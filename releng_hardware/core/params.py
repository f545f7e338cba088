"""Query parameter values: parsed strictly, with an error that names the parameter."""

from __future__ import annotations

import base64
import re
from typing import Callable, Iterable, Mapping, TypeVar

from .identifiers import is_identifier
from .times import parse_duration

# A page number: nine digits are more pages than any fleet has.
POSITIVE_INT = re.compile(r"[1-9][0-9]{0,8}")
# The most machines a page of /machines holds, and the numbers from 1 to it as a pattern (what
# the OpenAPI document states; a test holds the two to each other).
MAX_LIMIT = 5000
LIMIT = re.compile(r"[1-9][0-9]{0,2}|[1-4][0-9]{3}|5000")
# A page's cursor: the version of its format, then a place in an order as unpadded urlsafe
# base64 (never a length of 1 mod 4, which no bytes encode to). Opaque to clients; any place
# is valid, so every string of this pattern is a cursor. At most a long machine id's place.
CURSOR_VERSION = "1"
CURSOR = re.compile(CURSOR_VERSION + r"(?:[A-Za-z0-9_-]{4}){0,60}(?:[A-Za-z0-9_-]{2,3})?")


class BadParameter(ValueError):
    """A query parameter has a value the API does not accept."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name, self.problem = name, problem


def duration_param(name: str, text: str) -> float:
    """A duration parameter in seconds (DURATION_PATTERN, as the OpenAPI document states it)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from None


def identifier_param(name: str, value: str) -> str:
    """A Taskcluster identifier parameter (letters, digits, - and _, at most 38)."""
    if not is_identifier(value):
        raise BadParameter(name, "must be a Taskcluster identifier (letters, digits, - and _)")
    return value


def positive_int_param(name: str, text: str) -> int:
    """A whole number from 1, in plain digits without leading zeros (at most nine)."""
    if POSITIVE_INT.fullmatch(text) is None:
        raise BadParameter(name, "must be a whole number from 1")
    return int(text)


def choice_param(name: str, value: str, choices: Iterable[str]) -> str:
    """One of a fixed set of values."""
    choices = tuple(choices)
    if value not in choices:
        raise BadParameter(name, f"must be one of {', '.join(choices)}")
    return value


def limit_param(name: str, text: str) -> int:
    """A page size: a whole number from 1 to MAX_LIMIT, in plain digits."""
    if LIMIT.fullmatch(text) is None:
        raise BadParameter(name, f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def encode_cursor(place: str) -> str:
    """The cursor of a place in an order (what the next page starts after)."""
    return CURSOR_VERSION + base64.urlsafe_b64encode(place.encode()).decode().rstrip("=")


def cursor_param(name: str, text: str) -> bytes:
    """The place a cursor stands for, as bytes (an order compares bytes; a client's cursor
    need not be text)."""
    if CURSOR.fullmatch(text) is None:
        raise BadParameter(name, "not a cursor of this API: pass on a cursor as the API gave it")
    body = text[len(CURSOR_VERSION):]
    # the pattern admits only what decodes: base64 ignores the unused bits of the last character
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


_Value = TypeVar("_Value")
_Default = TypeVar("_Default")


def optional_param(args: Mapping[str, str], name: str, parse: Callable[[str, str], _Value],
                   default: _Default) -> _Value | _Default:
    """The parameter `name` parsed by `parse(name, text)` when given, else `default`."""
    return parse(name, args[name]) if name in args else default
