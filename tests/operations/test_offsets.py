"""Partition ends on the real broker, whose high watermark stops short of batched records."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from projectors.capture.preflight import ensure_topics
from projectors.operations import offsets
from tests.conftest import running


def test_ends_count_every_record_of_batched_produce() -> None:
    with running("projectors-ends-", ["broker"]) as (settings, _env):
        ensure_topics(settings, {"ends.batched": 1, "ends.single": 1, "ends.empty": 1})
        producer = Producer({**settings.kafka.client_config(), "linger.ms": 50})
        for batch in range(10):  # 10 record batches of 5
            for i in range(5):
                producer.produce("ends.batched", value=f"{batch}-{i}".encode())
            assert producer.flush(10) == 0
        for i in range(3):
            producer.produce("ends.single", value=str(i).encode())
            assert producer.flush(10) == 0
        consumer = Consumer({**settings.kafka.client_config(), "group.id": "ends-probe"})
        _low, watermark = consumer.get_watermark_offsets(TopicPartition("ends.batched", 0), timeout=15)
        consumer.close()
        ends = offsets.ends(settings, ["ends.batched", "ends.single", "ends.empty"])
    assert ends == {("ends.batched", 0): 50, ("ends.single", 0): 3, ("ends.empty", 0): 0}
    # what this broker reports, so that the test shows the case it is about
    assert watermark < 50
