"""The HTTP API and the explorer page as one Starlette app: :func:`create_app` (store) -> ASGI app.

Starlette rather than FastAPI: it is already installed with the MCP extra, it is small and async,
and this API's shapes (multipart uploads of any file, one JSON error body for every failure,
byte ranges) are easier to state exactly by hand than to coax out of FastAPI's pydantic-driven
validation, whose 422 ``{"detail": [...]}`` errors we would have to override everywhere. The OpenAPI
document is written by hand in ``openapi.py`` and checked against the server by schemathesis.

The store is synchronous: every encoder or store call runs in a worker thread (``anyio.to_thread``),
so the event loop keeps serving while a model embeds; the store's own lock makes that safe.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from anyio import to_thread
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..errors import AimemoryError, NotFoundError
from .http import (
    SEMANTIC_FIELDS,
    ApiError,
    ApiJSON,
    Guard,
    as_bool,
    as_float,
    as_fraction,
    as_int,
    as_json_object,
    as_modalities,
    as_seconds,
    as_semantics,
    as_str,
    as_time,
    as_where,
    bad,
    bytes_response,
    error_body,
    loads,
    on_api_error,
    on_http_exception,
    on_library_error,
    on_unexpected,
    status_of,
)
from .jobs import MAX_QUEUED, Job, JobQueue

if TYPE_CHECKING:  # pragma: no cover
    from ..records import Hit, Memory
    from ..store import MemoryStore

DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024  # bytes per request
JOB_THRESHOLD = 4  # uploads with more items than this become background jobs
MAX_FILES = 1000  # parts per multipart request
MAX_FIELD_BYTES = 4 * 1024 * 1024  # a non-file form field (text, metadata)
MAX_K = 100
MAX_LIST = 200
LIST_TEXT_CHARS = 2000
THUMB_CACHE = 256
UPDATE_FIELDS = {"tags", "remove_tags", "metadata", "replace", "ttl", "expires_at"}
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"explorer.js": "text/javascript; charset=utf-8", "explorer.css": "text/css; charset=utf-8"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "media-src 'self' blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
# served memory bytes never run anything, even if a browser opens them as a page
CONTENT_HEADERS = {"content-security-policy": "default-src 'none'; sandbox",
                   "cache-control": "private, max-age=86400"}


def memory_json(m: "Memory", text: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """A memory as JSON; ``text`` is the text of a text memory when the caller has it."""
    ns = quote(m.namespace, safe="")
    base = f"/api/memories/{quote(m.id, safe='')}"
    out: dict[str, Any] = {
        "id": m.id, "modality": m.modality, "namespace": m.namespace,
        "created_at": m.created_at.isoformat(), "source": m.source, "mime": m.mime,
        "tags": m.tags, "metadata": m.metadata, "transcript": m.transcript,
        "content_url": f"{base}/content?namespace={ns}",
        "thumbnail_url": f"{base}/thumbnail?namespace={ns}" if m.modality == "image" else None,
        "frame_url": f"{base}/frame?namespace={ns}" if m.modality == "video" else None,
    }
    from ..semantics import provenance_record

    out.update(provenance_record(m))  # created_by, derived_from, expires_at (and near duplicates)
    if m.status is not None:  # set by writes: new, existing, updated, replaced or merged
        out["status"] = m.status
    if m.modality == "text":
        out["text"] = text[:limit] if (text is not None and limit) else text
        out["text_truncated"] = bool(text is not None and limit and len(text) > limit)
    return out


def _memory_with_text(m: "Memory") -> dict[str, Any]:
    """A just-remembered memory as GET shows it: text memories with their text (which the store
    already holds, so no read)."""
    return memory_json(m, m.content if m.modality == "text" else None)  # type: ignore[arg-type]


def hit_json(h: "Hit") -> dict[str, Any]:
    text = h.memory.text if h.modality == "text" else None  # attached by recall; no extra read
    return {"id": h.id, "score": round(float(h.score), 6),
            "relevance": None if h.relevance is None else round(float(h.relevance), 6),
            "fusion": None if h.fusion is None else round(float(h.fusion), 6),
            "recency": h.recency,
            "modality": h.modality, "kind": h.kind, "start": h.start, "end": h.end, "snippet": h.snippet,
            "boxes": h.boxes,
            "memory": memory_json(h.memory, text if isinstance(text, str) else None, LIST_TEXT_CHARS),
            "frame_url": _frame_url(h)}


def _frame_url(h: "Hit") -> str | None:
    """A video hit's picture: the frame in the middle of its span."""
    if h.modality != "video":
        return None
    from ..preprocess.video import shown_at

    return f"/api/memories/{quote(h.id, safe='')}/frame?namespace={quote(h.memory.namespace, safe='')}" \
        f"&t={shown_at(h.start, h.end):.3f}"


