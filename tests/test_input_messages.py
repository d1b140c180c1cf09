"""Error messages of input decoding: each says what was wrong, names the input, and says how to fix
it, in the words of the call that was made (remember or recall)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import tone

from aimemory import Audio
from aimemory.errors import DecodeError, InputError, InputTooLargeError
from aimemory.inputs import to_item

CORRUPT_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage"
NOISE = ("  ", "pipe:", "<_io.", "BytesIO", " None ", "''")


def _clean(message: str) -> str:
    for bad in NOISE:
        assert bad not in message, f"{bad!r} in {message!r}"
    return message


def test_empty_query_speaks_of_recall(store):
    store.remember("red")
    for query in ("", "   "):
        with pytest.raises(InputError) as err:
            store.recall(query)
        assert "recall" in _clean(str(err.value)) and "remember" not in str(err.value)


def test_empty_text_to_remember_speaks_of_remember(store):
    with pytest.raises(InputError) as err:
        store.remember(" ")
    message = _clean(str(err.value))
    assert "remember" in message and "item #" not in message  # one item: no index to point at


def test_empty_audio_names_the_input():
    with pytest.raises(InputError) as err:
        to_item(Audio(np.zeros(0, np.float32), 16_000))
    message = _clean(str(err.value))
    assert message.startswith("the Audio") and "0.05 s" in message
    with pytest.raises(InputError) as err:
        to_item(Audio(np.zeros(10, np.float32), 16_000), source="beep.wav")
    assert "beep.wav" in _clean(str(err.value))


def test_corrupt_wav_says_so_without_ffmpeg_internals(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(CORRUPT_WAV)
    with pytest.raises(DecodeError) as err:
        to_item(path)
    message = _clean(str(err.value))
    assert str(path) in message and "WAV" in message
    with pytest.raises(DecodeError) as err:
        to_item(CORRUPT_WAV)
    assert _clean(str(err.value)).startswith("the audio is not a readable WAV file")


@pytest.mark.parametrize("make, error", [
    (lambda: b"", InputError),
    (lambda: Audio(np.full(1600, np.nan, np.float32), 16_000), DecodeError),
    (lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, DecodeError),
])
def test_messages_name_the_input_and_say_what_to_do(make, error):
    with pytest.raises(error) as err:
        to_item(make())
    message = _clean(str(err.value))
    assert message.startswith("the ")
    assert ";" in message  # what was wrong; what to do


def test_too_long_audio_names_it(monkeypatch):
    import aimemory.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_AUDIO_SECONDS", 0.1)
    clip = tone("red", seconds=0.5)
    with pytest.raises(InputTooLargeError) as err:
        to_item(clip, source="long.flac")
    assert "long.flac" in _clean(str(err.value))
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, clip.samples, clip.sample_rate, format="WAV")
    with pytest.raises(InputTooLargeError) as err:
        to_item(buf.getvalue())
    assert _clean(str(err.value)).startswith("the audio lasts 0.5 s")
