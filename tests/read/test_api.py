"""Cursor paging and the HTTP read API (`projectors serve`, the stack's `reader` part) on the real
stack: paging equals the single-call answer (client, API, PostgreSQL fallback, a Node client), new
posts during paging neither repeat nor skip an item, bad parameters are 400 problems, the served
OpenAPI document is the committed one."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from projectors.db.migrate import connect
from projectors.read.client import ReadClient, commit_token
from projectors.read.cursor import InvalidCursor
from projectors.schemas import SCHEMAS_DIR
from projectors.workload import SocialWorkload
from tests.conftest import QUICK_BATCHES, StackHandle, free_port, local_stack
from tests.operations.test_operators import assert_clean

CELEBRITY_FOLLOWERS = 6
NODE_PAGER = Path(__file__).with_name("page_feed.mjs")


@pytest.fixture(scope="module")
def api_stack() -> Iterator[StackHandle]:
    env = {**QUICK_BATCHES, "PROJECTORS_FEED_CELEBRITY_FOLLOWERS": str(CELEBRITY_FOLLOWERS),
           "PROJECTORS_READ_WAIT_S": "3",
           # a loaded machine's slowest store answer is well under this: only a store down falls back
           "PROJECTORS_READ_STORE_TIMEOUT_S": "30"}
    with local_stack("projectors-api-", **env) as handle:
        with connect(handle.settings.pg) as conn:
            load = SocialWorkload(conn, rng=random.Random(39))
            load.seed(users=30, posts=60, follows=160)
            load.run(250)
        assert_clean(handle, ["feed", "notifications"])
        yield handle


def base_url(handle: StackHandle) -> str:
    return f"http://{handle.settings.read.api_host}:{handle.settings.read.api_port}"


def get(handle: StackHandle, path: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
    url = f"{base_url(handle)}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = answer.read().decode()
            headers = dict(answer.headers)
            status = answer.status
    except urllib.error.HTTPError as exc:
        body, headers, status = exc.read().decode(), dict(exc.headers), exc.code
    return status, headers, json.loads(body) if "json" in headers.get("content-type", "") else body


def users_of(handle: StackHandle) -> list[str]:
    with connect(handle.settings.pg) as conn:
        return [r[0] for r in conn.execute("SELECT id::text FROM users ORDER BY id").fetchall()]


def page_http(handle: StackHandle, path: str, limit: int, **params: Any) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        status, _, body = get(handle, path, limit=limit, cursor=cursor, **params)
        assert status == 200, body
        assert body["source"] == "store" and body["freshness"]["projection"] in ("feed", "notifications")
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(body["items"]) == limit  # only the last page is short


def test_paging_every_feed_and_notifications_equals_the_single_call(api_stack: StackHandle) -> None:
    users = users_of(api_stack)
    client = ReadClient(api_stack.settings)
    # the stores down (Cosmos, and Redis's first pages): every page from PostgreSQL, paged the same way
    fallback = ReadClient(api_stack.with_env(PROJECTORS_COSMOS_ENDPOINT=f"http://127.0.0.1:{free_port()}",
                                             PROJECTORS_REDIS_PORT=str(free_port()),
                                             PROJECTORS_READ_STORE_TIMEOUT_S="2"))
    try:
        with connect(api_stack.settings.pg) as conn:
            celebrities = conn.execute(
                "SELECT count(*) FROM (SELECT followee_id FROM follows GROUP BY 1 HAVING count(*) >= %s) c",
                (CELEBRITY_FOLLOWERS,)).fetchone()
        assert celebrities is not None and celebrities[0] >= 2  # the merge on read is part of the pages
        paged_feeds = paged_notes = multi_page = 0
        for user in users:
            whole = client.feed_page(user, limit=500)
            assert whole.next_cursor is None and whole.source == "store"
            items, pages = page_http(api_stack, f"/v1/users/{user}/feed", 3)
            assert items == list(whole), user
            multi_page += pages > 2
            # the Python client's pages, and PostgreSQL's, are the same
            walked, cursor = [], None
            while True:
                page = fallback.feed_page(user, limit=4, cursor=cursor)
                assert page.source == "postgres"
                walked += list(page)
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert walked == list(whole), user
            paged_feeds += bool(whole)
            notes = client.notifications(user, limit=500)
            items, pages = page_http(api_stack, f"/v1/users/{user}/notifications", 2)
            assert items == list(notes), user
            unread = client.notifications(user, limit=500, unread_only=True)
            items, _ = page_http(api_stack, f"/v1/users/{user}/notifications", 2, unread_only="true")
            assert items == list(unread), user
            paged_notes += bool(notes)
        assert paged_feeds > 20 and paged_notes > 10 and multi_page > 10, (paged_feeds, paged_notes, multi_page)
    finally:
        client.close()
        fallback.close()


def test_paging_while_posts_arrive_repeats_and_skips_nothing(api_stack: StackHandle) -> None:
    with connect(api_stack.settings.pg) as conn:
        row = conn.execute("SELECT follower_id::text FROM follows GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
                           ).fetchone()
        assert row is not None
        reader = row[0]
        followees = [r[0] for r in conn.execute(
            "SELECT followee_id::text FROM follows WHERE follower_id = %s", (reader,)).fetchall()]
    client = ReadClient(api_stack.settings)
    try:
        before = [i["postId"] for i in client.feed_page(reader, limit=500)]
        assert len(before) > 12
        seen: list[str] = []
        cursor, token, added = None, None, []
        while True:
            status, _, body = get(api_stack, f"/v1/users/{reader}/feed", limit=4, cursor=cursor, after=token)
            assert status == 200, body
            assert token is None or body["caught_up"] is True  # the new posts were projected before this page
            seen += [i["postId"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            with connect(api_stack.settings.pg) as conn:  # new posts by the reader and whom they follow
                for author in (reader, random.choice(followees)):
                    added.append(str(uuid.uuid4()))
                    conn.execute("INSERT INTO posts (id, author_id, body, topics, visibility) "
                                 "VALUES (%s, %s, 'arrived while paging', '{}', 'public')", (added[-1], author))
                conn.commit()
                token = commit_token(conn)
        assert seen == before  # every item once, in order, none of the new ones
        fresh = [i["postId"] for i in client.feed_page(reader, limit=len(added) + 1, after=token)]
        assert set(added) <= set(fresh)  # the new ones are on a fresh first page
    finally:
        client.close()


def test_bad_parameters_are_400_problems_naming_the_field(api_stack: StackHandle) -> None:
    a, b = users_of(api_stack)[:2]
    status, _, body = get(api_stack, f"/v1/users/{a}/feed", limit=1)
    assert status == 200 and body["next_cursor"]
    cursor = body["next_cursor"]
    payload, signature = cursor.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    _, _, notes = get(api_stack, f"/v1/users/{a}/notifications", limit=1)
    assert notes["next_cursor"]
    cases = [
        (f"/v1/users/{b}/feed", {"cursor": cursor}, "cursor", "another user"),
        (f"/v1/users/{a}/feed", {"cursor": forged}, "cursor", "not a cursor"),
        (f"/v1/users/{a}/feed", {"cursor": "nonsense"}, "cursor", "pattern"),
        (f"/v1/users/{a}/feed", {"cursor": notes["next_cursor"]}, "cursor", "of notifications"),
        (f"/v1/users/{a}/feed", {"limit": 0}, "limit", "greater than or equal"),
        (f"/v1/users/{a}/notifications", {"limit": 100_000}, "limit", "less than or equal"),
        ("/v1/users/not-a-user/feed", {}, "user_id", "UUID"),
        ("/v1/counters", {"ids": [a, "nope"]}, "ids", "UUID"),
    ]
    for path, params, field, words in cases:
        status, headers, problem = get(api_stack, path, **params)
        assert status == 400 and headers["content-type"] == "application/problem+json", (path, params, problem)
        assert problem["status"] == 400 and field in problem["detail"] and words in json.dumps(problem), problem
        assert [p["name"] for p in problem["invalid-params"]] == [field]
    client = ReadClient(api_stack.settings)
    try:
        with pytest.raises(InvalidCursor, match="another user"):
            client.feed_page(b, limit=5, cursor=cursor)
    finally:
        client.close()


def test_counters_suggestions_search_health_metrics_and_status(api_stack: StackHandle) -> None:
    users = users_of(api_stack)
    client = ReadClient(api_stack.settings)
    try:
        status, _, body = get(api_stack, "/v1/counters", ids=users[:20])
        assert status == 200 and body["counters"] == dict(client.counters(users[:20])) and body["source"] == "store"
        status, _, body = get(api_stack, f"/v1/users/{users[0]}/notifications/unread-count")
        assert status == 200 and body["unread"] == client.unread_count(users[0])
        status, _, body = get(api_stack, f"/v1/users/{users[0]}/suggestions", limit=5)
        assert status == 200 and body["items"] == list(client.suggestions(users[0], 5))
        status, _, body = get(api_stack, "/v1/search/posts", q="", limit=7)
        assert status == 200 and body["items"] == list(client.search("posts", "", limit=7)) and body["items"]
        status, _, body = get(api_stack, "/v1/search/users", q="", limit=3)
        assert status == 200 and len(body["items"]) == 3
    finally:
        client.close()
    assert get(api_stack, "/health")[0] == 200
    status, _, body = get(api_stack, "/ready")
    assert status == 200 and body == {"status": "ready", "source": "store"}
    status, _, text = get(api_stack, "/metrics")
    assert status == 200
    assert 'projectors_read_api_requests_total{method="GET",route="/v1/counters",status="200"}' in text
    assert 'projectors_read_api_request_seconds_count{route="/v1/users/{user_id}/feed"}' in text
    done = api_stack.cli("stack", "status")
    (line,) = [row for row in done.stdout.splitlines() if row.split()[:1] == ["reader"]]
    assert " up " in line and f":{api_stack.settings.read.api_port}/v1/" in line, done.stdout


def test_the_served_openapi_document_is_the_committed_one(api_stack: StackHandle) -> None:
    status, _, served = get(api_stack, "/openapi.json")
    assert status == 200
    committed = json.loads((SCHEMAS_DIR / "openapi.json").read_text())
    assert served == committed, "run `projectors schemas write`"


README = Path(__file__).resolve().parents[2] / "README.md"
RUNNABLE = "<!-- runnable -->"  # the line right above a README block that the suite runs as written


def runnable_snippets() -> list[tuple[str, str]]:
    """(language, code) of every fenced block the README marks runnable."""
    lines = README.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() == RUNNABLE:
            language = lines[i + 1].strip().removeprefix("```")
            end = lines.index("```", i + 2)
            out.append((language, "\n".join(lines[i + 2:end])))
    return out


def test_the_readme_snippets_run_as_written(api_stack: StackHandle) -> None:
    """The README's read examples (Python and curl), run against this stack as a reader would run
    them after the main job: the stack's settings in the environment, nothing else."""
    snippets = runnable_snippets()
    assert [language for language, _ in snippets] == ["python", "sh", "python"], snippets
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")} | api_stack.env
    outputs = []
    for language, code in snippets:
        command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False,
                              cwd=README.parent)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (code, done.stdout[-2000:], done.stderr[-2000:])
        outputs.append(done.stdout)
    curl = outputs[1]
    assert '"next_cursor"' in curl and "HTTP/1.1 400" in curl and "projectors_read_api_requests_total" in curl, curl
    assert outputs[2].split() == ["True", "True"], outputs[2]  # read-your-writes: caught up, the post on the page


