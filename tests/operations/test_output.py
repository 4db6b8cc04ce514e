"""What the tools print, as pure functions: a wrong item's differing fields, the recent rate of
`status`, one line per change event, the columns of `stack status`."""

from __future__ import annotations

from pathlib import Path

from projectors.capture.topics import TopicRecord, describe_event
from projectors.model import ItemKey
from projectors.operations.verify import Drift, describe_diff, field_diff
from projectors.runtime.stats import add_rate_sample, recent_rate
from projectors.stack.local import status_lines
from projectors.stack.part import PartStatus


def test_a_wrong_item_names_each_differing_field_with_both_values() -> None:
    expected = {"id": "p1:likes", "count": 3, "kind": "likes", "latest": ["a", "b"], "gone": True}
    held = {"id": "p1:likes", "count": 2, "kind": "likes", "latest": ["a"], "extra": "x"}
    differs = field_diff(expected, held)
    assert differs == {
        "count": {"expected": 3, "held": 2},
        "extra": {"held": "x"},
        "gone": {"expected": True},
        "latest": {"expected": ["a", "b"], "held": ["a"]},
    }
    assert describe_diff(differs) == (
        'count: expected 3, held 2; extra: expected (absent), held "x"; gone: expected true, held (absent); '
        'latest: expected ["a", "b"], held ["a"]'
    )


def test_a_long_value_is_cut_and_many_fields_are_counted() -> None:
    differs = field_diff({f"f{i}": "x" * 100 for i in range(8)}, {})
    line = describe_diff(differs, width=10, fields=2)
    assert line == 'f0: expected "xxxxxxxx…, held (absent); f1: expected "xxxxxxxx…, held (absent); 6 more field(s)'
    assert describe_diff({}) == "no field differs now (changed since it was read)"


def test_a_wrong_sample_carries_its_diff_and_the_others_do_not() -> None:
    drift = Drift("counters")
    key = ItemKey("counters", "p1:likes", "p1")
    assert drift.note("wrong", key, {"count": 3}, limit=2, held={"count": 2})
    assert drift.note("missing", key, {"count": 3}, limit=2)
    assert not drift.note("wrong", key, {"count": 3}, limit=2, held={"count": 1})  # over the limit
    assert drift.samples[0]["differs"] == {"count": {"expected": 3, "held": 2}}
    assert "differs" not in drift.samples[1] and len(drift.samples) == 2


def test_the_rate_is_over_the_last_minute_not_since_start() -> None:
    samples: list[tuple[float, int]] = []
    add_rate_sample(samples, 0.0, 0)
    for second in range(1, 301):  # 100 events/s for four minutes, then 10 events/s for one
        add_rate_sample(samples, float(second), 100 * min(second, 240) + 10 * max(0, second - 240))
    events = samples[-1][1]
    assert events == 24_600
    assert abs(recent_rate(samples, events, 300.0) - 10.0) < 2.0  # since start: 82/s
    assert len(samples) <= 60 / 5 + 3  # a sample every 5 s at most, one older than the window


def test_an_idle_worker_rates_zero_and_a_young_one_rates_since_its_start() -> None:
    samples: list[tuple[float, int]] = []
    add_rate_sample(samples, 0.0, 0)
    add_rate_sample(samples, 10.0, 500)
    assert recent_rate(samples, 500, 20.0) == 25.0  # younger than the window: 500 in 20 s
    assert recent_rate(samples, 500, 600.0) == 0.0  # nothing written for ten minutes
    assert recent_rate([], 0, 5.0) == 0.0


def test_a_change_event_is_one_line_with_operation_table_key_and_lsn() -> None:
    record = TopicRecord(
        "social.public.follows", 2, 17,
        {"follower_id": "a1", "followee_id": "b2"},
        {"op": "c", "after": {"body": "x" * 1000}, "source": {"table": "follows", "lsn": 2468}},
    )
    line = describe_event(record)
    assert line == "create follows   follower_id=a1 followee_id=b2  lsn=2468  (social.public.follows[2]@17)"


def test_stack_status_rows_keep_their_columns_aligned() -> None:
    rows = [
        PartStatus("postgres", True, "127.0.0.1:55432", 101, Path("/s/logs/postgres.log")),
        PartStatus("cosmos-notifications", False, "http://127.0.0.1:58083", None, Path("/s/logs/c.log")),
        PartStatus("worker-notifications", True, "group projectors-notifications", 2002, Path("/s/logs/w.log")),
    ]
    lines = status_lines(rows)
    state = len("  worker-notifications  ")
    assert [line[state:state + 4].strip() for line in lines] == ["up", "down", "up"], lines
    for marker in ("pid=", "log="):
        assert len({line.index(marker) for line in lines}) == 1, (marker, lines)
