"""A LangChain retriever over ``rag serve``: ``RagRetriever(api_url=...).invoke("question")``.

Each hit becomes a ``langchain_core.documents.Document`` whose ``page_content`` is the passage and whose
metadata holds the document's fields, its page, the final score, every stage's rank and score, and a
``citation`` label. Needs the ``langchain`` extra (``langchain-core``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from connect.client import ApiClient
from connect.hits import hit_metadata, search_payload
from connect.settings import DEFAULT_API_URL


class RagRetriever(BaseRetriever):
    """Hybrid retrieval with MaxSim reranking, from a running ``rag serve``."""

    api_url: str = DEFAULT_API_URL
    api_key: str = ""
    collection: str | None = None
    top_k: int = 5
    timeout_s: float = 60.0

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        client = ApiClient(self.api_url, self.api_key, self.timeout_s)
        try:
            body: dict[str, Any] = client.query(search_payload(query, self.collection, self.top_k))
        finally:
            client.close()
        return [Document(page_content=h["text"], metadata=hit_metadata(h), id=h["chunk_id"]) for h in body["hits"]]
