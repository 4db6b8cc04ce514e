"""`projectors pause | resume <projection>`, and the pause that `replay` and `rebuild` take.

A pause is a record on the control topic (``runtime/control.py``); every worker of the projection,
wherever it runs, leaves the consumer group when it reads it. The command then waits, up to a
bound, until the group has no member: the group's description (the AdminClient's) is the proof,
not the workers' word. A member still there at the bound is named (its member id: client id,
host and pid)
and the command fails: a worker that does not read the control topic (stopped, partitioned, an old
version) must be found and stopped by other means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from projectors.errors import PauseTimeout, RetriableError
from projectors.projections import descriptor
from projectors.runtime.control import PAUSED, RUNNING, ControlReader, ControlState, publish, read_states, who
from projectors.settings import Settings

DEFAULT_PAUSE_TIMEOUT_S = 60.0


def members(settings: Settings, group: str) -> list[str]:
    """The members of ``group`` now, one line each: the member id (the client id, then a uniqueness
    suffix; a worker's client id names its projection, host and pid), and host when known."""
    noisy = logging.getLogger("aiokafka")
    level = noisy.level
    noisy.setLevel(logging.CRITICAL)  # a broker that does not answer: one line below, not aiokafka's
    try:
        return asyncio.run(_describe(settings, group))
    except Exception as exc:
        raise RetriableError(f"cannot describe the consumer group {group}: {exc}") from exc
    finally:
        noisy.setLevel(level)


async def _describe(settings: Settings, group: str) -> list[str]:
    """DescribeGroups through aiokafka (version 2): librdkafka's newer request is answered without
    its members by the local broker (Tansu); Apache Kafka answers both."""
    import ssl

    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    kafka = settings.kafka
    context = None
    if kafka.security_protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, security_protocol=kafka.security_protocol, ssl_context=context,
        sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username or None,
        sasl_plain_password=kafka.sasl_password.get_secret_value() or None, request_timeout_ms=15000,
    )
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    out = []
    for response in responses:
        for described in response.groups:
            error, state, found = described[0], described[2], described[5]
            if error or state in ("Dead", "Empty"):
                continue
            for member in found:
                member_id, host = member[0], member[2]
                out.append(f"{member_id}" + (f" ({host.lstrip('/')})" if host else ""))
    return out


def client_of(member: str) -> str:
    """The client id in a member line (a member id is ``<client id>-<uuid>``)."""
    member_id = member.split(" ", 1)[0]
    return member_id.rsplit("-", 5)[0] if member_id.count("-") >= 5 else member_id


def wait_empty(
    settings: Settings, projection: str, timeout_s: float, say: Callable[[str], None],
    request: str = "", reader: ControlReader | None = None,
) -> float:
    """Wait until the projection's group has no member; the seconds it took. A member whose worker
    acknowledged the pause ``request`` on the control topic counts as gone (its consumer is closed),
    for brokers that keep listing members that left. :class:`PauseTimeout` naming the members
    still there at ``timeout_s``."""
    group = descriptor(projection).group
    started = time.monotonic()
    shown = ""
    while True:
        if reader is not None:
            reader.poll(0.2)
        acked = {c for c, r in (reader.acks if reader is not None else {}).items() if r == request}
        now = [m for m in members(settings, group) if client_of(m) not in acked]
        if not now:
            return time.monotonic() - started
        listed = "; ".join(now)
        if listed != shown:
            say(f"waiting for {len(now)} member(s) of group {group} to leave: {listed}")
            shown = listed
        if time.monotonic() - started > timeout_s:
            raise PauseTimeout(
                f"{projection}: {len(now)} member(s) still in consumer group {group} after {timeout_s:.0f}s: {listed}. "
                "A worker that does not follow the control topic (stopped, cut off from the broker, an older "
                "version) must be stopped by other means"
            )
        time.sleep(1.0)


def state_of(settings: Settings, projection: str) -> ControlState:
    return read_states(settings).get(projection, ControlState())


def pause(settings: Settings, projection: str, timeout_s: float, say: Callable[[str], None], by: str = "") -> float:
    """Write the pause, wait for the group to empty; the seconds the wait took."""
    reader = ControlReader(settings)  # reads the workers' acknowledgements from before the request on
    try:
        record = publish(settings, projection, PAUSED, by or None)
        say(f"{projection}: pause requested (by {record.by}, request {record.request})")
        took = wait_empty(settings, projection, timeout_s, say, record.request, reader)
    finally:
        reader.close()
    say(f"{projection}: paused: group {descriptor(projection).group} is empty ({took:.1f}s)")
    return took


def resume(settings: Settings, projection: str, say: Callable[[str], None], by: str = "") -> None:
    record = publish(settings, projection, RUNNING, by or None)
    say(f"{projection}: resume requested (by {record.by}, request {record.request})")


@contextlib.contextmanager
def paused(
    settings: Settings, projection: str, timeout_s: float, say: Callable[[str], None], why: str
) -> Iterator[ControlState]:
    """The projection paused for the block, its group empty; afterwards it runs again unless it
    was already paused before (an operator's pause outlives a replay or a rebuild). A pause that
    times out is withdrawn the same way before :class:`PauseTimeout` is raised."""
    before = state_of(settings, projection)
    by = f"{who()} ({why})"
    try:
        pause(settings, projection, timeout_s, say, by)
        yield before
    finally:
        if not before.paused:
            resume(settings, projection, say, by)
        else:
            say(f"{projection}: stays paused (paused by {before.by} at {before.at} before this {why})")
