"""The HTTP read API: every :class:`ReadClient` call for read services in any language
(``projectors serve``, FastAPI on uvicorn; the contract is ``schemas/openapi.json``).

Paths under ``/v1/`` (the redis projection's profiles, leaderboards and trending topics too); JSON
bodies whose items are the projection documents, with ``source`` (store or postgres), ``freshness``
and, for a read given a writer's commit token (``after``), ``caught_up``. Paged lists (feed,
notifications) carry ``next_cursor``. Errors are RFC 9457 ``application/problem+json``: 400 naming
the parameter for a bad id, limit, cursor, leaderboard kind or day; 503 with ``Retry-After`` only
when neither the store nor PostgreSQL answered. ``/health`` (the process
answers), ``/ready`` (a read can be answered) and ``/metrics`` (Prometheus: requests and latency per
route, and the client's fallbacks).
"""


import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from projectors.projections.base import iso
from projectors.read import api_models as m
from projectors.read.client import Counts, Items, Page, ReadClient, ReadUnavailable
from projectors.read.cursor import InvalidCursor
from projectors.settings import Settings

RETRY_AFTER_S = 5
# how a search's words match (docs/projections.md, "How words match")
WORDS = "words, every one required, the last one as a prefix; no stemming (Meilisearch also tolerates typos)"
POST_WORDS = f"{WORDS}; matched in the post's body and topics"
USER_WORDS = f"{WORDS}; matched in the user's handle, displayName and bio"
PROBLEM = "application/problem+json"
REQUESTS = Counter("projectors_read_api_requests", "HTTP read API requests", ["route", "method", "status"])
LATENCY = Histogram(
    "projectors_read_api_request_seconds", "HTTP read API request latency", ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": m.Problem, "description": "a bad parameter (named in invalid-params)"},
    503: {"model": m.Problem, "description": "neither the store nor PostgreSQL answered; see Retry-After"},
}
UserId = Annotated[uuid.UUID, "a user id (uuid)"]
After = Annotated[
    int | None,
    Query(ge=0, description="read-your-writes: the writer's commit token (`projectors.read.client.commit_token`); "
          "the read first waits up to PROJECTORS_READ_WAIT_S for the projection to apply it"),
]
Cursor = Annotated[
    str | None,
    Query(max_length=1000, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
          description="the `next_cursor` of the previous page (opaque, signed); absent: the first page"),
]


