"""End to end in headless Chromium: drop an image to remember it, search, see it first, open it,
forget it; search by dropping a file; user content never runs as markup. Uses Debian's chromium
(never a downloaded browser) through the Python playwright driver. Screenshots go to tmp_path;
``AIMEMORY_SCREENSHOT=docs/explorer.png`` also writes the README's picture there."""

from __future__ import annotations

import base64
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ColourEncoder  # noqa: E402
from test_web_api import live_server, png, wav  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium); "
                       "the browser test uses the system browser, never a downloaded one"),
]

DROP_JS = """([selector, b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  const target = document.querySelector(selector);
  for (const kind of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: dt }));
  }
}"""
XSS = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'


def gradient(a: tuple, b: tuple, size=(96, 72)) -> bytes:
    """A two-colour gradient PNG: nicer in the screenshot than flat squares, same ColourEncoder meaning."""
    from PIL import Image

    t = np.linspace(0, 1, size[0])[None, :, None]
    arr = (np.asarray(a) * (1 - t) + np.asarray(b) * t) * np.ones((size[1], 1, 1))
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def seeded(tmp_path):
    from aimemory import MemoryStore

    store = MemoryStore(tmp_path / "mem", model=ColourEncoder(), speech_model=None)
    seed = [  # (content, source, tags); one remember_many, so one commit
        (gradient((0, 200, 40), (0, 120, 90)), "meadow.png", ["outdoors"]),
        (gradient((20, 40, 230), (120, 190, 255)), "sky.png", ["outdoors"]),
        (png("blue", 3), "blue-square.png", []),
        ("Blue whales are the largest animals ever known to have lived.", "notes.txt", []),
        ("Remember to buy green tea and red peppers.", None, ["todo"]),
        (wav("green", 1.5), "beep-880hz.wav", []),
        (XSS, '"><img src=x onerror="window.__xss=3">.txt', []),
    ]
    store.remember_many([c for c, _, _ in seed], sources=[s for _, s, _ in seed],
                        metadata=[{"tags": t} for _, _, t in seed])
    yield store
    store.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium (fresh profile) for the module: starting it is the slow part."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    try:
        pw = sync_api.sync_playwright().start()
    except Exception as exc:  # pragma: no cover - driver missing or broken
        pytest.skip(f"playwright driver does not start: {exc}")
    try:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1180, "height": 760}, accept_downloads=False)
    except Exception as exc:
        pw.stop()
        pytest.skip(f"chromium at {CHROMIUM} does not start headless: {str(exc)[:300]}")
    try:
        yield context
    finally:
        context.close()
        pw.stop()


@pytest.fixture
def browser_page(browser):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())  # the forget confirmation
    page.js_errors = errors
    try:
        yield page
    finally:
        page.close()


def drop(page, selector: str, data: bytes, name: str, mime: str) -> None:
    page.evaluate(DROP_JS, [selector, base64.b64encode(data).decode(), name, mime])


def first_card_source(page) -> str:
    return page.locator("#results .card").first.locator(".source").inner_text()


def test_explorer_end_to_end(seeded, browser_page, tmp_path):
    from aimemory.web import create_app

    page = browser_page
    with live_server(create_app(seeded)) as url:
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#results .card').length === 7")
        page.wait_for_function("() => document.querySelector('#stats').textContent.length > 0")  # its own request
        assert "7 memories" in page.locator("#stats").inner_text()

        # drag-and-drop upload onto the page; the progress bar and status follow the upload
        drop(page, "#results", png("red", 7, size=(80, 60)), "red-square.png", "image/png")
        page.wait_for_function("() => document.querySelector('#upload-status').textContent.startsWith('Remembered 1')")
        assert seeded.count() == 8

        # search: the new image comes first, with a score and an image badge
        page.fill("#q", "something red")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('Results')")
        first = page.locator("#results .card").first
        assert first.locator(".source").inner_text() == "red-square.png"
        assert first.locator(".badge").inner_text() == "image"
        assert 0 < float(first.locator(".score").inner_text()) <= 1
        page.wait_for_function("() => [...document.querySelectorAll('#results img')]"
                               ".every((i) => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(tmp_path / "results.png"))
        shot = os.environ.get("AIMEMORY_SCREENSHOT")
        if shot:  # the README picture: small, palette PNG
            _save_small(page.screenshot(), Path(shot))

        # detail view: the full image is shown and loaded; forget removes it everywhere
        first.click()
        page.wait_for_selector("#detail[open] #detail-image")
        page.wait_for_function("() => document.querySelector('#detail-image').naturalWidth === 80")
        page.wait_for_selector("#detail-meta dd")
        assert "red-square.png" in page.locator("#detail-title").inner_text()
        page.screenshot(path=str(tmp_path / "detail.png"))
        page.click("#forget-btn")
        page.wait_for_selector("#detail", state="hidden")
        page.wait_for_function("() => document.querySelector('#upload-status').textContent === 'Forgotten.'")
        assert seeded.count() == 7
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('Results')")
        assert "red-square.png" not in page.locator("#results").inner_text()

        # search by dropping an image on the search box, images only: blue images come first
        page.select_option("#f-modality", "image")
        drop(page, "#search-box", png("blue", 11), "query.png", "image/png")
        page.wait_for_function("() => document.querySelector('#results-title').textContent.includes('query.png')")
        assert first_card_source(page) in ("blue-square.png", "sky.png")
        assert page.locator("#results .card:not([data-modality=image])").count() == 0
        page.click("#query-file-clear")
        page.select_option("#f-modality", "")

        # the audio hit plays from its matching span; text with markup stays text
        page.fill("#q", "green")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#results-title').textContent.includes('green')")
        page.locator("#results .card[data-modality=audio]").first.locator(".source").click()
        page.wait_for_selector("#detail[open] #detail-audio")
        assert "Best match at 0:00.0" in page.locator("#detail-span").inner_text()
        page.click("#detail-close")
        page.fill("#q", "img script")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.querySelector('#results').textContent.includes('onerror')")
        assert XSS in page.locator("#results").inner_text()
        assert page.evaluate("window.__xss") is None
        assert page.locator("#results img[src='x']").count() == 0
    assert not page.js_errors, page.js_errors


def _save_small(png_bytes: bytes, path: Path) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)


