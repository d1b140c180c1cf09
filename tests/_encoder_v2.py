"""A second test encoder: ColourEncoder's meanings in another space (every vector turned by a fixed
rotation), for migrating a store from one model to another."""

from __future__ import annotations

import numpy as np
from conftest import ColourEncoder

from aimemory.encoders.base import View

ROTATION = np.linalg.qr(np.random.default_rng(7).standard_normal((16, 16)))[0].astype(np.float32)


class ColourEncoderV2(ColourEncoder):
    model_id = "test-colour-v2"

    def embed_images(self, images):
        return super().embed_images(images) @ ROTATION

    def embed_texts(self, texts):
        return super().embed_texts(texts) @ ROTATION

    def embed_audio(self, clips):
        return [[View(v.kind, v.vector @ ROTATION, v.start, v.end, v.text) for v in views]
                for views in super().embed_audio(clips)]
