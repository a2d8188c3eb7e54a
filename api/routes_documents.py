"""Documents, collections and jobs. Every change is a background job (``202`` + ``/jobs/{id}``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import AppState, Caller, reader, state, writer
from api.errors import ApiError
from api.jobs import Job, JobNotCancellable
from api.routes_query import ERRORS
from api.schemas import NAME_PATTERN, CollectionIn, CollectionOut, DocumentOut, DocumentsIn, JobOut
from indexer.parsing import documents_from_upload
from indexer.writer import validate_documents
from rag.index.snapshot import Snapshot
from rag.index.store import StoredDocument
from rag.objects import Document

router = APIRouter()

UPLOAD_DOC = (
    "Add or replace documents, as JSON (`DocumentsIn`) or as a multipart file upload (`file`: .jsonl, .json, "
    ".txt, .md, .html, .pdf, .docx, .pptx or .xlsx; `collection`: form field). A PDF's or a deck's pages "
    "are kept: hits and citations name the page. A file with nothing to index (empty, a scanned PDF with no "
    "text layer, an encrypted PDF) is refused with 400 naming it. Answers `202` with a job to poll at "
    "`/jobs/{id}`; the documents are searchable once the job has `succeeded`. A document is (collection, "
    "id): one whose id exists in the same collection is replaced; other collections are never touched."
)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "collection": {"type": "string", "pattern": NAME_PATTERN, "default": "default"},
                    },
                }
            },
        },
    }
}


def job_out(job: Job) -> dict[str, Any]:
    body = asdict(job)
    body.pop("key_id")
    body.pop("document_ids")
    return body


async def _documents_from_request(request: Request) -> tuple[str, list[Document]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        if len(form.getlist("file")) > 1:  # which one did the client mean? refuse rather than guess
            raise ApiError(422, "invalid_request", "send one 'file' part per upload")
        upload = form.get("file")
        collection = form.get("collection") or "default"
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "the upload needs a 'file' part")
        if not isinstance(collection, str):
            raise ApiError(422, "invalid_request", "'collection' must be a form field, not a file")
        try:
            parsed = CollectionIn(name=collection)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", f"collection: {exc.errors()[0]['msg']}") from exc
        documents = documents_from_upload(await upload.read(), upload.filename or "upload")
        return parsed.name, documents
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    try:
        body = DocumentsIn.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"]) from exc
    return body.collection, [Document(**d.model_dump()) for d in body.documents]


@router.post(
    "/documents",
    status_code=202,
    response_model=JobOut,
    responses={**ERRORS, 415: {"model": ERRORS[400]["model"]}},
    description=UPLOAD_DOC,
    openapi_extra=UPLOAD_BODY,
    tags=["documents"],
)
async def add_documents(
    request: Request, response: Response, caller: Caller = Depends(writer), app: AppState = Depends(state)
) -> Any:
    collection, documents = await _documents_from_request(request)
    caller.check_collection(collection)
    validate_documents(documents)  # the writer checks it again; answered now rather than in a failed job
    limit = app.settings.api_max_document_bytes
    for doc in documents:  # one huge document would hold the only job worker for minutes
        size = len(doc.text.encode("utf-8"))
        if size > limit:
            raise ApiError(
                413,
                "too_large",
                f"document {doc.id[:100]!r} has {size:,} bytes of text; one document may have {limit:,} "
                "(RAG_API_MAX_DOCUMENT_BYTES): split it into several",
            )
    job = app.jobs.submit_upsert(documents, collection, caller.key.key_id if caller.key else None)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_out(job)


def _live_document(
    app: AppState, caller: Caller, collection: str | None, doc_id: str
) -> tuple[StoredDocument, Snapshot]:
    """The caller's document: (collection, id), or an id that names one document among the collections
    the caller may use. Anything outside them answers 404, as a missing document does: whether a
    document exists where the caller may not look is not the caller's to learn."""
    missing = ApiError(404, "not_found", f"no document {doc_id[:100]!r}")
    if "\x00" in doc_id or len(doc_id) > 512:  # no stored id has these; PostgreSQL refuses NUL outright
        raise missing
    pipeline = app.service.pipeline()
    snapshot = pipeline.snapshot
    if collection is None:
        places = snapshot.store.collections_of([doc_id], snapshot.generation).get(doc_id, [])
        visible = [c for c in places if caller.key is None or caller.key.may_use(c)]
        if len(visible) > 1:
            raise ApiError(
                409,
                "ambiguous",
                f"document {doc_id!r} is in collections {', '.join(visible)}: "
                "use /collections/{collection}/documents/{id}",
            )
        if not visible:
            raise missing
        collection = visible[0]
    elif caller.key is not None and not caller.key.may_use(collection):
        raise missing
    doc = snapshot.store.get_document(collection, doc_id, snapshot.generation)
    if doc is None:
        raise missing
    return doc, snapshot


