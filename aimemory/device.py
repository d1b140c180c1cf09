"""Where the encoders run: CPU, a CUDA GPU or an Apple GPU (MPS), and in which compute precision.

``resolve_placement("auto")`` picks CUDA, then MPS, then the CPU, and says why. A
:class:`Placement` moves a tower's modules and inputs to its device and runs them under autocast
(fp16 on CUDA and MPS, none on the CPU unless asked); outputs always come back as float32 on the
CPU, so vectors from any device are one space and the store's manifest precision is unchanged.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from .errors import DeviceNotAvailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger("aimemory.device")

DEVICE_ENV = "AIMEMORY_DEVICE"  # overrides device="auto" (e.g. "cpu" on a shared GPU machine)
#: "fp32" or "bf16": the precision of the sentence tower's linear layers on the CPU (default: bf16
#: where the CPU multiplies bf16 natively, see text_compute)
TEXT_COMPUTE_ENV = "AIMEMORY_TEXT_PRECISION"
#: /proc/cpuinfo flags of native bf16 matrix arithmetic: x86 AVX512-BF16 and AMX, Arm's BF16
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
COMPUTES = ("fp32", "fp16", "bf16")
# half precision by default on accelerators: every tower keeps cosine >= 0.999 against fp32 under
# fp16 autocast (benchmarks/bench_device.py measures it per tower)
DEFAULT_COMPUTE = {"cuda": "fp16", "mps": "fp16", "cpu": "fp32"}
# a batch of images may use at most this fraction of the accelerator's free memory
BATCH_MEMORY_FRACTION = 0.5
MAX_BATCH = 256
#: device nodes of the GPU drivers torch can use on Linux (NVIDIA, AMD ROCm, WSL2's GPU bridge):
#: without any of them torch finds no GPU, so "auto" resolves to the CPU without importing it (~1 s)
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
_threads_lock = threading.Lock()
_single_threaded = [0, 0]  # [callers encoding on one thread now, torch's thread count before the first]


@dataclass(frozen=True)
class Placement:
    """A device and the compute precision of the forward passes (weights stay float32)."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:1", "mps"
    compute: str = "fp32"  # "fp32", "fp16" or "bf16" autocast
    why: str = "the default"

    @property
    def kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    @property
    def torch_device(self) -> "torch.device":
        import torch

        return torch.device(self.device)

    @property
    def dtype(self) -> "torch.dtype":
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.compute]

    @property
    def arithmetic_device(self) -> "torch.device | None":
        """Where input arithmetic (pixel normalisation) runs: the GPU for CUDA, else None (the CPU;
        MPS has no float64, which the reference rescale uses)."""
        return self.torch_device if self.kind == "cuda" else None

    def move(self, module: Any) -> Any:
        """A module on this device: the module itself when it is there already, else a copy
        (loaded models are shared per process, and another store may be using this one)."""
        if module is None:
            return module
        param = next(module.parameters(), None)
        if param is None or param.device == self.torch_device or (self.is_cpu and param.device.type == "cpu"):
            return module
        return copy.deepcopy(module).to(self.torch_device)

    def adopt(self, encoder: Any) -> Any:
        """The object a ``to()`` method fills with moved networks: ``encoder`` itself when nothing
        moves (CPU to CPU), else a shallow copy, so the shared original stays where it was."""
        current = getattr(encoder, "placement", CPU)
        return encoder if current.device == self.device and current.compute == self.compute else copy.copy(encoder)

    def put(self, tensor: "torch.Tensor") -> "torch.Tensor":
        """An input tensor on this device (no copy on the CPU)."""
        return tensor if self.is_cpu else tensor.to(self.torch_device, non_blocking=True)

    def autocast(self):
        """The forward passes' precision context: autocast for fp16/bf16, nothing for fp32."""
        if self.compute == "fp32":
            return nullcontext()
        import torch

        return torch.autocast(self.kind, dtype=self.dtype)

    @staticmethod
    def back(tensor: "torch.Tensor") -> "torch.Tensor":
        """A result as float32 on the CPU (what numpy and the store take)."""
        return tensor.float().cpu()

    def batch_size(self, default: int, bytes_per_item: int) -> int:
        """A batch size for this device: ``default`` on the CPU; on a GPU as many items as fit in
        :data:`BATCH_MEMORY_FRACTION` of its free memory (at least ``default``, at most :data:`MAX_BATCH`)."""
        if self.kind != "cuda":
            return default
        import torch

        free, _total = torch.cuda.mem_get_info(self.torch_device)
        fit = int(free * BATCH_MEMORY_FRACTION) // max(1, bytes_per_item)
        return max(default, min(MAX_BATCH, fit))


CPU = Placement()


def no_gpu_driver() -> bool:
    """True where torch cannot see a GPU, known without importing it: Linux with no GPU driver node."""
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in GPU_DRIVER_PATHS)


