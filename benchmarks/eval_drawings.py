"""Drawings through ``MemoryStore.recall`` with the pretrained offline model: text -> image R@1 / R@5
over the built-in model's 64 held-out emoji renders (``tests/data/mini_heldout.npz``), alone and in a
store that also holds the demo's real photos and notes.

    python benchmarks/eval_drawings.py [--model aimemory-base] [--json out.json]

An ImageNet classifier does not know drawings; ``aimemory-base`` finds them through its drawing view
(the built-in model's vector of each image), which recall counts only where it stands out (the
calibration's ``min_z``). This measures what that rule costs or gains on drawings; the real-photo
figures are in eval_recall_path.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402

HELDOUT = ROOT / "tests" / "data" / "mini_heldout.npz"
PHOTOS = ("cat", "coffee", "astronaut", "rocket", "photographer", "galaxies")
NOTES = ("bike", "garden", "shopping")


def _query(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def recall_at(store, names: list[str]) -> dict[str, float]:
    """R@1 and R@5 of each render's name ("a cat") finding the render (ids ``e0``, ``e1``...)."""
    r1 = r5 = 0
    for i, name in enumerate(names):
        got = [h.id for h in store.recall(_query(name), k=5)]
        r1 += got[:1] == [f"e{i}"]
        r5 += f"e{i}" in got
    return {"R@1": r1 / len(names), "R@5": r5 / len(names)}


def run(model: str) -> dict[str, dict[str, float]]:
    from PIL import Image

    from aimemory import MemoryStore
    from aimemory.demo import SAMPLES

    with np.load(HELDOUT) as data:
        names = [str(n) for n in data["names"]]
        renders = [Image.fromarray(im) for im in data["images"]]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with MemoryStore(Path(tmp) / "m", model=model, speech_model=None) as store:
            store.remember_many(renders, ids=[f"e{i}" for i in range(len(renders))])
            out["emoji alone"] = recall_at(store, names)
            others = [SAMPLES / f"real/{n}.jpg" for n in PHOTOS] + [SAMPLES / f"notes/{n}.txt" for n in NOTES]
            store.remember_many(others)
            out[f"emoji + {len(PHOTOS)} photos + {len(NOTES)} notes"] = recall_at(store, names)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-base")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = run(args.model)
    print("\n".join(machine_lines()))
    print(f"\nmodel {args.model}, text -> image over {HELDOUT.name}'s 64 renders")
    print(f"{'store':34}{'R@1':>8}{'R@5':>8}")
    for name, r in res.items():
        print(f"{name:34}{r['R@1']:8.3f}{r['R@5']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
