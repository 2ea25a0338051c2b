"""Tests for scenarios.clock: the three clocks and the parsers behind --clock/--at/--compress."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.clock import (
    Clock,
    CompressedClock,
    PinnedClock,
    RealClock,
    check_compression,
    format_instant,
    parse_clock,
    parse_duration,
    parse_epoch,
    parse_when,
)
from scenarios.errors import UsageError

START = datetime(2024, 6, 1, tzinfo=UTC)
END = START + timedelta(days=120)  # 2024-09-29
EPOCH = 1732579200.0  # 2024-11-26T00:00:00Z
PLUS_8 = timezone(timedelta(hours=8))


@pytest.fixture
def compressed() -> CompressedClock:
    """120 scenario days onto 300 wall seconds: one wall second is 9 h 36 min of scenario."""
    return CompressedClock(START, END, 300.0, EPOCH)


# --- CompressedClock -------------------------------------------------------------------------


def test_compressed_factor(compressed: CompressedClock) -> None:
    assert compressed.factor == 34560.0


@pytest.mark.parametrize(
    ("wall", "scenario"),
    [
        (EPOCH, START),
        (EPOCH + 1, datetime(2024, 6, 1, 9, 36, tzinfo=UTC)),
        (EPOCH + 150, datetime(2024, 7, 31, tzinfo=UTC)),
        (EPOCH + 300, END),
        (EPOCH + 0.25, datetime(2024, 6, 1, 2, 24, tzinfo=UTC)),
        # Before the epoch and after the end the line keeps going.
        (EPOCH - 30, datetime(2024, 5, 20, tzinfo=UTC)),
        (EPOCH + 330, datetime(2024, 10, 11, tzinfo=UTC)),
    ],
)
def test_compressed_round_trip(compressed: CompressedClock, wall: float, scenario: datetime) -> None:
    assert compressed.scenario_at(wall) == scenario
    assert compressed.wall_at(scenario) == wall


def test_compressed_wall_at_accepts_any_offset(compressed: CompressedClock) -> None:
    assert compressed.wall_at(datetime(2024, 7, 31, 8, tzinfo=PLUS_8)) == EPOCH + 150


def test_compressed_describe() -> None:
    clock = CompressedClock(START, datetime(2024, 10, 1, tzinfo=UTC), 300.0, EPOCH)
    assert clock.describe() == (
        "compressed: 2024-06-01T00:00:00Z..2024-10-01T00:00:00Z onto 300 s from wall 1732579200.0 (x35136)"
    )
    assert CompressedClock(START, START + timedelta(hours=1), 7200.0, 0.5).describe() == (
        "compressed: 2024-06-01T00:00:00Z..2024-06-01T01:00:00Z onto 7200 s from wall 0.5 (x0.5)"
    )


def test_compressed_normalises_offsets_to_utc() -> None:
    clock = CompressedClock(datetime(2024, 6, 1, 8, tzinfo=PLUS_8), END, 300.0, EPOCH)
    assert clock.start == START
    assert clock.start.tzinfo is UTC


def test_compressed_now_reads_the_wall_clock(
    compressed: CompressedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scenarios.clock.time.time", lambda: EPOCH + 150)
    assert compressed.now() == datetime(2024, 7, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end": START}, "end (2024-06-01T00:00:00Z) must be after start (2024-06-01T00:00:00Z)"),
        ({"duration_s": 0.0}, "duration_s (0.0) must be a finite number above zero"),
        ({"duration_s": -5.0}, "duration_s (-5.0) must be a finite number above zero"),
        ({"duration_s": float("inf")}, "duration_s (inf) must be a finite number above zero"),
        ({"epoch": float("nan")}, "epoch (nan) must be a finite unix time"),
        ({"start": datetime(2024, 6, 1)}, "start (2024-06-01T00:00:00) must be timezone-aware"),
    ],
)
def test_compressed_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"start": START, "end": END, "duration_s": 300.0, "epoch": EPOCH}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CompressedClock(**(values | kwargs))  # type: ignore[arg-type]


def test_wall_at_refuses_naive_datetimes(compressed: CompressedClock) -> None:
    with pytest.raises(ValueError, match=r"^scenario \(2024-07-31T00:00:00\) must be timezone-aware$"):
        compressed.wall_at(datetime(2024, 7, 31))


@settings(max_examples=500, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    window_s=st.floats(min_value=3600.0, max_value=400 * 86400.0),
    compression=st.floats(min_value=1.0, max_value=1e6),
    epoch=st.floats(min_value=1e9, max_value=2e9),
    position=st.floats(min_value=-2.0, max_value=3.0),
)
def test_compressed_wall_scenario_wall_round_trip(
    start: datetime, window_s: float, compression: float, epoch: float, position: float
) -> None:
    # Compression factors >= 1 are the product's use; datetime's microsecond resolution means an
    # *expanded* clock (factor < 1) could only promise 0.5 µs / factor.
    end = start + timedelta(seconds=window_s)
    clock = CompressedClock(start, end, (end - start).total_seconds() / compression, epoch)
    wall = epoch + position * clock.duration_s
    assert abs(clock.wall_at(clock.scenario_at(wall)) - wall) <= 1e-6


# --- RealClock and PinnedClock ---------------------------------------------------------------


def test_real_clock() -> None:
    clock = RealClock()
    assert clock.scenario_at(EPOCH) == datetime(2024, 11, 26, tzinfo=UTC)
    assert clock.scenario_at(EPOCH + 0.5) == datetime(2024, 11, 26, 0, 0, 0, 500000, tzinfo=UTC)
    assert clock.wall_at(datetime(2024, 11, 26, 8, tzinfo=PLUS_8)) == EPOCH
    assert clock.describe() == "real: scenario time is wall time"


def test_real_clock_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scenarios.clock.time.time", lambda: EPOCH)
    assert RealClock().now() == datetime(2024, 11, 26, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.0, max_value=4e9))
def test_real_clock_round_trip(wall: float) -> None:
    assert abs(RealClock().wall_at(RealClock().scenario_at(wall)) - wall) <= 1e-6


def test_pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2024, 7, 10, 12, tzinfo=UTC)
    clock = PinnedClock(at)
    assert clock.scenario_at(0.0) == at
    assert clock.scenario_at(EPOCH) == at
    monkeypatch.setattr("scenarios.clock.time.time", lambda: EPOCH)
    assert clock.now() == at
    assert clock.describe() == "pinned: 2024-07-10T12:00:00Z"
    expected = "a pinned clock has no inverse: every wall instant maps to 2024-07-10T12:00:00Z"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        clock.wall_at(at)


def test_pinned_clock_normalises_to_utc() -> None:
    assert PinnedClock(datetime(2024, 7, 10, 20, tzinfo=PLUS_8)).at == datetime(2024, 7, 10, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"^at \(2024-07-10T00:00:00\) must be timezone-aware$"):
        PinnedClock(datetime(2024, 7, 10))


# --- format_instant --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (datetime(2024, 7, 10, tzinfo=UTC), "2024-07-10T00:00:00Z"),
        (datetime(2024, 7, 10, 12, 30, 5, tzinfo=UTC), "2024-07-10T12:30:05Z"),
        (datetime(2024, 7, 10, 12, 30, 5, 250000, tzinfo=UTC), "2024-07-10T12:30:05.250000Z"),
        (datetime(2024, 7, 10, 12, 30, 5, 7, tzinfo=UTC), "2024-07-10T12:30:05.000007Z"),
        (datetime(2024, 7, 10, 8, tzinfo=PLUS_8), "2024-07-10T00:00:00Z"),
    ],
)
def test_format_instant(instant: datetime, text: str) -> None:
    assert format_instant(instant) == text
    assert parse_when(text) == instant


def test_format_instant_refuses_naive() -> None:
    with pytest.raises(ValueError, match=r"^instant \(2024-07-10T00:00:00\) must be timezone-aware$"):
        format_instant(datetime(2024, 7, 10))


# --- parse_when ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-07-10", datetime(2024, 7, 10, tzinfo=UTC)),
        ("2024-07-10T12:00", datetime(2024, 7, 10, 12, tzinfo=UTC)),
        ("2024-07-10T12:00:00Z", datetime(2024, 7, 10, 12, tzinfo=UTC)),
        ("2024-07-10T12:00:00+08:00", datetime(2024, 7, 10, 4, tzinfo=UTC)),
        ("2024-07-10T12:00:00.250-05:30", datetime(2024, 7, 10, 17, 30, 0, 250000, tzinfo=UTC)),
        ("2024-07-10 12:00", datetime(2024, 7, 10, 12, tzinfo=UTC)),
        ("2024-07-10T00:30+01:00", datetime(2024, 7, 9, 23, 30, tzinfo=UTC)),
        ("  2024-07-10  ", datetime(2024, 7, 10, tzinfo=UTC)),
    ],
)
def test_parse_when_accepts(text: str, expected: datetime) -> None:
    parsed = parse_when(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-13-01",
        "2024-07-10T25:00",
        "1720612800",
        "12:00",
        "2024/07/10",
        "0001-01-01T00:00+01:00",
    ],
)
def test_parse_when_rejects(text: str) -> None:
    with pytest.raises(
        UsageError, match=f"^WHEN: {re.escape(repr(text))} is not a date or ISO-8601 instant$"
    ):
        parse_when(text)


def test_parse_when_names_the_argument() -> None:
    with pytest.raises(UsageError, match=r"^--at: 'soon' is not a date or ISO-8601 instant$"):
        parse_when("soon", what="--at")


# --- parse_duration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300", 300.0),
        ("300s", 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("90ms", 0.09),
        ("1m30s", 90.0),
        ("1d2h3m4s5ms", 93784.005),
        ("0.5", 0.5),
        (".5s", 0.5),
        (" 5m ", 300.0),
        ("+5m", 300.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "abc", "5x", "5 m", "m", "30m1h", "1h1h", "1e3", "inf", "nan", "5m-", "--5", "5ms3s", "1,5h"]
)
def test_parse_duration_rejects_junk(text: str) -> None:
    expected = f"DURATION: {text!r} is not a duration (e.g. 300, 300s, 5m, 1h30m, 2d, 90ms)"
    with pytest.raises(UsageError, match=f"^{re.escape(expected)}$"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0m0s", "0.0", "-5m", "-0", "-300"])
def test_parse_duration_rejects_zero_and_negative(text: str) -> None:
    with pytest.raises(UsageError, match=f"^DURATION: {re.escape(repr(text))} must be greater than zero$"):
        parse_duration(text)


TOO_LONG = "is too long (at most 999,999,999 days, the longest a timedelta holds)"


@pytest.mark.parametrize("text", ["9" * 400, "99999999999999999999d", "1000000000d", "86400000000000s1ms"])
def test_parse_duration_rejects_what_no_timedelta_holds_and_names_the_argument(text: str) -> None:
    """A duration must add to an instant: 10**20 days was accepted (8.6e24 s) and overflowed later,
    as a traceback in the load test's plan or a clock that never moved."""
    with pytest.raises(UsageError, match=f"^--duration: {re.escape(repr(text))} {re.escape(TOO_LONG)}$"):
        parse_duration(text, what="--duration")


