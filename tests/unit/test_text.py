"""The one home of short text: durations and free text cut to one line, for people and the model."""

from __future__ import annotations

import pytest

from claude_fanout.text import cut, duration, first_line, one_line


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (0.0, "0.0s"),
        (3.24, "3.2s"),
        (9.94, "9.9s"),
        (12.4, "12s"),
        (59.4, "59s"),
        (60.0, "1m00s"),
        (725.9, "12m05s"),
        (3 * 3600 + 7, "180m07s"),
    ],
)
def test_duration_is_tenths_under_ten_seconds_whole_seconds_then_minutes(
    seconds: float | None, shown: str
) -> None:
    assert duration(seconds) == shown


def test_cut_keeps_short_text_and_cuts_long_text_to_the_limit_with_an_ellipsis() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcdef", 4) == "abc\u2026"
    assert len(cut("x" * 500, 120)) == 120


def test_one_line_makes_every_run_of_whitespace_one_space_then_cuts() -> None:
    assert one_line("  a\n\n b\t\tc \r\n") == "a b c"
    assert one_line("word " * 100, 20) == "word word word word\u2026"
    assert one_line("") == ""


def test_first_line_is_the_first_line_that_is_not_blank() -> None:
    assert first_line("\n   \n  error: no such file  \nsecond line") == "error: no such file"
    assert first_line("a" * 300, 150) == "a" * 149 + "\u2026"
    assert first_line(" \n\t\n") == ""
