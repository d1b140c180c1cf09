"""FAISS searches on a CUDA GPU, when a GPU build of FAISS is installed and the store runs on CUDA.

The CPU index stays the source: it is built, changed, saved and loaded on the CPU as always. A
:class:`GpuClone` copies it to the GPU on the first search that can use it and drops the copy when
the CPU index changes, so the next such search copies it again. Only unfiltered searches go to the
GPU, with the CPU's settings (flat: exact; IVF: the very lists the CPU would probe, given to FAISS's
preassigned search), so the results match the CPU's, up to the order of scores within float
rounding. Filtered searches (FAISS's GPU indexes take no id selector), k or lists past the GPU's
limit, and any GPU failure use the CPU.

The plain ``faiss-cpu`` package reports no GPUs (``faiss.get_num_gpus() == 0``), so none of this
runs there; ``AIMEMORY_FAISS_GPU=0`` keeps searches on the CPU with a GPU build too. The tests
replace FAISS's GPU entry points (``StandardGpuResources``, ``index_cpu_to_gpu``) with CPU
stand-ins; ``benchmarks/bench_index_gpu.py`` compares against the CPU on a real GPU build (same
top-10 on an H200, see benchmarks/README.md). A GPU build without kernels for the GPU at hand
aborts the process inside FAISS on the first copy (an assertion, not an exception): no fallback
can catch that, so such a build needs ``AIMEMORY_FAISS_GPU=0``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger("aimemory.index")

GPU_MAX_K = 2048  # FAISS's GPU k-selection limit: k and IVF lists probed per query at most
CPU_DEVICE = "cpu"
GPU_ENV = "AIMEMORY_FAISS_GPU"  # "0": FAISS searches stay on the CPU whatever the placement

_resources: dict[int, Any] = {}  # GPU ordinal -> StandardGpuResources: one per process (each reserves memory)
_resources_lock = threading.Lock()


def _faiss() -> Any:
    import faiss

    return faiss


def gpu_count() -> int:
    """GPUs this FAISS build can use: 0 for ``faiss-cpu``, which has no GPU entry points."""
    get = getattr(_faiss(), "get_num_gpus", None)
    return int(get()) if get is not None else 0


def cuda_ordinal(device: str) -> int | None:
    """The GPU number of a placement's device: ``"cuda"`` -> 0, ``"cuda:1"`` -> 1, others -> None."""
    kind, _, number = str(device).partition(":")
    if kind != "cuda":
        return None
    return int(number) if number.isdigit() else 0


def search_device_for(device: str) -> str:
    """Where FAISS searches run for a store placed on ``device``: ``"cuda:N"`` when that is a CUDA
    device and this FAISS build sees it, else ``"cpu"`` (any device with ``faiss-cpu``, or with
    ``AIMEMORY_FAISS_GPU=0``)."""
    ordinal = cuda_ordinal(device)
    if ordinal is None or os.environ.get(GPU_ENV, "").strip() == "0":
        return CPU_DEVICE
    try:
        gpus = gpu_count()
    except Exception as exc:  # a broken GPU build: searching on the CPU still works
        log.warning("FAISS could not count GPUs (%s); searching on the CPU", exc)
        return CPU_DEVICE
    return f"cuda:{ordinal}" if ordinal < gpus else CPU_DEVICE


def gpu_resources(ordinal: int) -> Any:
    """This process's FAISS resources (streams, scratch memory) on GPU ``ordinal``, made once."""
    with _resources_lock:
        if ordinal not in _resources:
            _resources[ordinal] = _faiss().StandardGpuResources()
        return _resources[ordinal]


class GpuClone:
    """A GPU copy of a CPU FAISS index on GPU ``ordinal``, made on first use; :meth:`drop` it
    whenever the CPU index changes."""

    def __init__(self, ordinal: int):
        self.ordinal = ordinal
        self.clones = 0  # copies made so far (each a full upload of the vectors)
        self._index: Any = None
        self._lock = threading.Lock()

    def index_for(self, cpu_index: Any) -> Any:
        """The GPU copy of ``cpu_index``, copied now if there is none."""
        with self._lock:
            if self._index is None:
                faiss = _faiss()
                options = faiss.GpuClonerOptions()
                if hasattr(options, "use_cuvs"):  # FAISS's own IVF kernels: they take preassigned lists
                    options.use_cuvs = False
                self._index = faiss.index_cpu_to_gpu(gpu_resources(self.ordinal), self.ordinal, cpu_index, options)
                self.clones += 1
            return self._index

    def drop(self) -> None:
        with self._lock:
            self._index = None
