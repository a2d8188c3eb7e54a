"""Where users already are: a client of the HTTP API, the MCP server over it, LangChain and LlamaIndex retrievers."""
