"""The one home of short text: durations and free text cut to one line, for people and the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_fanout.text import cut, duration, first_line, one_line, printable


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


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[31mred\x1b[0m b", "ared b"),  # colours: dropped whole
        ("x\x1b]0;TITLE\x07y", "xy"),  # a window title (OSC ... BEL)
        ("x\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\z", "xlinkz"),  # a hyperlink (OSC ... ST)
        ("x\x1bPDCS\x1b\\y", "xy"),  # a device control string
        ("ok\x9b31mX", "okX"),  # the one-byte (C1) CSI
        ("x\x1bcy", "xy"),  # ESC and one character (a reset)
        ("a\u202eb\u200bc\x00d\x7f", "abcd"),  # bidi override, zero-width, NUL, DEL
        ("one\r\ntwo\u2028three\tfour", "one two three four"),
        ("é 日本 🙂", "é 日本 🙂"),
        ("cut\x1b[", "cut"),  # an escape cut short
    ],
)
def test_printable_drops_escapes_and_invisible_characters_and_keeps_text(
    raw: str, shown: str
) -> None:
    assert printable(raw) == shown


@given(st.text(), st.integers(min_value=1, max_value=80))
def test_printable_output_never_holds_a_character_a_terminal_acts_on(raw: str, limit: int) -> None:
    line = printable(raw, limit)
    assert line.isprintable() and "\x1b" not in line and len(line) <= limit
