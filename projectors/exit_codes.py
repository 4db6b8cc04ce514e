"""Every exit status a `projectors` process ends with, in one table (:data:`MEANING`): each code
means one thing. The CLI reference lists them (``projectors generate``)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    NOT_DONE = 1
    CONFIGURATION = 2
    DATA_LOSS_RISK = 3
    NOT_PAUSED = 4
    UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE
    BATCH_ABANDONED = 75  # sysexits EX_TEMPFAIL
    WORKER_CONFIGURATION = 78  # sysexits EX_CONFIG
    BROKEN_PIPE = 128 + 13  # as a shell reports a process ended by SIGPIPE


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "done; verify: zero drift",
    ExitCode.NOT_DONE: (
        "a verdict or an unfinished job: verify found drift, a replay's wait ran out, a rebuild was abandoned, a "
        "redrive left letters unapplied, a part of `stack status` is down, a generated file is stale"
    ),
    ExitCode.CONFIGURATION: "a setting, an argument or the connector's properties are wrong (nothing started)",
    ExitCode.DATA_LOSS_RISK: "refused to go on because going on could lose data (a recreated slot, lost offsets)",
    ExitCode.NOT_PAUSED: "pause, replay, rebuild: the consumer group still had members when the pause's bound ran out",
    ExitCode.UNAVAILABLE: "a store, the source or the broker did not answer; verify gives no verdict",
    ExitCode.BATCH_ABANDONED: "a worker stopped without acknowledging its batch, which is redelivered",
    ExitCode.WORKER_CONFIGURATION: "a worker stopped on a configuration error: a credential, a privilege",
    ExitCode.BROKEN_PIPE: "the reader of the output went away",
}
