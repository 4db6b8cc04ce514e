"""Range digests: how a store that can compute them shows it matches the spec without sending
every item (``verify_by_digests`` in :mod:`projectors.operations.verify`).

Each item's hash is the CRC-32 of its document in the verify's canonical JSON (keys sorted, no
spaces, non-ASCII escaped: ``json.dumps(doc, sort_keys=True, separators=(",", ":"))``). Items fall
in buckets (a power of two, at most ``FINEST``) by the low bits of the CRC-32 of their id's JSON
string. A store returns each bucket's item count and sum of item hashes; the verifier computes the
same from the spec, and compares item by item only the buckets that differ. A false difference (a
value whose JSON two implementations render differently, such as a float's exponent) only costs
reads of that bucket; a change is missed only if it keeps its bucket's count and sum of CRC-32s,
which chance makes negligible.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

FINEST = 65536  # buckets are computed this fine, and folded to fewer by their low bits


def item_hash(doc: Mapping[str, Any]) -> int:
    return zlib.crc32(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def key_bucket(item_id: str) -> int:
    """The item's bucket among ``FINEST``; among ``n`` (a power of two below it): ``& (n - 1)``."""
    return zlib.crc32(json.dumps(item_id).encode()) & (FINEST - 1)
