"""Native Whisper: a log-mel audio encoder and a text decoder with cross-attention and a KV cache.

Encoder: 2 Conv1d (+GELU, the second with stride 2: 100 mel frames/s -> 50 states/s), sinusoidal
positions (read from the checkpoint), pre-LN blocks from :mod:`aimemory.nn.core`, final LayerNorm.
Decoder: token + learned positions, blocks of causal self-attention, cross-attention to the audio
states and an MLP, final LayerNorm, logits through the (tied) token embedding.
:class:`WhisperDims` is read off tensor shapes, so tiny / base / small / medium / large load unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .core import Attention, Block, Mlp

WHISPER_ACT = "gelu"  # exact erf GELU everywhere in Whisper
WHISPER_EPS = 1e-5
HEAD_WIDTH = 64  # all released Whisper sizes use 64-wide heads; configs override when they say otherwise
CONV_KERNEL = 3


@dataclass(frozen=True)
class WhisperDims:
    """Architecture numbers of one Whisper checkpoint."""

    n_mels: int
    n_audio_ctx: int  # encoder positions (1500 = 30 s after the stride-2 conv)
    audio_width: int
    audio_layers: int
    audio_heads: int
    audio_mlp: int
    vocab_size: int
    n_text_ctx: int  # decoder positions (448)
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int

    @property
    def multilingual(self) -> bool:
        return self.vocab_size >= 51865

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], *, audio_heads: int | None = None,
                        text_heads: int | None = None) -> "WhisperDims":
        """Native-named state dict -> dims; heads come from a config when there is one."""

        def layers(prefix: str) -> int:
            pat = re.compile(re.escape(prefix) + r"\.blocks\.(\d+)\.")
            found = {int(m.group(1)) for k in state for m in [pat.match(k)] if m}
            return max(found) + 1 if found else 0

        conv1 = state["encoder.conv1.weight"]  # (w, n_mels, 3)
        a_w, t_w = conv1.shape[0], state["decoder.token_embed.weight"].shape[1]
        return cls(
            n_mels=conv1.shape[1],
            n_audio_ctx=state["encoder.pos_embed"].shape[0],
            audio_width=a_w,
            audio_layers=layers("encoder"),
            audio_heads=audio_heads or max(1, a_w // HEAD_WIDTH),
            audio_mlp=state["encoder.blocks.0.mlp.fc1.weight"].shape[0],
            vocab_size=state["decoder.token_embed.weight"].shape[0],
            n_text_ctx=state["decoder.pos_embed"].shape[0],
            text_width=t_w,
            text_layers=layers("decoder"),
            text_heads=text_heads or max(1, t_w // HEAD_WIDTH),
            text_mlp=state["decoder.blocks.0.mlp.fc1.weight"].shape[0],
        )


def sinusoids(length: int, width: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """(length, width) Whisper's encoder positions: [sin | cos] halves, geometric timescales."""
    half = width // 2
    inv = torch.exp(-torch.log(torch.tensor(max_timescale)) / (half - 1) * torch.arange(half))
    t = torch.arange(length)[:, None] * inv[None, :]  # (length, half)
    return torch.cat([t.sin(), t.cos()], dim=1)


class AudioEncoder(nn.Module):
    """(b, n_mels, frames) log-mel -> (b, frames // 2, width) audio states.

    ``frames`` may be shorter than 3000 (the short-clip path): positions are sliced to fit."""

    def __init__(self, d: WhisperDims):
        super().__init__()
        w = d.audio_width
        self.conv1 = nn.Conv1d(d.n_mels, w, CONV_KERNEL, padding=1)
        self.conv2 = nn.Conv1d(w, w, CONV_KERNEL, stride=2, padding=1)
        self.pos_embed = nn.Parameter(sinusoids(d.n_audio_ctx, w))
        self.blocks = nn.ModuleList(Block(w, d.audio_heads, d.audio_mlp, WHISPER_ACT, WHISPER_EPS)
                                    for _ in range(d.audio_layers))
        self.ln_post = nn.LayerNorm(w, eps=WHISPER_EPS)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(mel.to(self.conv1.weight.dtype)))  # (b, w, frames)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (b, n, w), n = ceil(frames / 2)
        n = x.shape[1]
        if n > self.pos_embed.shape[0]:
            raise ValueError(f"{mel.shape[-1]} mel frames exceed the encoder's {2 * self.pos_embed.shape[0]}")
        x = x + self.pos_embed[:n].to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class SelfAttention(Attention):
    """Core fused-qkv attention plus an incremental path: new keys/values are appended to a cache."""

    def step(self, x: torch.Tensor, cache: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, n, d = x.shape  # n new tokens
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if cache:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)  # (b, h, t+n, hd)
        past = k.shape[2] - n
        mask = None
        if n > 1:  # query i (at absolute position past + i) sees keys 0 .. past + i
            mask = torch.ones(n, past + n, dtype=torch.bool, device=x.device).tril(diagonal=past)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(o.transpose(1, 2).reshape(b, n, d)), [k, v]


