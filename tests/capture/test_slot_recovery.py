"""The documented recovery from a lost slot, on the whole local stack: PostgreSQL invalidates the slot
(a small max_slot_wal_keep_size) while capture is down and rows are changed and deleted; capture
refuses; `projectors capture --recover-slot` and a start of capture bring every projection back to
zero drift."""

from __future__ import annotations

import random

from projectors.db.migrate import connect
from projectors.projections import PROJECTIONS
from projectors.stack.commands import Capture
from projectors.workload import SocialWorkload
from tests.capture.helpers import slot_lost
from tests.conftest import QUICK_BATCHES, local_stack
from tests.operations.test_operators import assert_clean

NAMES = list(PROJECTIONS)


def test_a_lost_slot_is_refused_and_the_recovery_brings_every_projection_back_to_zero_drift() -> None:
    with local_stack("projectors-recover-", **QUICK_BATCHES) as handle:
        settings = handle.settings
        writer = connect(settings.pg)  # one connection for the workload all along
        load = SocialWorkload(writer, rng=random.Random(71))
        load.seed(users=20, posts=30, follows=60)
        load.run(100)
        assert_clean(handle, NAMES)
        capture = Capture(settings)
        capture.stop()
        load.run(150)  # changes no capture streams: edits, deletes, new rows
        for _ in range(3):
            load.delete_post()
        writer.commit()
        try:
            with slot_lost(settings, settings.capture.slot_name):
                refused = handle.cli("capture")
                assert refused.returncode == 3 and "--recover-slot" in refused.stderr, refused.stderr

                recovered = handle.cli("capture", "--recover-slot", timeout=1800)
                assert recovered.returncode == 0, recovered.stdout[-3000:] + recovered.stderr[-3000:]
                assert f"created replication slot {settings.capture.slot_name}" in recovered.stdout
                assert all(f"rebuilt {name}" in recovered.stdout for name in NAMES), recovered.stdout[-3000:]
                capture.start(120)
                load.run(50)  # and capture streams from the new position
                assert_clean(handle, NAMES)
        finally:
            writer.close()
