"""What users get back: :class:`Memory` and :class:`Hit`, and the Arrow schema of the table behind them.

One table row is one *view* (one vector). Row 0 of a memory (``view == 0``) also carries the memory's
content and metadata, so a memory and all its vectors are written by a single Lance commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from .inputs import Audio

SCHEMA_VERSION = 2  # 2: expires_at, created_by, derived_from (see ADDED_COLUMNS)

# Columns added after the first schema, with the schema version that added them. A table without
# them reads them as null; its first write adds them (a metadata-only Lance commit).
ADDED_COLUMNS = {"expires_at": 2, "created_by": 2, "derived_from": 2}


@lru_cache(maxsize=8)  # a write builds its rows against it: 7 us a call to make
def table_schema(dim: int) -> pa.Schema:
    """The Lance table schema for vectors of width ``dim`` (one shared, immutable object per width)."""
    return pa.schema([
        pa.field("vkey", pa.int64(), nullable=False),  # FAISS id of this view; never reused
        pa.field("id", pa.string(), nullable=False),  # memory id shown to users
        pa.field("view", pa.int32(), nullable=False),  # 0 = the memory's primary row
        pa.field("namespace", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),  # of the memory: image | audio | text
        pa.field("kind", pa.string(), nullable=False),  # of the view: image, text.chunk, audio.sound...
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("snippet", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # primary-row-only columns (null on other views)
        pa.field("text", pa.string()),  # text content or transcript: full-text indexed
        pa.field("content", pa.large_binary()),
        pa.field("mime", pa.string()),
        pa.field("source", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("metadata", pa.string()),  # JSON object
        # schema 2: when the memory stops being returned (every view carries it, so masks need
        # no lookup), and provenance (primary row only)
        pa.field("expires_at", pa.timestamp("us", tz="UTC")),
        pa.field("created_by", pa.string()),
        pa.field("derived_from", pa.list_(pa.string())),
    ])


# Columns the in-memory catalog mirrors (no vectors, no content bytes; texts, so hits need no read).
CATALOG_COLUMNS = ["vkey", "id", "view", "namespace", "modality", "kind", "created_at", "start", "end",
                   "snippet", "source", "content_hash", "tags", "metadata", "mime", "text", "expires_at",
                   "created_by", "derived_from"]


@dataclass(eq=False)
class Memory:
    """One remembered item. ``content`` (bytes or str) is loaded on first access. ``status`` is set by
    the calls that write: ``"new"`` (just stored), ``"existing"`` (already stored, nothing changed),
    ``"updated"`` (already stored; new tags or metadata merged in), ``"replaced"`` (a caller-named
    memory written anew) or ``"merged"`` (a near duplicate of this stored memory was merged into
    it); None on reads.

    Provenance: ``source`` (where the content came from), ``created_by`` (who or what stored it: an
    agent, a user), ``derived_from`` (ids of the memories it was made from). ``expires_at`` is when it
    stops being returned. ``near_duplicate_of`` / ``near_duplicate_score`` are set by
    ``remember(..., near_duplicate=...)`` (see :mod:`aimemory.semantics`)."""

    id: str
    modality: str
    namespace: str
    created_at: datetime
    source: str | None
    metadata: dict[str, Any]
    mime: str | None = None
    transcript: str | None = None
    status: str | None = None
    created_by: str | None = None
    derived_from: list[str] | None = None
    expires_at: datetime | None = None
    near_duplicate_of: str | None = None
    near_duplicate_score: float | None = None
    _content: Any = field(default=None, repr=False)
    _loader: Callable[[], Any] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return f"Memory(id={self.id!r}, {self.modality}, namespace={self.namespace!r}{src})"

    @property
    def tags(self) -> list[str]:
        return list(self.metadata.get("tags", []))

    @property
    def content(self) -> bytes | str | None:
        """The original bytes (image/audio) or the text; None if the store keeps no content."""
        if self._content is None and self._loader is not None:
            self._content = self._loader()
            self._loader = None
        content: bytes | str | None = self._content
        return content

    @content.setter
    def content(self, value: bytes | str | None) -> None:
        """Content already at hand (no read needed later)."""
        self._content, self._loader = value, None

    @property
    def text(self) -> str | None:
        """The text of a text memory, the transcript of an audio memory, the text read in an image."""
        if self.modality == "text":
            c = self.content
            return c if isinstance(c, str) else None
        if self.transcript is None and self.modality == "image":
            from .image_text import ocr_text

            return ocr_text(self.metadata)
        return self.transcript

    def image(self) -> "Image":
        """The image as PIL (image memories only)."""
        from .inputs import open_image

        if self.modality != "image" or not isinstance(self.content, (bytes, bytearray)):
            raise InputError(f"memory {self.id} is a {self.modality} memory without image content; "
                             "use .content or .text for other memories")
        image: Image = open_image(bytes(self.content), self.source)  # lazy: thumbnail() decodes it reduced
        return image

    def audio(self) -> "Audio":
        """The waveform (audio memories only)."""
        from .inputs import bytes_item

        if self.modality != "audio" or not isinstance(self.content, (bytes, bytearray)):
            raise InputError(f"memory {self.id} is a {self.modality} memory without audio content; "
                             "use .content or .text for other memories")
        return bytes_item(bytes(self.content)).payload  # type: ignore[return-value]

    def frame(self, at: float = 0.0) -> "Image":
        """The picture shown at ``at`` seconds (video memories only), decoded from the content."""
        from .preprocess.video import frame_at

        if self.modality != "video" or not isinstance(self.content, (bytes, bytearray)):
            raise InputError(f"memory {self.id} is a {self.modality} memory without video content; "
                             "frames come from video memories stored with their content")
        return frame_at(bytes(self.content), at)

    def _repr_html_(self) -> str:
        from .display import memory_html

        return memory_html(self)


@dataclass(eq=False)
class Hit:
    """One recall result: ``score`` is the cosine of the query against the memory's best-matching
    view (-1..1, higher is closer), in every kind of recall; where a query runs several searches (an
    image query also searches appearance views), a hit found by another search has its standardised
    score put on the first search's cosine scale, which can pass 1 a little for a very close match;
    ``kind`` is the tag of the view shown
    and ``start``/``end`` locate it in time-coded memories. ``fusion`` is set by hybrid recall only:
    the reciprocal-rank fusion of the vector and keyword rankings (sum of 1/(60 + rank), at most
    ~0.033) that orders hybrid results; it is not comparable with a cosine. ``recency`` is set by
    ``recall(half_life=...)``: the age weight 0.5 ** (age / half_life) that ``score`` (and ``fusion``)
    were multiplied by. ``relevance`` is the calibrated probability (0-1) that the hit is a match,
    with one meaning whatever the query's modality and the view's kind (see
    :mod:`aimemory.calibration`); ``recall(min_relevance=...)`` filters by it, and recall orders by it
    where the model has a fitted calibration (:mod:`aimemory.ranking`)."""

    id: str
    score: float
    modality: str
    memory: Memory
    kind: str = ""
    start: float | None = None
    end: float | None = None
    snippet: str | None = None
    fusion: float | None = None
    recency: float | None = None  # recall(half_life=...): the age weight already in ``score``
    relevance: float | None = None
    #: image hits of text queries: the words read in the image that match the query, with their boxes
    #: ({"text", "box": 4 (x, y) corners in image pixels}); None when the image has no text read
    boxes: list[dict[str, Any]] | None = None

    def __repr__(self) -> str:
        span = f", {self.start:.1f}-{self.end:.1f}s" if self.start is not None and self.end is not None else ""
        src = f", source={self.memory.source!r}" if self.memory.source else ""
        fusion = f", fusion={self.fusion:.4f}" if self.fusion is not None else ""
        fusion += f", relevance={self.relevance:.3f}" if self.relevance is not None else ""
        return f"Hit(score={self.score:.3f}{fusion}, {self.modality}/{self.kind}, id={self.id!r}{span}{src})"

    def frame(self) -> "Image":
        """A video hit's picture: the frame shown in the middle of its span (its scene's keyframe)."""
        from .preprocess.video import shown_at

        return self.memory.frame(shown_at(self.start, self.end))

    def _repr_html_(self) -> str:
        from .display import hit_html

        return hit_html(self)


class Hits(list["Hit"]):
    """A list of :class:`Hit` with notebook and dataframe helpers."""

    def to_arrow(self) -> pa.Table:
        return pa.table({
            "rank": list(range(1, len(self) + 1)),
            "id": [h.id for h in self],
            "score": [h.score for h in self],
            "relevance": pa.array([h.relevance for h in self], pa.float64()),
            "fusion": pa.array([h.fusion for h in self], pa.float64()),
            "recency": pa.array([h.recency for h in self], pa.float64()),
            "modality": [h.modality for h in self],
            "kind": [h.kind for h in self],
            "source": [h.memory.source for h in self],
            "start": [h.start for h in self],
            "end": [h.end for h in self],
            "snippet": [h.snippet for h in self],
            "metadata": [json.dumps(h.memory.metadata) for h in self],
        })

    def to_pandas(self) -> Any:
        """:meth:`to_arrow` as a pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def _repr_html_(self) -> str:
        from .display import hits_html

        return hits_html(self)
