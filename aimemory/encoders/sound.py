"""Sound towers: audio -> time-coded ``audio.sound`` views in a CLIP encoder's image space.

A sound tower was trained into one particular CLIP's space (wav2clip: OpenAI CLIP ViT-B/32), so it
is attached to that encoder and the pair acts as one :class:`Encoder` for the store
(:class:`WithSoundTower`). Transcripts are a separate path (:mod:`aimemory.speech`); a stronger tower
later (CLAP plus a learned map into CLIP space) only has to produce the same views.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..device import CPU, Placement
from ..errors import CheckpointError, ModelMismatchError, ModelNotAvailableError
from .base import Encoder, View, l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..inputs import Audio
    from ..nn.sound import SoundNet

# torch and the network load only when a tower is used: opening a store that has none stays light

log = logging.getLogger("aimemory.encoders")

WAV2CLIP = "wav2clip"
WAV2CLIP_FILE = "Wav2CLIP.pt"  # the name its own package caches it under, in torch's hub folder
WAV2CLIP_URL = "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt"
# the CLIP whose image space wav2clip was distilled into, under the names it is published as
OPENAI_VIT_B_32 = frozenset({"openai/clip-vit-base-patch32", "ViT-B-32", "ViT-B/32", "ViT-B-32.openai",
                             "timm/vit_base_patch32_clip_224.openai"})
CHECKPOINT_NAMES = (WAV2CLIP_FILE, "model.safetensors", "pytorch_model.bin")
WINDOW_S = 5.0  # one sound view per ~5 s; a long recording gets one per window, time-coded
BATCH = 16  # windows per forward pass; bounds activation memory on hour-long audio


def torch_hub_checkpoints() -> Path:
    """torch's download folder (``$TORCH_HOME/hub/checkpoints``), shared with the wav2clip package."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def find_local_sound_model() -> str | None:
    """A wav2clip checkpoint available without network, or None."""
    candidate = torch_hub_checkpoints() / WAV2CLIP_FILE
    return str(candidate) if candidate.is_file() else None


def resolve_sound_checkpoint(spec: str | os.PathLike, *, progress: bool = True, force: bool = False) -> Path:
    """``"wav2clip"`` (cached, else downloaded; ``force`` downloads again), or a checkpoint file /
    folder -> the weights file."""
    if isinstance(spec, str) and spec == WAV2CLIP:
        from ..weights.hub import fetch_url

        return fetch_url(WAV2CLIP_URL, torch_hub_checkpoints() / WAV2CLIP_FILE, progress=progress, force=force)
    path = Path(spec).expanduser()
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise ModelNotAvailableError(f"no sound-tower checkpoint in {path}: expected one of {CHECKPOINT_NAMES}")
    if path.is_file():
        return path
    raise ModelNotAvailableError(f"unknown sound model {os.fspath(spec)!r}: pass {WAV2CLIP!r} or the path of "
                                 "a wav2clip checkpoint (Wav2CLIP.pt, or a .safetensors export)")


class SoundTower:
    """A loaded sound network: waveforms -> unit vectors of width ``dim``, over ~5 s windows."""

    def __init__(self, net: SoundNet, model_id: str):
        self.net = net.eval()
        self.model_id = model_id
        self.dim = net.dims.embed_dim
        self.placement = CPU

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike, *, progress: bool = True) -> "SoundTower":
        import torch

        from ..nn.sound import SoundDims, SoundNet
        from ..weights.loader import assign_weights, load_state_dict
        from ..weights.sound_formats import detect_sound_format, wav2clip_to_native

        file = resolve_sound_checkpoint(spec, progress=progress)
        state = load_state_dict(file)
        detect_sound_format(state)
        native = wav2clip_to_native(state, source=str(file))
        if "stem.conv.weight" not in native or not any(k.startswith("stages.") for k in native):
            raise CheckpointError(f"{file} holds no sound encoder weights (audio_encoder.*)")
        dims = SoundDims.from_state(native)
        with torch.device("meta"):  # the checkpoint's tensors become the parameters: no random init
            net = SoundNet(dims)
        # bookkeeping buffers a checkpoint may lack: BN step counters, torchaudio's Hann window
        defaults = {k: torch.zeros((), dtype=torch.long) for k in net.state_dict() if k.endswith("num_batches_tracked")}
        defaults["window"] = torch.hann_window(dims.n_fft)
        native = defaults | {k: v.float() if v.is_floating_point() else v for k, v in native.items()}
        assign_weights(net, native, source=str(file), assign=True)
        model_id = WAV2CLIP if file.name == WAV2CLIP_FILE else file.stem if file.stem != "model" else file.parent.name
        return cls(net.fold_batchnorm(), model_id)

    def embed_waves(self, waves: torch.Tensor) -> np.ndarray:
        """(n, samples) float32 at 16 kHz, equal lengths -> (n, dim) float32 unit rows."""
        import torch

        n_fft = self.net.dims.n_fft
        if waves.shape[1] < n_fft:  # too short for one FFT frame: pad with silence
            waves = torch.nn.functional.pad(waves, (0, n_fft - waves.shape[1]))
        place = self.placement
        with torch.inference_mode(), place.autocast():
            out = torch.cat([place.back(self.net(place.put(waves[s: s + BATCH])))
                             for s in range(0, len(waves), BATCH)])
        return l2_normalize(out.numpy())

    def to(self, placement: "Placement") -> "SoundTower":
        new = placement.adopt(self)
        new.net, new.placement = placement.move(self.net), placement
        return new

    def views(self, clips: Sequence["Audio"]) -> list[list[View]]:
        """Each clip -> one ``audio.sound`` view per window of about :data:`WINDOW_S` seconds."""
        import torch

        from ..nn.sound import SAMPLE_RATE

        out = []
        for clip in clips:
            y = clip.resampled(SAMPLE_RATE).samples
            n = max(1, round(len(y) / (WINDOW_S * SAMPLE_RATE)))
            bounds = np.linspace(0, len(y), n + 1).astype(int)
            by_length: dict[int, list[int]] = defaultdict(list)  # windows differ by a sample at most
            for i in range(n):
                by_length[int(bounds[i + 1] - bounds[i])].append(i)
            vectors = np.zeros((n, self.dim), np.float32)
            for length, idx in by_length.items():
                waves = torch.from_numpy(np.stack([y[bounds[i]: bounds[i] + length] for i in idx]))
                vectors[idx] = self.embed_waves(waves)
            out.append([View("audio.sound", vectors[i], bounds[i] / SAMPLE_RATE, bounds[i + 1] / SAMPLE_RATE)
                        for i in range(n)])
        return out

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]


