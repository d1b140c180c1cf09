"""The explorer in headless Chromium: a video hit's card shows the matching frame, and opening it
plays the video from the span's start. WebM (VP8), which every Chromium build plays."""

from __future__ import annotations

import pytest

pytest.importorskip("av")
pytest.importorskip("playwright.sync_api")

from _video import THREE_SCENES, Scene, Spec, write_video  # noqa: E402
from conftest import ColourEncoder  # noqa: E402
from test_web_api import live_server  # noqa: E402
from test_web_browser import CHROMIUM, browser, browser_page  # noqa: E402, F401 (fixtures)

from aimemory import MemoryStore  # noqa: E402

pytestmark = [pytest.mark.services, pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")]
SIZE = (160, 120)
SCENES = [Scene(3, s.background, s.shape, s.colour) for s in THREE_SCENES]


def test_explorer_plays_the_video_from_the_hit(tmp_path, browser_page):  # noqa: F811 (the fixture)
    from aimemory.web import create_app

    page = browser_page

    webm = write_video(tmp_path / "three.webm", Spec(SCENES, size=SIZE, fps=10.0, audio=False, container="webm"))
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None) as store:
        store.remember(webm)
        with live_server(create_app(store)) as url:
            page.goto(url + "/")
            page.fill("#q", "blue")
            page.press("#q", "Enter")
            page.wait_for_function("() => document.querySelector('#results-title').textContent.includes('blue')")
            card = page.locator("#results .card[data-modality=video]").first
            page.wait_for_function("() => { const i = document.querySelector('.card[data-modality=video] img');"
                                   " return i && i.complete && i.naturalWidth > 0; }")
            card.locator(".source").click()
            page.wait_for_selector("#detail[open] #detail-video")
            assert "Best match at 0:06" in page.locator("#detail-span").inner_text()
            page.wait_for_function("() => { const v = document.querySelector('#detail-video');"
                                   " return v.readyState >= 1 && Math.abs(v.currentTime - 6.0) < 0.5; }")
    assert not page.js_errors, page.js_errors
