"""API keys (environment and keys file, collection scopes, constant-time lookup) and token-bucket limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.auth import KeyRing, RateLimiter, load_keys, parse_key_entry
from api.settings import ApiSettings
from rag.errors import InputError


def test_keys_from_the_environment_and_a_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nfile-key news sports  # two collections\n\nopen-key\n")
    settings = ApiSettings(_env_file=None, api_keys="env-key, scoped:papers|notes", api_keys_file=str(keys_file))  # type: ignore[call-arg]
    ring = KeyRing(load_keys(settings))
    assert len(ring.keys) == 4
    scoped, filed, opened = ring.identify("scoped"), ring.identify("file-key"), ring.identify("open-key")
    assert scoped is not None and scoped.collections == frozenset({"papers", "notes"})
    assert filed is not None and filed.may_use("sports") and not filed.may_use("papers")
    assert opened is not None and opened.collections is None and opened.may_use("anything")
    assert ring.identify("env-key") is not None and ring.identify("env-ke") is None and ring.identify("") is None
    assert scoped.key_id != filed.key_id and "scoped" not in scoped.key_id and len(scoped.key_id) == 12


def test_key_roles_from_the_environment_and_a_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("ops-key admin\nfile-reader read news\n")
    settings = ApiSettings(_env_file=None, api_keys="w, r:read, nr:news:read", api_keys_file=str(keys_file))  # type: ignore[call-arg]
    ring = KeyRing(load_keys(settings))
    roles = {name: ring.identify(name) for name in ("w", "r", "nr", "ops-key", "file-reader")}
    assert {n: k.role for n, k in roles.items() if k} == {
        "w": "write", "r": "read", "nr": "read", "ops-key": "admin", "file-reader": "read"
    }  # fmt: skip
    assert roles["nr"] is not None and roles["nr"].collections == frozenset({"news"}) and not roles["nr"].may_write
    assert roles["r"] is not None and roles["r"].collections is None
    with pytest.raises(InputError, match="more than one role"):
        parse_key_entry("k:read:admin")


def test_bad_key_configuration_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        parse_key_entry(":papers")
    settings = ApiSettings(_env_file=None, api_keys_file=str(tmp_path / "missing"))  # type: ignore[call-arg]
    with pytest.raises(InputError, match="cannot read the API keys file"):
        load_keys(settings)


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=20.0, burst=3)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert 0 < wait <= 1 / 20.0 + 1e-6  # one token comes back every 1/rate seconds
    assert limiter.acquire("b") == 0.0  # buckets are per client
    time.sleep(wait + 0.01)
    assert limiter.acquire("a") == 0.0
    assert RateLimiter(rate=0, burst=1).acquire("a") == 0.0  # 0 turns limiting off
