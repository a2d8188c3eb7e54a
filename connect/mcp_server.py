"""``rag mcp``: the service as MCP tools (the official ``mcp`` SDK), over stdio or streamable HTTP.

The tools call ``rag serve`` through its HTTP API, so keys, collections and limits are the API's own:
``search``, ``ask`` and ``get_document`` read (no write key needed where the server needs none for
queries); ``add_documents`` writes and needs a key whose role may write. Over stdio the key is the
process's ``RAG_API_KEY``; over HTTP it is the key the MCP client sends (``Authorization: Bearer`` or
``X-API-Key``), never the process's, so an HTTP endpoint does not lend its own rights to whoever reaches it.
"""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from connect.client import ApiClient, ApiRequestError, ApiUnavailable
from connect.hits import hit_metadata, search_payload, where_from
from connect.settings import ClientSettings

Transport = Literal["stdio", "http"]
SNIPPET_CHARS = 600  # of each hit's text: enough to judge it, small enough for a model's context

INSTRUCTIONS = (
    "Search a document collection (hybrid dense + BM25 retrieval, MaxSim reranking) and answer questions "
    "from it with numbered citations. Use `search` to find passages, `ask` for a short cited answer, "
    "`get_document` to read a whole document by the id a hit names."
)


def _hit(hit: dict[str, Any], rank: int) -> dict[str, Any]:
    text = hit["text"]
    snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
    return {"rank": rank, **hit_metadata(hit), "snippet": snippet}


def _citation(citation: dict[str, Any]) -> dict[str, Any]:
    keep = ("number", "doc_id", "chunk_id", "collection", "title", "url", "source", "date", "page")
    fields = {k: citation.get(k) for k in keep}
    return {**fields, "citation": where_from(fields)}


def build_server(settings: ClientSettings | None = None, transport: Transport = "stdio") -> MCPServer:
    """The MCP server over the API at ``settings.api_url``."""
    settings = settings or ClientSettings()

    def client(ctx: Context) -> ApiClient:
        key = settings.api_key if transport == "stdio" else _presented_key(ctx)
        return ApiClient(settings.api_url, key, settings.api_timeout_s)

    def call(ctx: Context, what: str, fn: Any) -> Any:
        api = client(ctx)
        try:
            return fn(api)
        except ApiRequestError as exc:
            raise ToolError(f"{what}: the API answered {exc.status}: {exc.message}") from exc
        except ApiUnavailable as exc:
            raise ToolError(f"{what}: {exc}") from exc
        finally:
            api.close()

    server: MCPServer = MCPServer("rag-late", instructions=INSTRUCTIONS, version="0.1.0")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def search(query: str, ctx: Context, collection: str | None = None, top_k: int = 5) -> dict[str, Any]:
        """Find the passages that best match `query`, best first. Each hit names its document (`doc_id`,
        `title`, `url`, `page`), gives a snippet, its final score, and its rank and score on every
        retrieval path (dense, bm25, rrf, maxsim). `collection`: search only that one."""
        body = call(ctx, "search", lambda api: api.query(search_payload(query, collection, top_k)))
        return {"query": query, "hits": [_hit(h, i) for i, h in enumerate(body["hits"], start=1)]}

    @server.tool(annotations=read_only)
    def ask(question: str, ctx: Context, collection: str | None = None, top_k: int | None = None) -> dict[str, Any]:
        """A short answer to `question` from the collection, citing its evidence as [n]; `citations` says
        what each number is. `status` is cited, uncited, or abstained ("I don't know." when the evidence
        lacks the answer)."""
        payload = {"question": question, "top_k": top_k, "generate": True, "collection": collection}
        body = call(ctx, "ask", lambda api: api.query(payload))
        return {
            "answer": body["answer"],
            "status": body["status"],
            "citations": [_citation(c) for c in body["citations"]],
        }

    @server.tool(annotations=read_only)
    def get_document(doc_id: str, ctx: Context, collection: str | None = None) -> dict[str, Any]:
        """The whole document `doc_id` (as a hit names it): its fields and its passages in order. Name the
        `collection` where several hold a document with this id."""
        body: dict[str, Any] = call(ctx, "get_document", lambda api: api.document(doc_id, collection))
        return body

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
    def add_documents(
        documents: list[dict[str, Any]], ctx: Context, collection: str = "default", wait: bool = True
    ) -> dict[str, Any]:
        """Add or replace documents (each an object with `id` and `text`, optionally `title`, `source`,
        `url`, `date`, `metadata`) in `collection`. Needs an API key that may write. With `wait`, answers
        once the documents are searchable; else at once, with the job to follow."""

        def submit(api: ApiClient) -> dict[str, Any]:
            job = api.add_documents(documents, collection)
            return api.wait(job["id"]) if wait else job

        job: dict[str, Any] = call(ctx, "add_documents", submit)
        if job["status"] == "failed":
            raise ToolError(f"add_documents: the job failed: {job.get('error') or job.get('message')}")
        return job

    return server


def _presented_key(ctx: Context) -> str:
    headers = ctx.headers or {}
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return headers.get("x-api-key", "").strip()


def run(settings: ClientSettings, transport: Transport, host: str, port: int) -> None:
    server = build_server(settings, transport)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port, streamable_http_path="/mcp")
