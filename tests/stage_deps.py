"""Which source files can change each DVC stage's outputs: its script plus the import closure of its contract.

A stage's outputs are computed by its contract module (``ovseg.pipeline.<stage>``, or
``ovseg.evaluation.prompt``) and by everything that module imports, directly or not, including
imports inside functions; the data files those modules read (presets, model configs) count
too. Engines and the stage runner only schedule and are left out (they write the same bytes
by construction, which ``tests/test_ray.py`` checks). A package whose every module is needed
is listed as its folder.

``tests/test_dvc_deps.py`` checks ``dvc.yaml`` against this; run ``python tests/stage_deps.py``
to print the deps each stage should list (after adding a module, or a stage: its stanza's
``cmd`` names its script, and the script's ``run_stage("name")`` its contract).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _contracts() -> dict[str, tuple[str, list[str]]]:
    """dvc.yaml's stages: name -> (script, the modules that compute it).

    A script that calls ``run_stage("x")`` runs the contract ``ovseg.pipeline.x``; any other
    script (evaluate) runs what it imports from ovseg, the stage runner aside.
    """
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        script = stage["cmd"].split()[-1]
        text = (REPO / script).read_text()
        named = re.search(r'run_stage\("(\w+)"\)', text)
        if named:
            roots = [f"ovseg.pipeline.{named.group(1)}"]
            if module_file(roots[0]) is None:  # the contract is the module named as the stage: none, no deps
                raise SystemExit(f"{script} runs stage {named.group(1)!r} but src/ovseg/pipeline has no such module")
        else:
            roots = sorted(m for m in imported_text(text) if m != "ovseg.dag.runner")
        stages[name] = (script, roots)
    return stages


# Data files a module reads: a change to them can change the outputs as much as code can.
DATA = {
    "src/ovseg/config/loading.py": ["src/ovseg/presets.yaml"],
    "src/ovseg/masks/sam2_backend.py": ["src/ovseg/weights/tiny_sam2.yaml"],
}


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported(path: Path) -> set[str]:
    """The ovseg modules ``path`` imports (``from pkg import submodule`` names the submodule, not the package)."""
    return imported_text(path.read_text())


def imported_text(text: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ovseg"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ovseg") and not node.level:
            modules = [f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")]
            found.update(modules)
            if len(modules) < len(node.names):
                found.add(node.module)
    return found


def closure(*roots: str) -> set[str]:
    """Every ovseg source file the ``roots`` modules depend on, as repository-relative paths."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen.add(name)
        todo.extend(imported(path))
    return {str(module_file(name).relative_to(REPO)) for name in seen}


def stage_deps(stage: str) -> list[str]:
    """What ``dvc.yaml`` should list as the stage's code deps: folders for whole packages, else files."""
    script, roots = STAGES[stage]
    files = closure(*roots)
    deps = {script}
    for folder in sorted({str(Path(f).parent) for f in files}):
        package = {str(p.relative_to(REPO)) for p in (REPO / folder).glob("*.py")}
        if folder != "src/ovseg" and package <= files:
            deps.add(folder)
            files -= package
    deps |= files
    for source, data in DATA.items():
        if source in closure(*roots):
            deps.update(data)
    return sorted(deps)


STAGES = _contracts()


def write_dvc_yaml(path: Path = REPO / "dvc.yaml") -> None:
    """Rewrite each stage's code deps in ``dvc.yaml`` to :func:`stage_deps`, keeping every other line as it is."""
    lines, out, stage, in_deps = path.read_text().splitlines(), [], None, False
    for line in lines:
        header = re.match(r"^  (\w+):(\s*#.*)?$", line)
        if header:
            stage, in_deps = header.group(1), False
        elif line.strip() == "deps:":
            in_deps = True
            out.append(line)
            out.extend(f"      - {dep}" for dep in stage_deps(stage))
            continue
        elif in_deps and not line.startswith("      - "):
            in_deps = False
        if in_deps and line.strip()[2:].startswith(("src/", "stages/")):
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_dvc_yaml()
    for name in STAGES:
        print(f"  {name}:")
        for dep in stage_deps(name):
            print(f"      - {dep}")
