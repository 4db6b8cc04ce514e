"""A projection worker for benchmarks: the real worker (faust agent, BatchProjector, commits) in a
consumer group of its own, so it reads the topics from the beginning, on the real store or on a
null store that accepts every operation without I/O (what the projection costs on its own).

``python -m projectors.bench.worker <projection> --group <group> [--null-store]``
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence

from projectors.model import ApplyResult, Document, ItemKey, Operation
from projectors.runtime.worker import run_worker
from projectors.settings import load_settings


class NullStore:
    """Accepts every operation (all "changed"), holds nothing: no store I/O at all."""

    def ensure_schema(self) -> None:
        pass

    def apply(self, ops: Sequence[Operation]) -> ApplyResult:
        return ApplyResult(changed=len(ops))

    def live_items(self, collection: str) -> Iterator[tuple[ItemKey, Document]]:
        return iter(())

    def find_keys(self, collection: str, equals: Mapping[str, str], partition: str | None = None) -> list[ItemKey]:
        return []

    def read_items(self, keys: Sequence[ItemKey]) -> dict[ItemKey, Document]:
        return {}

    def ping(self) -> bool:
        return True

    def drop(self) -> None:
        pass

    def close(self) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="projectors.bench.worker")
    parser.add_argument("projection")
    parser.add_argument("--group", required=True)
    parser.add_argument("--null-store", action="store_true")
    args = parser.parse_args(argv)
    run_worker(load_settings(), args.projection, "warning", store_factory=NullStore if args.null_store else None,
               group=args.group)


if __name__ == "__main__":
    main()
