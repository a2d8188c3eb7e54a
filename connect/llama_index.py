"""A LlamaIndex retriever over ``rag serve``: ``RagRetriever(api_url=...).retrieve("question")``.

Each hit becomes a ``NodeWithScore`` (a ``TextNode`` with the passage, id = the chunk id) scored by the
final stage; the node's metadata is the LangChain retriever's (:func:`connect.hits.hit_metadata`).
Needs the ``llama-index`` extra (``llama-index-core``).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from connect.client import ApiClient
from connect.hits import hit_metadata, search_payload
from connect.settings import DEFAULT_API_URL


class RagRetriever(BaseRetriever):
    """Hybrid retrieval with MaxSim reranking, from a running ``rag serve``."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        api_key: str = "",
        collection: str | None = None,
        top_k: int = 5,
        timeout_s: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_url, self.api_key, self.collection = api_url, api_key, collection
        self.top_k, self.timeout_s = top_k, timeout_s

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        client = ApiClient(self.api_url, self.api_key, self.timeout_s)
        try:
            body: dict[str, Any] = client.query(search_payload(query_bundle.query_str, self.collection, self.top_k))
        finally:
            client.close()
        return [
            NodeWithScore(node=TextNode(id_=h["chunk_id"], text=h["text"], metadata=hit_metadata(h)), score=h["score"])
            for h in body["hits"]
        ]
