"""The query path and the index kinds, as a library (no web code)."""
