"""The README's commands, as written: every command of its "Quick start" and "Common jobs" blocks, and of every block
of docs/usage.md and docs/videos.md, that runs on bundled or shared data is run from the repository's root (a copy
of its files, beside ../shared) with the shipped params.yaml, in order, and must exit 0. Videos are shortened by
the environment (``OVSEG_SET="video.end=3"``, which every ``ovseg run`` and ``ovseg evaluate`` honours), never by
editing a command.

Left out, each with its reason: the set-up itself (``.ci/run`` installs, and ``test_quickstart`` runs the script
with ``--no-install``), the test command (this suite), downloads (the model hub), the page (``test_ui``), the DAG
on the shipped ``balanced`` preset (``test_dvc`` runs it), benchmarks over whole data sets
(``test_benchmarks_new`` runs each on a few frames), and commands on the examples' names (photo.jpg, clip.mp4,
holiday/), which are not files here."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from conftest import run_ovseg_in_process as ovseg

pytestmark = pytest.mark.slow
BLOCKS = ("Quick start", "Common jobs")  # the README's; every block of PAGES
PAGES = ("docs/usage.md", "docs/videos.md")
PATH_OPTIONS = ("--image", "--images", "--video", "--videos", "--mask", "--dataset", "--params")


def readme_commands(text: str, headings: tuple[str, ...] | None = BLOCKS) -> list[tuple[str, str]]:
    """(heading, command) of each ``bash`` block under the headings (None: every block), in order: comments dropped,
    lines continued with a backslash joined."""
    found, heading, block = [], None, None
    for line in text.splitlines():
        title = re.match(r"^#{1,4} (.+)$", line)
        if title and block is None:
            heading = title.group(1).strip()
            continue
        if line.startswith("```"):
            block = [] if block is None and line.strip() == "```bash" else None
            continue
        if block is None or (headings is not None and heading not in headings):
            continue
        code = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if block and block[-1].endswith("\\"):
            block[-1] = block[-1][:-1].rstrip() + " " + code.strip()
        elif code.strip():
            block.append(code.strip())
        if block and not block[-1].endswith("\\"):
            found.extend((heading, command) for command in block)
            block.clear()
    return found


def left_out(command: str, root: Path) -> str | None:
    """Why a README command is not run here, or None when it is."""
    words = shlex.split(command)
    if words[0] == "source":
        return "sets the shell up"
    if words[:2] == ["bash", "scripts/quickstart.sh"]:
        return "the set-up: .ci/run installs, test_quickstart runs it with --no-install"
    if "pytest" in words:
        return "the test command: this suite"
    if words[:2] == ["dvc", "repro"]:
        return "the DAG on params.yaml's balanced preset, whose weights are downloaded: test_dvc runs it on tiny ones"
    if words[0] != "ovseg":
        return "not an ovseg command"
    if words[1:3] == ["weights", "download"]:
        return "downloads from the model hub"
    if words[1:3] == ["data", "download"]:
        return "downloads a data set from its publisher: test_data_sources fetches archives of its layout"
    if words[1] == "ui":
        return "a server: test_ui drives the page"
    if words[1].startswith("benchmark"):
        return "a benchmark over a whole data set: test_benchmarks_new runs each on a few frames"
    for option, value in zip(words, words[1:], strict=False):
        if option in PATH_OPTIONS and not (root / value).exists():
            return f"{value} is the README's example, not a file here"
    return None


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files, in a folder beside a link to ../shared: its root as a fresh clone has it."""
    top = tmp_path_factory.mktemp("clone")
    root = top / "ovseg"
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # what a commit of this tree holds
    for name in subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    (top / "shared").symlink_to(REPO.parent / "shared")
    return root


def test_the_readme_commands_run_as_written_from_the_repository_root(repository: Path, tiny_checkpoints) -> None:
    if not (REPO.parent / "shared" / "data" / "davis-dev").is_dir():
        pytest.skip("../shared is not here: the README's commands on shared data cannot run")
    commands = readme_commands((REPO / "README.md").read_text())
    for page in PAGES:
        commands += [(f"{page}: {heading}", c) for heading, c in readme_commands((REPO / page).read_text(), None)]
    run = [(heading, c) for heading, c in commands if left_out(c, repository) is None]
    # Not vacuous: the blocks hold the commands this test exists for.
    assert any("--video ../shared/data/davis-dev/JPEGImages/480p/dog --mask" in c for _, c in run), commands
    assert any(c.startswith("ovseg run --image data/images/chelsea.png --point 260,180") for _, c in run), commands
    assert set(BLOCKS) <= {heading for heading, _ in commands}
    assert any(heading.startswith("docs/videos.md") for heading, _ in run)
    env = {"OVSEG_SET": "video.end=3", "COLUMNS": "200", "OVSEG_CHECKPOINTS": str(tiny_checkpoints)}
    for heading, command in run:
        result = ovseg(*shlex.split(command)[1:], cwd=repository, env=env)
        assert result.returncode == 0, f"{heading}: {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, command
    assert (repository / "data/output/video/dog/masks/00003.png").is_file()
