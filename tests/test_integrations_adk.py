"""aimemory as a Google ADK memory service: sessions and events become text, image and audio
memories per (app, user); search ranks them semantically (ColourEncoder: colour words match
colours and pitches); deletes stick. Network sockets are off."""

from __future__ import annotations

import asyncio
import io

import pytest

pytest.importorskip("google.adk")
pytest.importorskip("pytest_socket")

from conftest import ColourEncoder, solid, tone  # noqa: E402
from google.adk.events.event import Event  # noqa: E402
from google.adk.memory.memory_entry import MemoryEntry  # noqa: E402
from google.adk.sessions.session import Session  # noqa: E402
from google.genai import types  # noqa: E402

from aimemory import MemoryStore  # noqa: E402
from aimemory.integrations.adk import AimemoryMemoryService, user_namespace  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_network")  # network sockets refused (conftest)


@pytest.fixture
def service(tmp_path):
    store = MemoryStore(tmp_path / "mem", model=ColourEncoder())
    yield AimemoryMemoryService(store, max_results=3)
    store.close()


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    solid(colour).save(buf, format="PNG")
    return buf.getvalue()


def wav(colour: str) -> bytes:
    import soundfile as sf

    clip = tone(colour)
    buf = io.BytesIO()
    sf.write(buf, clip.samples, clip.sample_rate, format="WAV")
    return buf.getvalue()


def event(eid: str, *parts: types.Part, author: str = "user") -> Event:
    return Event(id=eid, author=author, content=types.Content(role="user", parts=list(parts)))


def text(t: str) -> types.Part:
    return types.Part(text=t)


def blob(data: bytes, mime: str) -> types.Part:
    return types.Part(inline_data=types.Blob(mime_type=mime, data=data))


def session(user: str = "ada", *events: Event) -> Session:
    return Session(id="s1", app_name="app", user_id=user, events=list(events))


def search(service, query: str, user: str = "ada"):
    return asyncio.run(service.search_memory(app_name="app", user_id=user, query=query)).memories


def test_parts_become_memories_by_modality_and_a_text_query_finds_them(service):
    s = session("ada", event("e1", text("my green bicycle")),
                event("e2", text("look at this"), blob(png("red"), "image/png")),
                event("e3", blob(wav("blue"), "audio/wav")),
                event("e4", types.Part(file_data=types.FileData(file_uri="gs://x/y.pdf", mime_type="application/pdf"))))
    asyncio.run(service.add_session_to_memory(s))
    ns = user_namespace("app", "ada")
    assert service.store.count(ns) == 4  # e1 text, e2 text + image, e3 audio; e4 is a reference
    top = search(service, "something red")[0]
    assert top.id == "e2" and top.content.parts[0].inline_data.data == png("red")
    assert top.custom_metadata["modality"] == "image" and top.author == "user" and top.timestamp
    assert search(service, "blue")[0].id == "e3"
    assert search(service, "green")[0].content.parts[0].text == "my green bicycle"
    assert len(search(service, "anything")) <= 3


def test_users_are_isolated_and_adding_again_writes_nothing_new(service):
    first = session("ada", event("e1", text("red apples")))
    asyncio.run(service.add_session_to_memory(first))
    asyncio.run(service.add_session_to_memory(session("bob", event("e9", text("blue sky")))))
    assert [m.id for m in search(service, "blue", user="ada")] == ["e1"]  # only ada's own
    def writes():  # table commits plus records in the write-ahead segment
        return service.store.stats()["table_version"] + service.store.segment.n_records

    version = writes()
    first.events.append(event("e2", text("green pears")))  # the session goes on, and is added again
    asyncio.run(service.add_session_to_memory(first))
    assert writes() == version + 1  # one write: e2 only
    asyncio.run(service.add_session_to_memory(first))
    assert writes() == version + 1


def test_delete_sticks_and_events_and_explicit_memories_add(service):
    asyncio.run(service.add_session_to_memory(session("ada", event("e1", text("red"), blob(png("red"), "image/png")),
                                                      event("e2", text("green")))))
    asyncio.run(service.delete_memory(app_name="app", user_id="ada", memory_id="e1"))
    assert [m.id for m in search(service, "red")] == ["e2"]
    asyncio.run(service.add_session_to_memory(session("ada", event("e1", text("red")), event("e2", text("green")))))
    assert [m.id for m in search(service, "red")] == ["e2"]  # not brought back
    asyncio.run(service.add_events_to_memory(app_name="app", user_id="ada", events=[event("e5", text("blue"))],
                                             custom_metadata={"source": "chat"}))
    asyncio.run(service.add_memory(app_name="app", user_id="ada", memories=[
        MemoryEntry(id="m1", content=types.Content(role="model", parts=[text("a blue whale")]))]))
    got = {m.id: m for m in search(service, "blue")}
    assert {"e5", "m1"} <= set(got) and got["e5"].custom_metadata["source"] == "chat"
    assert got["m1"].content.role == "model"


def test_namespaces_of_odd_names_are_hashed():
    assert user_namespace("app", "ada@example.com") == "adk:app:ada@example.com"
    odd = user_namespace("my app", "Zoë/1")
    assert odd.startswith("adk:") and len(odd) == 36


def test_two_app_user_pairs_never_share_a_namespace():
    """"a:b" + "c" and "a" + "b:c" were both adk:a:b:c (one tenant read the other's events), and a
    user named "ada.deleted" read user ada's deleted-event records."""
    pairs = [("a:b", "c"), ("a", "b:c"), ("app", "ada"), ("app", "ada.deleted"), ("app.deleted", "ada"),
             ("app", "x:y"), ("app:x", "y")]
    spaces = [user_namespace(app, user) for app, user in pairs]
    assert len(set(spaces)) == len(pairs)
    tombstones = {ns + ".deleted" for ns in spaces}
    assert not tombstones & set(spaces)
