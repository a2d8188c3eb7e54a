"""The chat page: ``rag ui`` (``streamlit run ui/app.py``). Talks to the API over HTTP only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import streamlit as st

from connect.client import ApiClient, ApiRequestError, ApiUnavailable
from ui.settings import UiSettings
from ui.views import citation_label, evidence_for, filters_payload, inspector_rows, stage_timings, status_note

ALL = "(all collections)"


@st.cache_resource
def _client(api_url: str, api_key: str, timeout_s: float) -> ApiClient:
    return ApiClient(api_url, api_key, timeout_s)


def show_answer(message: dict[str, Any], key: str) -> None:
    """An assistant turn: the text, numbered citations that open their evidence, and the inspector."""
    if message.get("error"):
        st.warning(message["error"])
    if message.get("content"):
        st.markdown(message["content"])
    answer = message.get("answer") or {}
    if note := status_note(answer):
        st.caption(note)
    citations = answer.get("citations", [])
    if citations:
        st.markdown("**Sources**")
        for citation in citations:
            with st.expander(citation_label(citation)):
                evidence = evidence_for(answer, citation)
                st.caption(
                    f"{citation['source'] or 'no source'} · {citation['date'] or 'undated'} · "
                    f"{citation.get('collection', '')}/{citation['doc_id']}"
                )
                if evidence is not None:
                    st.markdown(f"**{evidence['title']}**" if evidence["title"] else "")
                    st.markdown(f"> {evidence['highlight'] or evidence['snippet']}")
                if citation.get("url"):
                    st.markdown(f"[Open the source]({citation['url']})")
    hits = message.get("hits") or answer.get("hits") or []
    if hits:
        with st.expander(f"Retrieval inspector ({len(hits)} hits)"):
            stages = message.get("stages") or answer.get("stages") or []
            st.dataframe(inspector_rows(hits, stages), hide_index=True, key=f"hits-{key}")
            timings = stage_timings(message.get("timings") or answer.get("timings") or {})
            if timings:
                st.caption("Stage timings (ms)")
                st.bar_chart(timings, horizontal=True)


def sidebar(client: ApiClient, settings: UiSettings) -> dict[str, Any]:
    st.sidebar.title("rag-late")
    st.sidebar.caption(f"API: {settings.api_url}")
    collections: list[str] = []
    try:
        ready = client.ready()
        if ready.get("ready"):
            st.sidebar.success(f"index ready: {ready.get('documents', 0)} documents")
        else:
            st.sidebar.error(f"the API is up but not ready: {ready.get('message', '')}")
        collections = [c["name"] for c in client.collections()]
    except ApiUnavailable as exc:
        st.sidebar.error(f"{exc}. Start it with `rag serve --index DIR` or set RAG_API_URL.")
    except ApiRequestError as exc:
        st.sidebar.error(f"the API refused: {exc.message}")
    collection = st.sidebar.selectbox("Collection", [ALL, *collections])
    top_k = st.sidebar.slider("Top-k passages", 1, 20, 5)
    generator = st.sidebar.radio("Generator", ["local", "remote", "none (retrieval only)"], horizontal=False)
    with st.sidebar.expander("Filters"):
        sources = st.text_input("Sources (comma-separated)")
        date_from = st.text_input("From date (YYYY-MM-DD)")
        date_to = st.text_input("To date (YYYY-MM-DD)")
    upload_form(client, collections)
    payload: dict[str, Any] = {"top_k": top_k, "generate": generator != "none (retrieval only)"}
    if payload["generate"]:
        payload["generator"] = generator
    if collection != ALL:
        payload["collection"] = collection
    filters = filters_payload(sources, date_from, date_to)
    if filters:
        payload["filters"] = filters
    return payload


def upload_form(client: ApiClient, collections: list[str]) -> None:
    with st.sidebar.expander("Add documents"):
        kinds = ["jsonl", "json", "txt", "md", "html", "pdf", "docx", "pptx", "xlsx"]
        upload = st.file_uploader(f"File ({', '.join('.' + k for k in kinds)})", type=kinds)
        target = st.text_input("Into collection", value=collections[0] if collections else "default")
        if st.button("Add to the index", disabled=upload is None) and upload is not None:
            try:
                job = client.upload(upload.name, upload.getvalue(), target)
                bar = st.progress(0.0, text="queued")
                while job["status"] in ("queued", "running"):
                    time.sleep(0.5)
                    job = client.job(job["id"])
                    total = job["passages_total"] or 1
                    bar.progress(
                        min(1.0, job["passages_done"] / total),
                        text=f"{job['status']}: {job['passages_done']}/{job['passages_total']} passages",
                    )
                if job["status"] == "succeeded":
                    bar.progress(1.0, text="done")
                    st.success(f"{job['result']['added']} added, {job['result']['replaced']} replaced")
                else:
                    st.error(f"the upload failed: {job['error']}")
            except (ApiUnavailable, ApiRequestError) as exc:
                st.error(str(exc))


def ask(client: ApiClient, question: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Stream one answer into the page; returns the message to keep in the history."""
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    request = {**payload, "question": question}

    def tokens() -> Iterator[str]:
        for event in client.stream(request):
            if event.kind == "retrieval":
                message["hits"], message["timings"] = event.data["hits"], event.data["timings"]
                message["stages"] = event.data["stages"]
            elif event.kind == "token":
                yield event.data["text"]
            elif event.kind == "answer":
                message["answer"] = event.data
            elif event.kind == "error":
                message["error"] = f"The generator failed ({event.data['message']}); the retrieved passages are below."

    try:
        if request["generate"]:
            message["content"] = st.write_stream(tokens()) or ""
        else:
            answer = client.query(request)
            message["answer"], message["hits"], message["timings"] = answer, answer["hits"], answer["timings"]
            message["stages"] = answer["stages"]
            message["content"] = f"Retrieval only: {len(answer['hits'])} passages."
    except ApiUnavailable as exc:
        message["error"] = f"{exc}. Your question was not answered; try again once the API is back."
    except ApiRequestError as exc:
        message["error"] = f"The API refused the question ({exc.status}): {exc.message}"
    if isinstance(message["content"], list):
        message["content"] = "".join(str(part) for part in message["content"])
    if message.get("answer") and request["generate"]:
        message["content"] = message["answer"]["answer"]  # the checked answer is what the history keeps
    return message


def main() -> None:
    st.set_page_config(page_title="rag-late chat", page_icon="🔎", layout="wide")
    settings = UiSettings()
    client = _client(settings.api_url, settings.api_key, settings.api_timeout_s)
    payload = sidebar(client, settings)
    st.title("Ask your documents")
    history: list[dict[str, Any]] = st.session_state.setdefault("messages", [])
    for i, message in enumerate(history):
        with st.chat_message(message["role"]):
            if message["role"] == "user":
                st.markdown(message["content"])
            else:
                show_answer(message, str(i))
    question = st.chat_input("Ask a question")
    if question:
        history.append({"role": "user", "content": question})
        with st.chat_message("user"):
            st.markdown(question)
        with st.chat_message("assistant"):
            message = ask(client, question, payload)
            show_answer({**message, "content": ""} if message.get("content") else message, str(len(history)))
        history.append(message)


main()
