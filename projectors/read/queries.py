"""The client's own store queries: Cosmos SQL of the feed and the notifications (keyset pages and
the items tied with a page's last one), the counters' kinds, the graph's suggestions."""

from __future__ import annotations

from projectors.projections.counters import CountersProjection

# {after}: the keyset condition of a cursor's position (the items after it), or nothing on a first page
FEED_AFTER = " AND (c.createdAt < @at OR (c.createdAt = @at AND c.postId < @post))"
FEED_PAGE = (
    "SELECT TOP @limit c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false{after} ORDER BY c.createdAt DESC"
)
# the celebrities the recipient follows (fan-out on read), and each one's newest posts
FEED_FOLLOWS = "SELECT c.authorId FROM c WHERE c.recipientId = @recipient AND c.deleted = false"
CELEBRITY_POSTS = (
    "SELECT TOP @limit c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false{after} ORDER BY c.createdAt DESC"
)
# the items of the same time as a page's last one (posts of one transaction share it): a page cut
# among them is completed, then ordered by post id, so it is the same page whatever the store returned
FEED_TIES = (
    "SELECT c.id, c.recipientId, c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.recipientId = @recipient AND c.deleted = false AND c.createdAt = @tie{after}"
)
CELEBRITY_TIES = (
    "SELECT c.postId, c.authorId, c.createdAt, c.bodyPreview, c.topics "
    "FROM c WHERE c.authorId = @author AND c.deleted = false AND c.createdAt = @tie{after}"
)
# a recipient's newest notifications (the unread counter, a point read, is not one of them), and the
# items of the same time as a page's last one (a page cut among them is completed, ordered by id)
NOTIFICATION_FIELDS = "c.id, c.recipientId, c.kind, c.postId, c.actorIds, c.count, c.latestAt, c.expiresAt, c.read"
NOTIFICATIONS_WHERE = (
    "c.recipientId = @recipient AND c.deleted = false AND c.kind != 'unreadNotifications' AND c.expiresAt > @now"
)
NOTIFICATIONS_AFTER = " AND (c.latestAt < @at OR (c.latestAt = @at AND c.id < @item))"
NOTIFICATIONS_PAGE = f"SELECT TOP @limit {NOTIFICATION_FIELDS} FROM c WHERE {NOTIFICATIONS_WHERE}{{unread}}{{after}} " \
    "ORDER BY c.latestAt DESC"
NOTIFICATION_TIES = (
    f"SELECT {NOTIFICATION_FIELDS} FROM c WHERE {NOTIFICATIONS_WHERE}{{unread}}{{after}} AND c.latestAt = @tie"
)
# a subject's counters are the items of its partition (``<subjectId>:<kind>``, partition ``subjectId``)
COUNTER_KINDS = tuple(kind.suffix.lstrip(":") for kind in CountersProjection.kinds)

# Friends of friends the user does not follow yet, has not blocked and is not blocked by, ranked by
# how many of the user's followees follow them. One query, both graph backends (FalkorDB counts an
# anonymous middle node once per row group, so the middle node is named and counted DISTINCT).
SUGGESTIONS = (
    "MATCH (me:User {id: $id})-[:FOLLOWS]->(m:User)-[:FOLLOWS]->(s:User) "
    "WHERE s.id <> $id AND NOT (me)-[:FOLLOWS]->(s) AND NOT (me)-[:BLOCKS]->(s) AND NOT (s)-[:BLOCKS]->(me) "
    "RETURN s.id AS id, s.handle AS handle, count(DISTINCT m) AS mutual ORDER BY mutual DESC, handle LIMIT $limit"
)
