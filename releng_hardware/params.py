"""Query parameter values: parsed strictly, with an error that names the parameter."""

from __future__ import annotations

import re
from typing import Iterable

from .identifiers import is_identifier
from .times import parse_duration

# A page number: nine digits are more pages than any fleet has.
POSITIVE_INT = re.compile(r"[1-9][0-9]{0,8}")


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
