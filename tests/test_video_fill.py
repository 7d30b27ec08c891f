"""Filling holes through time: what other frames saw is carried into the hole, the rest comes from the image backend
once, and nothing outside the holes changes."""

from __future__ import annotations

import numpy as np
import pytest

from ovseg.video.fill import TemporalFiller, TemporalFillSettings

MARK = np.array([255, 0, 255], np.uint8)  # what the test image backend paints: easy to find


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, richly textured background (so optical flow has something to hold on to)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 8, width // 8, 3)).astype(np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def paint_mark(frame: np.ndarray, hole: np.ndarray) -> np.ndarray:
    out = frame.copy()
    out[hole] = MARK
    return out


def test_a_static_camera_gets_back_every_pixel_the_square_uncovers(tmp_path) -> None:
    background = texture(96, 160)
    frames, holes = [], []
    for i in range(10):  # a grey square moving right by 8 px a frame over a still background
        frame, hole = background.copy(), np.zeros((96, 160), bool)
        hole[30:60, 20 + 8 * i : 50 + 8 * i] = True
        frame[hole] = 128
        frames.append(frame)
        holes.append(hole)
    seen = np.zeros((96, 160), bool)  # pixels some frame shows
    for hole in holes:
        seen |= ~hole
    results = list(TemporalFiller(frames, holes, paint_mark, TemporalFillSettings(window=12, feather_px=0)).run())
    for frame, filled, stats in results:
        hole = holes[frame]
        uncovered = hole & seen
        error = np.abs(filled[uncovered].astype(int) - background[uncovered].astype(int))
        assert np.mean(error) < 3 and np.percentile(error, 99) < 20, frame  # the true background, within noise
        never = hole & ~seen
        assert (filled[never] == MARK).all()  # what no frame shows is the image backend's
        np.testing.assert_array_equal(filled[~hole], frames[frame][~hole])  # outside the hole: unchanged
        assert stats.from_frames + stats.from_image == pytest.approx(1.0, abs=1e-3)
    assert results[0][2].from_frames > 0.9


def test_a_panning_camera_carries_the_scene_along_the_flow() -> None:
    scene = texture(96, 260, seed=3)
    frames, holes, truths = [], [], []
    for i in range(8):  # the camera pans right 10 px a frame; a hole stays at the same place on screen
        truth = scene[:, 10 * i : 10 * i + 160].copy()
        hole = np.zeros((96, 160), bool)
        hole[25:70, 60:100] = True
        frame = truth.copy()
        frame[hole] = (200, 200, 200)  # a caption that stays put on screen while the scene pans
        frames.append(frame)
        holes.append(hole)
        truths.append(truth)
    results = list(TemporalFiller(frames, holes, paint_mark, TemporalFillSettings(feather_px=0)).run())
    for frame, filled, stats in results:
        error = np.abs(filled[holes[frame]].astype(int) - truths[frame][holes[frame]].astype(int))
        assert np.mean(error) < 6, (frame, np.mean(error))
        assert stats.from_frames > 0.95
        np.testing.assert_array_equal(filled[~holes[frame]], frames[frame][~holes[frame]])


def test_what_no_frame_sees_is_invented_once_and_carried_so_it_does_not_flicker() -> None:
    background = texture(80, 120, seed=5)
    frames, holes = [], []
    calls = []
    for _ in range(6):  # a hole that never moves on a still camera: no frame sees behind it
        hole = np.zeros((80, 120), bool)
        hole[20:50, 40:80] = True
        frame = background.copy()
        frame[hole] = 0
        frames.append(frame)
        holes.append(hole)

    def noisy_fill(frame: np.ndarray, hole: np.ndarray) -> np.ndarray:
        calls.append(1)
        out = frame.copy()
        out[hole] = np.random.default_rng(len(calls)).integers(0, 255, (int(hole.sum()), 3))
        return out

    results = list(TemporalFiller(frames, holes, noisy_fill, TemporalFillSettings(feather_px=0)).run())
    assert len(calls) == 1  # painted on one keyframe only
    first = results[0][1]
    for _, filled, stats in results:
        # The same fill in every frame (carried at sub-pixel positions: within a grey level or two; a new noisy
        # painting would differ by a hundred).
        assert np.abs(filled[holes[0]].astype(int) - first[holes[0]].astype(int)).max() <= 2
        assert stats.from_image == pytest.approx(1.0)


def test_the_benchmarks_holes_come_from_the_seed_and_a_perfect_fill_scores_the_maximum(tmp_path) -> None:
    from pathlib import Path

    from PIL import Image

    from ovseg.benchmarks.video_remove import moving_holes, score

    root = tmp_path / "davis"
    for seq, offset in (("one", 0), ("two", 40), ("three", 80)):
        (root / "JPEGImages/480p" / seq).mkdir(parents=True)
        (root / "Annotations/480p" / seq).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(texture(64, 96, seed=offset + i)).save(root / "JPEGImages/480p" / seq / f"{i:05d}.jpg")
            mask = np.zeros((64, 96), np.uint8)
            mask[10 + i : 30 + i, 10 + offset // 4 : 30 + offset // 4] = 255
            Image.fromarray(mask).save(root / "Annotations/480p" / seq / f"{i:05d}.png")
    first, again = moving_holes(Path(root), 4, seed=3), moving_holes(Path(root), 4, seed=3)
    assert [c.name for c in first] == [c.name for c in again]
    for a, b in zip(first, again, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a.holes, b.holes, strict=True))
        assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    other = moving_holes(Path(root), 4, seed=4)
    assert [c.name for c in other] != [c.name for c in first] or len(first) < 3
    case = first[0]
    perfect = score(case, case.truth)
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0) and perfect["flicker"] == 0.0
    assert score(case, case.frames)["psnr"] < 40  # the object still there: far from the truth


