"""The property graph of the graph projection, stated once: its node labels and each relationship
type's start and end labels. The projection (``projections/graph.py``) writes items of these
collections; the graph stores build their Cypher and indexes from them; the JSON Schemas describe
edges by their endpoints. Neutral: importing it imports no projection and no store."""

from __future__ import annotations

NODE_LABELS: tuple[str, ...] = ("User", "Post", "Topic")
EDGE_ENDS: dict[str, tuple[str, str]] = {
    "FOLLOWS": ("User", "User"),
    "AUTHORED": ("User", "Post"),
    "REACTED": ("User", "Post"),
    "REPLIED": ("User", "Post"),
    "TAGGED": ("Post", "Topic"),
    "BLOCKS": ("User", "User"),
}
EDGE_TYPES: tuple[str, ...] = tuple(EDGE_ENDS)
