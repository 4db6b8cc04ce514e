"""The read budget's arithmetic (pure logic, a fake clock): items/s and request units/s."""

from __future__ import annotations

from projectors.operations.verify import ReadPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_items_are_paced_to_their_budget_after_one_second_of_burst() -> None:
    clock = Clock()
    pacer = ReadPacer(100, sleep=clock.sleep, clock=clock)
    for _ in range(10):
        pacer.take(50)  # 500 items at 100/s: 5 s, the first second's worth without waiting
    assert pacer.items == 500
    assert 3.9 <= clock.now - 1000.0 <= 5.0 and pacer.waited_s == clock.now - 1000.0


def test_request_units_are_paid_after_the_reads_that_cost_them() -> None:
    clock = Clock()
    charged = [0.0]
    pacer = ReadPacer(0, sleep=clock.sleep, ru_per_s=400, charged=lambda: charged[0], clock=clock)
    for _ in range(10):
        pacer.take(100)
        charged[0] += 200.0  # each page of 100 items cost 200 RU, known once it was read
    pacer.take(0)
    # 2,000 RU at 400 RU/s: 5 s, of which one second may come at once
    assert pacer.request_units == 2000.0
    assert 3.9 <= pacer.waited_s <= 5.0


def test_no_budget_never_waits_and_still_counts() -> None:
    clock = Clock()
    charged = [0.0]
    pacer = ReadPacer(0, sleep=clock.sleep, charged=lambda: charged[0], clock=clock)
    for _ in range(5):
        charged[0] += 1000.0
        pacer.take(1000)
    assert clock.slept == [] and pacer.items == 5000 and pacer.request_units == 5000.0
    assert not pacer.budgeted


def test_a_request_unit_budget_needs_a_store_that_reports_charges() -> None:
    assert not ReadPacer(0, ru_per_s=100).budgeted  # no charges reported: nothing to pace on
