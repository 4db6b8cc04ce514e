"""The HTTP read API's routes of the redis projection (profiles, leaderboards, trending topics) on a
real stack (PostgreSQL, Debezium, the broker, a redis-server with ACL users, its worker and
`projectors serve`): each answer equals the ReadClient's, bad parameters are 400 problems naming the
field, with Redis stopped every route answers from PostgreSQL, and only with PostgreSQL down too a
503."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from projectors.db.migrate import connect
from projectors.read.client import ReadClient
from projectors.stack.servers import Redis
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, free_port, local_stack
from tests.operations.test_operators import assert_clean
from tests.read.test_api import get, serving, users_of

PARTS = ["postgres", "broker", "redis", "capture", "worker-redis", "reader"]


@pytest.fixture(scope="module")
def redis_api() -> Iterator[StackHandle]:
    env = {**QUICK_BATCHES, "PROJECTORS_READ_WAIT_S": "3", "PROJECTORS_READ_STORE_TIMEOUT_S": "10"}
    with local_stack("projectors-redis-api-", PARTS, **env) as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(41))
            load.seed(users=30, posts=80, follows=150)
            load.run(300)
        assert_clean(handle, ["redis"])
        yield handle


def days() -> list[str]:
    today = datetime.now(UTC).date()
    return [today.isoformat(), (today - timedelta(days=1)).isoformat()]


def http_answers(handle: StackHandle, users: list[str]) -> dict[str, Any]:
    """Every redis route's answer over HTTP: {call: (source, freshness projection, payload)}."""
    out: dict[str, Any] = {}

    def call(name: str, path: str, **params: Any) -> dict[str, Any]:
        status, headers, body = get(handle, path, **params)
        assert status == 200 and headers["content-type"] == "application/json", (path, params, body)
        assert body["freshness"]["projection"] == "redis" and body["caught_up"] is None, body
        out[name] = body["source"]
        return body  # type: ignore[no-any-return]

    out["profiles"] = call("profiles-source", "/v1/profiles", ids=[*users, users[0]])["profiles"]
    for kind, day in [("authors", "all"), *[(k, d) for k in ("authors", "posts", "topics") for d in days()]]:
        body = call(f"{kind}/{day}-source", f"/v1/leaderboards/{kind}", day=day, limit=7)
        assert body["kind"] == kind and body["day"] == day and {i.pop("day") for i in body["items"]} <= {day}
        out[f"{kind}/{day}"] = body["items"]
    body = call("default-source", "/v1/leaderboards/posts")  # today's, the top 10
    assert body["day"] == days()[0]
    out["posts/default"] = [{k: v for k, v in i.items() if k != "day"} for i in body["items"]]
    body = call("trending-source", "/v1/trending-topics", limit=3)
    out["trending"] = [{k: v for k, v in i.items() if k != "day"} for i in body["items"]]
    return out


def client_answers(client: ReadClient, users: list[str], source: str) -> dict[str, Any]:
    """The same calls through the ReadClient in this process, each answered from ``source``."""
    out: dict[str, Any] = {}
    got = client.profiles(users)
    out["profiles"], out["profiles-source"] = dict(got), got.source
    for kind, day in [("authors", "all"), *[(k, d) for k in ("authors", "posts", "topics") for d in days()]]:
        page = client.leaderboard(kind, day, limit=7)
        out[f"{kind}/{day}"], out[f"{kind}/{day}-source"] = list(page), page.source
    page = client.leaderboard("posts")
    out["posts/default"], out["default-source"] = list(page), page.source
    page = client.trending_topics(limit=3)
    out["trending"], out["trending-source"] = list(page), page.source
    assert {v for k, v in out.items() if k.endswith("-source")} == {source}
    return out


def test_the_routes_answer_as_the_client_from_redis_then_from_postgresql(redis_api: StackHandle) -> None:
    users = users_of(redis_api)[:20]
    client = ReadClient(redis_api.settings)
    server = Redis(redis_api.settings)
    try:
        want = client_answers(client, users, "store")
        assert len(want["profiles"]) == len(users) and want["authors/all"] and want["topics/" + days()[0]]
        assert all(p["handle"] for p in want["profiles"].values())
        assert http_answers(redis_api, users) == want
        server.stop()  # every route again: from PostgreSQL, the same answers
        fallback = client_answers(client, users, "postgres")
        assert {k: v for k, v in fallback.items() if not k.endswith("-source")} == {
            k: v for k, v in want.items() if not k.endswith("-source")
        }
        assert http_answers(redis_api, users) == fallback
    finally:
        client.close()
        server.start(60)
    assert_clean(redis_api, ["redis"])


def test_bad_parameters_are_400_problems_naming_the_field(redis_api: StackHandle) -> None:
    user = users_of(redis_api)[0]
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/v1/profiles", {"ids": [user, "nope"]}, "ids", "UUID"),
        ("/v1/profiles", {}, "ids", "required"),
        ("/v1/leaderboards/likes", {}, "kind", "authors"),
        ("/v1/leaderboards/authors", {"day": "2026-13-01"}, "day", "date"),
        ("/v1/leaderboards/authors", {"day": "yesterday"}, "day", "date"),
        ("/v1/leaderboards/posts", {"day": "all"}, "day", "no all-time board"),
        ("/v1/leaderboards/topics", {"limit": 0}, "limit", "greater than or equal"),
        ("/v1/leaderboards/authors", {"limit": 100_000}, "limit", "less than or equal"),
        ("/v1/trending-topics", {"day": "all"}, "day", "date"),
        ("/v1/trending-topics", {"limit": -1}, "limit", "greater than or equal"),
    ]
    for path, params, field, words in cases:
        status, headers, problem = get(redis_api, path, **params)
        assert status == 400 and headers["content-type"] == "application/problem+json", (path, params, problem)
        assert problem["status"] == 400 and field in problem["detail"] and words in json.dumps(problem), problem
        assert {p["name"] for p in problem["invalid-params"]} == {field}, problem


def test_503_with_retry_after_only_when_redis_and_postgres_both_fail(redis_api: StackHandle) -> None:
    user = users_of(redis_api)[0]
    env = {**redis_api.env, "PROJECTORS_READ_API_PORT": str(free_port()), "PROJECTORS_PG_PORT": str(free_port()),
           # refused connections fail at once; the bounds only have to hold on a loaded machine
           "PROJECTORS_READ_STORE_TIMEOUT_S": "10", "PROJECTORS_READ_FALLBACK_TIMEOUT_S": "5"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/profiles", {"ids": [user]}), ("/v1/leaderboards/authors", {"day": "all"}), ("/v1/trending-topics", {}),
    ]
    server = Redis(redis_api.settings)
    try:
        with serving(redis_api, env) as down:
            for path, params in calls:  # PostgreSQL down, Redis answers: no 503
                status, _, body = get(down, path, **params)
                assert status == 200 and body["source"] == "store", (path, body)
            assert get(down, "/v1/profiles", ids=[user])[2]["profiles"][user]["handle"]
            server.stop()
            for path, params in calls:
                status, headers, problem = get(down, path, **params)
                assert status == 503 and headers["retry-after"] == "5", (path, problem)
                assert problem["status"] == 503 and "PostgreSQL" in problem["detail"], problem
    finally:
        server.start(60)
