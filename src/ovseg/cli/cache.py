"""``ovseg cache gc`` and ``ovseg sync``: keeping caches small, and moving them between folders and buckets."""

from __future__ import annotations

from pathlib import Path

import typer

from ovseg.cli.common import app, cache_app, console, fail
from ovseg.errors import OvsegError


@cache_app.command("gc")
def cache_gc(
    cache: Path = typer.Option(Path("cache"), "--cache", help="The stage cache to clean."),
    output: list[Path] = typer.Option(
        [Path("data/output")], "--output", "-o", help="Result folders whose selections keep their inputs alive."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
) -> None:
    """Delete cached masks, features and scores that no manifest or selection uses any more."""
    from ovseg.storage.cache_gc import collect_garbage

    if not cache.is_dir():
        fail(OvsegError(f"cache folder {cache} not found"))
    report = collect_garbage(cache, output, dry_run=dry_run)
    for path in report.removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {path}", highlight=False)
    verb = "would free" if dry_run else "freed"
    console.print(
        f"unused: {report.unused} ({verb} {report.freed_bytes / 2**20:.1f} MiB); in use, kept: {report.kept}",
        highlight=False,
    )


@app.command()
def sync(
    source: str = typer.Argument(..., help="A folder or bucket URL to copy from (a cache, results, run records)."),
    target: str = typer.Argument(..., help="Where to copy to (a folder or bucket URL)."),
) -> None:
    """Copy a cache or results between a bucket and a folder (files missing or different there; markers last)."""
    from ovseg.storage.folders import sync_folder

    try:
        copied, kept = sync_folder(source, target)
    except (OvsegError, OSError) as exc:
        fail(exc if isinstance(exc, OvsegError) else OvsegError(f"cannot sync {source} to {target}: {exc}"))
    console.print(f"copied {copied} files, {kept} already there: {target}", highlight=False)
