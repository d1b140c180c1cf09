"""``aimemory-mini``: a small tri-modal model (image, text, audio towers -> one unit-norm space).

Sized to embed one 32 px image, one caption or 1 s of audio in a few ms on 2 CPU cores. The text
tower is a bag of hashed word / word-bigram / character-trigram features with attention pooling,
so unseen phrasings, plurals and typos still land near the words it learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..preprocess.hashed_text import text_features

IMAGE_MEAN = 0.5  # pixels in [0, 1] are mapped to (x - 0.5) / 0.25
IMAGE_STD = 0.25


@dataclass(frozen=True)
class MiniDims:
    """Every size of the towers; :meth:`from_checkpoint` rebuilds it from a state dict's shapes."""

    dim: int = 256  # shared embedding width
    image_size: int = 32  # emoji stay recognisable at 32 px and the convs cost 1/4 of 64 px
    image_widths: tuple[int, ...] = (32, 64, 128, 256)  # one stage per stride-2 step after the stem
    text_buckets: int = 32768  # hashed feature vocabulary
    text_width: int = 128
    text_hidden: int = 512
    n_mels: int = 80
    audio_widths: tuple[int, ...] = (96, 160, 256, 256)

    def to_config(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, torch.Tensor], config: Mapping | None = None) -> "MiniDims":
        """Widths come from the tensors themselves; ``config`` only supplies ``image_size``."""
        n_img = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image.stages."))
        n_aud = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("audio.convs."))
        return cls(
            dim=state["image.proj.weight"].shape[0],
            image_size=int((config or {}).get("image_size", cls.image_size)),
            image_widths=(state["image.stem.0.weight"].shape[0],)
            + tuple(state[f"image.stages.{i}.0.weight"].shape[0] for i in range(n_img)),
            text_buckets=state["text.embed.weight"].shape[0],
            text_width=state["text.embed.weight"].shape[1],
            text_hidden=state["text.mlp.1.weight"].shape[0],
            n_mels=state["audio.convs.0.0.weight"].shape[1],
            audio_widths=tuple(state[f"audio.convs.{i}.0.weight"].shape[0] for i in range(n_aud)),
        )


def text_batch(texts: Sequence[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> (ids (n, L) int64, mask (n, L) bool), right-padded with id 0 / False."""
    rows = [text_features(t, buckets) for t in texts]
    length = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


# -- towers ---------------------------------------------------------------------------------------
def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImageTower(nn.Module):
    """(n, 3, S, S) normalised pixels -> (n, dim). A plain stride-2 CNN, global average pooled."""

    def __init__(self, d: MiniDims):
        super().__init__()
        w = d.image_widths
        self.stem = _conv_bn(3, w[0], 2)  # (n, w0, S/2, S/2)
        # each stage: a stride-2 conv then a stride-1 conv -> (n, w[i+1], S/4, ...) down to S/16
        self.stages = nn.ModuleList(
            nn.Sequential(*_conv_bn(w[i], w[i + 1], 2), *_conv_bn(w[i + 1], w[i + 1], 1)) for i in range(len(w) - 1)
        )
        self.proj = nn.Linear(w[-1], d.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.proj(x.mean(dim=(2, 3)))  # (n, w[-1]) -> (n, dim)


class TextTower(nn.Module):
    """(ids (n, L), mask (n, L)) -> (n, dim): hashed-feature embeddings, attention pooled, MLP."""

    def __init__(self, d: MiniDims):
        super().__init__()
        self.embed = nn.Embedding(d.text_buckets, d.text_width)  # (buckets, width)
        self.score = nn.Linear(d.text_width, 1)  # how much each feature matters (stop words -> low)
        self.mlp = nn.Sequential(
            nn.LayerNorm(d.text_width), nn.Linear(d.text_width, d.text_hidden), nn.GELU(),
            nn.Linear(d.text_hidden, d.dim),
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.embed(ids)  # (n, L, width)
        logits = self.score(e).squeeze(-1).masked_fill(~mask, float("-inf"))  # (n, L)
        pooled = (logits.softmax(-1).unsqueeze(-1) * e).sum(1)  # (n, width)
        return self.mlp(pooled)


class AudioTower(nn.Module):
    """(n, n_mels, T) log-mel -> (n, dim): 1-D convs over time (mels as channels), attention+max pooled."""

    def __init__(self, d: MiniDims):
        super().__init__()
        w = (d.n_mels,) + d.audio_widths
        strides = [2] * (len(d.audio_widths) - 1) + [1]  # T -> T/8 frames (80 ms) at the top
        kernels = [5, 5] + [3] * (len(d.audio_widths) - 2)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(w[i], w[i + 1], kernels[i], strides[i], kernels[i] // 2, bias=False),
                          nn.BatchNorm1d(w[i + 1]), nn.ReLU(inplace=True))
            for i in range(len(d.audio_widths))
        )
        self.score = nn.Conv1d(w[-1], 1, 1)  # which frames carry the words (not the silence)
        self.proj = nn.Linear(2 * w[-1], d.dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        for conv in self.convs:
            x = conv(x)  # (n, C, T') with T' = T / 8
        attn = self.score(x).softmax(-1)  # (n, 1, T')
        pooled = torch.cat([(attn * x).sum(-1), x.amax(-1)], dim=1)  # (n, 2C)
        return self.proj(pooled)


class MiniModel(nn.Module):
    """The three towers plus the learned temperature; ``embed_*`` return unit rows (n, dim)."""

    def __init__(self, dims: MiniDims):
        super().__init__()
        self.dims = dims
        self.image = ImageTower(dims)
        self.text = TextTower(dims)
        self.audio = AudioTower(dims)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), CLIP's initial value

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) float in [0, 1] -> (n, dim)."""
        return F.normalize(self.image((pixels - IMAGE_MEAN) / IMAGE_STD), dim=-1)

    def embed_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(ids, mask), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(n, n_mels, T) -> (n, dim)."""
        return F.normalize(self.audio(mel), dim=-1)