def test_parse_duration_takes_the_longest_timedelta() -> None:
    assert parse_duration("999999999d", what="--duration") == 999_999_999 * 86400.0
    assert START + timedelta(seconds=parse_duration("999999d")) > START


# --- parse_clock -----------------------------------------------------------------------------


def _clock(spec: str) -> Clock:
    return parse_clock(spec, window_start=START, window_end=END, now_wall=EPOCH)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("real", RealClock()),
        ("at:2024-07-10T12:00:00Z", PinnedClock(datetime(2024, 7, 10, 12, tzinfo=UTC))),
        ("at:2024-07-10", PinnedClock(datetime(2024, 7, 10, tzinfo=UTC))),
        ("compress:5m", CompressedClock(START, END, 300.0, EPOCH)),
        ("compress:300@1700000000", CompressedClock(START, END, 300.0, 1700000000.0)),
        ("compress:5m@1700000000.25", CompressedClock(START, END, 300.0, 1700000000.25)),
        ("compress:2h@2024-11-26T00:00:00Z", CompressedClock(START, END, 7200.0, EPOCH)),
        ("compress:2h@2024-11-26T08:00+08:00", CompressedClock(START, END, 7200.0, EPOCH)),
    ],
)
def test_parse_clock_accepts(spec: str, expected: Clock) -> None:
    assert _clock(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fast", "--clock: 'fast' is not real, at:WHEN or compress:DURATION[@EPOCH]"),
        ("", "--clock: '' is not real, at:WHEN or compress:DURATION[@EPOCH]"),
        ("real:now", "--clock: 'real:now' is not real, at:WHEN or compress:DURATION[@EPOCH]"),
        ("at:", "--clock: 'at:' is not real, at:WHEN or compress:DURATION[@EPOCH]"),
        ("compress:", "--clock: 'compress:' is not real, at:WHEN or compress:DURATION[@EPOCH]"),
        ("at:tomorrow", "--at: 'tomorrow' is not a date or ISO-8601 instant"),
        ("compress:0", "--compress: '0' must be greater than zero"),
        ("compress:5x", "--compress: '5x' is not a duration (e.g. 300, 300s, 5m, 1h30m, 2d, 90ms)"),
        ("compress:5m@soon", "--compress: EPOCH 'soon' is not a unix time or ISO-8601 instant"),
        ("compress:5m@", "--compress: EPOCH '' is not a unix time or ISO-8601 instant"),
        (
            "compress:5m@" + "9" * 400,
            f"--compress: EPOCH '{'9' * 400}' is not a unix time or ISO-8601 instant",
        ),
    ],
)
def test_parse_clock_rejects(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        _clock(spec)


WINDOW_TOO_SHORT = ("is longer than the scenario window it compresses (120 days): at most the window "
                    "itself, which replays it in real time")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("compress:121d", f"--compress: '121d' {WINDOW_TOO_SHORT}"),
        ("compress:99999999999999999999d",
         f"--compress: '99999999999999999999d' {TOO_LONG}"),
        ("compress:5m@99999999999999999999",
         "--compress: EPOCH '99999999999999999999' is out of range (a unix time of the years 1 to "
         "9999)"),
        ("compress:5m@-99999999999",
         "--compress: EPOCH '-99999999999' is out of range (a unix time of the years 1 to 9999)"),
    ],
)
def test_parse_clock_rejects_a_clock_that_would_not_run(spec: str, message: str) -> None:
    """Compressing 120 days onto more than 120 days stretches them (onto 10**20 days the clock
    read 'x0' and never moved); an EPOCH past year 9999 overflowed on every request."""
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        _clock(spec)


def test_parse_clock_compresses_onto_the_whole_window_at_most() -> None:
    clock = _clock("compress:120d")
    assert isinstance(clock, CompressedClock) and clock.factor == 1.0
    assert _clock("compress:5m@253402300799").epoch == 253402300799.0  # 9999-12-31T23:59:59Z


def test_check_compression_names_its_argument_and_the_window_in_its_unit() -> None:
    three_hours = (START, START + timedelta(hours=3))
    with pytest.raises(UsageError, match=r"^--duration: '4h' is longer than the scenario window it "
                                         r"compresses \(3 h\): "):
        check_compression(4 * 3600.0, *three_hours, what="--duration", text="4h")
    check_compression(3 * 3600.0, *three_hours, what="--duration", text="3h")


def test_parse_epoch_reads_unix_times_and_instants_in_range() -> None:
    assert parse_epoch("1732579200.5") == 1732579200.5
    assert parse_epoch("2024-11-26T00:00:00Z") == EPOCH
    for bad in ("nan", "inf", "1e9", "soon"):
        with pytest.raises(UsageError, match=f"^--epoch {re.escape(repr(bad))} is not a unix time "):
            parse_epoch(bad, prefix="--epoch")