def problem(status: int, title: str, detail: str, params: list[m.InvalidParam] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = m.Problem.model_validate(
        {"title": title, "status": status, "detail": detail, "invalid-params": params}
    )
    return JSONResponse(body.model_dump(by_alias=True, exclude_none=True), status_code=status,
                        media_type=PROBLEM, headers=headers)


def closing(reader: ReadClient) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()

    return lifespan


def create_app(settings: Settings, client: ReadClient | None = None) -> FastAPI:
    """The API over ``client`` (default: a new :class:`ReadClient` of ``settings``, closed at shutdown)."""
    reader = client or ReadClient(settings)
    limit_max = settings.read.max_limit
    Limit = Annotated[int, Query(ge=1, le=limit_max, description=f"items per page, 1 to {limit_max}")]

    app = FastAPI(
        title="projectors read API", version="1",
        description="Feeds, notifications, counters, suggestions, search, profiles and leaderboards from the "
        "projections, with cursor "
        "paging, read-your-writes and a PostgreSQL fallback. Items are the projection documents of "
        "schemas/projections (the same models).",
        lifespan=None if client is not None else closing(reader),
    )

    def freshness(projection: str) -> m.Freshness:
        return m.Freshness(projection=projection, behind_s=reader.behind_s(projection))  # type: ignore[arg-type]

    def answer(projection: str, got: Page | Counts | Items) -> dict[str, Any]:
        return {"source": got.source, "caught_up": got.caught_up, "freshness": freshness(projection)}

    def paged(projection: str, got: Page) -> dict[str, Any]:
        return {**answer(projection, got), "items": list(got), "next_cursor": got.next_cursor}

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc: ("query" | "path", name, [index in a list])
        params = [m.InvalidParam(name=str(e["loc"][1] if len(e["loc"]) > 1 else e["loc"][-1]), reason=str(e["msg"]))
                  for e in exc.errors()]
        names = ", ".join(dict.fromkeys(p.name for p in params))
        return problem(400, "Bad request", f"invalid parameter(s): {names}", params)

    @app.exception_handler(InvalidCursor)
    async def bad_cursor(_request: Request, exc: InvalidCursor) -> JSONResponse:
        return problem(400, "Bad request", str(exc), [m.InvalidParam(name=exc.field, reason=str(exc))])

    @app.exception_handler(ReadUnavailable)
    async def unavailable(_request: Request, exc: ReadUnavailable) -> JSONResponse:
        return problem(503, "Service unavailable", str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response

    @app.get("/v1/users/{user_id}/feed", response_model=m.FeedPage, responses=PROBLEMS, tags=["feed"])
    def feed(user_id: UserId, limit: Limit = 50, cursor: Cursor = None, after: After = None) -> dict[str, Any]:
        """The user's feed, newest first (createdAt, then postId, both descending), celebrities' posts merged."""
        return paged("feed", reader.feed_page(str(user_id), limit, cursor, after=after))

    @app.get("/v1/users/{user_id}/notifications", response_model=m.NotificationsPage, responses=PROBLEMS,
             tags=["notifications"])
    def notifications(user_id: UserId, limit: Limit = 50, cursor: Cursor = None, unread_only: bool = False,
                      after: After = None) -> dict[str, Any]:
        """The user's notifications, newest first (latestAt, then id, both descending)."""
        got = reader.notifications(str(user_id), limit, cursor, unread_only=unread_only, after=after)
        return paged("notifications", got)

    @app.get("/v1/users/{user_id}/notifications/unread-count", response_model=m.UnreadCount, responses=PROBLEMS,
             tags=["notifications"])
    def unread_count(user_id: UserId, after: After = None) -> dict[str, Any]:
        got = reader.unread_counts(str(user_id), after=after)
        return {**answer("notifications", got), "unread": got[str(user_id)]["unread"]}

    @app.get("/v1/counters", response_model=m.Counters, responses=PROBLEMS, tags=["counters"])
    def counters(
        ids: Annotated[list[uuid.UUID], Query(min_length=1, max_length=limit_max,
                                              description="post or user ids (repeat the parameter)")],
        after: After = None,
    ) -> dict[str, Any]:
        """Likes and replies of posts; followers, following and posts of users: one round trip to the store."""
        got = reader.counters([str(i) for i in ids], after=after)
        return {**answer("counters", got), "counters": dict(got)}

    @app.get("/v1/users/{user_id}/suggestions", response_model=m.Suggestions, responses=PROBLEMS, tags=["graph"])
    def suggestions(user_id: UserId, limit: Annotated[int, Query(ge=1, le=limit_max)] = 10,
                    after: After = None) -> dict[str, Any]:
        """Friends of friends the user does not follow, by mutual followees."""
        got = reader.suggestions(str(user_id), limit, after=after)
        return {**answer("graph", got), "items": list(got)}

    @app.get("/v1/search/posts", response_model=m.PostHits, responses=PROBLEMS, tags=["search"])
    def search_posts(
        q: Annotated[str, Query(max_length=200, description=POST_WORDS)] = "",
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 20,
        author_id: uuid.UUID | None = None,
        topic: Annotated[list[str] | None, Query(description="any of these topics (repeat the parameter)")] = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: After = None,
    ) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        if author_id is not None:
            filters["authorId"] = str(author_id)
        if topic:
            filters["topics"] = topic
        if created_after is not None:
            filters["createdAfter"] = iso(created_after)
        if created_before is not None:
            filters["createdBefore"] = iso(created_before)
        got = reader.search("posts", q, filters, limit, after=after)
        return {**answer("search", got), "items": list(got)}

    @app.get("/v1/search/users", response_model=m.UserHits, responses=PROBLEMS, tags=["search"])
    def search_users(
        q: Annotated[str, Query(max_length=200, description=USER_WORDS)] = "",
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 20,
        after: After = None,
    ) -> dict[str, Any]:
        got = reader.search("users", q, {}, limit, after=after)
        return {**answer("search", got), "items": list(got)}

    @app.get("/v1/profiles", response_model=m.Profiles, responses=PROBLEMS, tags=["redis"])
    def profiles(
        ids: Annotated[list[uuid.UUID], Query(min_length=1, max_length=limit_max,
                                              description="user ids (repeat the parameter)")],
        after: After = None,
    ) -> dict[str, Any]:
        """Profiles (handle, displayName, bio, followers, following, posts) from Redis's hashes."""
        got = reader.profiles([str(i) for i in ids], after=after)
        return {**answer("redis", got), "profiles": dict(got)}

    def board(kind: str, day: str, got: Page) -> dict[str, Any]:
        """The client's ``[{member, score}]`` as leaderboard entries (with the board's day)."""
        return {**answer("redis", got), "kind": kind, "day": day,
                "items": [{**item, "day": day} for item in got]}

    @app.get("/v1/leaderboards/{kind}", response_model=m.Leaderboard, responses=PROBLEMS, tags=["redis"])
    def leaderboard(
        kind: Literal["authors", "posts", "topics"],
        day: Annotated[date | Literal["all"] | None, Query(
            description="the UTC day (YYYY-MM-DD; today by default); `all`: all time, the authors board only")] = None,
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 10,
        after: After = None,
    ) -> Any:
        """A leaderboard's top ``limit``: authors by likes received, posts by reactions + replies (hot
        posts), topics by public posts (trending); a day outside the retention window is empty."""
        if day == "all" and kind != "authors":
            reason = f"the {kind} leaderboard has UTC days only, no all-time board"
            return problem(400, "Bad request", f"invalid parameter(s): day: {reason}",
                           [m.InvalidParam(name="day", reason=reason)])
        board_day = str(day or datetime.now(UTC).date())
        return board(kind, board_day, reader.leaderboard(kind, board_day, limit, after=after))

    @app.get("/v1/trending-topics", response_model=m.Leaderboard, responses=PROBLEMS, tags=["redis"])
    def trending_topics(
        day: Annotated[date | None, Query(description="the UTC day (YYYY-MM-DD; today by default)")] = None,
        limit: Annotated[int, Query(ge=1, le=limit_max)] = 10,
        after: After = None,
    ) -> dict[str, Any]:
        """The topics with the most public posts on a UTC day (the topics leaderboard)."""
        board_day = str(day or datetime.now(UTC).date())
        return board("topics", board_day, reader.trending_topics(board_day, limit, after=after))

    @app.get("/health", response_model=m.Health, tags=["operations"])
    def health() -> dict[str, Any]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=m.Health, responses={503: PROBLEMS[503]}, tags=["operations"])
    def ready() -> dict[str, Any]:
        """A read can be answered, from the counters store or PostgreSQL (readiness)."""
        got = reader.counters([str(uuid.UUID(int=0))])
        return {"status": "ready", "source": got.source}

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        """Prometheus metrics: requests and latency per route, the client's fallbacks."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def contract() -> dict[str, Any]:
        """FastAPI's document, with the 400 problem this API answers for invalid parameters in
        place of FastAPI's 422 (never answered here)."""
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            for path in doc["paths"].values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for status in ("400", "503"):
                        content = responses.get(status, {}).get("content", {})
                        if "application/json" in content:
                            content[PROBLEM] = content.pop("application/json")
            for unused in ("HTTPValidationError", "ValidationError"):
                doc.get("components", {}).get("schemas", {}).pop(unused, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = contract  # type: ignore[method-assign]
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document with the default settings (``schemas/openapi.json``)."""
    from projectors.settings import load_settings

    settings = load_settings({})
    reader = ReadClient(settings)
    try:
        return create_app(settings, reader).openapi()
    finally:
        reader.close()


def serve(settings: Settings) -> None:
    """Run the API on ``PROJECTORS_READ_API_HOST``:``PROJECTORS_READ_API_PORT`` until SIGTERM or SIGINT."""
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.read.api_host, port=settings.read.api_port,
                log_level="warning", access_log=False)