def _document_body(doc: StoredDocument, snapshot: Snapshot) -> dict[str, Any]:
    chunks = snapshot.store.document_chunks(doc.collection, doc.id, snapshot.generation)
    return {
        **{k: v for k, v in asdict(doc).items() if k != "content_hash"},
        "chunks": [{"id": c.id, "ordinal": c.ordinal, "text": c.text, "page": c.page} for c in chunks],
        "generation": snapshot.generation,
    }


def _delete_job(app: AppState, caller: Caller, doc: StoredDocument, response: Response) -> dict[str, Any]:
    caller.check_collection(doc.collection)
    job = app.jobs.submit_delete(doc.collection, [doc.id], caller.key.key_id if caller.key else None)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_out(job)


@router.get(
    "/collections/{name}/documents/{doc_id:path}", response_model=DocumentOut, responses=ERRORS, tags=["documents"]
)
def get_collection_document(
    name: str, doc_id: str, caller: Caller = Depends(reader), app: AppState = Depends(state)
) -> Any:
    return _document_body(*_live_document(app, caller, name, doc_id))


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    responses={**ERRORS, 409: ERRORS[400]},
    tags=["documents"],
    description="The document with this id, where exactly one collection the caller may use has one "
    "(409 where several do: use `/collections/{name}/documents/{id}`).",
)
def get_document(doc_id: str, caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    return _document_body(*_live_document(app, caller, None, doc_id))


@router.delete(
    "/collections/{name}/documents/{doc_id:path}",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    tags=["documents"],
)
def delete_collection_document(
    name: str, doc_id: str, response: Response, caller: Caller = Depends(writer), app: AppState = Depends(state)
) -> Any:
    doc, _ = _live_document(app, caller, name, doc_id)
    return _delete_job(app, caller, doc, response)


@router.delete(
    "/documents/{doc_id:path}",
    status_code=202,
    response_model=JobOut,
    responses={**ERRORS, 409: ERRORS[400]},
    tags=["documents"],
    description="Delete the document with this id where exactly one collection the caller may use has one.",
)
def delete_document(
    doc_id: str, response: Response, caller: Caller = Depends(writer), app: AppState = Depends(state)
) -> Any:
    doc, _ = _live_document(app, caller, None, doc_id)
    return _delete_job(app, caller, doc, response)


def _callers_job(app: AppState, caller: Caller, job_id: str) -> Job:
    """The job, if the caller submitted it (or is an admin); anyone else learns nothing of it."""
    job = app.jobs.get(job_id)
    if job is None or not caller.may_see_job(job.key_id):
        raise ApiError(404, "not_found", f"no job {job_id[:64]!r}")
    return job


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS, tags=["documents"])
def get_job(job_id: str, caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    return job_out(_callers_job(app, caller, job_id))


@router.delete(
    "/jobs/{job_id}",
    status_code=202,
    response_model=JobOut,
    responses={**ERRORS, 409: ERRORS[400]},
    tags=["documents"],
    description="Cancel a job: a queued one at once, a running upsert at its next encoded batch (poll it until "
    "`cancelled`). The index stays at its last commit.",
)
def cancel_job(job_id: str, caller: Caller = Depends(writer), app: AppState = Depends(state)) -> Any:
    job = _callers_job(app, caller, job_id)
    try:
        return job_out(app.jobs.cancel(job.id))
    except JobNotCancellable as exc:
        raise ApiError(409, "conflict", str(exc)) from exc


@router.get("/collections", response_model=list[CollectionOut], responses=ERRORS, tags=["collections"])
def list_collections(caller: Caller = Depends(reader), app: AppState = Depends(state)) -> Any:
    pipeline = app.service.pipeline()
    counts = app.service.store.collection_counts(pipeline.snapshot.generation)
    return [
        {"name": name, "documents": n} for name, n in counts.items() if caller.key is None or caller.key.may_use(name)
    ]


@router.post(
    "/collections",
    status_code=201,
    response_model=CollectionOut,
    responses={**ERRORS, 409: ERRORS[400]},
    tags=["collections"],
)
def create_collection(body: CollectionIn, caller: Caller = Depends(writer), app: AppState = Depends(state)) -> Any:
    caller.check_collection(body.name)
    if not app.service.store.create_collection(body.name):
        raise ApiError(409, "conflict", f"collection {body.name!r} exists already")
    return {"name": body.name, "documents": 0}


@router.delete("/collections/{name}", status_code=202, response_model=JobOut, responses=ERRORS, tags=["collections"])
def delete_collection(
    name: str, response: Response, caller: Caller = Depends(writer), app: AppState = Depends(state)
) -> Any:
    caller.check_collection(name)
    if name not in app.service.store.collections():
        raise ApiError(404, "not_found", f"no collection {name!r}")
    job = app.jobs.submit_delete_collection(name, caller.key.key_id if caller.key else None)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_out(job)
