"""Train aimemory-mini contrastively (InfoNCE over image-text, audio-text and audio-image pairs).

Reads the arrays written by build_data.py; seeded, 2 CPU threads, a fixed number of steps so a run
reproduces the shipped weights. ``--export`` writes model.safetensors (fp16) + config.json into
aimemory/models/aimemory-mini/.

    python training/train_mini.py --data training/data/full --steps 3500 --out training/runs/full --export
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from aimemory.nn.mini import MiniDims, MiniModel, text_batch  # noqa: E402

SEED = 0
BATCH = 256  # image-text pairs per step
SCENES_PER_BATCH = 64  # of BATCH, multi-object scenes; the rest are distinct single concepts
AUDIO_SINGLES, AUDIO_SCENES = 96, 32  # items of the batch that also carry a spoken clip
LR, WEIGHT_DECAY, WARMUP = 2e-3, 0.05, 150
PAIR_WEIGHTS = {"image-text": 1.0, "audio-text": 1.0, "audio-image": 1.0}
MAX_LOGIT_SCALE = math.log(100.0)
AUDIO_LR = 1e-3  # stage 2 (audio tower only)
STAGE1_STEPS = 3500  # recorded in config.json by the stage-2 export
EXPORT_DIR = ROOT.parent / "aimemory" / "models" / "aimemory-mini"
TEMPLATES = ["{a} {n}", "{n}", "a photo of {a} {n}", "a picture of {a} {n}", "an image of {a} {n}", "the {n}",
             "my {n}", "a small {n}", "a big {n}", "{a} {n} on a colourful background", "this is {a} {n}",
             "an emoji of {a} {n}"]


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def caption(c: dict, rng: np.random.Generator) -> str:
    """A random training caption for one concept: mostly templated names, sometimes CLDR keywords."""
    r = rng.random()
    if r < 0.12 and c["tags"]:
        tag = str(rng.choice(c["tags"]))
        return tag if rng.random() < 0.5 else f"{article(tag)} {tag}"
    name = c["label"] if (r < 0.22 and c["label"] != c["name"]) else c["name"]
    return str(rng.choice(TEMPLATES)).format(a=article(name), n=name)


class Data:
    """Memory-resident arrays from build_data.py plus the per-step batch sampler."""

    def __init__(self, folder: Path):
        meta = json.loads((folder / "meta.json").read_text())
        self.meta = meta
        self.concepts = meta["concepts"]
        self.single_imgs = downsample(np.load(folder / "train_single_images.npy"))
        self.scene_imgs = downsample(np.load(folder / "train_scene_images.npy"))
        self.mels = np.load(folder / "train_speech_mels.npy")
        self.single_by_concept = _index(meta["train_single"], len(self.concepts))
        sc = np.asarray(meta["train_speech_concept"])
        self.clips_by_concept = _index(np.where(sc >= 0, sc, -1).tolist(), len(self.concepts))
        self.scene_clip = {-1 - int(v): k for k, v in enumerate(sc) if v < 0}  # scene index -> clip
        self.spoken_scenes = np.array(sorted(self.scene_clip))
        self.eval_imgs = downsample(np.load(folder / "eval_single_images.npy"))
        self.eval_mels = np.load(folder / "eval_speech_mels.npy")

    def batch(self, rng: np.random.Generator, audio_singles: int = AUDIO_SINGLES, audio_scenes: int = AUDIO_SCENES):
        """-> images (B,3,S,S) float, captions [B], mels (A, n_mels, T) float (A = audio items first)."""
        C = len(self.concepts)
        n_single = BATCH - SCENES_PER_BATCH
        concepts = rng.choice(C, n_single, replace=False)
        imgs, caps, mel_idx = [], [], []
        for k, c in enumerate(concepts):
            imgs.append(self.single_imgs[rng.choice(self.single_by_concept[c])])
            if k < audio_singles:
                clip = int(rng.choice(self.clips_by_concept[c]))
                mel_idx.append(clip)
                caps.append(self.meta["train_speech_text"][clip])  # the words actually spoken
            else:
                caps.append(caption(self.concepts[c], rng))
        spoken = rng.choice(self.spoken_scenes, audio_scenes, replace=False)
        others = rng.choice(len(self.scene_imgs), SCENES_PER_BATCH - audio_scenes, replace=False)
        mel_idx += [self.scene_clip[int(s)] for s in spoken]
        for s in list(spoken) + list(others):
            imgs.append(self.scene_imgs[s])
            caps.append(self.meta["train_scene_captions"][s])
        # audio items are the first singles and the first scenes: put them first
        order = list(range(audio_singles)) + list(range(n_single, n_single + audio_scenes))
        order += [i for i in range(BATCH) if i not in set(order)]
        imgs = np.stack([imgs[i] for i in order])
        caps = [caps[i] for i in order]
        mels = spec_augment(torch.from_numpy(self.mels[mel_idx].astype(np.float32)), rng)
        return to_pixels(imgs), caps, mels


def _index(owner: list[int], n: int) -> list[np.ndarray]:
    owner = np.asarray(owner)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return [order[bounds[i]: bounds[i + 1]] for i in range(n)]


def downsample(imgs: np.ndarray, size: int = MiniDims.image_size) -> np.ndarray:
    """(n, S, S, 3) uint8 renders -> (n, size, size, 3) by box averaging (S a multiple of size)."""
    f = imgs.shape[1] // size
    if f == 1:
        return imgs
    out = np.empty((len(imgs), size, size, 3), np.uint8)
    for s in range(0, len(imgs), 4096):  # chunks keep the float copy small
        block = imgs[s: s + 4096].reshape(-1, size, f, size, f, 3).mean(axis=(2, 4))
        out[s: s + 4096] = np.round(block).astype(np.uint8)
    return out


def to_pixels(imgs: np.ndarray) -> torch.Tensor:
    """(n, S, S, 3) uint8 -> (n, 3, S, S) float in [0, 1], channels-last memory (faster convs)."""
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)


def spec_augment(mels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One frequency band, one time band masked per clip, and a +-2 mel-bin shift (voice timbre)."""
    n, F_, T = mels.shape
    floor = mels.amin(dim=(1, 2), keepdim=True)
    f0, fw = rng.integers(0, F_ - 10, n), rng.integers(0, 10, n)
    t0, tw = rng.integers(0, T - 30, n), rng.integers(0, 30, n)
    fmask = (torch.arange(F_)[None] >= torch.from_numpy(f0)[:, None]) & (torch.arange(F_)[None] < torch.from_numpy(f0 + fw)[:, None])
    tmask = (torch.arange(T)[None] >= torch.from_numpy(t0)[:, None]) & (torch.arange(T)[None] < torch.from_numpy(t0 + tw)[:, None])
    mels = torch.where(fmask[:, :, None] | tmask[:, None, :], floor, mels)
    shift = int(rng.integers(-2, 3))
    return torch.roll(mels, shift, dims=1) if shift else mels


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for matched rows of two (n, d) unit-norm batches."""
    logits = scale * a @ b.T
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@torch.no_grad()
def quick_eval(model: MiniModel, data: Data) -> dict:
    """Held-out backgrounds / voices, full concept gallery: text->image and speech->image R@1/R@5."""
    model.eval()
    meta, C = data.meta, len(data.concepts)
    first = {}
    for k, c in enumerate(meta["eval_single"]):
        first.setdefault(c, k)
    img = torch.cat([model.embed_image(to_pixels(data.eval_imgs[[first[c] for c in range(s, min(s + 512, C))]]))
                     for s in range(0, C, 512)])
    txt = model.embed_text(*text_batch([f"{article(c['name'])} {c['name']}" for c in data.concepts],
                                       model.dims.text_buckets))
    clips = {}
    for k, c in enumerate(meta["eval_speech_concept"]):
        clips.setdefault(c, k)
    aud = torch.cat([model.embed_audio(torch.from_numpy(data.eval_mels[[clips[c] for c in range(s, min(s + 256, C))]].astype(np.float32)))
                     for s in range(0, C, 256)])
    out = {}
    for name, q in (("text->image", txt), ("speech->image", aud), ("speech->text", aud)):
        gallery = txt if name == "speech->text" else img
        ranks = (q @ gallery.T).argsort(dim=1, descending=True)
        hit = ranks == torch.arange(C)[:, None]
        out[f"{name} R@1"] = hit[:, :1].any(1).float().mean().item()
        out[f"{name} R@5"] = hit[:, :5].any(1).float().mean().item()
    model.train()
    return out


def export(model: MiniModel, folder: Path, extra: dict) -> None:
    """fp16 safetensors (integer buffers kept) + config.json with the dims and training facts."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    cfg = dict(model_id="aimemory-mini-v1", **model.dims.to_config(), sample_rate=16000,
               clip_seconds=3.0, logit_scale=float(model.logit_scale.detach().exp()), **extra)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def train_audio_stage(model: MiniModel, data: Data, steps: int, eval_every: int, out: Path) -> None:
    """Stage 2: image/text towers and temperature frozen (eval mode); only the audio tower learns,
    with every item of the batch spoken, against both frozen targets."""
    for p in list(model.image.parameters()) + list(model.text.parameters()) + [model.logit_scale]:
        p.requires_grad_(False)
    params = list(model.audio.parameters())
    opt = torch.optim.AdamW(params, lr=AUDIO_LR, betas=(0.9, 0.98), weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    rng = np.random.default_rng(SEED + 1)
    scale = model.logit_scale.exp()
    t0 = time.time()
    for step in range(1, steps + 1):
        model.image.eval(), model.text.eval(), model.audio.train()
        pixels, caps, mels = data.batch(rng, BATCH - SCENES_PER_BATCH, SCENES_PER_BATCH)
        with torch.no_grad():
            img = model.embed_image(pixels)
            txt = model.embed_text(*text_batch(caps, model.dims.text_buckets))
        aud = model.embed_audio(mels)
        lt, li = info_nce(aud, txt, scale), info_nce(aud, img, scale)
        loss = 0.5 * (lt + li)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            el = time.time() - t0
            print(f"audio step {step} loss {loss.item():.3f} audio-text {lt.item():.2f} audio-image {li.item():.2f} "
                  f"{el / step:.2f}s/step {el / 60:.1f}min", flush=True)
        if step % eval_every == 0 or step == steps:
            ev = quick_eval(model, data)
            print(f"eval audio step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in ev.items()), flush=True)
            export(model, out, {"audio_steps": step})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "full")
    ap.add_argument("--steps", type=int, default=3500)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "full")
    ap.add_argument("--export", action="store_true", help="also write the shipped weights")
    ap.add_argument("--audio-stage", type=int, default=0, metavar="STEPS",
                    help="stage 2: train only the audio tower for STEPS, starting from --init")
    ap.add_argument("--init", type=Path, help="folder with a stage-1 model.safetensors (for --audio-stage)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    t0 = time.time()
    data = Data(args.data)
    print(f"data loaded in {time.time() - t0:.0f}s: {len(data.concepts)} concepts, {len(data.single_imgs)} singles, "
          f"{len(data.scene_imgs)} scenes, {len(data.mels)} clips", flush=True)
    model = MiniModel(MiniDims())
    model.image.to(memory_format=torch.channels_last)
    if args.audio_stage:
        from aimemory.weights import assign_weights, load_state_dict

        assign_weights(model, load_state_dict(args.init / "model.safetensors"), source=str(args.init))
        args.out.mkdir(parents=True, exist_ok=True)
        t = time.time()
        train_audio_stage(model, data, args.audio_stage, args.eval_every, args.out)
        print(f"audio stage {args.audio_stage} steps in {(time.time() - t) / 60:.1f} min", flush=True)
        if args.export:
            export(model, EXPORT_DIR, {"train_steps": STAGE1_STEPS, "audio_steps": args.audio_stage})
            print(f"exported to {EXPORT_DIR}", flush=True)
        return
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("text.embed")]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith("text.embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    args.out.mkdir(parents=True, exist_ok=True)
    t_train = time.time()
    for step in range(1, args.steps + 1):
        pixels, caps, mels = data.batch(rng)
        ids, mask = text_batch(caps, model.dims.text_buckets)
        img, txt, aud = model.embed_image(pixels), model.embed_text(ids, mask), model.embed_audio(mels)
        scale = model.logit_scale.exp()
        A = len(aud)
        # audio learns to land on the text (and image) points but does not move them: with the text
        # tower free to please audio too, it grew audio-only directions and speech->image failed
        losses = {"image-text": info_nce(img, txt, scale), "audio-text": info_nce(aud, txt[:A].detach(), scale),
                  "audio-image": info_nce(aud, img[:A].detach(), scale)}
        loss = sum(PAIR_WEIGHTS[k] * v for k, v in losses.items()) / sum(PAIR_WEIGHTS.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        if step % 50 == 0 or step == 1:
            el = time.time() - t_train
            print(f"step {step} loss {loss.item():.3f} " + " ".join(f"{k} {v.item():.2f}" for k, v in losses.items())
                  + f" scale {scale.item():.1f} lr {sched.get_last_lr()[0]:.2e} {el / step:.2f}s/step {el / 60:.1f}min",
                  flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            ev = quick_eval(model, data)
            print(f"eval step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in ev.items()), flush=True)
            export(model, args.out, {"train_steps": step})
    minutes = (time.time() - t_train) / 60
    print(f"trained {args.steps} steps in {minutes:.1f} min", flush=True)
    if args.export:
        export(model, EXPORT_DIR, {"train_steps": args.steps})
        print(f"exported to {EXPORT_DIR}", flush=True)


if __name__ == "__main__":
    main()
