"""Relevance: one calibrated 0-1 scale for every hit, whatever the query's modality and the view's kind.

A raw cosine means different things per *modality pair* (query modality x view kind): 0.3 is a strong
image<->text match and an unrelated text<->text one. Each hit's cosine ``s`` is first standardised
against the store itself, ``z = (s - mean) / std`` over the query's cosines with a spread of up to
``BACKGROUND_SAMPLE`` stored views of that kind in the namespace (whatever the query's ``where``,
time window or modality: a hit's relevance does not change with the filter; shrunk towards the
model's typical mean and spread for the pair when the store holds few such views), then mapped by
the pair's logistic (Platt) ``relevance = 1 / (1 + exp(-(a * z + c * s + b)))``: the probability
that a hit with that standing and cosine is relevant, fitted on labelled pairs of real photos,
sounds and speech, and for notes and voice notes on written searches labelled by what they seek
(benchmarks/eval_calibration.py). A hit that is itself in the sample is standardised against the
rest of it.

Statistics live in two places:
- per model, fitted once: ``models/<model>/calibration.json`` (``a``, ``c``, ``b`` and the prior background
  ``mean``/``std`` per pair). A model without the file (another CLIP, a test encoder) gets
  :data:`DEFAULT_A` / :data:`DEFAULT_B` on every pair and a data-free prior (mean 0, spread
  ``1/sqrt(dim)``, the cosine of random directions); ``python benchmarks/eval_calibration.py --model M
  --write`` fits and writes the file for a model from the real corpus's tune split.
- per store, derived: the background sample of each kind, cached in memory by its keys
  (:func:`background`; a key's vector never changes), and drawn so that appended rows leave it as it
  is (:func:`sample_keys`): a write redraws nothing, and nothing on disk goes stale.
"""

from __future__ import annotations

import json
import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .write_ahead import vectors_for

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

FILE_NAME = "calibration.json"
MODELS_DIR = Path(__file__).resolve().parent / "models"
FORMAT_VERSION = 1
BACKGROUND_SAMPLE = 256  # at least this many stored views per kind (when held) give a query's typical cosine and spread
MAX_SAMPLES_KEPT = 32  # background samples kept per store (kinds x plans), the oldest dropped first
#: how many stored views the model's prior background counts as: a store with few views of a kind
#: standardises mostly against the prior, a large one against itself
PRIOR_WEIGHT = 16
MIN_STD = 1e-3
#: a sampled view whose cosine is this close to a hit's is taken for the hit itself (float32 scores)
SAME_COSINE = 1e-5
BROADCAST_CELLS = 8192  # hits x sampled views up to which comparing all pairs beats sorting the sample
FEW_HITS = 64  # up to this many hits are standardised in Python floats (a recall's 10-40)
#: the pooled logistic on z for models without a calibration file: aimemory-base's tune split, all
#: pairs pooled (benchmarks/eval_calibration.py, "z, pooled"): z = 3.9 is 0.5, z = 7.3 is 0.95
DEFAULT_A, DEFAULT_B = 0.85, -3.3
#: transcripts of a spoken query are searched as text but calibrated as their own pair
SPEECH = "speech"
#: view kinds calibrated as another kind when a model has no fit of their own
KIND_FAMILY = {"text.chunk": "text"}

#: store -> (its vector set: model and table, {hash of sampled keys: (m, dim) vectors})
_SAMPLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOADED: dict[str, "Calibration"] = {}


def pair_key(query_modality: str, kind: str) -> str:
    """``"text|image"``: how pairs are named in calibration files."""
    return f"{query_modality}|{kind}"


