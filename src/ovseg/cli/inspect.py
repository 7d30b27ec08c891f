"""``ovseg inspect``: what is on disk for each photo, stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ovseg.cli.common import app, console, fail
from ovseg.errors import OvsegError


def known_images(cache: Path, output: Path) -> dict[str, dict[str, Any]]:
    """Image name -> artifact keys, from the latest manifests and every selection on disk."""
    from ovseg.pipeline import embed, masks, score, select
    from ovseg.storage.folders import SELECTION_RECORD, StageFolder
    from ovseg.storage.locations import read_json

    entries: dict[str, dict[str, Any]] = {}
    results = output / select.RESULTS
    for selection_file in sorted(results.rglob(SELECTION_RECORD)):
        record = read_json(selection_file)
        name = selection_file.parent.relative_to(results).as_posix()
        entries[name] = {"image": record["image"], **(record.get("artifacts") or {})}
    for stage in (masks.FOLDER, embed.FOLDER, score.FOLDER):
        manifest = StageFolder(str(cache), stage).read_json() or {}
        for stem, entry in manifest.get("images", {}).items():
            entries.setdefault(stem, {}).update(entry)
    return entries


@app.command()
def inspect(
    name: str | None = typer.Argument(None, help="Image name (file stem); all images if omitted."),
    cache: Path = typer.Option(Path("cache"), "--cache"),
    output: Path = typer.Option(Path("data/output"), "--output", "-o"),
) -> None:
    """Show what artifacts exist for each image: masks, embeddings, scores, selection, edit."""
    from ovseg.pipeline import edit, embed, masks, score, select
    from ovseg.storage.folders import EDIT_RECORD, SELECTION_RECORD, StageFolder
    from ovseg.storage.locations import read_json
    from ovseg.storage.store import preview_name, store_name

    entries = known_images(cache, output)
    if not entries:
        fail(OvsegError(f"no artifacts under {cache} or {output}: run `ovseg run` or `dvc repro` first"))
    if name is not None and name not in entries:
        fail(OvsegError(f"no artifacts for image {name!r}; known: {', '.join(sorted(entries))}"))
    folders = {stage: StageFolder(str(cache), stage) for stage in (masks.FOLDER, embed.FOLDER, score.FOLDER)}
    for stem, entry in sorted(entries.items()):
        if name is not None and stem != name:
            continue
        table = Table(title=f"{stem}  ({entry.get('image', '?')})")
        for column in ("artifact", "details", "path"):
            table.add_column(column, overflow="fold")
        folder, key = folders[masks.FOLDER], entry.get("masks")
        if key and (folder.path / store_name(key)).is_dir() and folder.read_store(key, [])[1].get("finder"):
            attrs = folder.read_store(key, [])[1]
            size = "x".join(map(str, attrs["working_size"]))
            table.add_row("image features", f"{attrs['finder']} ({attrs['model']}) at {size} px: the candidates "
                          "depend on the words (scores)", folder.join(store_name(key)))  # fmt: skip
        elif key and (folder.path / store_name(key)).is_dir():
            arrays, attrs = folder.read_store(key, ["predicted_iou"])
            size = "x".join(map(str, attrs["working_size"]))
            details = f"{len(arrays['predicted_iou'])} candidates at {size} px, {attrs['model']}"
            stats = {**(attrs.get("stats") or {}), **folder.marker(key)}
            if stats.get("decoder_calls") is not None:
                details += f", {stats['decoder_calls']} decoder calls, {stats.get('seconds') or 0:.1f} s"
            table.add_row("masks", details, folder.join(store_name(key)))
            table.add_row("candidates", "picture of all candidates", folder.join(preview_name(key)))
        folder, key = folders[embed.FOLDER], entry.get("embeddings")
        if key and (folder.path / store_name(key)).is_dir():
            arrays, attrs = folder.read_store(key, ["embeddings"])
            count, dim = arrays["embeddings"].shape
            details = f"{count}x{dim} {attrs['settings']['strategy']}, {attrs['model']}"
            table.add_row("embeddings", details, folder.join(store_name(key)))
        folder, key = folders[score.FOLDER], entry.get("scores")
        if key and (folder.path / store_name(key)).is_dir():
            arrays, attrs = folder.read_store(key, ["score"])
            top = ", ".join(f"{t:.3f}" for t in sorted(arrays["score"].tolist(), reverse=True)[:5])
            table.add_row("scores", f"prompt {attrs['prompt']!r}; top {top}", folder.join(store_name(key)))
        selection_file = output / select.RESULTS / stem / SELECTION_RECORD
        if selection_file.is_file():
            selection = read_json(selection_file)
            picked = ", ".join(f"#{s['index']} ({s['score']:.3f})" for s in selection["selected"]) or "none"
            if selection.get("classes"):  # every instance of several classes: how many of each
                names = selection["classes"]
                counts = [sum(s.get("category") == c for s in selection["selected"]) for c in range(1, len(names) + 1)]
                picked = ", ".join(f"{n.split('|')[0]} {k}" for n, k in zip(names, counts, strict=True)) + " instances"
            details = f"{picked}; merged area {selection['merged']['area']} px"
            table.add_row("selection", details, str(selection_file.parent))
        edit_file = output / edit.RESULTS / stem / EDIT_RECORD
        if edit_file.is_file():
            record = read_json(edit_file)
            table.add_row("edit", f"{record['mode']}: {record['edit_prompt']!r}", str(edit_file.parent))
        console.print(table)
