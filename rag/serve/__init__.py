"""`rag serve`: the HTTP JSON API and the web page over one loaded corpus (rag.serve.app), and the light client
`rag ask` uses when RAG_SERVER_URL names a running server (rag.serve.client, which imports no model)."""