def test_503_with_retry_after_only_when_store_and_postgres_both_fail(api_stack: StackHandle) -> None:
    port = free_port()
    env = {**api_stack.env, "PROJECTORS_READ_API_PORT": str(port), "PROJECTORS_PG_PORT": str(free_port()),
           "PROJECTORS_COSMOS_ENDPOINT": f"http://127.0.0.1:{free_port()}", "PROJECTORS_READ_STORE_TIMEOUT_S": "1",
           "PROJECTORS_READ_FALLBACK_TIMEOUT_S": "1", "PROJECTORS_REDIS_PORT": str(free_port())}
    with serving(api_stack, env) as down:
        user = users_of(api_stack)[0]
        status, headers, problem = get(down, f"/v1/users/{user}/feed")
        assert status == 503 and headers["retry-after"] == "5", problem
        assert problem["status"] == 503 and "PostgreSQL" in problem["detail"]
        # the counters store answers: no 503 though PostgreSQL is down
        status, _, body = get(down, "/v1/counters", ids=[user])
        assert status == 200 and body["source"] == "store"


@contextlib.contextmanager
def serving(handle: StackHandle, env: dict[str, str]) -> Iterator[StackHandle]:
    """`projectors serve` of its own with ``env`` (e.g. a PostgreSQL port nothing listens on), up
    and answering /health; stopped afterwards."""
    with subprocess.Popen([*serve_command(), "serve"], env=child_env(env), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            served = StackHandle(handle.with_env(**env), env)
            deadline = time.monotonic() + 60
            while get_or_none(served, "/health") != 200:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                time.sleep(0.3)
            yield served
        finally:
            proc.terminate()
            proc.wait(30)


def serve_command() -> list[str]:
    return [sys.executable, "-m", "projectors.cli"]


def child_env(env: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PROJECTORS_")}, **env}


def get_or_none(handle: StackHandle, path: str) -> int | None:
    try:
        return get(handle, path)[0]
    except OSError:
        return None


def test_a_node_client_pages_a_feed_like_the_python_client(api_stack: StackHandle) -> None:
    client = ReadClient(api_stack.settings)
    try:
        users = users_of(api_stack)
        longest = max(users, key=lambda u: len(client.feed_page(u, limit=500)))
        expected = [i["id"] for i in client.feed_page(longest, limit=500)]
    finally:
        client.close()
    done = subprocess.run(["node", str(NODE_PAGER), base_url(api_stack), longest, "5"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["ids"] == expected and answer["pages"] == -(-len(expected) // 5) and len(expected) > 10


def test_property_based_requests_from_the_openapi_document(api_stack: StackHandle) -> None:
    """Schemathesis generates requests for every operation from schemas/openapi.json: no 5xx, and
    every answer (status, content type, headers, body) conforms to the document."""
    import hypothesis
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_path(str(SCHEMAS_DIR / "openapi.json"))
    base = base_url(api_stack)
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=operation.as_strategy())
        def conforms(case: Any) -> None:
            # a cursor is opaque and signed: no schema can say which strings are one, so a generated
            # "valid" cursor is rightly a 400; every other check holds for those requests too
            opaque = (case.query or {}).get("cursor") is not None
            # nor can it tie `day=all` to the authors leaderboard (the others have UTC days only)
            all_time = (case.query or {}).get("day") == "all" and (case.path_parameters or {}).get("kind") != "authors"
            excluded = [positive_data_acceptance] if opaque or all_time else None
            case.call_and_validate(base_url=base, excluded_checks=excluded)

        conforms()
        tested.append(operation.path)
    assert len(tested) == 13, tested
