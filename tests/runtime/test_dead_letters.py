"""Dead letters on the real broker: a letter is never lost, even when the broker is gone for longer
than the producer's delivery timeout."""

from __future__ import annotations

import time

import pytest

from projectors.capture.preflight import ensure_topics
from projectors.capture.topics import read_from_start
from projectors.errors import RetriableError
from projectors.runtime.dead_letters import DeadLetterWriter, RawRecord, dead_letter_topic
from projectors.settings import load_settings
from projectors.stack import local
from tests.conftest import private_dir, stack_env


def test_a_letter_that_failed_delivery_is_sent_again_by_the_retried_flush() -> None:
    settings = load_settings(stack_env(private_dir("projectors-dlq-")))
    # the broker is not up yet: the letter's delivery times out (1 s) and fails
    writer = DeadLetterWriter(settings, "graph", delivery_timeout_ms=1000)
    origin = RawRecord("social.public.posts", 2, 41, b'{"id":"p1"}', b"{not json")
    writer.send(origin, "value is not JSON")
    with pytest.raises(RetriableError, match="1 failed"):
        writer.flush(timeout_s=5)
    try:
        local.up(settings, ["broker"], say=lambda _line: None)
        ensure_topics(settings, {dead_letter_topic(settings, "graph"): 1})
        deadline = time.monotonic() + 60
        while True:  # what the batch's retry does: flush again until the broker has every letter
            try:
                writer.flush(timeout_s=5)
                break
            except RetriableError:
                if time.monotonic() > deadline:
                    raise
        letters = list(read_from_start(settings, [dead_letter_topic(settings, "graph")], timeout_s=30, idle_s=3))
    finally:
        local.down(settings, ["broker"], say=lambda _line: None)
    assert [r.value["origin"] for r in letters] == [{"topic": "social.public.posts", "partition": 2, "offset": 41}]
    assert letters[0].value["reason"] == "value is not JSON"
    assert letters[0].key == {"id": "p1"}


def test_a_letter_is_bounded_whatever_the_events_size() -> None:
    """A 2 MB value (over the broker's 1 MB limit) gives a letter of a few hundred bytes: origin,
    reason, the value's size and hash; the value itself is read from its origin when redriven."""
    import hashlib
    import json

    from projectors.runtime.dead_letters import VALUE_LIMIT, dead_letter_value

    big = b'{"op": "c", "after": {"body": "' + b"x" * 2_000_000 + b'"}}'
    letter = dead_letter_value("graph", RawRecord("social.public.posts", 0, 7, b'{"id":"p"}', big), "r" * 10**6)
    assert len(json.dumps(letter)) < 10_000
    assert letter["value"] is None and letter["valueTruncated"] is True and letter["valueBytes"] == len(big)
    assert letter["valueSha256"] == hashlib.sha256(big).hexdigest()
    small = b'{"op": "c"}'
    kept = dead_letter_value("graph", RawRecord("t", 0, 1, None, small), "bad")
    assert kept["value"] == small.decode() and kept["valueTruncated"] is False and len(small) < VALUE_LIMIT


def test_a_dead_letter_that_cannot_be_written_stops_the_batch_unacknowledged() -> None:
    """The broker never answers: after bounded flushes the batch raises DeadLetterFailed (the worker
    exits non-zero with it and the batch is redelivered), it never returns as if it were done."""
    from projectors.errors import DeadLetterFailed
    from projectors.runtime.batch import DEAD_LETTER_ATTEMPTS, BatchProjector
    from tests.runtime.test_isolation import Connection, Picky, Store, user

    settings = load_settings(stack_env(private_dir("projectors-dlq-")))  # nothing listens on its ports
    writer = DeadLetterWriter(settings, "picky", delivery_timeout_ms=60_000)
    writer.flush_timeout_s = 0.2
    store = Store()
    projector = BatchProjector(Picky(), store, lambda: Connection(), writer,  # type: ignore[arg-type, return-value]
                               retry_initial_s=0.01, retry_max_s=0.02)
    poison = RawRecord("social.public.users", 0, 3, b"{}", b"{not json")
    with pytest.raises(DeadLetterFailed, match="dead letters could not be written"):
        projector.process([user(1, "u1"), poison, user(2, "u2")])
    assert projector.stats.batches == 0  # not counted as done
    assert projector.stats.retries == DEAD_LETTER_ATTEMPTS - 1
    writer.producer.purge()
    del projector, writer  # the producer (and its reconnect attempts to nothing) goes with them
    import gc

    gc.collect()
