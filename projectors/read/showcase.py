"""What read services see, shown by the demo: the `ReadClient` answering for real subjects chosen
from PostgreSQL (the user who follows most, the post with most reactions, a word of a post)."""

from __future__ import annotations

import json

from projectors.db.migrate import connect
from projectors.read.client import ReadClient
from projectors.settings import Settings


def showcase(settings: Settings) -> list[str]:
    """A feed page, suggestions, counters and a search for the busiest user, the most reacted post
    and a word of the posts, as lines."""
    lines: list[str] = []
    with connect(settings.pg) as conn:
        row = conn.execute(
            "SELECT f.follower_id::text, count(*) FROM follows f GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        post = conn.execute(
            "SELECT p.id::text, p.author_id::text FROM posts p LEFT JOIN reactions r ON r.post_id = p.id "
            "GROUP BY 1, 2 ORDER BY count(r.*) DESC LIMIT 1"
        ).fetchone()
        word = conn.execute("SELECT split_part(body, ' ', 1) FROM posts LIMIT 1").fetchone()
    reader = ReadClient(settings)
    try:
        if row:
            page = reader.feed_page(row[0], limit=5)
            lines.append(f"-- feed of user {row[0]} (latest {len(page)} of 50-item page):")
            for item in page:
                lines.append(
                    f"   {item['createdAt']}  post {item['postId']} by {item['authorId']}: {item['bodyPreview'][:40]}"
                )
            lines.append(f"-- suggestions for user {row[0]} (friends of friends):")
            for s in reader.suggestions(row[0], limit=5):
                lines.append(f"   {s['handle']} ({s['mutual']} mutual)")
        if post:
            lines.append(f"-- counters: {json.dumps(reader.counters([post[0], post[1]]))}")
        if word:
            hits = reader.search("posts", word[0], {}, limit=3)
            lines.append(f"-- search posts for {word[0]!r}: {len(hits)} hit(s)")
            for hit in hits:
                lines.append(f"   {hit['id']}: {hit['body'][:60]}")
    finally:
        reader.close()
    return lines