class Api:
    """Request handlers bound to one store."""

    def __init__(self, store: "MemoryStore", *, token: str | None, max_upload: int, job_threshold: int):
        from ..following import FollowingStore

        self.handle = FollowingStore(store)  # a migration or rollback: the next request reopens
        self.token, self.max_upload = token, max_upload
        self.job_threshold = job_threshold
        self.jobs = JobQueue()
        self._thumbs: OrderedDict[tuple, bytes] = OrderedDict()

    @property
    def store(self) -> "MemoryStore":
        """The store of the folder's active generation (see :mod:`aimemory.following`)."""
        return self.handle.current()

    async def call(self, fn, *args, **kwargs):
        return await to_thread.run_sync(partial(fn, *args, **kwargs))

    # -- pages ---------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        html = (STATIC / "index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8",
                        headers={"content-security-policy": PAGE_CSP, "cache-control": "no-cache"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:  # a fixed list: no path from the URL ever reaches the disk
            raise ApiError(404, "NotFound", f"no static file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name],
                        headers={"cache-control": "no-cache"})

    async def openapi(self, request: Request) -> Response:
        from .openapi import spec

        return ApiJSON(spec(__version__, self.max_upload))

    # -- info ----------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return ApiJSON({"status": "ok", "version": __version__})

    async def stats(self, request: Request) -> Response:
        stats = await self.call(self.store.stats)
        stats["server"] = {"version": __version__, "auth": self.token is not None,
                           "max_upload_bytes": self.max_upload, "job_threshold": self.job_threshold,
                           "jobs_active": self.jobs.active()}
        return ApiJSON(stats)

    # -- remember ------------------------------------------------------------------------------
    async def remember(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        items: list[Any] = []
        sources: list[str | None] = []
        if ctype == "multipart/form-data":
            form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES, max_part_size=MAX_FIELD_BYTES)
            try:
                for value in form.getlist("file"):
                    if isinstance(value, UploadFile):
                        items.append(await value.read())
                        sources.append(_filename(value.filename))
                    else:  # a file part sent without a filename arrives as a string
                        items.append(value.encode("utf-8"))
                        sources.append(None)
                for value in form.getlist("text"):
                    items.append(value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace"))
                    sources.append(None)
                fields = {k: form.get(k) for k in ("namespace", "metadata", "tags", "dedup", "background",
                                                   *SEMANTIC_FIELDS)}
            finally:
                await form.close()
            for k, v in fields.items():
                if v is not None and not isinstance(v, str):
                    raise bad(f"form field {k!r} must be a plain value, not a file")
        elif ctype == "application/json":
            body = await _json_body(request)
            text = body.get("text")
            texts = [text] if isinstance(text, str) else text
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise bad("'text' must be a string or a list of strings")
            items, sources = list(texts), [None] * len(texts)
            fields = {k: body.get(k) for k in ("namespace", "metadata", "tags", "dedup", "background",
                                               *SEMANTIC_FIELDS)}
        else:
            raise ApiError(415, "UnsupportedMediaType", "send multipart/form-data (fields: file, text, "
                           "metadata, tags, namespace) or application/json ({\"text\": ...})")
        if not items:
            raise bad("nothing to remember: send at least one 'file' or 'text'")
        namespace = as_str(fields["namespace"], "namespace", "default") or "default"
        metadata = as_json_object(fields["metadata"], "metadata") or {}
        tags = fields["tags"]
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if tags:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise bad("tags must be a comma-separated string or a list of strings")
            have = metadata.get("tags") or []
            if not isinstance(have, (str, list)):
                raise bad("metadata['tags'] must be a string or a list of strings")
            metadata["tags"] = ([have] if isinstance(have, str) else list(have)) + tags
        dedup = as_bool(fields["dedup"], "dedup", True)
        background = as_bool(fields["background"], "background", len(items) > self.job_threshold)
        store_it = partial(self.store.remember_many, items, metadata=metadata, namespace=namespace,
                           dedup=dedup, errors="skip", sources=sources, **as_semantics(fields, len(items)))
        if background:
            return self._start_job(store_it, len(items), namespace)
        result = await self.call(store_it)
        if not result and result.skipped:
            raise result.skipped[0][2]
        return ApiJSON({"memories": [_memory_with_text(m) for m in result],
                             "skipped": [_skipped(i, sources[i], e) for i, _, e in result.skipped]},
                            status_code=201)

    def _start_job(self, store_it, total: int, namespace: str) -> Response:
        from ..store import check_namespace

        check_namespace(namespace)  # fail now, not in the worker
        if self.jobs.active() >= MAX_QUEUED:
            raise ApiError(429, "TooManyJobs", f"{MAX_QUEUED} ingest jobs are already queued; "
                           "poll them and retry", {"retry-after": "5"})
        job = Job(total, namespace)

        def work(job: Job) -> None:
            def progress(done: int) -> None:
                job.done = done

            result = store_it(progress=progress)
            job.memories = [_memory_with_text(m) for m in result]
            job.skipped = [_skipped(i, None, e) for i, _, e in result.skipped]
            job.done = total

        self.jobs.submit(job, work)
        return ApiJSON({"job": job.to_json()}, status_code=202,
                            headers={"location": f"/api/jobs/{job.id}"})

    async def job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            raise ApiError(404, "NotFoundError", "no such job (finished jobs are kept for a while only)")
        return ApiJSON({"job": job.to_json()})

    # -- recall --------------------------------------------------------------------------------
    async def recall_get(self, request: Request) -> Response:
        params = dict(request.query_params)
        query = params.get("q")
        if not query or not query.strip():
            raise bad("q (the text to search for) is required; POST a file to /api/recall to search "
                      "by image or audio")
        return await self._recall(query, params)

    async def recall_post(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=32, max_part_size=MAX_FIELD_BYTES)
            try:
                file = form.get("file")
                params = {k: v for k, v in form.items() if isinstance(v, str) and k != "file"}
                query: Any = await file.read() if isinstance(file, UploadFile) else (file or params.get("q"))
            finally:
                await form.close()
        elif ctype == "application/json":
            params = await _json_body(request)
            query = params.get("q", params.get("query"))
            if query is not None and not isinstance(query, str):
                raise bad("'q' must be a string; upload a file as multipart to search by image or audio")
        else:
            raise ApiError(415, "UnsupportedMediaType", "send multipart/form-data with a 'file' (or 'q') "
                           "or application/json {\"q\": \"...\"}")
        if query is None or (isinstance(query, str) and not query.strip()) or query == b"":
            raise bad("nothing to search for: send 'q' (text) or a 'file'")
        return await self._recall(query, params)

    async def _recall(self, query: Any, params: dict) -> Response:
        where = as_where(params.get("where")) or {}
        tags = params.get("tags")
        if tags:
            tag_list = [t.strip() for t in tags.split(",") if t.strip()] if isinstance(tags, str) else tags
            if not isinstance(tag_list, list) or not all(isinstance(t, str) for t in tag_list):
                raise bad("tags must be a comma-separated string or a list of strings")
            if tag_list:
                where = {**where, "tags": tag_list}
        hits = await self.call(
            self.store.recall, query, k=as_int(params.get("k"), "k", 1, MAX_K, 10),
            modality=as_modalities(params.get("modality")), where=where or None,
            namespace=as_str(params.get("namespace"), "namespace", "default") or "default",
            since=as_time(params.get("since"), "since"), until=as_time(params.get("until"), "until"),
            hybrid=as_bool(params.get("hybrid"), "hybrid", False),
            half_life=as_float(params.get("half_life"), "half_life"),
            min_relevance=as_fraction(params.get("min_relevance"), "min_relevance"))
        return ApiJSON({"hits": [hit_json(h) for h in hits]})

    # -- one memory ----------------------------------------------------------------------------
    def _namespace(self, request: Request) -> str:
        return request.query_params.get("namespace") or "default"

    async def list_recent(self, request: Request) -> Response:
        namespace = self._namespace(request)
        limit = as_int(request.query_params.get("limit"), "limit", 1, MAX_LIST, 50)
        return ApiJSON({"memories": await self.call(self._recent, namespace, limit)})

    def _recent(self, namespace: str, limit: int) -> list[dict]:
        return [memory_json(m, m.text if m.modality == "text" else None, LIST_TEXT_CHARS)
                for m in self.store.recent(limit, namespace)]

    async def get(self, request: Request) -> Response:
        def load() -> dict:
            m = self.store.get(request.path_params["memory_id"], self._namespace(request))
            return memory_json(m, m.content if m.modality == "text" else None)  # type: ignore[arg-type]

        return ApiJSON(await self.call(load))

    async def update(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "UnsupportedMediaType", "send application/json: {\"tags\": [...], "
                           "\"remove_tags\": [...], \"metadata\": {...}, \"replace\": false, \"ttl\": 3600}")
        body = await _json_body(request)
        unknown = sorted(set(body) - UPDATE_FIELDS)
        if unknown:
            raise bad(f"unknown field(s) {unknown}; an update takes {sorted(UPDATE_FIELDS)}")
        change = {"metadata": as_json_object(body.get("metadata"), "metadata"),
                  "tags": _tag_field(body.get("tags"), "tags"),
                  "remove_tags": _tag_field(body.get("remove_tags"), "remove_tags"),
                  "replace": as_bool(body.get("replace"), "replace", False)}
        expires = body.get("expires_at")
        if not (isinstance(expires, str) and expires.strip().lower() == "never"):
            expires = as_time(expires, "expires_at")
        change.update(ttl=as_float(body.get("ttl"), "ttl"), expires_at=expires)
        if not any(change.values()):
            raise bad("nothing to change: send tags, remove_tags, metadata, replace, ttl or expires_at")

        def apply() -> dict:
            m = self.store.update(request.path_params["memory_id"], namespace=self._namespace(request), **change)
            return memory_json(m, m.content if m.modality == "text" else None)  # type: ignore[arg-type]

        return ApiJSON(await self.call(apply))

    async def export(self, request: Request) -> Response:
        from ..store import check_namespace
        from ..transfer import export_tar

        data = await self.call(export_tar, self.store, check_namespace(self._namespace(request)))
        return Response(data, media_type="application/x-tar",
                        headers={**CONTENT_HEADERS, "content-disposition": 'attachment; filename="export.tar"'})

    async def import_(self, request: Request) -> Response:
        from ..store import check_namespace
        from ..transfer import import_tar

        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/x-tar", "application/octet-stream"):
            raise ApiError(415, "UnsupportedMediaType", "send the tar archive GET /api/export returned, as "
                           "application/x-tar")
        namespace = request.query_params.get("namespace") or None
        got = await self.call(import_tar, self.store, await request.body(),
                              None if namespace is None else check_namespace(namespace))
        return ApiJSON({"imported": len(got), "skipped": len(got.skipped)}, status_code=201)

    async def forget(self, request: Request) -> Response:
        n = await self.call(self.store.forget, request.path_params["memory_id"], self._namespace(request))
        self._thumbs.clear()
        return ApiJSON({"deleted": n})

    async def content(self, request: Request) -> Response:
        def load() -> tuple[bytes, str]:
            m = self.store.get(request.path_params["memory_id"], self._namespace(request))
            data = m.content
            if data is None:
                raise NotFoundError(f"memory {m.id} has no stored content (the store keeps none)")
            if isinstance(data, str):
                return data.encode("utf-8"), "text/plain; charset=utf-8"
            return bytes(data), m.mime or "application/octet-stream"

        data, mime = await self.call(load)
        return bytes_response(data, mime, request.headers.get("range"), dict(CONTENT_HEADERS))

    async def thumbnail(self, request: Request) -> Response:
        from ..display import thumbnail_png

        size = as_int(request.query_params.get("size"), "size", 16, 1024, 256)
        key = (request.path_params["memory_id"], self._namespace(request), size)

        def load() -> bytes:
            m = self.store.get(key[0], key[1])
            if m.modality != "image":
                raise ApiError(404, "NotFoundError", f"memory {m.id} is {m.modality}; only images have thumbnails")
            if m.content is None:
                raise NotFoundError(f"memory {m.id} has no stored content")
            return thumbnail_png(m, size)

        png = self._thumbs.get(key)
        if png is None:
            png = await self.call(load)
            self._thumbs[key] = png
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return Response(png, media_type="image/png", headers=dict(CONTENT_HEADERS))


    async def frame(self, request: Request) -> Response:
        """A video memory's picture at ``t`` seconds, JPEG, decoded on demand (cached)."""
        t = round(as_seconds(request.query_params.get("t"), "t"), 2)
        key = (request.path_params["memory_id"], self._namespace(request), "frame", t)

        def load() -> bytes:
            from ..preprocess.video import frame_jpeg

            m = self.store.get(key[0], key[1])
            if m.modality != "video":
                raise ApiError(404, "NotFoundError", f"memory {m.id} is {m.modality}; only videos have frames")
            if m.content is None:
                raise NotFoundError(f"memory {m.id} has no stored content")
            return frame_jpeg(bytes(m.content), t)

        jpeg = self._thumbs.get(key)
        if jpeg is None:
            jpeg = await self.call(load)
            self._thumbs[key] = jpeg
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return Response(jpeg, media_type="image/jpeg", headers=dict(CONTENT_HEADERS))


def _filename(name: str | None) -> str | None:
    """The base name a browser sent, without folders or control characters, at most 200 chars."""
    if not name:
        return None
    base = os.path.basename(name.replace("\\", "/"))
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:200] or None


def _tag_field(value: Any, name: str) -> list[str] | None:
    """Tags as a list of strings or one comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise bad(f"{name} must be a list of strings or a comma-separated string")
    return value


def _skipped(index: int, source: str | None, exc: BaseException) -> dict:
    return {"index": index, "source": source, "status": status_of(exc), "error": error_body(exc)}


async def _json_body(request: Request) -> dict:
    body = loads(await request.body() or b"null", "the body")
    if not isinstance(body, dict):
        raise bad("the JSON body must be an object")
    return body


def create_app(store: "MemoryStore", *, token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD,
               job_threshold: int = JOB_THRESHOLD) -> Starlette:
    """The ASGI app serving ``store``. ``token``: require ``Authorization: Bearer`` on /api routes."""
    api = Api(store, token=token, max_upload=max_upload, job_threshold=job_threshold)
    routes = [
        Route("/", api.page, methods=["GET"]),
        Route("/static/{name}", api.static, methods=["GET"]),
        Route("/api/openapi.json", api.openapi, methods=["GET"]),
        Route("/api/health", api.health, methods=["GET"]),
        Route("/api/stats", api.stats, methods=["GET"]),
        Route("/api/memories", api.remember, methods=["POST"]),
        Route("/api/memories", api.list_recent, methods=["GET"]),
        Route("/api/memories/{memory_id}", api.get, methods=["GET"]),
        Route("/api/memories/{memory_id}", api.forget, methods=["DELETE"]),
        Route("/api/memories/{memory_id}", api.update, methods=["PATCH"]),
        Route("/api/memories/{memory_id}/content", api.content, methods=["GET"]),
        Route("/api/memories/{memory_id}/thumbnail", api.thumbnail, methods=["GET"]),
        Route("/api/memories/{memory_id}/frame", api.frame, methods=["GET"]),
        Route("/api/recall", api.recall_get, methods=["GET"]),
        Route("/api/recall", api.recall_post, methods=["POST"]),
        Route("/api/jobs/{job_id}", api.job, methods=["GET"]),
        Route("/api/export", api.export, methods=["GET"]),
        Route("/api/import", api.import_, methods=["POST"]),
    ]
    handlers = {ApiError: on_api_error, AimemoryError: on_library_error, HTTPException: on_http_exception,
                Exception: on_unexpected}
    app = Starlette(routes=routes, exception_handlers=handlers,  # type: ignore[arg-type]
                    middleware=[Middleware(Guard, token=token, max_body=max_upload)])
    app.state.api = api
    return app