@dataclass(frozen=True)
class PairFit:
    """One pair's fitted numbers: logistic ``a``, ``b`` on z (``c`` on the cosine); prior background
    ``mean``, ``std`` (a query's typical mean and spread of cosines with views of the kind)."""

    a: float = DEFAULT_A
    b: float = DEFAULT_B
    mean: float | None = None
    std: float | None = None
    c: float = 0.0  # weight of the raw cosine beside z (both >= 0, so relevance rises with the cosine)
    #: a secondary view kind (another model's view of the same item, informative on some items and
    #: noise on others) orders its memory only where it stands ``min_z`` or more above its
    #: background; elsewhere the memory is ordered by its view of the kind ``secondary_to``
    secondary_to: str | None = None
    min_z: float | None = None  # None: never

    def logit(self, z, cosine=0.0) -> np.ndarray:
        return self.a * np.asarray(z, np.float64) + self.c * np.asarray(cosine, np.float64) + self.b

    def relevance(self, z, cosine=0.0) -> np.ndarray:
        return _sigmoid(self.logit(z, cosine))


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    """Log-odds -> probability; bounded first so exp never overflows (np.minimum / np.maximum: half
    the cost of np.clip on a recall's ten hits)."""
    return 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(logit, -500.0), 500.0)))


@dataclass(frozen=True)
class Calibration:
    """A model's calibration: per pair fits plus the fallback for pairs it has none for."""

    model_id: str
    pairs: Mapping[str, PairFit] = field(default_factory=dict)
    default: PairFit = PairFit()
    fitted: bool = False  # False: no file for this model, the defaults apply everywhere
    #: relevance below which recall orders by standing instead (see :func:`order_key`)
    order_floor: float = 0.0

    def fit_for(self, query_modality: str, kind: str) -> PairFit:
        for k in (kind, KIND_FAMILY.get(kind, kind)):
            found = self.pairs.get(pair_key(query_modality, k))
            if found is not None:
                return found
        return self.default

    def prior(self, query_modality: str, kind: str, dim: int) -> tuple[float, float]:
        """The pair's typical (mean, std) of a query's cosine to views of ``kind``."""
        fit = self.fit_for(query_modality, kind)
        if fit.mean is not None and fit.std is not None:
            return fit.mean, fit.std
        # an unfitted pair borrows the background of a fitted pair with the same view kind: how high
        # cosines run depends on the stored kind more than on the query
        for name, other in sorted(self.pairs.items()):
            if name.split("|", 1)[1] == KIND_FAMILY.get(kind, kind) and other.mean is not None:
                return other.mean, other.std or 1.0 / math.sqrt(max(dim, 1))
        return 0.0, 1.0 / math.sqrt(max(dim, 1))

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "model": self.model_id,
                "default": {"a": self.default.a, "b": self.default.b},
                "pairs": {k: {n: v for n, v in vars(p).items() if v is not None} for k, p in self.pairs.items()},
                "order_floor": self.order_floor}

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        if data.get("format") != FORMAT_VERSION:
            from .errors import CheckpointError

            raise CheckpointError(f"calibration file format {data.get('format')!r} is not {FORMAT_VERSION}; "
                                  "refit it with benchmarks/eval_calibration.py --write")
        return cls(data["model"], {k: PairFit(**v) for k, v in data["pairs"].items()},
                   PairFit(**data.get("default", {})), True, float(data.get("order_floor", 0.0)))


