"""``schemas/``: JSON Schema for every change event and every stored projection item (what a read
service gets from each store's client, bookkeeping and tombstones included), generated from the
pydantic models (``projectors schemas write``; a test fails when the files drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, create_model

from projectors.events.models import ROW_MODELS, Envelope
from projectors.graph_model import EDGE_ENDS as EDGES
from projectors.projections import DESCRIPTORS

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


def event_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for table, row in ROW_MODELS.items():
        model: type[BaseModel] = create_model(
            f"{table.capitalize()}ChangeEvent",
            __base__=Envelope,
            before=(cast(Any, row | None), None),
            after=(cast(Any, row | None), None),
        )
        schema = model.model_json_schema()
        schema["title"] = f"Change event of public.{table} (Debezium envelope, JSON converter without schemas)"
        out[f"events/{table}.json"] = schema
    return out


def document_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for projection, d in DESCRIPTORS.items():
        for collection, stored in d.stored.items():
            schema = TypeAdapter(stored).json_schema(by_alias=True)
            schema["title"] = f"{projection} projection: {collection}"
            if collection in EDGES:
                start, end = EDGES[collection]
                schema["description"] = (
                    f"(:{start})-[:{collection}]->(:{end}): the relationship's properties (properties(r))"
                )
            out[f"projections/{projection}/{collection}.json"] = schema
    return out


def rendered() -> dict[str, str]:
    from projectors.read.api import openapi_document  # the HTTP read API's contract

    files = {**event_schemas(), **document_schemas(), "openapi.json": openapi_document()}
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in files.items()}


def write(root: Path) -> list[str]:
    changed = []
    for name, text in rendered().items():
        path = root / name
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(name)
    return changed


def drift(root: Path) -> list[str]:
    """Files that differ from what the models generate (missing, stale, or not generated at all)."""
    expected = rendered()
    out = [name for name, text in expected.items() if not (root / name).exists() or (root / name).read_text() != text]
    present = {str(p.relative_to(root)) for p in root.rglob("*.json")} if root.exists() else set()
    return sorted(out + sorted(present - set(expected)))
