"""Adapters that plug aimemory into agent frameworks; each imports its framework only when used.

* :mod:`aimemory.integrations.langchain` — ``AimemoryVectorStore``, a LangChain ``VectorStore``
  (the ``langchain`` extra); mem0 uses it through its ``langchain``
  vector-store provider.
* :mod:`aimemory.integrations.langgraph` — ``AimemoryStore``, a LangGraph ``BaseStore`` for
  long-term agent memory (``[langgraph]``).
* :mod:`aimemory.integrations.llamaindex` — ``AimemoryVectorStore``, a LlamaIndex vector store
  (``[llamaindex]``).
* :mod:`aimemory.integrations.adk` — ``AimemoryMemoryService``, a Google ADK memory service whose
  image and audio parts become image and audio memories (``[adk]``).

:mod:`aimemory.integrations.common` holds what they share (opening a store, upsert by id, deleting
ids that may be missing).
"""
