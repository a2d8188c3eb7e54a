"""Streamlit chat front end; talks to the API over HTTP only (never opens an index)."""
