"""The house rules of docs/architecture.md, checked on the code: layers point downwards, no import cycles,
one writer per record, and modules of one concern each."""

from __future__ import annotations

import ast

from stage_deps import SRC, imported, module_file

# Every module of ovseg and its layer (a package's modules share its layer); the top-level
# ``ovseg`` package only re-exports the API lazily.
LAYERS = {
    "base": ["config", "request", "errors", "storage", "media"],
    "models": ["weights", "masks", "clip", "ranking", "editing", "video"],
    "orchestration": ["pipeline", "engines", "evaluation", "benchmarks"],
    "faces": ["cli", "api", "web", "dag"],
}
ORDER = ["base", "models", "orchestration", "faces"]


def _modules() -> dict[str, object]:
    names = {}
    for path in sorted((SRC / "ovseg").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return next((layer for layer, names in LAYERS.items() if parts[1] in names), "unassigned")


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    problems = []
    for module, path in _modules().items():
        layer = layer_of(module)
        if layer is None:
            continue
        assert layer != "unassigned", f"{module} is in no layer: add its folder to docs/architecture.md and LAYERS here"
        for target in imported(path):
            other = layer_of(target)
            if other is None or other == layer:
                continue
            # Faces may build the tiny test models (`ovseg weights make-tiny`), as docs/architecture.md allows.
            if ORDER.index(other) > ORDER.index(layer):
                problems.append(f"{module} ({layer}) imports {target} ({other})")
    assert not problems, "imports that point upwards:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    """Two modules never import each other, directly or in a circle (``from pkg import sub`` names ``pkg.sub``)."""
    modules = _modules()
    graph = {m: {t for t in imported(p) if module_file(t)} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


RECORDS = {
    "selection.json": "ovseg.storage.folders",
    "edit.json": "ovseg.storage.folders",
    "annotations.json": "ovseg.pipeline.select",
}
WRITERS = {"selection.json": "ovseg.pipeline.select", "edit.json": "ovseg.pipeline.edit"}


def _strings(path) -> list[str]:
    """String constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_every_record_is_named_once_and_written_by_one_module() -> None:
    """``selection.json``, ``edit.json`` and ``annotations.json`` are spelled in one module each, and the
    selection and edit records are imported only by their stage's module and by readers that never write."""
    for name, owner in RECORDS.items():
        spelled = [m for m, p in _modules().items() if any(name in s for s in _strings(p))]
        assert spelled == [owner], f"{name} is spelled out in {spelled}; name it once ({owner}) and import that"
    for record, writer in WRITERS.items():
        constant = "SELECTION_RECORD" if record == "selection.json" else "EDIT_RECORD"
        for module, path in _modules().items():
            if module in (writer, "ovseg.storage.folders"):
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                # Anyone may name the record to read it; only its stage passes it to a folder writer.
                if isinstance(node, ast.Call) and any(
                    isinstance(arg, ast.Name) and arg.id == constant
                    for arg in [*node.args, *(k.value for k in node.keywords)]
                ):
                    function = ast.unparse(node.func)
                    assert not function.endswith(("write", "write_json", "write_bytes", "write_text")), (
                        f"{module} writes {record} ({ast.unparse(node)}); only {writer} does"
                    )


def test_no_module_holds_several_concerns() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"modules over 450 lines: {long}"
