"""Request dependencies: the app's state, who is asking, and what they may touch."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKey, KeyRing, RateLimiter, retry_after_header
from api.errors import ApiError
from api.index_service import IndexService
from api.jobs import JobRunner
from api.metrics import Metrics
from api.settings import ApiSettings

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (or send it as a Bearer token)."
)
BEARER = HTTPBearer(auto_error=False, description="An API key as a Bearer token.")


@dataclass
class AppState:
    settings: ApiSettings
    service: IndexService
    jobs: JobRunner
    keys: KeyRing
    limiter: RateLimiter
    metrics: Metrics
    auth_failures: RateLimiter


def app_state(request: Request) -> AppState:
    found: AppState = request.app.state.rag
    return found


# The dependencies are coroutines because nothing in them blocks: FastAPI runs a plain ``def`` dependency
# in its thread pool, a hop there and back per dependency and request that cost the event loop more
# than the work itself under load (docs/benchmarks.md, stop 53).
async def state(request: Request) -> AppState:
    return app_state(request)


@dataclass(frozen=True)
class Caller:
    key: ApiKey | None
    client: str  # the key's id, or the client's address: what rate limits count by

    def may_see_job(self, key_id: str | None) -> bool:
        """A job is its submitter's (and an admin's) to see and cancel."""
        return self.key is not None and (self.key.role == "admin" or self.key.key_id == key_id)

    def check_collection(self, collection: str) -> None:
        if self.key is not None and not self.key.may_use(collection):
            raise ApiError(403, "forbidden", f"this API key may not use collection {collection!r}")

    def default_collection(self, collection: str | None) -> str | None:
        """The collection a query searches: the one named, or a limited key's only collection."""
        if collection is not None:
            self.check_collection(collection)
            return collection
        if self.key is None or self.key.collections is None:
            return None
        if len(self.key.collections) == 1:
            return next(iter(self.key.collections))
        raise ApiError(
            403, "forbidden", f"this API key is limited to {sorted(self.key.collections)}: name a collection"
        )


def _identify(request: Request, header_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> Caller:
    app = app_state(request)
    presented = header_key or (bearer.credentials if bearer is not None else None)
    key = None
    address = f"ip:{request.client.host if request.client else 'unknown'}"
    if presented:
        key = app.keys.identify(presented)
        if key is None:  # guessing keys costs the address its own, small allowance
            _limit(app.auth_failures, address, "too many invalid API keys from this address")
            raise ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
    client = f"key:{key.key_id}" if key else address
    _limit(app.limiter, client, f"more than {app.limiter.rate:g} requests/s from this client")
    return Caller(key, client)


def _limit(limiter: RateLimiter, client: str, why: str) -> None:
    """429 with Retry-After once ``client`` has used up its bucket."""
    wait = limiter.acquire(client)
    if wait > 0:
        raise ApiError(429, "rate_limited", f"{why}; retry in {wait:.1f} s", {"Retry-After": retry_after_header(wait)})


async def reader(
    request: Request,
    header_key: str | None = Security(API_KEY_HEADER),
    bearer: HTTPAuthorizationCredentials | None = Security(BEARER),
) -> Caller:
    """Anyone, unless the server requires a key for queries; a key that is sent must be valid."""
    caller = _identify(request, header_key, bearer)
    if caller.key is None and app_state(request).settings.api_require_key_for_queries:
        raise ApiError(
            401, "unauthorized", "this server needs an API key for queries (X-API-Key)", {"WWW-Authenticate": "Bearer"}
        )
    return caller


async def writer(caller: Caller = Depends(reader)) -> Caller:
    """Writes always need a valid key whose role may write."""
    if caller.key is None:
        raise ApiError(
            401,
            "unauthorized",
            "changing the index needs an API key (X-API-Key); "
            "the server takes its keys from RAG_API_KEYS or RAG_API_KEYS_FILE",
            {"WWW-Authenticate": "Bearer"},
        )
    if not caller.key.may_write:
        raise ApiError(403, "forbidden", "this API key may only read")
    return caller
