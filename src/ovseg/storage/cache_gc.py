"""Cache garbage collection: delete content-addressed stores that nothing points at any more.

Why this exists: every distinct (image, settings, prompt) gets its own store, so reverting a
parameter costs nothing, but the cache then grows with every experiment (SAM 2 candidates and
CLIP features are tens of MB per image). A store is *live* when

- the latest ``manifest.json`` of a cache folder names it (what the last run of each stage used), or
- a selection on disk was made from it (``selection.json`` records its ``artifacts``): `ovseg run
  --image x` rewrites the manifests for that one photo, so manifests alone would forget the
  other photos' work and the next ``dvc repro`` would recompute their masks.

Everything else in the stage folders, plus temporary folders left by killed runs, is garbage.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovseg.storage.folders import SELECTION_RECORD, StageFolder
from ovseg.storage.locations import read_json
from ovseg.storage.store import key_of

# Each kind of store lives in the cache folder of that name, and manifests and selections
# name a store's key under the same word (``entry["masks"]`` is a key in ``cache/masks``).
STORE_KINDS = ("masks", "embeddings", "scores")
# A temporary folder younger than this may belong to a run in progress: leave it.
TEMP_GRACE_SECONDS = 3600


@dataclass
class GcReport:
    """What a collection found: the paths it removed (or would remove) and the bytes they held."""

    removed: list[Path] = field(default_factory=list)
    freed_bytes: int = 0
    kept: int = 0

    @property
    def unused(self) -> int:
        """How many artifacts were unused: a store, its marker and its preview count once."""
        return len({(path.parent, key_of(path.name) or path.name) for path in self.removed})


def cache_roots(cache: Path) -> list[Path]:
    """``cache`` itself and every direct subfolder laid out like it (``cache/eval``)."""
    candidates = [cache, *(sorted(p for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else [])]
    return [root for root in candidates if any((root / kind).is_dir() for kind in STORE_KINDS)]


def live_keys(cache: Path, outputs: list[Path]) -> set[str]:
    """Keys named by any manifest under ``cache`` or by any selection under ``outputs``."""
    keys: set[str] = set()
    for root in cache_roots(cache):
        for kind in STORE_KINDS:
            manifest = StageFolder(str(root), kind).read_json() or {}
            for entry in manifest.get("images", {}).values():
                keys.update(str(entry[k]) for k in STORE_KINDS if k in entry)
    for output in outputs:
        for selection in (Path(output) / "segment").rglob(SELECTION_RECORD):
            keys.update(str(v) for v in read_json(selection).get("artifacts", {}).values())
    return keys


def _is_stale_temp(path: Path, now: float) -> bool:
    """A temporary folder from ``atomic_path`` that no run has touched for the grace period."""
    return path.name.endswith(".tmp") and now - path.stat().st_mtime > TEMP_GRACE_SECONDS


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def collect_garbage(cache: Path, outputs: list[Path], dry_run: bool = False) -> GcReport:
    """Remove (or with ``dry_run`` only list) every store under ``cache`` that is not live."""
    keep = live_keys(cache, outputs)
    report = GcReport()
    now = time.time()
    for root in cache_roots(cache):
        for kind in STORE_KINDS:
            folder = root / kind
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                key = key_of(path.name)
                if key in keep:
                    report.kept += 1
                    continue
                if key is None and not _is_stale_temp(path, now):
                    continue  # the manifest, or a write still in progress
                report.freed_bytes += _size(path)
                report.removed.append(path)
                if not dry_run:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return report