def test_explorer_with_token_and_a_background_job(seeded, browser_page, tmp_path):
    """A token-protected server: the page asks for the token, then media load as blobs (img/audio
    cannot send the header); five dropped files go through a background job with progress."""
    from aimemory.web import create_app

    page = browser_page
    token = "explorer-test-token-0123456789"
    with live_server(create_app(seeded, token=token)) as url:
        page.goto(url + "/")
        page.wait_for_selector("#token-form:not([hidden])")
        page.fill("#token", token)
        page.press("#token", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#results .card').length === 7")
        page.wait_for_function("() => [...document.querySelectorAll('#results img')]"
                               ".every((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'))")
        # five files in one drop: more than the job threshold, so a job reports progress
        files = [(f"many-{i}.png", png("blue", 70 + i)) for i in range(5)]
        page.evaluate("""([items]) => {
          const dt = new DataTransfer();
          for (const [name, b64] of items) {
            dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name, { type: "image/png" }));
          }
          const target = document.querySelector("#results");
          for (const kind of ["dragenter", "dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: dt }));
          }
        }""", [[[n, base64.b64encode(d).decode()] for n, d in files]])
        page.wait_for_function("() => document.querySelector('#upload-status').textContent === 'Remembered 5.'")
        assert seeded.count() == 12
    assert not page.js_errors, page.js_errors


def test_explorer_counts_the_namespace_keeps_file_names_and_puts_searches_in_the_url(browser_page, tmp_path):
    from aimemory import MemoryStore
    from aimemory.web import create_app

    page = browser_page
    long_source = "/home/someone/" + "very-long-folder-name/" * 8 + "the-file-name.png"
    with MemoryStore(tmp_path / "mem", model=ColourEncoder(), speech_model=None) as store:
        store.remember(png("red", 1), source=long_source)
        store.remember("a red note")
        store.remember_many(["red in b", "green in b", "blue in b"], namespace="b")
        with live_server(create_app(store)) as url:
            page.goto(url + "/")
            page.wait_for_function("() => document.querySelectorAll('#results .card').length === 2")
            # the counts load beside the recent memories, in their own request: either may land first
            page.wait_for_function("() => document.querySelector('#stats').textContent.length > 0")
            assert page.locator("#stats").inner_text().startswith("2 memories in default")

            # a long path keeps its file name visible: the cut is in the folders, not at the end
            source = page.locator("#results .card[data-modality=image] .source")
            assert source.text_content() == long_source and source.get_attribute("title") == long_source
            name_box = source.locator(".file").bounding_box()
            card_box = page.locator("#results .card[data-modality=image]").bounding_box()
            assert name_box["x"] + name_box["width"] <= card_box["x"] + card_box["width"] + 1

            # switching namespace recounts; a search goes into the URL and comes back from it
            page.select_option("#f-namespace", "b")
            page.wait_for_function("() => document.querySelector('#stats').textContent.startsWith('3 memories in b')")
            page.select_option("#f-modality", "text")
            page.fill("#q", "red")
            page.press("#q", "Enter")
            page.wait_for_function("() => document.querySelector('#results-title').textContent.startsWith('Results')")
            params = dict(p.split("=", 1) for p in page.evaluate("location.search").lstrip("?").split("&"))
            assert params["q"] == "red" and params["namespace"] == "b" and params["modality"] == "text"
            page.fill("#q", "green")
            page.press("#q", "Enter")
            page.wait_for_function("() => location.search.includes('q=green')")
            page.go_back()  # the back button returns to the previous search
            page.wait_for_function("() => document.querySelector('#q').value === 'red'")
            page.wait_for_function("() => document.querySelector('#results-title').textContent.includes('red')")
            page.goto(url + "/?q=blue&namespace=b&k=10")  # a shared link restores the search
            page.wait_for_function("() => document.querySelector('#results-title').textContent.includes('blue')")
            assert page.locator("#f-namespace").input_value() == "b"
            assert page.locator("#f-k").input_value() == "10"
            assert "blue in b" in page.locator("#results .card").first.inner_text()
    assert not page.js_errors, page.js_errors