def _panning_clip(count: int = 12) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A camera panning right 9 px and down 2 px a frame over a textured scene; a grey object moves across the
    frame (its own way, 6 px a frame left), its hole with it; frames saved as JPEG would be (quality 90)."""
    import io

    from PIL import Image

    scene = texture(200, 400, seed=11)
    frames, holes, truths = [], [], []
    for i in range(count):
        truth = scene[2 * i : 2 * i + 120, 9 * i : 9 * i + 200].copy()
        hole = np.zeros((120, 200), bool)
        hole[35:85, 110 - 6 * i : 150 - 6 * i] = True
        frame = truth.copy()
        frame[hole] = (90, 140, 60)
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=90)
        frames.append(np.asarray(Image.open(buffer).convert("RGB")))
        holes.append(hole)
        truths.append(truth)
    return frames, holes, truths


def test_direct_alignment_recovers_a_panned_background_where_chained_flows_drift() -> None:
    frames, holes, truths = _panning_clip()
    pairs = zip(frames, holes, truths, strict=True)
    noise = [np.abs(f[~h].astype(int) - t[~h].astype(int)).mean() for f, h, t in pairs]
    jpeg = float(np.mean(noise))
    errors = {}
    for align in ("direct", "chained"):
        filler = TemporalFiller(frames, holes, paint_mark, TemporalFillSettings(feather_px=0, align=align))
        per_frame = []
        for frame, filled, _ in filler.run():
            carried = holes[frame] & ~filler.invented[frame]  # what some frame saw (the rest no frame shows)
            per_frame.append(np.abs(filled[carried].astype(int) - truths[frame][carried].astype(int)).mean())
            np.testing.assert_array_equal(filled[~holes[frame]], frames[frame][~holes[frame]])
        errors[align] = float(np.mean(per_frame))
    # Two JPEG-noisy frames differ by about sqrt(2) times one frame's noise; direct alignment stays near that.
    assert errors["direct"] < 2.2 * jpeg, (errors, jpeg)
    assert errors["chained"] > 1.3 * errors["direct"], errors  # the chain's guessed flows add up


@pytest.mark.parametrize("align", ["direct", "chained"])
def test_pixels_outside_the_grown_holes_never_change(align: str) -> None:
    frames, holes, _ = _panning_clip(6)
    filler = TemporalFiller(frames, holes, paint_mark, TemporalFillSettings(align=align))
    for frame, filled, _ in filler.run():
        assert (filler.holes[frame] >= holes[frame]).all()  # the shadow step may only grow a hole
        np.testing.assert_array_equal(filled[~filler.holes[frame]], frames[frame][~filler.holes[frame]])


def _disc_with_shadow(count: int = 24) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """A disc rolling right over a texture (a still camera), casting a shadow: its silhouette sheared sideways
    from its base, darkening the ground to 0.5. A dark square stands still right beside the disc's path."""
    import cv2

    background = texture(120, 260, seed=21)
    background = (background * 0.5 + 100).astype(np.uint8)  # bright ground, so a shadow is plainly darker
    square = np.zeros((120, 260), bool)
    square[40:62, 120:142] = True
    background[square] = (30, 35, 40)
    frames, holes, shadows = [], [], []
    for i in range(count):
        disc = np.zeros((120, 260), np.uint8)
        cv2.circle(disc, (40 + 7 * i, 80), 16, 1, -1)
        disc = disc > 0
        shear = np.float32([[1, -0.9, 0.9 * 96], [0, 1, 0]])
        shadow = cv2.warpAffine(disc.astype(np.uint8), shear, (260, 120), flags=cv2.INTER_NEAREST) > 0
        shadow &= ~disc
        frame = background.copy()
        frame[shadow] = (frame[shadow] * 0.5).astype(np.uint8)
        frame[disc] = (200, 40, 40)
        frames.append(frame)
        holes.append(cv2.dilate(disc.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        shadows.append(shadow & ~holes[-1])
    return frames, holes, shadows, background


def test_the_shadow_goes_with_the_disc_and_the_dark_square_beside_it_stays() -> None:
    frames, holes, shadows, background = _disc_with_shadow()
    square = np.all(background == (30, 35, 40), axis=-1)
    off = list(TemporalFiller(frames, holes, paint_mark, TemporalFillSettings(shadows=False)).run())
    filler = TemporalFiller(frames, holes, paint_mark, TemporalFillSettings())
    on = list(filler.run())
    checked = [f for f in range(4, len(frames) - 4) if shadows[f].sum() > 50]  # other frames show around it
    assert len(checked) > 10
    befores, afters = [], []
    for frame in checked:
        shadow = shadows[frame]
        before = np.abs(off[frame][1][shadow].astype(int) - background[shadow].astype(int)).mean()
        after = np.abs(on[frame][1][shadow].astype(int) - background[shadow].astype(int)).mean()
        assert before > 60 and after < before / 3, (frame, before, after)  # the shadow is gone: the ground's colour
        befores.append(before)
        afters.append(after)
        # The dark square stays: at most its edge (the search runs at half size) is refilled, and it stays dark.
        assert (on[frame][1][square] == frames[frame][square]).all(-1).mean() > 0.96, frame
        assert np.abs(on[frame][1][square].mean(0) - frames[frame][square].mean(0)).max() < 3, frame
        assert on[frame][2].shadow_px > 0.6 * shadow.sum()
    # The texture back, within the fill's own error on this busy scene (the shadow was 80 levels off).
    assert np.median(afters) < np.median(befores) / 5, (afters, befores)
    assert sum(s.shadow_px for *_, s in off) == 0
