"""The page's Video tab in a real browser (headless Chromium, as tests/test_ui.py drives the photo tab), on 12 real
DAVIS frames with the cpu preset: upload, click the dog on frame 0, follow with the progress shown, step to a late
frame, correct from frame 8 (frames before it unchanged), remove, download edited.mp4; a bad upload is one line;
a screenshot is kept for people to look at."""

from __future__ import annotations

import io
import os
import re
import shutil
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from test_ui import _shown_image, _wait_for, browser, page_url  # noqa: F401 - the page and the browser, shared

pytestmark = pytest.mark.slow
DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-dev"
FRAMES = 12


def _video_status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#video-status [data-testid='markdown']").text


def _says(text: str):
    return lambda driver: text in _video_status(driver)


def _open_video_tab(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait_for(driver, lambda d: "Drop a photo" in d.find_element(By.CSS_SELECTOR, "#status").text, 180, "the page")
    tab = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Video")
    tab.click()
    _wait_for(driver, _says("Drop a clip"), 60, "the Video tab")


def _dog_clip(folder: Path) -> tuple[Path, list[np.ndarray]]:
    """DAVIS dog's first frames as an mp4 (how people bring clips), and their annotations."""
    from ovseg.media.videoio import write_video

    frames = sorted((DAVIS / "JPEGImages/480p/dog").glob("*.jpg"))[:FRAMES]
    truth = [np.asarray(Image.open(DAVIS / "Annotations/480p/dog" / f"{p.stem}.png")) > 0 for p in frames]
    clip = folder / "dog12.mp4"
    write_video(clip, (np.asarray(Image.open(p).convert("RGB")) for p in frames), 24.0)
    return clip, truth


def _click_frame_at(driver, x: float, y: float, size: tuple[int, int]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    image = driver.find_element(By.CSS_SELECTOR, "#frame img")
    width, height = image.size["width"], image.size["height"]
    dx, dy = (x / size[0] - 0.5) * width, (y / size[1] - 0.5) * height
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()


def _step_to(driver, position: int) -> None:
    """The slider's number box set to ``position``, as a person types it (committed when the box loses focus)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for _ in range(3):
        number = driver.find_element(By.CSS_SELECTOR, "#frame-slider input[type=number]")
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys(str(position), Keys.ENTER, Keys.TAB)
        try:
            _wait_for(driver, _says(f"frame {position} ("), 60, f"frame {position}")
            return
        except TimeoutException:
            continue
    raise AssertionError(f"the slider did not step to {position}: {_video_status(driver)}")


def _downloads(driver) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "#video-downloads a")
    return {urllib.parse.unquote(a.get_attribute("href")).rsplit("/", 1)[-1]: a.get_attribute("href") for a in links}


def _masks(url: str) -> list[np.ndarray]:
    """The DAVIS PNGs of a masks.zip the tab offers, in frame order."""
    with zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(url, timeout=30).read())) as bundle:
        return [np.asarray(Image.open(io.BytesIO(bundle.read(name)))) for name in sorted(bundle.namelist())]


def test_follow_and_remove_a_dog_in_the_video_tab(page_url, browser, tmp_path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    clip, truth = _dog_clip(tmp_path)
    _open_video_tab(browser, page_url)
    browser.find_element(By.CSS_SELECTOR, "#clip input[type=file]").send_keys(str(clip))
    _wait_for(browser, _says(f"{FRAMES} frames to follow"), 120, "the clip to decode")
    assert "854x480" in _video_status(browser)
    _wait_for(browser, lambda d: _shown_image(d, "#frame img"), 60, "frame 0")

    # the dog's innermost point on frame 0: its mask appears at once, before following
    inside = ndimage.distance_transform_edt(truth[0])
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    _click_frame_at(browser, float(x), float(y), (854, 480))
    _wait_for(browser, _says("1 click(s) on frame 0"), 300, "the clicked mask")
    pixels = int(re.search(r": (\d+) px", _video_status(browser)).group(1))
    assert 0.5 < pixels / truth[0].sum() < 2.0, _video_status(browser)

    browser.find_element(By.CSS_SELECTOR, "#follow").click()
    _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".progress-text, .progress-level"), 120,
              "the progress bar")  # fmt: skip
    _wait_for(browser, _says(f"Followed {FRAMES} frames"), 600, "following")
    assert f"#1 click: {FRAMES}" in _video_status(browser)  # present on every frame

    # step to a late frame: the dog is tinted where DAVIS says it is (checked on the masks offered for download)
    _step_to(browser, FRAMES - 2)
    files = _downloads(browser)
    assert {"overlay.mp4", "tracks.json", "masks.zip"} <= set(files), sorted(files)
    followed = _masks(files["masks.zip"])
    late = followed[FRAMES - 2] == 1
    iou = (late & truth[FRAMES - 2]).sum() / (late | truth[FRAMES - 2]).sum()
    assert iou > 0.6, iou
    browser.save_screenshot(str(tmp_path / "video-tab.png"))
    if os.environ.get("OVSEG_UI_SCREENSHOTS"):
        shutil.copy(tmp_path / "video-tab.png", Path(os.environ["OVSEG_UI_SCREENSHOTS"]).with_name("video-tab.png"))

    # a correction click on frame 8 (on the grass, far from the dog): object 1 is there from frame 8 on, and
    # frames 0-7 are the same masks as before
    _step_to(browser, 8)
    _click_frame_at(browser, 20.0, 20.0, (854, 480))
    _wait_for(browser, _says("1 click(s) on frame 8"), 300, "the correction's mask")
    browser.find_element(By.CSS_SELECTOR, "#correct").click()
    _wait_for(browser, _says("Corrected #1 from frame 8 on"), 600, "the correction")
    corrected = _masks(_downloads(browser)["masks.zip"])
    assert all(np.array_equal(corrected[i], followed[i]) for i in range(8))
    assert corrected[8][20, 20] == 1  # where the correction clicked
    for i in range(8, FRAMES):  # off the dog from there on (the grass it follows moves with the camera)
        assert (corrected[i] == 1)[truth[i]].mean() < 0.05 and not np.array_equal(corrected[i], followed[i]), i

    browser.find_element(By.CSS_SELECTOR, "#remove-video").click()
    _wait_for(browser, _says("Removed in"), 900, "the removal")
    files = _downloads(browser)
    assert "edited.mp4" in files, sorted(files)
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(urllib.request.urlopen(files["edited.mp4"], timeout=30).read())
    import av

    with av.open(str(edited)) as video:
        decoded = [frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)]
    assert len(decoded) == FRAMES and decoded[0].shape == (480, 854, 3)


def test_a_bad_clip_is_one_line_in_the_video_tab(page_url, browser, tmp_path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(b"this is not a video at all" * 100)
    _open_video_tab(browser, page_url)
    browser.find_element(By.CSS_SELECTOR, "#clip input[type=file]").send_keys(str(fake))
    _wait_for(browser, _says("Error:"), 120, "the error")
    message = _video_status(browser)
    assert "holiday.mp4" in message and len(message.splitlines()) == 1 and "Traceback" not in message


def test_stop_ends_following_after_a_frame_and_follow_goes_on(page_url, browser, tmp_path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    clip, truth = _dog_clip(tmp_path)
    _open_video_tab(browser, page_url)
    browser.find_element(By.CSS_SELECTOR, "#clip input[type=file]").send_keys(str(clip))
    _wait_for(browser, _says(f"{FRAMES} frames to follow"), 120, "the clip to decode")
    _wait_for(browser, lambda d: _shown_image(d, "#frame img"), 60, "frame 0")
    ys, xs = np.nonzero(truth[0])  # a click of its own (not the other test's), so nothing is cached
    _click_frame_at(browser, float(np.median(xs)), float(np.median(ys)), (854, 480))
    _wait_for(browser, _says("1 click(s) on frame 0"), 300, "the clicked mask")
    browser.find_element(By.CSS_SELECTOR, "#follow").click()
    _wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".progress-text, .progress-level"), 120,
              "the progress bar")  # fmt: skip
    browser.find_element(By.CSS_SELECTOR, "#stop-video").click()
    _wait_for(browser, _says("stopped after"), 300, "the stop")
    message = _video_status(browser)
    assert re.search(rf"stopped after \d+ of {FRAMES} frames", message) and len(message.splitlines()) == 1, message
    assert "Error" not in message, message
    browser.find_element(By.CSS_SELECTOR, "#follow").click()
    _wait_for(browser, _says(f"Followed {FRAMES} frames"), 600, "following again")
