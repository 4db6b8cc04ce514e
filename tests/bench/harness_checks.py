"""What the tiny bench runs check in the report: the sections of the phases run hold figures, every
other section says it was not run."""

from __future__ import annotations


def assert_sections_run(report: str, run: tuple[str, ...]) -> None:
    sections = {part.split("\n", 1)[0]: part for part in report.split("\n## ")[1:]}
    for heading in run:
        assert any(t.startswith(heading) and "Not run" not in body for t, body in sections.items()), heading
    not_run = sorted(t for t, body in sections.items() if "Not run" in body)
    assert not_run == sorted(t for t in sections if not t.startswith(run)), not_run
