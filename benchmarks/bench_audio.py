"""Native Whisper vs transformers on the real whisper-base architecture (random weights, no hub).

    .venv/bin/python benchmarks/bench_audio.py [--threads 2] [--repeat 5]

One invocation, same threads for both: a random ``WhisperForConditionalGeneration`` with the
whisper-base config is saved as an HF folder; each engine then runs in its own fresh subprocess
(so load time and peak RSS are its own): load, encoder on a 30 s window (fp32 and bf16 autocast),
the short-clip path on 5 s clips (ours only: HF's encoder insists on 3000 frames, so its 5 s clip
costs a 30 s window), and 32 cached greedy decoder steps (on all threads, and on one as SpeechRecognizer does).

Then the sound tower: native wav2clip against the wav2clip package's own modules (random weights in
its checkpoint format; its torchaudio spectrogram stood in by the same ``torch.stft`` call torchaudio
makes), and end-to-end audio ingest into a store (clips/s), sound only and with real transcripts when
a local Whisper is installed.
Timings from a loaded shared machine are only comparable within one run: check the load average
printed in the header.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
BASE = dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
            encoder_ffn_dim=2048, decoder_ffn_dim=2048, vocab_size=51865, num_mel_bins=80,
            max_source_positions=1500, max_target_positions=448)
PROMPT = [50258, 50259, 50359, 50364]
STEPS = 32
SHORT_SECONDS = 5


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive cache)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def child(engine: str, folder: str, threads: int, repeat: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    mel30 = torch.randn(1, 80, 3000)
    mel5 = mel30[:, :, : SHORT_SECONDS * 100]
    out: dict[str, float] = {}
    t = time.perf_counter()
    if engine == "ours":
        from aimemory.nn.whisper import WhisperDims, WhisperModel
        from aimemory.weights.loader import assign_weights
        from aimemory.weights.whisper_formats import read_whisper

        state, _, heads = read_whisper(folder)
        with torch.device("meta"):
            model = WhisperModel(WhisperDims.from_state_dict(state, **heads))
        assign_weights(model, state, assign=True)
        model.eval()
        encode = model.encoder

        def decode():
            st = model.decoder.start(audio)
            model.decoder(torch.tensor([PROMPT]), st)
            for _ in range(STEPS):
                model.decoder(torch.tensor([[400]]), st)
    else:
        from transformers import WhisperForConditionalGeneration

        model = WhisperForConditionalGeneration.from_pretrained(folder).eval()

        def encode(mel):
            return model.model.encoder(mel).last_hidden_state

        def decode():
            o = model(encoder_outputs=(audio,), decoder_input_ids=torch.tensor([PROMPT]), use_cache=True)
            for _ in range(STEPS):
                o = model(encoder_outputs=(audio,), decoder_input_ids=torch.tensor([[400]]),
                          past_key_values=o.past_key_values, use_cache=True)
    out["load_ms"] = (time.perf_counter() - t) * 1000
    with torch.inference_mode():
        audio = encode(mel30)
        out["enc30_fp32_ms"] = _time(lambda: encode(mel30), repeat)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = encode(mel30).float()
            out["enc30_bf16_ms"] = _time(lambda: encode(mel30), repeat)
        out["bf16_cos"] = float(torch.nn.functional.cosine_similarity(bf.flatten(), audio.flatten(), dim=0))
        if engine == "ours":
            out["enc5_fp32_ms"] = _time(lambda: encode(mel5), repeat)
        else:  # the HF encoder only takes full windows: a 5 s clip is a padded 30 s window
            out["enc5_fp32_ms"] = out["enc30_fp32_ms"]
        out["decode_ms_per_token"] = _time(decode, max(1, repeat // 2)) / (STEPS + 1)
        torch.set_num_threads(1)  # what SpeechRecognizer uses for the token loop (DECODE_THREADS)
        out["decode1_ms_per_token"] = _time(decode, max(1, repeat // 2)) / (STEPS + 1)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "FOLDER"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.threads, args.repeat)))
        return
    import torch
    from _machine import machine_lines
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        WhisperForConditionalGeneration(WhisperConfig(**BASE)).save_pretrained(tmp)
        res = {}
        for engine in ("ours", "hf"):
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--repeat", str(args.repeat),
                   "--child", engine, tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        ab = interleaved(tmp, args.threads, args.repeat)
        torch.set_num_threads(args.threads)  # the header reports the threads the table used
    print("\n".join(machine_lines()))
    print(f"whisper-base architecture, random weights, {args.threads} threads, median of {args.repeat}\n")
    rows = [("load (HF folder, safetensors)", "load_ms", "ms"), ("encoder 30 s fp32", "enc30_fp32_ms", "ms"),
            ("encoder 30 s bf16 autocast", "enc30_bf16_ms", "ms"), ("bf16 vs fp32 cosine", "bf16_cos", ""),
            (f"encoder {SHORT_SECONDS} s clip (short path)", "enc5_fp32_ms", "ms"),
            ("decoder, cached greedy step", "decode_ms_per_token", "ms"),
            ("decoder step, 1 thread", "decode1_ms_per_token", "ms"), ("peak RSS", "peak_rss_mib", "MiB")]
    print(f"| {'measure':34} | {'aimemory':>10} | {'transformers':>12} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 14}|{'-' * 8}|")
    for label, key, unit in rows:
        a, b = res["ours"][key], res["hf"][key]
        if key == "bf16_cos":
            cells = (f"{a:.5f}", f"{b:.5f}", "")
        else:
            cells = (f"{a:,.0f} {unit}", f"{b:,.0f} {unit}", f"{a / b:.2f}x")
        print(f"| {label:34} | {cells[0]:>10} | {cells[1]:>12} | {cells[2]:>6} |")
    print(f"\ninterleaved A/B in one process (ours, HF alternately; robust to load drift), median ratio "
          f"ours/HF: encoder 30 s fp32 {ab['enc']:.2f}x, decoder step (1 thread) {ab['dec']:.2f}x")
    from bench_sound import print_sound_tables

    print_sound_tables(args.threads, args.repeat)


def interleaved(folder: str, threads: int, repeat: int) -> dict[str, float]:
    """Alternate the two engines call by call and take the median of per-pair ratios."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from aimemory.nn.whisper import WhisperDims, WhisperModel
    from aimemory.weights.loader import assign_weights
    from aimemory.weights.whisper_formats import read_whisper

    torch.set_num_threads(threads)
    state, _, heads = read_whisper(folder)
    ours = WhisperModel(WhisperDims.from_state_dict(state, **heads)).eval()
    assign_weights(ours, state)
    hf = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    mel = torch.randn(1, 80, 3000)
    ratios: dict[str, list[float]] = {"enc": [], "dec": []}
    with torch.inference_mode():
        audio = ours.encoder(mel)

        def dec_ours():
            st = ours.decoder.start(audio)
            for tok in PROMPT * 4:
                ours.decoder(torch.tensor([[tok]]), st)

        def dec_hf():
            o = None
            for tok in PROMPT * 4:
                o = hf(encoder_outputs=(audio,), decoder_input_ids=torch.tensor([[tok]]),
                       past_key_values=None if o is None else o.past_key_values, use_cache=True)

        for key, a, b, n in (("enc", lambda: ours.encoder(mel), lambda: hf.model.encoder(mel), threads),
                             ("dec", dec_ours, dec_hf, 1)):
            torch.set_num_threads(n)
            a(), b()
            for _ in range(repeat):
                ta = _time(a, 1)
                tb = _time(b, 1)
                ratios[key].append(ta / tb)
    return {k: statistics.median(v) for k, v in ratios.items()}


if __name__ == "__main__":
    main()
