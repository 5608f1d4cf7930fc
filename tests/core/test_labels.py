"""Ground-truth labels: one definition (core.classifier) for clients, REST and gRPC."""

from __future__ import annotations

import pytest

from core.classifier import EXPRESSIONS, check_label, parse_label


def test_every_index_and_name_parses() -> None:
    for i, name in enumerate(EXPRESSIONS):
        assert check_label(i) == i
        assert parse_label(i) == parse_label(str(i)) == parse_label(name.upper()) == i
    assert parse_label(" happy ") == 3 and parse_label(None) is None


@pytest.mark.parametrize("bad", [-1, 7, 9, True, 3.0, "3"])
def test_check_label_refuses_what_is_not_an_index(bad: object) -> None:
    with pytest.raises(ValueError, match="label"):
        check_label(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["bored", "7", 9, ""])
def test_parse_label_refuses_unknown_names_and_indexes(bad: str | int) -> None:
    with pytest.raises(ValueError, match=r"unknown expression|outside 0\.\.6"):
        parse_label(bad)
