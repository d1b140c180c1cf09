"""The README's first command: the offline demo answers every cross-modal query right."""

from __future__ import annotations

import io

import pytest

from aimemory.demo import SAMPLES, run_demo

pytestmark = pytest.mark.skipif(not (SAMPLES.parent / "models" / "aimemory-mini" / "model.safetensors").exists(),
                                reason="aimemory-mini weights are not in this checkout")


def test_demo_answers_every_query(tmp_path):
    out = io.StringIO()
    wrong = run_demo(str(tmp_path / "memory"), out=out)
    text = out.getvalue()
    assert wrong == 0, text
    for direction in ("text -> image", "text -> audio", "audio -> image", "image -> text"):
        assert direction in text
    assert "✗" not in text and "queries answered right" in text
