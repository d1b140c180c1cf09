"""Remembering many items: decode each input, then per batch encode what is new and commit it.

``MemoryStore.remember`` / ``remember_many`` check their arguments and call :func:`remember_items`.
A batch is encoded and committed under the store's write lock (:func:`aimemory.write.commit_views`),
so dedup sees every other writer's commits; small text writes are encoded before the lock instead,
in encoder calls shared with other threads' small writes (:mod:`aimemory.encode_batch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .encode_batch import small_texts
from .encoders.base import View
from .errors import InputError
from .inputs import Item, to_item
from .prefetch import decode_threads, ordered
from .records import Memory
from .semantics import ItemOptions, encode_rest, near_duplicate, prepared_views
from .write import commit_views, new_items, spread_views
from .write_ahead import deferred_sync
from .write_ahead import sync as sync_segment

if TYPE_CHECKING:
    from .store import MemoryStore

ItemProgress = Callable[[int, str, float, float], None]


def remember_items(store: "MemoryStore", items: Sequence[object], result: list[Memory], *,
                   metas: Sequence[Mapping[str, Any] | None], options: Sequence[ItemOptions], namespace: str,
                   dedup: bool, errors: str, batch_size: int, sources: Sequence[str | None],
                   progress: Callable[[int], None] | None = None,
                   item_progress: ItemProgress | None = None) -> list[tuple[int, object, InputError]]:
    """Decode ``items`` and commit them ``batch_size`` at a time, appending one memory per stored item
    to ``result``. ``errors="raise"``: every item is decoded first and a bad one raises (its index in
    the message) before anything is written; ``"skip"``: bad items are returned as (index, input,
    error) and the rest stream through."""
    skipped: list[tuple[int, object, InputError]] = []
    decoded: list[tuple[int, Item]] = []

    # files decode on a few threads while the batch before them encodes (images are also resized
    # to the model's input there); texts need no threads
    files = any(not isinstance(x, str) for x in items)
    threads = decode_threads() if files else 1
    encoder = store.encoder
    ahead = encoder if threads > 1 else None
    # photos decode at a reduced scale when the model needs no more; OCR reads small print: full size
    side = encoder.image_decode_side if encoder is not None and files and store.ocr is None else None

    def decode(i: int) -> Item:  # on a decoding thread: item_progress must take calls from threads
        decoding = None
        if item_progress is not None:
            item_progress(i, "decoding", 0.0, 1.0)
            decoding = lambda done, total: item_progress(i, "decoding video", done, total)  # noqa: E731
        item = to_item(items[i], source=sources[i], progress=decoding, image_side=side)
        if ahead is not None and item.modality == "image":
            ahead.prepare_image(item.payload)  # type: ignore[arg-type]  # an image item holds a PIL image
        return item

    for i, (item, failure) in enumerate(ordered(decode, range(len(items)), threads=threads,
                                                ahead=batch_size + threads)):
        x = items[i]
        try:
            if failure is not None:
                raise failure
            decoded.append((i, item))  # type: ignore[arg-type]
        except InputError as exc:
            if errors == "raise":
                exc.index = i
                at = f" (item #{i})" if len(items) > 1 else ""  # one item: no index to point at
                exc.args = (f"{exc.args[0]}{at}; nothing was stored",)
                raise
            skipped.append((i, x, exc))
        if errors == "skip" and len(decoded) >= batch_size:
            result.extend(commit_batch(store, decoded, metas, namespace, dedup, item_progress, options))
            decoded = []
            if progress:
                progress(i + 1)
    for start in range(0, len(decoded), batch_size):
        result.extend(commit_batch(store, decoded[start:start + batch_size], metas, namespace, dedup,
                                   item_progress, options))
        if progress:
            progress(min(len(items), decoded[min(start + batch_size, len(decoded)) - 1][0] + 1))
    return skipped


def commit_batch(store: "MemoryStore", batch: list[tuple[int, Item]], metas: Sequence[Mapping[str, Any] | None],
                 namespace: str, dedup: bool, item_progress: ItemProgress | None = None,
                 options: Sequence[ItemOptions] | None = None) -> list[Memory]:
    """Encode what is new in one batch ((caller's index, item) pairs) and commit it under the write
    lock; small text writes are encoded before the lock (:func:`encode_ahead`)."""
    if not batch:
        return []
    items = [item for _, item in batch]
    batch_metas = [metas[i] for i, _ in batch]
    opts = [options[i] for i, _ in batch] if options else [ItemOptions()] * len(batch)
    ahead = encode_ahead(store, items, opts)
    with deferred_sync(store), store.writing(fold=False):
        # imported views, or the ones near-duplicate checks need before the write
        prepared = ahead if ahead is not None else prepared_views(store.encode, list(enumerate(items)), opts)
        near = {slot: found for slot in range(len(items))
                if (found := near_duplicate(store, namespace, prepared.get(slot), opts[slot]))}
        new = new_items(store.catalog, items, batch_metas, namespace, dedup, opts, near)
        views: list[list[View] | None] = [None] * len(items)
        if new:
            on_progress = None
            if item_progress is not None:  # position among the new -> the caller's item index
                def on_progress(j: int, what: str, done: float, total: float) -> None:
                    item_progress(batch[new[j]][0], what, done, total)
            encoded = encode_rest(store.encode, [(j, items[j]) for j in new], prepared, on_progress)
            views = spread_views(encoded, new, len(items))
        out = commit_views(store, items, views, namespace=namespace, metadata=batch_metas, dedup=dedup,
                           options=opts, near=near)
    sync_segment(store)  # after the lock: writer threads share the fsync
    return out


def encode_ahead(store: "MemoryStore", items: list[Item], opts: Sequence[ItemOptions]
                 ) -> dict[int, list[View]] | None:
    """slot -> views of a small text write, encoded outside the write lock in calls shared with
    other threads' small writes; None for other writes (and with ``batch_encodes`` off), which
    encode under the lock. Content already stored is still found under the lock: it only cost an
    encode."""
    batcher = store.encode_batcher if store.batch_encodes else None
    if batcher is None or any(o.views is not None for o in opts) or not small_texts(items):
        return None
    store.check_open()
    return dict(enumerate(batcher.encode(items)))