class WithSoundTower(Encoder):
    """An encoder plus a sound tower trained into its space; to the store, one encoder whose
    ``model_id`` (the space) is the base encoder's."""

    def __init__(self, base: Encoder, tower: SoundTower):
        self.base, self.tower = base, tower
        self.model_id, self.dim, self.logit_scale = base.model_id, base.dim, base.logit_scale
        self.modalities = base.modalities | {"audio"}

    def embed_images(self, images):
        return self.base.embed_images(images)

    def prepare_image(self, image) -> None:
        self.base.prepare_image(image)

    @property
    def image_decode_side(self) -> int | None:  # type: ignore[override]
        return self.base.image_decode_side

    @property
    def parallel_text_calls(self) -> int:  # type: ignore[override]
        return self.base.parallel_text_calls

    def embed_texts(self, texts):
        return self.base.embed_texts(texts)

    def embed_audio(self, clips):
        return self.tower.views(clips)

    def to(self, placement: Placement) -> "WithSoundTower":
        new = placement.adopt(self)
        new.base, new.tower, new.placement = self.base.to(placement), self.tower.to(placement), placement
        return new

    def close(self) -> None:
        self.base.close()
        self.tower.close()


def _base_id(encoder: Encoder) -> str:
    return encoder.model_id.split("@", 1)[0]  # "openai/clip-vit-base-patch32@bf16" is the same space


def attach_sound(encoder: Encoder, spec: object) -> Encoder:
    """``sound_model`` -> the encoder to use. None: unchanged. ``"auto"``: wav2clip when a local
    checkpoint exists and ``encoder`` is the OpenAI CLIP ViT-B/32 it was trained against (set
    ``AIMEMORY_SOUND=0`` to turn this off). Otherwise a :class:`SoundTower`, ``"wav2clip"``, or a
    checkpoint path, whose width must match the encoder's."""
    if spec is None:
        return encoder
    if isinstance(spec, str) and spec == "auto":
        if os.environ.get("AIMEMORY_SOUND", "1") == "0" or _base_id(encoder) not in OPENAI_VIT_B_32:
            return encoder
        found = find_local_sound_model()
        return WithSoundTower(encoder, SoundTower.from_pretrained(found)) if found else encoder
    tower = spec if isinstance(spec, SoundTower) else SoundTower.from_pretrained(os.fspath(spec))  # type: ignore[arg-type]
    if tower.dim != encoder.dim:
        raise ModelMismatchError(
            f"sound model {tower.model_id!r} makes {tower.dim}-d vectors but the store's model "
            f"{encoder.model_id!r} is {encoder.dim}-d; wav2clip belongs with model='openai/clip-vit-base-patch32'")
    if tower.model_id == WAV2CLIP and _base_id(encoder) not in OPENAI_VIT_B_32:
        log.warning("wav2clip was trained into OpenAI CLIP ViT-B/32's image space; with %r its sound "
                    "vectors will not line up with images and text", encoder.model_id)
    return WithSoundTower(encoder, tower)
