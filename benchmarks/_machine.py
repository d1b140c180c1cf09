"""Machine facts for benchmark headers: CPU model, cores and threads in use, RAM, load and library
versions. Import ``machine_info()`` for a dict or ``machine_lines()`` for printable lines; nothing
here imports heavy libraries unless they are installed (missing ones print as ``-``)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> tuple[float, float]:
    """(total, available) GiB from /proc/meminfo; (0, 0) where it is unreadable."""
    info = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) / 2**20
    except OSError:
        return 0.0, 0.0
    return info.get("MemTotal", 0.0), info.get("MemAvailable", 0.0)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _threads() -> dict[str, int | str]:
    """Threads each numeric library will use now (they may differ; benchmarks pin them)."""
    out: dict[str, int | str] = {}
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            out[f"{pool['internal_api']}"] = pool["num_threads"]
    except Exception:  # threadpoolctl is optional
        pass
    if "faiss" in sys.modules:
        out["faiss_omp"] = sys.modules["faiss"].omp_get_max_threads()
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


def machine_info() -> dict:
    """A JSON-able description of this machine and the library versions in use."""
    total, avail = _ram_gib()
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": _cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": _threads(),
        "ram_gib": round(total, 1),
        "ram_available_gib": round(avail, 1),
        "loadavg": [round(x, 2) for x in load],
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("numpy", "torch", "faiss-cpu", "lancedb", "pyarrow")},
    }


def machine_lines(info: dict | None = None) -> list[str]:
    """Human-readable lines for the top of a results table."""
    info = info or machine_info()
    threads = ", ".join(f"{k}={v}" for k, v in info["threads"].items()) or "-"
    versions = "  ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        f"CPU: {info['cpu']}  ({info['cores_usable']}/{info['cores_online']} cores usable; threads: {threads})",
        f"RAM: {info['ram_gib']} GiB ({info['ram_available_gib']} GiB available)  "
        f"load avg: {' '.join(map(str, info['loadavg']))}",
        f"python {info['python']}  {versions}",
        f"OS: {info['os']}",
    ]


if __name__ == "__main__":
    print("\n".join(machine_lines()))
