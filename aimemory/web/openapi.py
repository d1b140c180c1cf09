"""The OpenAPI 3.1 document of the HTTP API, written by hand (see app.py for why) and served at
``/api/openapi.json``; ``tests/test_web_api.py`` runs schemathesis against it."""

from __future__ import annotations

from typing import Any

MODALITY = {"type": "string", "enum": ["image", "audio", "text", "video"]}
NAMESPACE = {"name": "namespace", "in": "query", "required": False,
             "description": "Namespace (default: 'default').",
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$"}}
MEMORY_ID = {"name": "memory_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (401, *codes)}


RECALL_PARAMS = {
    "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    "modality": {"type": "string", "description": "image, audio, text or a comma-separated list"},
    "where": {"type": "string", "description": "A JSON object of metadata filters, e.g. {\"tags\": \"pets\"}"},
    "tags": {"type": "string", "description": "Comma-separated tags; any of them matches"},
    "namespace": NAMESPACE["schema"],
    "since": {"type": "string", "description": "ISO 8601 time or epoch seconds (inclusive)"},
    "until": {"type": "string", "description": "ISO 8601 time or epoch seconds (exclusive)"},
    "hybrid": {"type": "boolean", "default": False, "description": "Fuse with full-text (BM25) ranks"},
    "half_life": {"type": "number", "exclusiveMinimum": 0,
                  "description": "Favour recent memories: scores x 0.5 ** (age seconds / half_life)"},
    "min_relevance": {"type": "number", "minimum": 0, "maximum": 1,
                      "description": "Only hits at least this relevant (calibrated 0-1, one scale for all modalities)"},
}
# remember fields of aimemory.semantics (multipart fields are strings; JSON bodies may use lists)
SEMANTIC_PROPS = {
    "id": {"description": "Your id for the memory (one per item); an id already stored is replaced",
           "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "ttl": {"type": "number", "exclusiveMinimum": 0, "description": "Expire after this many seconds"},
    "expires_at": {"type": "string", "description": "Expire at this ISO 8601 time (or epoch seconds)"},
    "created_by": {"type": "string", "description": "Who stores it (provenance)"},
    "derived_from": {"description": "Ids of the memories it was made from",
                     "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "near_duplicate": {"type": "number", "minimum": -1, "maximum": 1,
                       "description": "Report a stored memory at least this similar (cosine)"},
    "on_near_duplicate": {"type": "string", "enum": ["report", "merge"]},
}


def spec(version: str, max_upload: int) -> dict[str, Any]:
    """The OpenAPI document for this server."""
    memory = {"type": "object", "required": ["id", "modality", "namespace", "created_at"], "properties": {
        "id": {"type": "string"}, "modality": MODALITY, "namespace": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "source": {"type": ["string", "null"]}, "mime": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}}, "metadata": {"type": "object"},
        "transcript": {"type": ["string", "null"]}, "text": {"type": ["string", "null"]},
        "text_truncated": {"type": "boolean"},
        "content_url": {"type": "string"}, "thumbnail_url": {"type": ["string", "null"]},
        "frame_url": {"type": ["string", "null"], "description": "Video memories: a JPEG frame (add &t=seconds)"},
        "created_by": {"type": ["string", "null"]},
        "derived_from": {"type": ["array", "null"], "items": {"type": "string"}},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "near_duplicate_of": {"type": "string"}, "near_duplicate_score": {"type": "number"},
        "status": {"type": "string", "enum": ["new", "existing", "updated", "replaced", "merged"],
                   "description": "On writes only: just stored, already stored and unchanged, already "
                   "stored with new tags/metadata merged in, a named memory written anew, or merged into "
                   "a near duplicate"}}}
    hit = {"type": "object", "required": ["id", "score", "modality", "memory"], "properties": {
        "id": {"type": "string"}, "score": {"type": "number", "description": "cosine of the best view"},
        "fusion": {"type": ["number", "null"], "description": "hybrid recall's rank fusion (orders hits)"},
        "recency": {"type": ["number", "null"], "description": "half_life's age weight, already in score"},
        "relevance": {"type": ["number", "null"],
                      "description": "calibrated 0-1 match probability (orders the hits of a calibrated model)"},
        "modality": MODALITY,
        "kind": {"type": "string"}, "start": {"type": ["number", "null"]}, "end": {"type": ["number", "null"]},
        "snippet": {"type": ["string", "null"]},
        "boxes": {"type": ["array", "null"], "description": "image hits of text queries: the words read in "
                  "the image that match the query, each with its box (4 [x, y] corners in image pixels); "
                  "all lines and words are in memory.metadata.ocr",
                  "items": {"type": "object", "properties": {
                      "text": {"type": "string"},
                      "box": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}}},
        "memory": _ref("Memory"),
        "frame_url": {"type": ["string", "null"], "description": "Video hits: the frame of the matching span"}}}
    job = {"type": "object", "required": ["id", "status", "total", "done"], "properties": {
        "id": {"type": "string"}, "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "namespace": {"type": "string"}, "total": {"type": "integer"}, "done": {"type": "integer"},
        "stored": {"type": "integer"}, "progress": {"type": "number"},
        "memories": {"type": "array", "items": _ref("Memory")},
        "skipped": {"type": "array", "items": {"type": "object"}},
        "error": {"oneOf": [{"type": "null"}, {"type": "object"}]}}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}
    upload = {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                 "description": "Image, audio or text files (UTF-8, UTF-16 with a BOM, "
                                "Windows-1252/Latin-1; sniffed from their bytes)"},
        "text": {"type": "array", "items": {"type": "string"}, "description": "Texts to remember"},
        "metadata": {"type": "string", "description": "A JSON object stored with every item"},
        "tags": {"type": "string", "description": "Comma-separated tags"},
        "namespace": NAMESPACE["schema"],
        "dedup": {"type": "boolean", "default": True},
        "background": {"type": "boolean", "description": "Run as a job (default: when more than a few items)"},
        **SEMANTIC_PROPS}}
    text_body = {"type": "object", "required": ["text"], "properties": {
        "text": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "metadata": {"type": "object"}, "tags": {"type": "array", "items": {"type": "string"}},
        "namespace": NAMESPACE["schema"], "dedup": {"type": "boolean"}, "background": {"type": "boolean"},
        **SEMANTIC_PROPS}}
    tag_list = {"oneOf": [{"type": "array", "items": {"type": "string"}},
                          {"type": "string", "description": "comma-separated"}]}
    update_body = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        "tags": {**tag_list, "description": "Tags to add"},
        "remove_tags": {**tag_list, "description": "Tags to remove (after adding)"},
        "metadata": {"type": "object", "description": "Merged key by key into the stored metadata"},
        "replace": {"type": "boolean", "default": False,
                    "description": "Set metadata and tags to exactly those given"},
        "ttl": SEMANTIC_PROPS["ttl"],
        "expires_at": {"type": "string",
                       "description": "Expire at this ISO 8601 time (or epoch seconds); \"never\" stops expiry"}}}
    recall_query = {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "An image or audio clip as the query"},
        "q": {"type": "string", "description": "Text query (when no file is sent)"}, **RECALL_PARAMS}}
    recall_json = {"type": "object", "required": ["q"], "properties": {
        "q": {"type": "string", "minLength": 1}, **RECALL_PARAMS,
        "where": {"type": "object"}, "modality": {"oneOf": [MODALITY, {"type": "array", "items": MODALITY}]},
        "tags": {"type": "array", "items": {"type": "string"}}}}
    hits = _json({"type": "object", "properties": {"hits": {"type": "array", "items": _ref("Hit")}}},
                 "Hits, best first")
    query_params = [{"name": k, "in": "query", "required": False, "schema": v} for k, v in RECALL_PARAMS.items()]
    return {
        "openapi": "3.1.0",
        "info": {"title": "aimemory", "version": version,
                 "description": "A multimodal memory: remember images, audio and text; recall across "
                 f"modalities. Requests over {max_upload:,} bytes get 413. Every error is "
                 "{\"error\": {\"type\", \"message\"}}."},
        "components": {
            "schemas": {"Memory": memory, "Hit": hit, "Job": job, "Error": error},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Required when the server has a token"}},
            "responses": {f"E{code}": _json(_ref("Error"), text) for code, text in (
                (400, "Bad request"), (401, "Missing or wrong token"), (404, "Not found"),
                (413, "Too large"), (415, "Unsupported media type"), (416, "Range not satisfiable"),
                (429, "Too many queued jobs"))},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/health": {"get": {"summary": "Liveness", "operationId": "health",
                                    "responses": {"200": _json({"type": "object"}, "OK"), **_errors()}}},
            "/api/stats": {"get": {"summary": "Store statistics", "operationId": "stats",
                                   "responses": {"200": _json({"type": "object"}, "Counts, model, index"),
                                                 **_errors()}}},
            "/api/memories": {
                "post": {"summary": "Remember files and/or texts", "operationId": "remember",
                         "requestBody": {"required": True, "content": {
                             "multipart/form-data": {"schema": upload},
                             "application/json": {"schema": text_body}}},
                         "responses": {
                             "201": _json({"type": "object", "properties": {
                                 "memories": {"type": "array", "items": _ref("Memory")},
                                 "skipped": {"type": "array", "items": {"type": "object"}}}}, "Stored"),
                             "202": _json({"type": "object", "properties": {"job": _ref("Job")}},
                                          "Accepted as a background job (see Location)"),
                             **_errors(400, 413, 415, 429)}},
                "get": {"summary": "The newest memories", "operationId": "listRecent",
                        "parameters": [NAMESPACE, {"name": "limit", "in": "query", "required": False,
                                                   "schema": {"type": "integer", "minimum": 1, "maximum": 200}}],
                        "responses": {"200": _json({"type": "object", "properties": {
                            "memories": {"type": "array", "items": _ref("Memory")}}}, "Newest first"),
                            **_errors(400)}},
            },
            "/api/memories/{memory_id}": {
                "get": {"summary": "One memory's metadata (and text)", "operationId": "getMemory",
                        "parameters": [MEMORY_ID, NAMESPACE],
                        "responses": {"200": _json(_ref("Memory"), "The memory"), **_errors(400, 404)}},
                "patch": {"summary": "Change a memory's tags, metadata and expiry (one commit; content untouched)",
                          "operationId": "updateMemory", "parameters": [MEMORY_ID, NAMESPACE],
                          "requestBody": {"required": True, "content": {"application/json": {"schema": update_body}}},
                          "responses": {"200": _json(_ref("Memory"), "The memory after the change"),
                                        **_errors(400, 404, 415)}},
                "delete": {"summary": "Forget a memory", "operationId": "forget",
                           "parameters": [MEMORY_ID, NAMESPACE],
                           "responses": {"200": _json({"type": "object", "properties": {
                               "deleted": {"type": "integer"}}}, "Deleted"), **_errors(400, 404)}},
            },
            "/api/memories/{memory_id}/content": {"get": {
                "summary": "The original bytes (byte ranges supported)", "operationId": "getContent",
                "parameters": [MEMORY_ID, NAMESPACE,
                               {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The content, with its media type"},
                              "206": {"description": "Part of the content"},
                              **_errors(400, 404, 416)}}},
            "/api/memories/{memory_id}/thumbnail": {"get": {
                "summary": "A PNG thumbnail of an image memory", "operationId": "getThumbnail",
                "parameters": [MEMORY_ID, NAMESPACE, {"name": "size", "in": "query", "required": False,
                                                      "schema": {"type": "integer", "minimum": 16, "maximum": 1024}}],
                "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}, **_errors(400, 404)}}},
            "/api/memories/{memory_id}/frame": {"get": {
                "summary": "A JPEG frame of a video memory at t seconds", "operationId": "getFrame",
                "parameters": [MEMORY_ID, NAMESPACE, {"name": "t", "in": "query", "required": False,
                                                      "schema": {"type": "number", "minimum": 0}}],
                "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}, **_errors(400, 404)}}},
            "/api/recall": {
                "get": {"summary": "Recall by a text query", "operationId": "recallText",
                        "parameters": [{"name": "q", "in": "query", "required": True,
                                        "schema": {"type": "string", "minLength": 1}}, *query_params],
                        "responses": {"200": hits, **_errors(400, 415)}},
                "post": {"summary": "Recall by an uploaded image/audio/text file, or a JSON query",
                         "operationId": "recall",
                         "requestBody": {"required": True, "content": {
                             "multipart/form-data": {"schema": recall_query},
                             "application/json": {"schema": recall_json}}},
                         "responses": {"200": hits, **_errors(400, 413, 415)}},
            },
            "/api/export": {"get": {
                "summary": "A whole namespace, content and vectors, as a tar archive (POST it to /api/import)",
                "operationId": "exportNamespace", "parameters": [NAMESPACE],
                "responses": {"200": {"description": "The export folder as tar", "content": {"application/x-tar": {}}},
                              **_errors(400)}}},
            "/api/import": {"post": {
                "summary": "Import a namespace archive from /api/export (ids already stored are replaced)",
                "operationId": "importNamespace",
                "parameters": [{**NAMESPACE, "description": "Namespace to import into (default: the exported one)"}],
                "requestBody": {"required": True, "content": {  # a tar (application/x-tar is accepted too)
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"201": _json({"type": "object", "properties": {
                    "imported": {"type": "integer"}, "skipped": {"type": "integer"}}}, "Imported"),
                    **_errors(400, 413, 415)}}},
            "/api/jobs/{job_id}": {"get": {
                "summary": "Progress of a background ingest", "operationId": "getJob",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "properties": {"job": _ref("Job")}}, "The job"),
                              **_errors(404)}}},
        },
    }
