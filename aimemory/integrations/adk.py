"""aimemory as a Google ADK memory service (the ``adk`` extra).

    from google.adk.runners import Runner
    from aimemory.integrations.adk import AimemoryMemoryService
    runner = Runner(agent=agent, app_name="app", session_service=sessions,
                    memory_service=AimemoryMemoryService("./memory"))

Each (app name, user id) is its own aimemory namespace, so users never see each other's memories.
Every event's content becomes memories by modality: its text parts one text memory (id: the event
id), each inline image or audio part (``inline_data`` with an ``image/*`` or ``audio/*`` type) an image
or audio memory (id: ``<event id>#<part>``), so a text query can find a photo or a recording that a
user sent. Parts of a modality the store's model has no tower for, and ``file_data`` references, are
skipped (logged). ``search_memory`` ranks by the model (semantic, not keywords) and answers one
``MemoryEntry`` per event, holding the parts that matched, best first. Adding a session again
writes only what changed; a deleted event is not brought back by adding its session again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types

from ..inputs import bytes_item
from .common import exists, forget_present, list_memories, open_store, upsert

if TYPE_CHECKING:  # pragma: no cover
    from google.adk.events.event import Event
    from google.adk.sessions.session import Session

    from ..store import MemoryStore

log = logging.getLogger("aimemory.integrations.adk")

#: the memory metadata key holding the event's id, author, time, part and session
META_KEY = "adk"
MAX_RESULTS = 10
UNKNOWN_SESSION = "__unknown_session_id__"
MEDIA = {"image/": "image", "audio/": "audio"}  # inline_data mime prefix -> aimemory modality
#: names kept readable in the namespace: no ':' (it joins app and user: "a:b"+"c" would be "a"+"b:c")
_SAFE = re.compile(r"^[A-Za-z0-9_.@-]{1,56}$")
TOMBSTONES = ".deleted"  # the suffix of a user's namespace of deleted event ids: no user name holds it


def user_namespace(app_name: str, user_id: str) -> str:
    """The aimemory namespace of one (app, user): readable when both names allow it, else a hash;
    two different pairs never share one (ADK keys users by the pair)."""
    if all(_SAFE.match(name) and ".." not in name and TOMBSTONES not in name for name in (app_name, user_id)):
        return f"adk:{app_name}:{user_id}"
    digest = hashlib.sha256(f"{app_name}\0{user_id}".encode()).hexdigest()[:32]
    return f"adk:{digest}"


def _stamp(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat() if timestamp else None


class AimemoryMemoryService(BaseMemoryService):
    """An ADK memory service on an aimemory store (a ``MemoryStore`` or a folder path)."""

    def __init__(self, store: "MemoryStore | str | os.PathLike", *, max_results: int = MAX_RESULTS,
                 min_score: float | None = None):
        self.store = open_store(store)
        self.max_results = max_results
        self.min_score = min_score

    # -- writing -------------------------------------------------------------------------------
    async def add_session_to_memory(self, session: "Session") -> None:
        self._add_events(session.app_name, session.user_id, session.events, session.id, None)

    async def add_events_to_memory(self, *, app_name: str, user_id: str, events: Sequence["Event"],
                                   session_id: str | None = None,
                                   custom_metadata: Mapping[str, object] | None = None) -> None:
        self._add_events(app_name, user_id, events, session_id or UNKNOWN_SESSION, custom_metadata)

    async def add_memory(self, *, app_name: str, user_id: str, memories: Sequence[MemoryEntry],
                         custom_metadata: Mapping[str, object] | None = None) -> None:
        """Explicit memories: each entry's parts, as for events (an entry without id gets one)."""
        import uuid

        rows = [(m.id or str(uuid.uuid4()), m.content, m.author, m.timestamp,
                 {**(custom_metadata or {}), **m.custom_metadata}) for m in memories]
        self._write(user_namespace(app_name, user_id), rows, None)

    def _add_events(self, app_name: str, user_id: str, events: Sequence["Event"], session_id: str,
                    custom_metadata: Mapping[str, object] | None) -> None:
        rows = [(e.id, e.content, e.author, _stamp(e.timestamp), dict(custom_metadata or {}))
                for e in events if e.content is not None and e.content.parts]
        self._write(user_namespace(app_name, user_id), rows, session_id)

    def _write(self, namespace: str, rows: list, session_id: str | None) -> None:
        tombstones = f"{namespace}{TOMBSTONES}"
        items, metas, ids = [], [], []
        for event_id, content, author, timestamp, custom in rows:
            if exists(self.store, event_id, tombstones):
                continue  # deleted by the user: adding the session again must not bring it back
            base = {"event_id": event_id, "author": author, "timestamp": timestamp, "role": content.role,
                    "session_id": session_id, "custom_metadata": custom}
            texts = [p.text for p in content.parts if p.text]
            if texts:
                items.append("\n".join(texts))
                metas.append({META_KEY: {**base, "part": None}})
                ids.append(event_id)
            for i, part in enumerate(content.parts):
                media = self._media(part, event_id, i)
                if media is not None:
                    items.append(media)
                    metas.append({META_KEY: {**base, "part": i, "mime": part.inline_data.mime_type}})
                    ids.append(f"{event_id}#{i}")
        upsert(self.store, items, metas, ids, namespace)

    def _media(self, part: types.Part, event_id: str, i: int):
        """An inline image or audio part as an item the store can embed, else None (logged)."""
        if part.file_data is not None:
            log.info("event %s part %d: file_data (%s) is a reference, not stored", event_id, i,
                     part.file_data.file_uri)
        blob = part.inline_data
        if blob is None or not blob.data:
            return None
        modality = next((m for prefix, m in MEDIA.items() if (blob.mime_type or "").startswith(prefix)), None)
        if modality is None or modality not in self.store.encoder.modalities:
            log.info("event %s part %d: %s is not stored (the model %s embeds %s)", event_id, i,
                     blob.mime_type, self.store.model_id, sorted(self.store.encoder.modalities))
            return None
        return bytes_item(bytes(blob.data))

    async def delete_memory(self, *, app_name: str, user_id: str, memory_id: str | None = None) -> None:
        """Forget the event ``memory_id`` (all its parts); it stays forgotten."""
        if not memory_id:
            return
        namespace = user_namespace(app_name, user_id)
        ids = [m.id for m in list_memories(self.store, namespace)
               if m.metadata.get(META_KEY, {}).get("event_id") == memory_id]
        forget_present(self.store, ids, namespace)
        upsert(self.store, [memory_id], [{}], [memory_id], f"{namespace}{TOMBSTONES}")

    # -- searching -----------------------------------------------------------------------------
    async def search_memory(self, *, app_name: str, user_id: str, query: str) -> SearchMemoryResponse:
        namespace = user_namespace(app_name, user_id)
        if not query.strip() or self.store.count(namespace) == 0:
            return SearchMemoryResponse()
        hits = self.store.recall(query, k=self.max_results * 2, namespace=namespace)  # parts of one event merge
        entries: dict[str, MemoryEntry] = {}
        for hit in hits:
            if self.min_score is not None and hit.score < self.min_score:
                continue
            meta: dict[str, Any] = hit.memory.metadata.get(META_KEY, {})
            event_id = meta.get("event_id", hit.id)
            part = self._part(hit.memory, meta)
            if event_id in entries:
                entries[event_id].content.parts.append(part)
                continue
            if len(entries) == self.max_results:
                continue
            entries[event_id] = MemoryEntry(
                id=event_id, author=meta.get("author"), timestamp=meta.get("timestamp"),
                content=types.Content(role=meta.get("role") or "user", parts=[part]),
                custom_metadata={**(meta.get("custom_metadata") or {}), "score": hit.score,
                                 "modality": hit.modality})
        return SearchMemoryResponse(memories=list(entries.values()))

    @staticmethod
    def _part(memory, meta: dict) -> types.Part:
        if memory.modality == "text":
            return types.Part(text=memory.text or "")
        data = memory.content if isinstance(memory.content, (bytes, bytearray)) else b""
        return types.Part(inline_data=types.Blob(mime_type=meta.get("mime") or memory.mime, data=bytes(data)))