class CrossAttention(nn.Module):
    """Decoder queries over audio states; keys/values are computed once per audio window."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)  # key rows have a zero bias (Whisper's key has none)
        self.out = nn.Linear(width, width)

    def keys_values(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m, d = audio.shape  # (b, audio positions, width)
        kv = self.kv(audio).view(b, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]  # 2 x (b, h, m, hd)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)  # (b, h, n, hd)
        o = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.out(o.transpose(1, 2).reshape(b, n, d))


class DecoderBlock(nn.Module):
    """Pre-LN: self-attention (cached), cross-attention, MLP."""

    def __init__(self, width: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=WHISPER_EPS)
        self.attn = SelfAttention(width, heads)
        self.ln_x = nn.LayerNorm(width, eps=WHISPER_EPS)
        self.cross = CrossAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=WHISPER_EPS)
        self.mlp = Mlp(width, mlp_hidden, WHISPER_ACT)

    def forward(self, x, cross_kv, cache):
        a, cache = self.attn.step(self.ln_1(x), cache)
        x = x + a
        x = x + self.cross(self.ln_x(x), cross_kv)
        return x + self.mlp(self.ln_2(x)), cache


class DecoderState:
    """Per-window decoding state: cross-attention keys/values and the growing self-attention cache."""

    def __init__(self, cross_kv: list[tuple[torch.Tensor, torch.Tensor]]):
        self.cross_kv = cross_kv
        self.self_kv: list[list[torch.Tensor] | None] = [None] * len(cross_kv)
        self.length = 0  # tokens already seen


class TextDecoder(nn.Module):
    """(b, n) new token ids + state -> (b, n, vocab) logits."""

    def __init__(self, d: WhisperDims):
        super().__init__()
        w = d.text_width
        self.token_embed = nn.Embedding(d.vocab_size, w)
        self.pos_embed = nn.Parameter(torch.zeros(d.n_text_ctx, w))
        self.blocks = nn.ModuleList(DecoderBlock(w, d.text_heads, d.text_mlp) for _ in range(d.text_layers))
        self.ln = nn.LayerNorm(w, eps=WHISPER_EPS)

    def start(self, audio: torch.Tensor) -> DecoderState:
        """(b, m, w) audio states -> a fresh state holding each layer's cross keys/values."""
        return DecoderState([blk.cross.keys_values(audio.to(self.ln.weight.dtype)) for blk in self.blocks])

    def forward(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        n, t = tokens.shape[1], state.length
        if t + n > self.pos_embed.shape[0]:
            raise ValueError(f"decoder context is {self.pos_embed.shape[0]} tokens; asked for {t + n}")
        x = self.token_embed(tokens) + self.pos_embed[t:t + n]  # (b, n, w)
        for i, blk in enumerate(self.blocks):
            x, state.self_kv[i] = blk(x, state.cross_kv[i], state.self_kv[i])
        state.length = t + n
        x = self.ln(x)
        return x @ self.token_embed.weight.to(x.dtype).T  # (b, n, vocab), tied projection


class WhisperModel(nn.Module):
    """Encoder + decoder; ``forward`` is teacher-forced logits (for tests), decoding lives in speech."""

    def __init__(self, d: WhisperDims):
        super().__init__()
        self.dims = d
        self.encoder = AudioEncoder(d)
        self.decoder = TextDecoder(d)

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(b, n_mels, frames), (b, n) -> (b, n, vocab) logits."""
        return self.decoder(tokens, self.decoder.start(self.encoder(mel)))

    @torch.inference_mode()
    def greedy(self, mel: torch.Tensor, prompt: torch.Tensor, max_new: int, eot: int) -> torch.Tensor:
        """Plain greedy decoding (no suppression rules), for parity tests: (b, n_prompt) -> (b, <= max_new)."""
        state = self.decoder.start(self.encoder(mel))
        tokens, out = prompt, []
        done = torch.zeros(prompt.shape[0], dtype=torch.bool)
        for _ in range(max_new):
            nxt = self.decoder(tokens, state)[:, -1].argmax(-1)  # (b,)
            nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
            out.append(nxt)
            done |= nxt == eot
            if done.all():
                break
            tokens = nxt[:, None]
        return torch.stack(out, dim=1)
