"""Dead letters without a broker: reading a topic to its true end (the local broker reports a short
end offset), and one dead letter per origin and projection however many letters it was given."""

from __future__ import annotations

from typing import Any

import pytest

from projectors.capture.topics import TopicRecord, drain
from projectors.errors import ConfigurationError, RetriableError
from projectors.operations import dlq
from projectors.operations.dlq import DeadLetter, collapse, parse
from projectors.runtime.dead_letters import RawRecord, dead_letter_value

TOPIC = "projectors.dlq.search"


class Msg:
    def __init__(self, partition: int, offset: int, value: bytes = b"{}") -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value


class Scripted:
    """A consumer whose polls return the scripted batches, then nothing."""

    def __init__(self, *batches: list[Msg]) -> None:
        self.batches = list(batches)
        self.polls = 0

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self.polls += 1
        return self.batches.pop(0) if self.batches else []


def offsets(consumer: Scripted, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int],
            clock: Any = lambda: 0.0) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in drain(consumer, starts, ends, 0.5, deadline=100.0, clock=clock)]


def test_records_past_a_short_end_offset_are_read() -> None:
    """The broker said the end is 2 (the last batch's base + 1); the batch holds 0..4."""
    consumer = Scripted([Msg(0, 0), Msg(0, 1)], [Msg(0, 2), Msg(0, 3), Msg(0, 4)])
    assert offsets(consumer, {(TOPIC, 0): 0}, {(TOPIC, 0): 2}) == [(0, i) for i in range(5)]


def test_an_empty_poll_before_the_end_offsets_does_not_end_the_read() -> None:
    consumer = Scripted([], [Msg(1, 5)], [], [Msg(0, 0)])
    assert offsets(consumer, {(TOPIC, 0): 0, (TOPIC, 1): 5}, {(TOPIC, 0): 1, (TOPIC, 1): 6}) == [(1, 5), (0, 0)]


def test_empty_partitions_end_at_the_first_quiet_poll() -> None:
    consumer = Scripted()
    assert offsets(consumer, {(TOPIC, 0): 0, (TOPIC, 1): 3}, {(TOPIC, 0): 0, (TOPIC, 1): 3}) == []
    assert consumer.polls == 1


def test_a_partition_the_broker_does_not_deliver_fails_at_the_deadline_naming_it() -> None:
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(RetriableError, match=r"projectors\.dlq\.search\[1\] at 0 of 4"):
        offsets(Scripted([Msg(0, 0)]), {(TOPIC, 0): 0, (TOPIC, 1): 0}, {(TOPIC, 0): 1, (TOPIC, 1): 4},
                clock=lambda: next(ticks))


def test_letters_written_after_the_ends_were_reached_do_not_keep_the_read_going() -> None:
    endless = Scripted(*[[Msg(0, i)] for i in range(50)])
    ticks = iter(range(0, 1000, 10))
    got = offsets(endless, {(TOPIC, 0): 0}, {(TOPIC, 0): 1}, clock=lambda: next(ticks))
    assert got[0] == (0, 0) and len(got) < 50


# -- one dead letter per origin ----------------------------------------------------------------------
def letter(offset: int, origin_offset: int, at: str, reason: str = "bad", **note: Any) -> DeadLetter:
    """The letter at ``offset`` of the search dead-letter topic, as the writer makes it."""
    record = RawRecord("social.public.users", 0, origin_offset, b'{"id": "u1"}', b'{"op": "u"}')
    value = {**dead_letter_value("search", record, reason), "failedAt": at, **note}
    return parse("search", TopicRecord(TOPIC, 0, offset, "k", value))


def test_a_rebuild_letter_for_an_origin_already_dead_lettered_is_the_same_dead_letter() -> None:
    worker = letter(0, 7, "2026-12-04T10:00:00Z", "missing source.lsn")
    rebuild = letter(1, 7, "2026-12-04T11:00:00Z", "missing source.lsn (rebuild)", rebuildGeneration=2)
    other = letter(2, 8, "2026-12-04T11:00:01Z")
    found = collapse([rebuild, worker, other], redriven=set())
    assert [(d.id, d.times, d.ids) for d in found] == [
        ("search:0:1", 2, ["search:0:0", "search:0:1"]),
        ("search:0:2", 1, ["search:0:2"]),
    ]
    assert found[0].reason == "missing source.lsn (rebuild)" and found[0].origin["offset"] == 7
    assert "(dead-lettered 2 times)" in found[0].summary() and "times" not in found[1].summary()


def test_a_dead_letter_is_redriven_when_its_newest_letter_is() -> None:
    first, again = letter(0, 7, "2026-12-04T10:00:00Z"), letter(1, 7, "2026-12-04T10:05:00Z")
    # redriven once, it failed again: the new letter waits for a redrive
    assert not collapse([first, again], redriven={"search:0:0"})[0].redriven
    assert collapse([first, again], redriven={"search:0:0", "search:0:1"})[0].redriven


def test_refused_operations_are_one_dead_letter_per_item() -> None:
    def refused(offset: int, item: bytes) -> DeadLetter:
        value = dead_letter_value("search", RawRecord("(operation)", -1, -1, item, None), "store refused Put")
        return parse("search", TopicRecord(TOPIC, 0, offset, item.decode(), value))

    found = collapse([refused(0, b"a"), refused(1, b"b"), refused(2, b"a")], redriven=set())
    assert sorted((d.key, d.times) for d in found) == [("a", 2), ("b", 1)]


def test_ids_of_one_origin_choose_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq redrive search:0:0 search:0:1` (two letters of one origin) redrives it once."""
    found = collapse([letter(0, 7, "2026-12-04T10:00:00Z"), letter(1, 7, "2026-12-04T11:00:00Z"),
                      letter(2, 9, "2026-12-04T11:00:01Z")], redriven=set())
    monkeypatch.setattr(dlq, "letters", lambda _settings, _projection=None: found)
    chosen = dlq.choose(None, ["search:0:0", "search:0:1", "search:0:2"])  # type: ignore[arg-type]
    assert [d.id for d in chosen] == ["search:0:1", "search:0:2"]
    with pytest.raises(ConfigurationError, match="no dead letter search:0:5"):
        dlq.choose(None, ["search:0:5"])  # type: ignore[arg-type]
