"""dvc.yaml names, for each stage, exactly the code that can change its outputs (tests/stage_deps.py)."""

from __future__ import annotations

import yaml
from stage_deps import REPO, STAGES, closure, stage_deps


def _code_deps(stage: dict) -> list[str]:
    return sorted(d for d in stage["deps"] if d.startswith(("src/", "stages/")))


def test_every_stage_lists_exactly_its_import_closure() -> None:
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(pipeline) == set(STAGES)
    for name in STAGES:
        expected = stage_deps(name)
        assert _code_deps(pipeline[name]) == expected, (
            f"dvc.yaml's deps of stage {name} differ from what its code imports; "
            f"`python tests/stage_deps.py` prints them:\n" + "\n".join(f"      - {d}" for d in expected)
        )


def test_the_closure_follows_the_pipeline_order() -> None:
    """A stage's code reaches the stages before it (their records) and never the ones after it."""
    order = ["masks", "embed", "score", "select", "edit"]
    for position, name in enumerate(order):
        files = closure(*STAGES[name][1])
        for before in order[:position]:
            assert f"src/ovseg/pipeline/{before}.py" in files
        for after in order[position + 1 :]:
            assert f"src/ovseg/pipeline/{after}.py" not in files
    assert "src/ovseg/pipeline/select.py" not in closure(
        *STAGES["evaluate"][1]
    )  # it selects with ovseg.ranking.selection
    for name in STAGES:  # no face (CLI, API, page) decides a stage's bytes
        assert not any(
            f.startswith(("src/ovseg/cli/", "src/ovseg/api/", "src/ovseg/web/page.py"))
            for f in closure(*STAGES[name][1])
        )
