"""Metrics of benchmarks/eval_calibration.py: calibration error, precision at one relevance threshold
per modality pair with Wilson 95% intervals, and the spread of those precisions across pairs."""

from __future__ import annotations

import math

import numpy as np

BINS = 10
WILSON_Z = 1.96  # 95% two-sided
#: a pair's precision at a threshold counts towards the spread only with this many hits over it:
#: below, its Wilson interval is wider than the 0.1 the target asks for
MIN_HITS = 30


def ece(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(p[sel].mean() - y[sel].mean())
    return float(total / max(len(p), 1))


def wilson(k: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (nan, nan when n == 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def pr_at(p: np.ndarray, y: np.ndarray, t: float) -> dict:
    """Precision (with its Wilson interval) and recall (of the relevant candidates) at threshold t."""
    sel = p >= t
    n, k = int(sel.sum()), int(y[sel].sum())
    lo, hi = wilson(k, n)
    return {"precision": k / n if n else float("nan"), "lo": lo, "hi": hi, "passed": n,
            "recall": float(k / y.sum()) if y.sum() else float("nan")}


def spread(rows: list[dict], min_hits: int = MIN_HITS) -> dict:
    """Spread of precision across the pairs with at least ``min_hits`` hits over the threshold, and
    whether their Wilson intervals allow a spread within 0.1 (the highest lower bound minus the
    lowest upper bound <= 0.1) or prove it wider."""
    kept = [r for r in rows if r["passed"] >= min_hits]
    if not kept:
        return {"pairs": 0, "min": float("nan"), "max": float("nan"), "spread": float("nan"),
                "spread lower bound": float("nan")}
    ps = [r["precision"] for r in kept]
    return {"pairs": len(kept), "min": min(ps), "max": max(ps), "spread": max(ps) - min(ps),
            "spread lower bound": max(0.0, max(r["lo"] for r in kept) - min(r["hi"] for r in kept))}


def pair_metrics(p: np.ndarray, y: np.ndarray, thresholds: tuple[float, ...]) -> dict:
    out = {"n": len(p), "base rate": float(y.mean()), "ECE": ece(p, y), "Brier": float(((p - y) ** 2).mean())}
    for t in thresholds:
        out[f"@{t}"] = pr_at(p, y, t)
    return out


def method_metrics(names: list[str], preds: list[np.ndarray], labels: list[np.ndarray],
                   thresholds: tuple[float, ...]) -> dict:
    """Per pair and pooled metrics of one method, with the spread across pairs at each threshold."""
    rows = {n: pair_metrics(p, y, thresholds) for n, p, y in zip(names, preds, labels)}
    p_all, y_all = np.concatenate(preds), np.concatenate(labels)
    out = {"pairs": rows, "pooled ECE": ece(p_all, y_all),
           "macro ECE": float(np.mean([r["ECE"] for r in rows.values()])),
           "pooled Brier": float(((p_all - y_all) ** 2).mean())}
    for t in thresholds:
        out[f"spread @{t}"] = spread([r[f"@{t}"] for r in rows.values()])
        out[f"spread @{t} (any hits)"] = spread([r[f"@{t}"] for r in rows.values()], 1)
    return out


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _cell(r: dict) -> str:
    if not r["passed"]:
        return "- (0)"
    return f"{r['precision']:.2f} [{r['lo']:.2f},{r['hi']:.2f}] {r['passed']}"


def print_spreads(methods: dict, order: list[str], thresholds: tuple[float, ...], out=print) -> None:
    out(f"\nprecision across pairs at one threshold (test), pairs with >= {MIN_HITS} hits over it: "
        "min-max (pairs) spread [lower bound of the spread from the Wilson intervals]")
    out("method".ljust(26) + "".join(f"t={t}".rjust(34) for t in thresholds))
    for m in order:
        cells = []
        for t in thresholds:
            s = methods[m][f"spread @{t}"]
            cells.append(f"{fmt(s['min'])}-{fmt(s['max'])} ({s['pairs']}) {fmt(s['spread'])} "
                         f"[{fmt(s['spread lower bound'])}]".rjust(34))
        out(m.ljust(26) + "".join(cells))


def print_pairs(method: str, metrics: dict, thresholds: tuple[float, ...], out=print) -> None:
    out(f"\n{method}: per pair (test): precision [Wilson 95%] hits over the threshold")
    out("pair".ljust(26) + "n".rjust(6) + "base".rjust(7) + "ECE".rjust(7) +
        "".join(f"@{t}".rjust(24) for t in thresholds))
    for name, r in metrics["pairs"].items():
        cells = "".join(_cell(r[f"@{t}"]).rjust(24) for t in thresholds)
        out(name.ljust(26) + str(r["n"]).rjust(6) + fmt(r["base rate"]).rjust(7) + fmt(r["ECE"]).rjust(7) + cells)