_native_bf16: list[bool] = []  # cached answer of cpu_has_native_bf16


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (read from /proc/cpuinfo's flags on Linux;
    False elsewhere, where bf16 may be emulated and slower than fp32)."""
    if not _native_bf16:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                flags = {word for line in fh if line.lower().startswith(("flags", "features"))
                         for word in line.split(":", 1)[-1].split()}
        except OSError:
            flags = set()
        _native_bf16.append(bool(flags & NATIVE_BF16_FLAGS))
    return _native_bf16[0]


def text_compute() -> str:
    """The precision of the sentence tower's linear layers on the CPU: ``$AIMEMORY_TEXT_PRECISION``
    ("fp32" or "bf16") when set, else "bf16" where the CPU has it natively, else "fp32".

    Short texts are bound by reading the weights, which bf16 halves, and batches by arithmetic,
    which native bf16 doubles: all-MiniLM on one core (AVX512-BF16, benchmarks/bench_text.py), one
    query 7.5 -> 2.6 ms (with the weights packed once for oneDNN), batches of 64 1.8x the sentences/s.
    Only the linear layers run in bf16
    (aimemory.nn.bert_cpu.with_bf16_linears); vectors keep cosine >= 0.99996 to fp32's, inside the
    0.9999 parity bar, so they share the model's space and id, as fp16 vectors from a GPU do.
    ``"fp32"`` reproduces the reference bit for bit."""
    chosen = os.environ.get(TEXT_COMPUTE_ENV, "").strip().lower()
    if chosen in ("fp32", "bf16"):
        return chosen
    if chosen:
        raise ValueError(f"{TEXT_COMPUTE_ENV} must be fp32 or bf16, not {chosen!r}")
    return "bf16" if cpu_has_native_bf16() else "fp32"


def imported_torch() -> Any:
    """The torch module when this process has finished importing it, else None (a background thread
    may be importing it: the half-made module lacks most names)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch


@contextmanager
def one_torch_thread(wanted: bool) -> Iterator[None]:
    """Run a small text encode (a query, a note or a few) on one torch thread: a few dozen tokens
    gain nothing from intra-op threads, and on a busy machine their barriers cost far more than the
    work (measured at load 12 on 2 cores: aimemory-base's two text towers took 60 ms on one thread,
    840 ms on two; at load 1.5, one note's p90 2.7 against 6.3 ms). Process-wide like torch's
    setting, so concurrent callers count themselves in and the last one out restores it."""
    torch = imported_torch() if wanted else None
    if torch is None:
        yield
        return
    with _threads_lock:
        if _single_threaded[0] == 0:
            _single_threaded[1] = torch.get_num_threads()
            if _single_threaded[1] != 1:
                torch.set_num_threads(1)
        _single_threaded[0] += 1
    try:
        yield
    finally:
        with _threads_lock:
            _single_threaded[0] -= 1
            if _single_threaded[0] == 0 and _single_threaded[1] != 1:
                torch.set_num_threads(_single_threaded[1])


def cuda_available() -> bool:
    if "torch" not in sys.modules and no_gpu_driver():
        return False
    import torch

    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    if "torch" not in sys.modules and sys.platform != "darwin":
        return False
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_placement(device: "str | Placement | None" = "auto", compute: str | None = None) -> Placement:
    """``device``: "auto" (CUDA, then MPS, then CPU; ``$AIMEMORY_DEVICE`` overrides), "cpu",
    "cuda", "cuda:N" or "mps". ``compute``: "fp32", "fp16" or "bf16" autocast; None = fp16 on an
    accelerator, fp32 on the CPU. Raises :class:`DeviceNotAvailableError` for a device not present."""
    if isinstance(device, Placement):
        return device
    spec = (device or "auto").strip().lower()
    why = f"device={spec!r}"
    if spec == "auto" and os.environ.get(DEVICE_ENV):
        spec, why = os.environ[DEVICE_ENV].strip().lower(), f"${DEVICE_ENV}"
    if spec == "auto":
        if cuda_available():
            spec, why = "cuda", "a CUDA GPU is available"
        elif mps_available():
            spec, why = "mps", "an Apple GPU (MPS) is available"
        else:
            spec, why = "cpu", "no CUDA or Apple GPU is available"
    kind, _, index = spec.partition(":")
    if kind not in DEFAULT_COMPUTE or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise DeviceNotAvailableError(
            f"unknown device {device!r}: pass 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if kind == "cuda":
        import torch

        if not cuda_available():
            raise DeviceNotAvailableError(
                f"device {spec!r} was asked for but torch sees no CUDA GPU (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); install a CUDA build of torch, or use "
                "device='cpu' or 'auto'")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise DeviceNotAvailableError(
                f"device {spec!r} does not exist: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
        spec = f"cuda:{index or 0}"
    if kind == "mps" and not mps_available():
        raise DeviceNotAvailableError(
            "device 'mps' was asked for but torch sees no Apple GPU (MPS needs macOS 12.3+ on Apple "
            "silicon and a torch built with MPS); use device='cpu' or 'auto'")
    compute = compute or DEFAULT_COMPUTE[kind]
    if compute not in COMPUTES:
        raise ValueError(f"compute must be one of {COMPUTES}, got {compute!r}")
    placement = Placement(spec, compute, why)
    if not placement.is_cpu:
        log.info("aimemory: encoders run on %s (%s autocast) because %s", placement.device, compute, why)
    return placement


def describe(placement: Placement) -> str:
    """A human name for the device: "cuda:0 (NVIDIA H100 80GB HBM3)", "mps", "cpu"."""
    if placement.kind == "cuda":
        import torch

        return f"{placement.device} ({torch.cuda.get_device_name(placement.torch_device)})"
    return placement.device
