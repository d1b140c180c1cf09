"""What agent frameworks need from a memory besides remember/recall.

* **Caller ids (upsert).** ``remember(x, id="doc-7")`` names the memory. Ids are unique per
  namespace (the same id in two namespaces is two memories). Remembering an id that the namespace
  already holds *replaces* that memory (content, vectors, metadata, tags, source, provenance, expiry
  and time) in one Lance commit that deletes the old rows and adds the new ones: a reader, or a
  store reopened after a crash, sees the old memory or the new one, never neither or both. The
  result's ``status`` is ``"replaced"``, or ``"existing"`` when nothing would change (nothing is
  written). A named memory is never merged into another by identical content: the caller chose
  the name, so content dedup applies only to unnamed items.
* **Expiry.** ``expires_at=`` (datetime, ISO string or epoch seconds) or ``ttl=`` (seconds from
  now): once past, the memory is never returned by recall, get, count, listing or export, and
  ``compact()`` deletes it. Until then an expired memory only takes disk space.
* **Recency.** ``recall(..., half_life=s)`` multiplies each hit's score by
  ``0.5 ** (age / half_life)`` (age in seconds since ``created_at``; ``hit.recency`` is that
  factor) and ranks by the product. Off by default.
* **Near duplicates.** ``remember(..., near_duplicate=0.95)`` compares the new item's primary
  vector with the primary vectors of the same kind already in the namespace. When the closest one
  has a cosine >= the threshold, the returned memory says so: ``near_duplicate_of`` (its id) and
  ``near_duplicate_score``. With ``on_near_duplicate="report"`` (default) the new item is stored
  anyway; with ``"merge"`` it is not stored: its metadata and tags are merged into the existing
  memory (the rules of ``update``), which is returned with ``status == "merged"``. A named item
  (``id=``) is never merged away, only reported. Only memories stored before the call are compared.
* **Provenance.** ``source`` (where the content came from), ``created_by`` (who stored it) and
  ``derived_from`` (ids of the memories it was made from; not checked, they may name memories of
  other stores) are columns of the table, on every :class:`~aimemory.records.Memory`.

The store calls these under its write lock; they touch no storage themselves.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .errors import InputError
from .storage.arrow_build import column

MAX_ID_CHARS = 256
MAX_CREATED_BY_CHARS = 256
NEAR_DUPLICATE_MODES = ("report", "merge")
EPOCH_RANGE = (-62135596800.0, 253402300799.0)  # 0001-01-01 .. 9999-12-31: what datetime can show
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")  # "30m", "2h", "7d", "4w", as the CLI takes them
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
RECENCY_OVERFETCH = 4  # candidates ranked per wanted hit before the recency weights re-order them


@dataclass(frozen=True)
class ItemOptions:
    """Per-item options of one remember call beyond content, metadata and source. ``views``
    (precomputed vectors, for imports) and ``created_at`` let a memory be written as it was."""

    id: str | None = None
    expires_at: float | None = None  # epoch seconds
    created_by: str | None = None
    derived_from: tuple[str, ...] | None = None
    created_at: float | None = None  # epoch seconds; None: now
    near_duplicate: float | None = None
    on_near_duplicate: str = "report"
    views: tuple | None = None


# -- checking the arguments --------------------------------------------------------------------
def check_id(value: Any) -> str:
    """A caller-supplied memory id: a non-empty string of at most ``MAX_ID_CHARS`` characters."""
    if not isinstance(value, str):
        raise InputError(f"a memory id must be a string; got {type(value).__name__} ({value!r:.60})")
    if not value or not value.strip():
        raise InputError("a memory id must be a non-empty string (not only spaces); pass id=None to "
                         "have one generated")
    if len(value) > MAX_ID_CHARS:
        raise InputError(f"a memory id is at most {MAX_ID_CHARS} characters; got {len(value)}: use a "
                         "shorter id (a hash of a long key, say)")
    if "\0" in value:
        raise InputError("a memory id cannot contain the NUL character")
    return value


def duration_seconds(text: str) -> float | None:
    """A duration as the CLI writes it ("30m", "2h", "7d", "4w") -> seconds; None for other text."""
    found = DURATION.match(text)
    return float(found.group(1)) * UNIT_SECONDS[found.group(2)] if found else None


def epoch_seconds(value: datetime | float | int | str, name: str) -> float:
    """A datetime (naive = UTC), ISO-8601 string or epoch seconds -> epoch seconds."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a datetime, an ISO-8601 string or epoch seconds; got {value!r}")
    if isinstance(value, (int, float)):
        if not EPOCH_RANGE[0] <= value <= EPOCH_RANGE[1]:  # NaN fails too
            raise InputError(f"{name} must be epoch seconds between the years 1 and 9999; got {value!r}")
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"{name}={value!r} is not an ISO-8601 time (e.g. 2026-12-31T23:59:00Z)") from exc
    if not isinstance(value, datetime):
        raise InputError(f"{name} must be a datetime, an ISO-8601 string or epoch seconds; got "
                         f"{type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def each_item(value: Any, n: int, name: str, one: Callable[[Any], bool]) -> list[Any]:
    """``value`` for each of ``n`` items: None or a single value (``one(value)``) repeated, or a list
    of exactly ``n``."""
    if value is None or one(value):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise InputError(f"{name}= has {len(values)} entries for {n} items; pass one per item, or one "
                         "value for all")
    return values


def _derived(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    ids = tuple(value)
    for mid in ids:
        check_id(mid)
    return ids


def item_options(n: int, *, ids: Sequence[str | None] | None = None, expires_at: Any = None,
                 ttl: Any = None, created_by: Any = None, derived_from: Any = None,
                 created_at: Any = None, near_duplicate: float | None = None,
                 on_near_duplicate: str = "report", now: float | None = None) -> list[ItemOptions]:
    """One :class:`ItemOptions` per item, checked before anything is decoded or written. Every
    argument takes one value for all items or a list of one per item (``derived_from``: a list of
    ids for all, or a list of such lists)."""
    now = time.time() if now is None else now
    if isinstance(ids, str):
        raise InputError("ids= takes one id per item (a list); for one item use remember(x, id=...)")
    ids_ = [None] * n if ids is None else list(ids)
    if len(ids_) != n:
        raise InputError(f"ids= has {len(ids_)} entries for {n} items; pass one per item (None: generated)")
    if expires_at is not None and ttl is not None:
        raise InputError("pass expires_at= or ttl=, not both")
    is_time = lambda v: isinstance(v, (str, int, float, datetime))  # noqa: E731
    expiry = [None if v is None else epoch_seconds(v, "expires_at")
              for v in each_item(expires_at, n, "expires_at", is_time)]
    for j, t in enumerate(each_item(ttl, n, "ttl", lambda v: isinstance(v, (int, float, str)))):
        if t is not None:
            if isinstance(t, str) and (seconds := duration_seconds(t)) is not None:
                t = seconds
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise InputError(f"ttl must be a positive number of seconds or a duration like '2h' or "
                                 f"'7d'; got {t!r}")
            expiry[j] = min(now + float(t), EPOCH_RANGE[1])  # a ttl of centuries: the end of time
    for at in expiry:
        if at is not None and at <= now:
            raise InputError(f"expires_at {datetime.fromtimestamp(at, timezone.utc).isoformat()} is not in "
                             "the future; such a memory could never be returned")
    creators = each_item(created_by, n, "created_by", lambda v: isinstance(v, str))
    for who in creators:
        if who is not None and (not isinstance(who, str) or not who or len(who) > MAX_CREATED_BY_CHARS):
            raise InputError(f"created_by must be a non-empty string of at most {MAX_CREATED_BY_CHARS} "
                             f"characters; got {who!r:.80}")
    all_ids = isinstance(derived_from, str) or (
        derived_from is not None and all(isinstance(v, str) for v in derived_from))
    parents = [_derived(v) for v in each_item(derived_from, n, "derived_from", lambda v: all_ids)]
    created = [None if v is None else epoch_seconds(v, "created_at")
               for v in each_item(created_at, n, "created_at", is_time)]
    if near_duplicate is not None:
        if isinstance(near_duplicate, bool) or not isinstance(near_duplicate, (int, float)) \
                or not -1.0 <= near_duplicate <= 1.0:
            raise InputError(f"near_duplicate is a cosine threshold in [-1, 1] (e.g. 0.95); got {near_duplicate!r}")
        near_duplicate = float(near_duplicate)
    if on_near_duplicate not in NEAR_DUPLICATE_MODES:
        raise InputError(f"on_near_duplicate must be one of {NEAR_DUPLICATE_MODES}; got {on_near_duplicate!r}")
    seen: set[str] = set()
    out = []
    for i in range(n):
        mid = ids_[i]
        if mid is not None:
            check_id(mid)
            if mid in seen:
                raise InputError(f"id {mid!r} is given twice in one call (item #{i}); nothing was stored")
            seen.add(mid)
        out.append(ItemOptions(mid, expiry[i], creators[i], parents[i], created[i], near_duplicate,
                               on_near_duplicate))
    return out


# -- writing -------------------------------------------------------------------------------------
def unchanged(catalog, position: int, item, meta: dict, options: ItemOptions) -> bool:
    """Whether the stored memory at catalog ``position`` (a primary view) already is what a
    remember of ``item`` with ``meta`` and ``options`` under the same id would write."""
    parents = catalog.get(position, "derived_from")
    return (catalog.get(position, "content_hash") == item.content_hash
            and catalog.get(position, "source") == item.source
            and _micros(catalog.get(position, "expires")) == _micros(options.expires_at)
            and catalog.get(position, "created_by") == options.created_by
            and (tuple(parents) if parents is not None else None) == options.derived_from
            and (options.created_at is None
                 or _micros(catalog.get(position, "created")) == _micros(options.created_at))
            and dict(catalog.metadata(position)) == json.loads(json.dumps(meta)))


def _micros(seconds: float | None) -> int | None:
    """Times are stored to the microsecond: compare them so."""
    return None if seconds is None else int(round(seconds * 1e6))


def _timestamps(seconds: list[float | None]) -> pa.Array:
    return column([_micros(s) for s in seconds], pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def apply_options(rows: pa.Table, generated: list[str], options: Sequence[ItemOptions]
                  ) -> tuple[pa.Table, list[str]]:
    """Rows built with ``generated`` ids (one per memory, in order; primary row first) -> the rows
    with the callers' ids, expiry, provenance and creation times, and the final ids."""
    final = [o.id if o.id is not None else g for g, o in zip(generated, options)]
    of = dict(zip(generated, options))
    row_ids = rows.column("id").to_pylist()
    views = rows.column("view").to_pylist()
    opts = [of[mid] for mid in row_ids]
    rename = dict(zip(generated, final))

    def put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
        index = table.schema.get_field_index(name)
        return table.set_column(index, table.schema.field(index), values.cast(table.schema.field(index).type))

    # build_rows leaves these columns null: a column is set only where some option fills it (a
    # single remember spent 80 us rebuilding four columns of nulls)
    if final != generated:
        rows = put(rows, "id", column([rename[m] for m in row_ids], pa.string()))
    if any(o.expires_at is not None for o in opts):
        rows = put(rows, "expires_at", _timestamps([o.expires_at for o in opts]))
    if any(o.created_at is not None for o in options):
        now = rows.column("created_at").cast(pa.int64()).to_pylist()
        rows = put(rows, "created_at", _timestamps([o.created_at if o.created_at is not None else t / 1e6
                                                    for o, t in zip(opts, now)]))
    authors = [o.created_by if v == 0 else None for o, v in zip(opts, views)]
    if any(a is not None for a in authors):
        rows = put(rows, "created_by", column(authors, pa.string()))
    parents = [list(o.derived_from) if v == 0 and o.derived_from is not None else None for o, v in zip(opts, views)]
    if any(p is not None for p in parents):
        rows = put(rows, "derived_from", column(parents, pa.list_(pa.string())))
    return rows, final


def memory_fields(catalog, positions: "Sequence[int] | np.ndarray") -> list[dict[str, Any]]:
    """The :class:`~aimemory.records.Memory` fields of this module, from primary views' catalog
    entries (one column read per field)."""
    expires, parents = catalog.values("expires", positions), catalog.values("derived_from", positions)
    return [{"created_by": by, "derived_from": list(p) if p is not None else None,
             "expires_at": datetime.fromtimestamp(e, tz=timezone.utc) if e is not None else None}
            for by, p, e in zip(catalog.values("created_by", positions), parents, expires)]


def prepared_views(encode: Callable[[list], list], batch, options: Sequence[ItemOptions]) -> dict[int, list]:
    """slot -> views for the items of ``batch`` that carry them (imports) or need them before the
    write (near-duplicate checks, encoded here in one call per modality)."""
    out: dict[int, list] = {}
    wanted = []
    for slot, (i, _) in enumerate(batch):
        if options[i].views is not None:
            out[slot] = list(options[i].views)
        elif options[i].near_duplicate is not None:
            wanted.append(slot)
    if wanted:
        for slot, views in zip(wanted, encode([batch[s][1] for s in wanted])):
            out[slot] = views
    return out


def encode_rest(encode: Callable, todo: list, prepared: dict[int, list], on_progress=None) -> list[list]:
    """Per ``todo`` entry (slot, item, ...), its views: prepared ones reused, the rest encoded in
    one call (``on_progress`` gets positions in ``todo``)."""
    rest = [j for j, t in enumerate(todo) if t[0] not in prepared]
    views: list = [prepared.get(t[0]) for t in todo]
    if rest:
        progress = None
        if on_progress is not None:
            def progress(j, what, done, total):
                on_progress(rest[j], what, done, total)
        for j, v in zip(rest, encode([todo[j][1] for j in rest], progress)):
            views[j] = v
    return views


def near_duplicate(store, namespace: str, views: list | None, options: ItemOptions
                   ) -> tuple[str, float] | None:
    """(id, cosine) of the stored memory in ``namespace`` whose primary vector is closest to the
    new item's (same view kind), when the cosine reaches ``options.near_duplicate``; else None.
    The memory the item would replace (its own id) is not a candidate."""
    if options.near_duplicate is None or not views:
        return None
    catalog = store.catalog
    kind = views[0].kind
    mask = catalog.mask(namespace, kinds=[kind]) & (catalog.array("view") == 0)
    if options.id is not None:
        mask[catalog.live_positions(options.id)] = False
    allowed = catalog.array("vkey")[mask]
    if not len(allowed):
        return None
    query = np.asarray(views[0].vector, np.float32)[None, :]  # (1, dim)
    scores, keys = store.index.search(query, 1, None if len(allowed) == store.index.ntotal else allowed)
    if keys.shape[1] == 0 or keys[0, 0] < 0 or scores[0, 0] < options.near_duplicate:
        return None
    position = int(catalog.position_of_vkeys(keys[0, :1])[0])
    return str(catalog.get(position, "id")), float(scores[0, 0])


def purge_expired(table, catalog, index, now: float | None = None) -> int:
    """Delete the views of expired memories (one commit) from the table, catalog and index;
    returns how many memories went. The caller holds the write lock."""
    dead = catalog.expired(now) & catalog.alive
    if not dead.any():
        return 0
    positions = np.flatnonzero(dead)
    vkeys = catalog.array("vkey")[positions]
    table.delete_vkeys(vkeys.tolist())
    # every view of a memory carries its expiry, and an upsert replaces expired rows too, so
    # these are whole memories
    gone: dict[str, set[str]] = {}
    for p in positions:
        gone.setdefault(str(catalog.get(int(p), "namespace")), set()).add(str(catalog.get(int(p), "id")))
    for namespace, ids in gone.items():
        catalog.remove_ids(sorted(ids), namespace)
    index.remove(vkeys.astype(np.int64))
    return sum(len(ids) for ids in gone.values())


# -- recall ----------------------------------------------------------------------------------------
def check_half_life(half_life: Any) -> float:
    if isinstance(half_life, bool) or not isinstance(half_life, (int, float)) or not half_life > 0 \
            or not math.isfinite(half_life):
        raise InputError(f"half_life is a positive number of seconds (e.g. 86400 for a day); got {half_life!r}")
    return float(half_life)


def reweigh(values: Mapping[str, tuple[float, int]], catalog, half_life: float, now: float | None = None
            ) -> tuple[dict[str, tuple[float, int]], dict[str, float]]:
    """id -> (value, position) -> the same with value x 0.5 ** (age / half_life), best first, and
    id -> that weight. Age is seconds since the memory's ``created_at`` (0 for future times)."""
    now = time.time() if now is None else now
    weights = {mid: 0.5 ** (max(now - catalog.get(p, "created"), 0.0) / half_life) for mid, (_, p) in values.items()}
    order = sorted(values, key=lambda mid: -values[mid][0] * weights[mid])
    return {mid: (values[mid][0] * weights[mid], values[mid][1]) for mid in order}, weights


def recency_ranking(rank: Callable[[int], Mapping[str, tuple[float, int]]], k: int, n_allowed: int,
                    catalog, half_life: float, now: float | None = None
                    ) -> tuple[dict[str, tuple[float, int]], dict[str, float]]:
    """Rank by cosine x 0.5 ** (age / half_life): ``rank(n)`` gives >= n memories when that many
    exist, best cosine first (id -> (cosine, position)). The weight is at most 1, so once the k-th
    weighted score reaches the best any memory further down could get (the lowest cosine fetched,
    or 0 when that is negative), none can overtake it: fetch more until then. Returns
    (id -> (weighted score, position), best first; id -> weight)."""
    half_life = check_half_life(half_life)
    now = time.time() if now is None else now
    fetch = max(k * RECENCY_OVERFETCH, k)
    while True:
        best = rank(fetch)
        weighted, weights = reweigh(best, catalog, half_life, now)
        floor = max(min((s for s, _ in best.values()), default=0.0), 0.0)
        scores = [s for s, _ in weighted.values()]
        if len(best) < fetch or fetch >= n_allowed or (len(scores) >= k and scores[k - 1] >= floor):
            return weighted, weights
        fetch = min(n_allowed, fetch * 4)


# -- the doors (CLI, MCP, HTTP) ----------------------------------------------------------------------
def provenance_record(memory) -> dict[str, Any]:
    """The fields of this module on a memory, as JSON values (near-duplicate fields only when set)."""
    rec: dict[str, Any] = {"created_by": memory.created_by, "derived_from": memory.derived_from,
                           "expires_at": memory.expires_at.isoformat() if memory.expires_at else None}
    if memory.near_duplicate_of is not None:
        rec["near_duplicate_of"] = memory.near_duplicate_of
        rec["near_duplicate_score"] = memory.near_duplicate_score
    return rec
