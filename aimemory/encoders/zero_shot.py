"""Zero-shot image classification with any image+text encoder (CLIP's prompt-ensemble recipe).

Each label is written into several prompt templates; the text embeddings of one label are averaged
and re-normalised (an ensemble is more robust than one prompt), and the probabilities are
``softmax(logit_scale * cos(image, label))``, with the temperature the model learned, so they are
calibrated the way the model was trained.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError, UnsupportedInputError
from .base import Encoder, l2_normalize

# Written for aimemory in the style of CLIP's prompts: a few framings of "a photo of X".
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a close-up photo of the {}.",
    "a blurry photo of a {}.",
    "a bright photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a drawing of a {}.",
    "an image showing a {}.",
)


def zero_shot(encoder: Encoder, image_or_images: object, labels: Sequence[str],
              templates: Sequence[str] | str | None = None, *,
              logit_scale: float | None = None) -> list[dict[str, float]]:
    """One ``{label: probability}`` per image (probabilities sum to 1, in ``labels`` order).

    ``image_or_images``: a PIL image, ``Path``, image bytes or uint8 array, or a list of them.
    ``templates``: strings with one ``{}``; default :data:`DEFAULT_TEMPLATES` (``["{}"]`` = raw labels).
    ``logit_scale``: the softmax sharpness, default the encoder's learned ``logit_scale``.
    """
    labels = _check_labels(labels)
    templates = _check_templates(templates)
    images = _as_images(image_or_images)
    if not images:
        return []
    label_vecs = label_embeddings(encoder, labels, templates)
    image_vecs = l2_normalize(encoder.embed_images(images))
    scale = float(encoder.logit_scale if logit_scale is None else logit_scale)
    logits = scale * (image_vecs.astype(np.float64) @ label_vecs.T.astype(np.float64))
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return [{label: float(p) for label, p in zip(labels, row)} for row in probs]


def label_embeddings(encoder: Encoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(n_labels, dim): each label's prompts embedded, averaged, re-normalised."""
    prompts = [t.format(label) for label in labels for t in templates]
    vecs = l2_normalize(encoder.embed_texts(prompts)).reshape(len(labels), len(templates), -1)
    return l2_normalize(vecs.mean(axis=1))


def _check_labels(labels: Sequence[str]) -> list[str]:
    if isinstance(labels, str):
        raise InputError("labels must be a list of strings, not one string")
    labels = [str(label) for label in labels]
    if not labels:
        raise InputError("zero_shot needs at least one label")
    if len(set(labels)) != len(labels):
        raise InputError("labels must be unique (they are the keys of the result)")
    return labels


def _check_templates(templates: Sequence[str] | str | None) -> list[str]:
    if templates is None:
        return list(DEFAULT_TEMPLATES)
    templates = [templates] if isinstance(templates, str) else list(templates)
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InputError(f"each template needs exactly one '{{}}' for the label; got {bad or templates!r}")
    return templates


def _as_images(x: object) -> list:
    """A single image or a list of images -> RGB PIL images (decoded like ``remember`` does)."""
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # to_item would read a str as text, not as a file name
            raise UnsupportedInputError("zero_shot takes images; pass file names as pathlib.Path", item=item,
                                        index=i)
        if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image: skip re-decoding
            out.append(item if getattr(item, "mode", "RGB") == "RGB" else item.convert("RGB"))
            continue
        from ..inputs import to_item  # lazy: decoding helpers pull in optional codecs

        decoded = to_item(item)
        if decoded.modality != "image":
            raise UnsupportedInputError(f"zero_shot takes images; {decoded.source or 'the input'} is "
                                        f"{decoded.modality}: pass an image file or PIL image", item=item, index=i)
        out.append(decoded.payload)
    return out