def check_relevance(value: object) -> float | None:
    """A ``min_relevance`` argument: None, or a number in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        from .errors import InputError

        raise InputError(f"min_relevance must be a number from 0 to 1 (a calibrated probability); got {value!r}")
    return float(value)


def calibration_path(model_id: str) -> Path:
    return MODELS_DIR / model_id / FILE_NAME


def load_calibration(model_id: str) -> Calibration:
    """The shipped calibration of ``model_id`` (read once per process), else the defaults."""
    if model_id not in _LOADED:
        path = calibration_path(model_id) if "/" not in model_id and model_id else None
        if path is not None and path.is_file():
            _LOADED[model_id] = Calibration.from_json(json.loads(path.read_text()))
        else:
            _LOADED[model_id] = Calibration(model_id)
    return _LOADED[model_id]


def register_calibration(calibration: Calibration) -> None:
    """Use ``calibration`` for its model in this process (a model fitted outside the package)."""
    _LOADED[calibration.model_id] = calibration


def save_calibration(calibration: Calibration, path: Path | None = None) -> Path:
    path = path or calibration_path(calibration.model_id)
    path.write_text(json.dumps(calibration.to_json(), indent=1, sort_keys=True) + "\n")
    _LOADED.pop(calibration.model_id, None)
    return path


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50,
                 prior: tuple[float, ...] | None = None, strength: float = 0.0) -> tuple[float, ...]:
    """Platt scaling: ``x`` (n,) or (n, f) features, ``y`` (n,) 0/1 -> (a_1..a_f, b) maximising the
    likelihood of ``y`` under sigmoid(x @ a + b), by Newton's method with a small ridge; Platt's
    smoothed targets keep a separable pair finite. With ``prior`` (a_1..a_f, b) the feature weights
    are pulled towards its a's with a Gaussian prior of precision ``strength`` (empirical-Bayes
    shrinkage: a pair with few labelled hits keeps about the pooled slopes, one with many follows its
    own data); the intercept stays free, as base rates differ a lot between pairs. A
    feature whose weight comes out negative is dropped (weight 0) and the rest refitted, so
    relevance never falls as the cosine rises."""
    x = np.asarray(x, np.float64)
    x = x[:, None] if x.ndim == 1 else x  # (n, f)
    y = np.asarray(y, np.float64)
    pos, neg = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))  # Platt (1999) targets
    centre = np.zeros(x.shape[1] + 1) if prior is None else np.asarray(prior, np.float64)
    pull = strength if prior is not None else 0.0
    used = list(range(x.shape[1]))
    while True:
        design = np.concatenate([x[:, used], np.ones((len(x), 1))], 1)  # (n, used + 1)
        w0 = centre[used + [x.shape[1]]]  # (used + 1,)
        lam = np.full(len(w0), pull)  # (used + 1,)
        lam[-1] = 0.0
        w = np.zeros(design.shape[1])
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-np.clip(design @ w, -500, 500)))
            grad = design.T @ (p - t) + l2 * w + lam * (w - w0)
            hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(l2 + lam)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-9:
                break
        negative = [f for f, weight in zip(used, w[:-1]) if weight <= 0]
        if not negative:
            break
        used.remove(min(negative, key=lambda f: w[used.index(f)]))
        if not used:  # no feature helps: the pair's smoothed base rate, whatever the cosine
            w = np.asarray([math.log(t.mean() / (1 - t.mean()))])
            break
    weights = np.zeros(x.shape[1])
    weights[used] = w[:-1]
    weights[0] = max(weights[0], 1e-3)  # strictly rising in the first feature: no ties between hits
    return (*(float(v) for v in weights), float(w[-1]))


def standardise(scores: np.ndarray, sample_sims: np.ndarray, prior: tuple[float, float]) -> np.ndarray:
    """Cosines (n,) -> z (n,) against the query's cosines with a background sample (m,), shrunk
    towards ``prior`` (mean, std) with the weight of ``PRIOR_WEIGHT`` views (see :class:`Background`)."""
    return Background(sample_sims, prior).z(scores)


class Background:
    """A query's cosines with a background sample (m,), summed once: ``z`` standardises hits
    against them, shrunk towards ``prior`` (mean, std) with the weight of ``PRIOR_WEIGHT`` views.

    A hit that is itself in the sample is standardised against the rest of it: in a store of a few
    views its own cosine would otherwise raise the mean and the spread it is judged against (three
    notes, one of them the match, put the match's z at 3.0 instead of 4.3)."""

    __slots__ = ("sims", "prior", "count", "total", "squares", "mean", "std")

    def __init__(self, sample_sims: np.ndarray, prior: tuple[float, float]):
        self.sims = np.asarray(sample_sims, np.float64)  # (m,)
        self.prior = prior
        self.count, self.total = len(self.sims), float(self.sims.sum())
        self.squares = float(np.dot(self.sims, self.sims))
        self.mean, self.std = _shrunk_one(self.count, self.total, self.squares, *prior)

    def z(self, scores) -> np.ndarray:
        """Cosines (n,) -> z (n,)."""
        scores = np.asarray(scores, np.float64)
        own = _in_sample(scores, self.sims)  # (n,) hits among the sampled views
        if len(scores) <= FEW_HITS:  # a recall's hits: Python floats cost less than numpy's calls
            mean, std, count, total, squares = self.mean, self.std, self.count, self.total, self.squares
            out = []
            for score, in_sample in zip(scores.tolist(), own.tolist()):
                if in_sample:
                    m, s = _shrunk_one(count - 1, total - score, squares - score * score, *self.prior)
                    out.append((score - m) / s)
                else:
                    out.append((score - mean) / std)
            return np.asarray(out, np.float64)
        z = (scores - self.mean) / self.std
        at = np.flatnonzero(own)  # few in a large store
        if len(at):
            left_out = scores[at]
            mean_at, std_at = _shrunk(self.count - 1, self.total - left_out, self.squares - left_out ** 2, *self.prior)
            z[at] = (left_out - mean_at) / std_at
        return z


def _shrunk_one(count: int, total: float, squares: float, m0: float, s0: float) -> tuple[float, float]:
    """:func:`_shrunk` for one set, in Python floats: the same IEEE operations, so the same bits
    (squares as products: Python's ``x ** 2`` calls pow, numpy's multiplies)."""
    mean = (total + PRIOR_WEIGHT * m0) / (count + PRIOR_WEIGHT)
    spread = max(squares - 2 * mean * total + count * (mean * mean), 0.0)  # sum of (sim - mean)^2
    var = (spread + PRIOR_WEIGHT * (s0 * s0 + (m0 - mean) * (m0 - mean))) / (count + PRIOR_WEIGHT)
    return mean, max(math.sqrt(var), MIN_STD)


def _shrunk(count: "int | np.ndarray", total: "float | np.ndarray", squares: "float | np.ndarray", m0: float,
            s0: float) -> tuple["float | np.ndarray", "float | np.ndarray"]:
    """Mean and spread of ``count`` cosines, given their sum and sum of squares (scalars, or (k,)
    arrays for k such sets), shrunk towards (m0, s0)."""
    mean = (total + PRIOR_WEIGHT * m0) / (count + PRIOR_WEIGHT)
    spread = np.maximum(squares - 2 * mean * total + count * (mean * mean), 0.0)  # sum of (sim - mean)^2
    var = (spread + PRIOR_WEIGHT * (s0 * s0 + (m0 - mean) * (m0 - mean))) / (count + PRIOR_WEIGHT)
    return mean, np.maximum(np.sqrt(var), MIN_STD)


def _in_sample(scores: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """(n,) whether each score is (to float32 rounding) one of the sampled cosines."""
    if not len(sims) or not len(scores):
        return np.zeros(len(scores), bool)
    if len(scores) * len(sims) <= BROADCAST_CELLS:  # a few hits: compare with each
        return (np.abs(sims[None, :] - scores[:, None]) <= SAME_COSINE).any(1)
    ordered = np.sort(sims)  # many hits: bisect the sorted sample
    at = np.searchsorted(ordered, scores)
    below, above = ordered[np.maximum(at - 1, 0)], ordered[np.minimum(at, len(ordered) - 1)]
    return (np.abs(below - scores) <= SAME_COSINE) | (np.abs(above - scores) <= SAME_COSINE)


def sample_keys(vkeys: np.ndarray) -> np.ndarray:
    """The background sample's keys among ``vkeys`` (the allowed views' keys in catalog order): all
    of them up to ``BACKGROUND_SAMPLE``, else every ``stride``-th from the first, ``stride`` the
    power of two that leaves ``BACKGROUND_SAMPLE`` to twice that many. Rows appended after ``vkeys``
    leave the sample as it was (a key joins every ``stride`` rows, the stride doubles with the rows),
    so a recall after a write reads no new sample vectors; a spread over all of them would move
    every key."""
    n = len(vkeys)
    if n <= BACKGROUND_SAMPLE:
        return vkeys
    stride = 1 << ((n // BACKGROUND_SAMPLE).bit_length() - 1)  # (n/2/256, n/256]
    return vkeys[::stride]


def background(store: "MemoryStore", mask: np.ndarray | None, keys: np.ndarray | None = None) -> np.ndarray:
    """(m, dim) vectors of the :func:`sample_keys` of the views in ``mask`` (or of the ready
    ``keys``, which spares a pass over every row), cached by their keys: keys are never reused and
    their vectors never change, so the cache outlives writes (it is dropped when the store's model
    or table changes)."""
    if keys is None:
        keys = sample_keys(store.catalog.array("vkey")[mask])
    vector_set, key = (store.encoder.model_id, str(store.table.dataset_path)), hash(keys.tobytes())
    cached = _SAMPLES.get(store)
    if cached is None or cached[0] != vector_set:
        cached = (vector_set, {})
        _SAMPLES[store] = cached
    samples: dict[int, np.ndarray] = cached[1]
    sample = samples.get(key)
    if sample is None:
        while len(samples) >= MAX_SAMPLES_KEPT:
            del samples[next(iter(samples))]  # oldest out
        sample = samples[key] = vectors_for(store, keys)[1] if len(keys) else \
            np.zeros((0, store.encoder.dim), np.float32)
    return sample


def counts(fit: PairFit, z: float) -> bool:
    """Whether a view of the pair with ``fit``, standing ``z`` above its background, may order its
    memory: a primary view always, a secondary one from ``fit.min_z`` up."""
    return fit.secondary_to is None or (fit.min_z is not None and z >= fit.min_z)


def order_key(calibration: Calibration, relevance: float, standing: float, cosine: float) -> tuple[float, ...]:
    """How recall orders memories (greater first), from a memory's relevance (its most relevant view
    that counts) and its best standing (the standardised cosine recall compares plans by) with that
    view's cosine. With a fitted calibration: by relevance, ties by standing; below the model's
    ``order_floor``, after every memory above it, by standing (there relevance mostly tells the pairs'
    base rates apart; the floor is the highest that cost nothing on the tune split). Without a fit:
    by standing, as a default calibration is only a guess."""
    if not calibration.fitted:
        return (standing, cosine)
    if relevance >= calibration.order_floor:
        return (1.0, relevance, standing, cosine)
    return (0.0, standing, cosine, relevance)


def above_floor(order: tuple[float, ...]) -> bool:
    """Whether :func:`order_key` ordered by relevance."""
    return len(order) == 4 and order[0] == 1.0


class Relevance:
    """Relevance of one query plan's hits on views of one kind in one store: ``z`` and ``of``."""

    def __init__(self, calibration: Calibration, query_modality: str, kind: str, vector: np.ndarray,
                 sample: np.ndarray | None, penalty: float = 0.0, sims: np.ndarray | None = None):
        """``sample`` (m, dim): the background views' vectors, or their cosines with ``vector`` already
        at hand as ``sims`` (m,)."""
        self.fit = calibration.fit_for(query_modality, kind)
        prior = calibration.prior(query_modality, kind, len(vector))
        if sims is None:
            assert sample is not None
            sims = sample @ np.asarray(vector, np.float32)
        self._background = Background(sims, prior)  # of (m,) cosines
        # a plan's penalty (QueryPlan) is in standard deviations; a pair fitted on its own data has
        # absorbed its trustworthiness already
        self.penalty = 0.0 if pair_key(query_modality, kind) in calibration.pairs else penalty

    def z(self, scores) -> np.ndarray:
        return self._background.z(scores)

    def logit(self, scores) -> np.ndarray:
        """Cosines -> log-odds of relevance: orders like :meth:`of` without saturating at 1."""
        return self.fit.logit(self.z(scores) - self.penalty, np.asarray(scores, np.float64))

    def of(self, scores) -> np.ndarray:
        """Cosines -> relevance in [0, 1], monotone in the cosine."""
        return _sigmoid(self.logit(scores))

    def judged(self, scores) -> tuple[np.ndarray, np.ndarray]:
        """Cosines -> (relevance, z), standardised once."""
        cosines = np.asarray(scores, np.float64)
        z = self.z(cosines)
        return self.fit.relevance(z - self.penalty, cosines), z
