"""Cold start of the CLI and the MCP server, as whole processes, on a 100k store.

    .venv/bin/python benchmarks/bench_cold.py --runs 7
    .venv/bin/python benchmarks/bench_cold.py --runs 7 --baseline /path/to/older/checkout

Each figure is the median wall time of ``--runs`` whole-process runs, from the start of the process
to its exit (CLI) or to the answer named (MCP). With ``--baseline`` (another checkout of aimemory,
run with the same Python) every case alternates between the two checkouts, run by run, and the
``new/base`` ratio is the median of the per-pair ratios, so a machine that speeds up or slows down
during the run moves both sides alike.

Cases:
* ``--help``: ``aimemory --help`` (the floor: Python, typer and the CLI's own modules).
* cold recall: ``aimemory recall "a cat"`` with no server to reuse (``AIMEMORY_USE_SERVER=0``):
  imports, store open (catalog, index), the text towers' load and one query.
* served recall: the same with ``aimemory serve`` running on the store (the CLI asks it over
  loopback HTTP); each checkout serves its own hard-linked copy of the store.
* after a write (``--no-writes`` skips): ``aimemory remember --text ...`` (a process that stores one
  note: imports, open, the text model, the write and the close), then a cold recall as above, on
  each checkout's own full copy of the store; with a server, also the remember it is handed (the
  served cases then run on those copies). A close saves the catalog in full only when enough
  changed; what a recall after a few writes costs depends on what the close saved instead.
* MCP: ``aimemory mcp`` started by the official SDK's stdio client: time to the ``initialize``
  answer, to the ``tools/list`` answer, and to the first ``recall`` tool answer.

The store (built once into ``--work``) holds ``--n`` text memories with random unit vectors made as
``aimemory-base`` would store them (384-d), so the CLI loads the real ``aimemory-base`` towers to
encode the query; no model runs while building it. A process that has not imported torch encodes a
text query with the numpy forward of the same weights (:mod:`aimemory.nn.bert_numpy`), so the cold
CLI recall does without torch; ``floor: import torch`` shows what that saves.

Encode latency (``--encode-queries``, 0 to skip; in this process, one thread each): the same short
queries encoded one at a time by the numpy forward and by the torch network, tokenizing included,
median and minimum over the queries, and the lowest cosine between the two paths' vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_lines  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL_ID, DIM = "aimemory-base", 384
QUERY = "a cat"
WORDS = ("cat dog sofa garden river train coffee meeting budget invoice paris london music piano rain sun "
         "kitchen window letter doctor").split()
SERVE_WAIT_S = 180.0  # a server loads the store and the model before it listens


# -- the store ---------------------------------------------------------------------------------------
def build_store(path: Path, n: int) -> None:
    """``n`` text memories with seeded random vectors, under the aimemory-base model id."""
    import numpy as np

    from aimemory import MemoryStore
    from aimemory.encoders.base import Encoder

    class RandomBase(Encoder):
        """Stands in for aimemory-base while building: same id and width, random unit vectors."""

        model_id, dim, modalities = MODEL_ID, DIM, frozenset({"text"})

        def embed_texts(self, texts):
            rng = np.random.default_rng([len(texts), sum(map(len, texts))])
            x = rng.standard_normal((len(texts), DIM)).astype(np.float32)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    rng = np.random.default_rng(0)
    texts = [f"note {i}: " + " ".join(rng.choice(WORDS, 8)) for i in range(n)]
    with MemoryStore(path, model=RandomBase(), speech_model=None, sound_model=None, ocr=False) as store:
        store.remember_many(texts, batch_size=5000, metadata={"tags": ["bench"]})


# -- timing ------------------------------------------------------------------------------------------
def package_of(checkout: Path) -> str:
    """Where ``import aimemory`` resolves in ``checkout`` (run from inside it: ``python -m`` puts the
    working directory before PYTHONPATH, so every command here runs with ``cwd=checkout``)."""
    return subprocess.run([sys.executable, "-c", "import aimemory; print(aimemory.__file__)"],
                          env=env_for(checkout), cwd=checkout, capture_output=True, text=True,
                          check=True).stdout.strip()


def env_for(checkout: Path, **extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONWARNINGS": "ignore", **extra}
    env.pop("AIMEMORY_TOKEN", None)
    return env


def run_cli(checkout: Path, args: list[str], **extra: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aimemory", *args], env=env_for(checkout, **extra), cwd=checkout,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"aimemory {' '.join(args)} failed in {checkout}: {proc.stderr[-2000:]}")
    return elapsed


def run_python(checkout: Path, code: str) -> float:
    """A bare ``python -c CODE``: the floors (the interpreter; torch, which any query encode needs)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env_for(checkout), cwd=checkout, check=True, timeout=300)
    return time.perf_counter() - t


