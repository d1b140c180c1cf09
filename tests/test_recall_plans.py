"""Query plans in recall: private view kinds are reached only by a plan that names them, several plans
are ranked by calibrated relevance (standardised cosine) with a penalty, and each hit shows its raw cosine."""

from __future__ import annotations

import numpy as np
import pytest

from aimemory import MemoryStore
from aimemory.encoders.base import Encoder, QueryPlan, View, l2_normalize

DIM = 8


def _axis(i: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    v += np.random.default_rng(seed).normal(0, noise, DIM).astype(np.float32)
    return l2_normalize(v[None])[0]


class TwoPlanEncoder(Encoder):
    """Texts are 'shared:<axis>' (a shared vector) or 'secret:<axis>' (a private-kind vector); a text
    query runs a shared plan and a penalised secret plan."""

    model_id = "test-two-plan"
    dim = DIM
    modalities = frozenset({"text"})
    private_kinds = frozenset({"text.secret"})
    penalty = 0.5

    def _vec(self, text: str) -> np.ndarray:
        kind, axis = text.split(":")[:2]
        return _axis(int(axis), 0.05, seed=hash(text) % 1000)

    def embed_texts(self, texts):
        return np.stack([self._vec(t) for t in texts])

    def views(self, modality, payloads):
        out = []
        for t in payloads:
            kind = "text.secret" if t.startswith("secret") else "text"
            out.append([View(kind, self._vec(t))])
        return out

    def query_plans(self, modality, payload):
        axis = int(payload.split(":")[1])
        return [QueryPlan(_axis(axis)), QueryPlan(_axis(axis + 1), frozenset({"text.secret"}), self.penalty)]


@pytest.fixture
def store(tmp_path):
    with MemoryStore(tmp_path / "m", model=TwoPlanEncoder(), speech_model=None) as s:
        for i in range(6):
            s.remember(f"shared:{i}:note")
        yield s


def test_private_kinds_are_reached_only_by_their_plan(store):
    decoy = store.remember("secret:2:hidden").id  # the shared plan's own direction, but private
    assert decoy not in [h.id for h in store.recall("query:2", k=2)]
    secret = store.remember("secret:3:hidden").id
    # the shared plan points at axis 2: the secret view (axis 3) must not be matched by it
    hits = store.recall("query:2", k=7)
    by_id = {h.id: h for h in hits}
    assert hits[0].kind == "text" and hits[0].memory.text == "shared:2:note"
    # ... but the secret plan (axis 2 + 1 = 3) finds it
    assert secret in by_id and by_id[secret].kind == "text.secret"


def test_several_plans_show_scores_that_fall_with_rank(store):
    store.remember("secret:4:hidden")
    hits = store.recall("query:3", k=7)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.relevance is not None for h in hits)
    assert hits[0].memory.text == "shared:3:note"
    assert hits[0].score == pytest.approx(float(_axis(3) @ store.encoder._vec("shared:3:note")), abs=1e-5)


def test_penalty_decides_between_equal_matches(store, monkeypatch):
    secret = store.remember("secret:5:hidden").id
    plain = store.recall("query:4", k=2)
    assert plain[0].memory.text == "shared:4:note"  # the penalised plan does not outrank an equal match
    monkeypatch.setattr(TwoPlanEncoder, "penalty", -5.0)  # a bonus instead: the secret plan wins
    assert store.recall("query:4", k=1)[0].id == secret


def test_recall_between_writes_equals_recall_on_a_fresh_open(tmp_path):
    """Masks, keys and samples cached by recall grow over rows written since: every answer equals
    that of a store opened afresh (nothing cached) on the same rows."""
    path = tmp_path / "grow"
    with MemoryStore(path, model=TwoPlanEncoder(), speech_model=None) as store:
        for step in range(4):
            store.remember_many([f"shared:{(step + i) % 7}:n{step}.{i}" for i in range(3)])
            store.remember(f"secret:{step % 7}:s{step}", namespace="other" if step % 2 else "default")
            queries = [f"shared:{a}:q" for a in range(0, 7, 2)]
            got = [[(h.id, round(h.score, 5), round(h.relevance or 0, 5)) for h in store.recall(q, k=5)]
                   for q in queries]
            store.flush()
            with MemoryStore(path, model=TwoPlanEncoder(), speech_model=None) as fresh:
                want = [[(h.id, round(h.score, 5), round(h.relevance or 0, 5)) for h in fresh.recall(q, k=5)]
                        for q in queries]
            assert got == want, step