def mcp_times(checkout: Path, store: Path) -> dict[str, float]:
    """Seconds from starting ``aimemory mcp`` to its initialize, tools/list and first recall answers."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "aimemory", "mcp", "--store", str(store)],
                                   env=env_for(checkout, AIMEMORY_OFFLINE="1"), cwd=checkout)

    async def go() -> dict[str, float]:
        t = time.perf_counter()
        async with Client(params, read_timeout_seconds=300) as client:
            out = {"initialize": time.perf_counter() - t}
            tools = (await client.list_tools()).tools
            out["tools/list"] = time.perf_counter() - t
            assert any(tool.name == "recall" for tool in tools)
            result = await client.call_tool("recall", {"query": QUERY, "k": 5})
            out["first recall"] = time.perf_counter() - t
            assert not result.is_error, result.content
            assert json.loads(result.content[0].text)["hits"]
        return out

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(checkout: Path, store: Path) -> subprocess.Popen:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aimemory", "serve", "--store", str(store), "--port", str(port)],
                            env=env_for(checkout, AIMEMORY_OFFLINE="1"), cwd=checkout, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + SERVE_WAIT_S
    while time.monotonic() < deadline:
        if (store / ".serve.json").exists():
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
        if proc.poll() is not None:
            raise RuntimeError(f"aimemory serve exited ({proc.returncode}) in {checkout}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"aimemory serve in {checkout} did not listen within {SERVE_WAIT_S:.0f} s")


# -- the run -----------------------------------------------------------------------------------------
def measure(checkouts: dict[str, Path], stores: dict[str, Path], runs: int, mcp: bool, served: bool,
            log=print, written: dict[str, Path] | None = None) -> dict[str, dict[str, list[float]]]:
    """case -> checkout label -> seconds per run; checkouts alternate within every run."""
    times: dict[str, dict[str, list[float]]] = {}

    def add(case: str, label: str, seconds: float) -> None:
        times.setdefault(case, {}).setdefault(label, []).append(seconds)

    for label, checkout in checkouts.items():  # warm-up: page cache, bytecode, saved catalog
        run_cli(checkout, ["--help"])
        run_cli(checkout, ["recall", QUERY, "--store", str(stores[label])], AIMEMORY_USE_SERVER="0")
    for i in range(runs):
        for label, checkout in checkouts.items():
            add("floor: python", label, run_python(checkout, "pass"))
            add("floor: import torch", label, run_python(checkout, "import torch"))
            add("aimemory --help", label, run_cli(checkout, ["--help"]))
            add("cold CLI recall", label, run_cli(checkout, ["recall", QUERY, "--store", str(stores[label])],
                                                  AIMEMORY_USE_SERVER="0"))
            if mcp:
                for name, seconds in mcp_times(checkout, stores[label]).items():
                    add(f"MCP {name}", label, seconds)
            if written is not None:
                note = ["remember", "--text", f"note {i}: call the plumber about the kitchen tap", "--store",
                        str(written[label])]
                add("CLI remember", label, run_cli(checkout, note, AIMEMORY_USE_SERVER="0"))
                add("recall after a write", label, run_cli(checkout, ["recall", QUERY, "--store", str(written[label])],
                                                           AIMEMORY_USE_SERVER="0"))
        log(f"  run {i + 1}/{runs} done (load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    if served:  # on the full copies when there are: a served remember writes (hard links would share it)
        at = written or stores
        servers = {label: start_server(checkout, at[label]) for label, checkout in checkouts.items()}
        try:
            for label, checkout in checkouts.items():
                run_cli(checkout, ["recall", QUERY, "--store", str(at[label])])  # the server's first query
            for i in range(runs):
                for label, checkout in checkouts.items():
                    add("served CLI recall", label, run_cli(checkout, ["recall", QUERY, "--store", str(at[label])]))
                    if written is not None:
                        note = ["remember", "--text", f"served note {i}: water the tomatoes", "--store", str(at[label])]
                        add("served CLI remember", label, run_cli(checkout, note))
        finally:
            for proc in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    return times


# -- encode latency ------------------------------------------------------------------------------------
def query_texts(n: int) -> list[str]:
    """``n`` short varied queries (1-6 words), as people type them."""
    import numpy as np

    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS, int(rng.integers(1, 7)))) for _ in range(n)]


def encode_latency(n: int, log=print) -> dict[str, float]:
    """One-query encode time (ms) of the numpy forward and of the torch network, one thread each."""
    import numpy as np
    import torch

    from aimemory.encoders.sentence import CONFIG_FILE, WEIGHTS_FILE, SentenceEncoder, find_local_sentence_model
    from aimemory.nn.bert_numpy import NumpyBert

    folder = find_local_sentence_model()
    if folder is None:
        log("encode latency: all-MiniLM-L6-v2 is not installed; skipped")
        return {}
    torch.set_num_threads(1)
    encoder = SentenceEncoder.from_pretrained("auto")  # torch is imported here: the network
    t = time.perf_counter()
    net = NumpyBert.from_safetensors(folder / WEIGHTS_FILE, json.loads((folder / CONFIG_FILE).read_text()))
    numpy_load = time.perf_counter() - t
    tok = encoder.tokenizer

    def numpy_query(text: str) -> np.ndarray:
        row = [tok.cls_id, *tok.tokenize_ids(text)[: encoder.max_length - 2], tok.sep_id]
        return net.embed([row], tok.pad_id)[0]

    def torch_query(text: str) -> np.ndarray:
        return encoder.embed([text])[0]

    texts = query_texts(n)
    out: dict[str, float] = {"numpy weights load ms": numpy_load * 1e3}
    vectors = {}
    for name, fn in (("numpy", numpy_query), ("torch", torch_query)):
        for text in texts[:10]:  # warm-up
            fn(text)
        times, vecs = [], []
        for text in texts:
            t = time.perf_counter()
            vecs.append(fn(text))
            times.append(time.perf_counter() - t)
        vectors[name] = np.stack(vecs)
        out[f"{name} median ms"] = statistics.median(times) * 1e3
        out[f"{name} min ms"] = min(times) * 1e3
    out["min cosine"] = float((vectors["numpy"] * vectors["torch"]).sum(1).min())
    log(f"encode latency, one text query ({n} queries of 1-6 words, one thread, tokenizing included):")
    log(f"  numpy forward: median {out['numpy median ms']:.2f} ms (min {out['numpy min ms']:.2f}); "
        f"torch network: median {out['torch median ms']:.2f} ms (min {out['torch min ms']:.2f}); "
        f"min cosine {out['min cosine']:.6f}; numpy weights read in {out['numpy weights load ms']:.0f} ms")
    return out


def table(times: dict[str, dict[str, list[float]]], labels: list[str]) -> str:
    head = f"{'case':<22}" + "".join(f"{label + ' s (min-max)':>24}" for label in labels)
    if len(labels) == 2:
        head += f"{labels[0] + '/' + labels[1]:>14}"
    lines = [head]
    for case, by_label in times.items():
        row = f"{case:<22}"
        for label in labels:
            xs = by_label[label]
            row += f"{statistics.median(xs):>10.3f} ({min(xs):.2f}-{max(xs):.2f})"
        if len(labels) == 2:
            a, b = by_label[labels[0]], by_label[labels[1]]
            row += f"{statistics.median([x / y for x, y in zip(a, b)]):>14.2f}"
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs per case and checkout (median reported)")
    p.add_argument("--n", type=int, default=100_000, help="memories in the store")
    p.add_argument("--work", default="/tmp/aimemory-bench-cold", help="folder for the store (reused)")
    p.add_argument("--store", default=None, help="time this existing store instead (hard-linked copies are used)")
    p.add_argument("--baseline", default=None, help="another aimemory checkout to compare against")
    p.add_argument("--no-mcp", action="store_true", help="skip the MCP cases")
    p.add_argument("--no-served", action="store_true", help="skip the served recall")
    p.add_argument("--no-writes", action="store_true", help="skip the remember and the recall after it")
    p.add_argument("--encode-queries", type=int, default=200,
                   help="queries for the numpy-vs-torch encode latency (0: skip)")
    return p.parse_args(argv)


def main(argv=None, log=print) -> dict:
    args = parse_args(argv)
    work = Path(args.work)
    store = Path(args.store).resolve() if args.store else work / f"store-{args.n}"
    if args.store is None and not (store / "catalog").is_dir():
        shutil.rmtree(store, ignore_errors=True)
        log(f"building a {args.n:,}-memory store in {store} ...")
        t = time.perf_counter()
        build_store(store, args.n)
        log(f"  built in {time.perf_counter() - t:.0f} s")
    work.mkdir(parents=True, exist_ok=True)
    checkouts = {"new": ROOT}
    if args.baseline:
        checkouts["base"] = Path(args.baseline).resolve()
    stores = {}
    for label in checkouts:  # one copy per checkout: each `serve` announces itself in its store folder
        copy = work / f"{store.name}-{label}"
        if not copy.is_dir():
            subprocess.run(["cp", "-al", str(store), str(copy)], check=True)
        (copy / ".serve.json").unlink(missing_ok=True)
        stores[label] = copy
    written = None
    if not args.no_writes:  # full copies, made afresh: a write changes files in place (the segment)
        written = {label: work / f"{store.name}-{label}-writes" for label in checkouts}
        for copy in written.values():
            shutil.rmtree(copy, ignore_errors=True)
            subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
    for label, checkout in checkouts.items():
        where = package_of(checkout)
        if not Path(where).resolve().is_relative_to(checkout):
            raise SystemExit(f"{label}: aimemory imports from {where}, not from {checkout}")
    mcp = not args.no_mcp
    if mcp:
        try:
            import mcp as _sdk  # noqa: F401
        except ImportError:
            log("the mcp package is not installed: MCP cases skipped")
            mcp = False
    log("\n".join(machine_lines()))
    what = f"{store} (existing)" if args.store else f"{args.n:,} text memories, {MODEL_ID} ({DIM}-d)"
    log(f"store: {what}; {args.runs} runs per case, "
        f"checkouts {', '.join(f'{k}={v}' for k, v in checkouts.items())}")
    times = measure(checkouts, stores, args.runs, mcp, not args.no_served, log, written)
    log(table(times, list(checkouts)))
    log(f"load avg at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.encode_queries > 0:
        encode_latency(args.encode_queries, log)
        log(f"load avg after the encode timing: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return times


if __name__ == "__main__":
    main()
