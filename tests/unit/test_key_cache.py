"""Key-cache bookkeeping of `IdentityStore` (no database: only the in-memory part).

The behaviour against PostgreSQL (notifications, a stalled or lost listener) is in
tests/integration/test_key_revocation.py."""

from __future__ import annotations

from typing import Any, cast

import pytest

from nervewatch.identity import store as store_module
from nervewatch.identity.store import IdentityStore, Principal, hash_key


def make() -> IdentityStore:
    return IdentityStore(cast(Any, None))


def principal(n: int) -> Principal:
    return Principal("t", f"key_{n:016x}", frozenset({"care"}))


def test_a_notification_evicts_the_key_and_every_miss_but_nothing_else() -> None:
    s = make()
    s._store(hash_key("a"), 0.0, principal(1), None)
    s._store(hash_key("b"), 0.0, principal(2), None)
    s._store(hash_key("unknown"), 0.0, None, None)
    assert hash_key("unknown") in s._misses
    epoch = s._epoch
    s.key_changed(principal(1).key_id)
    assert hash_key("a") not in s._cache and not s._misses
    assert hash_key("b") in s._cache and s._digests == {principal(2).key_id: hash_key("b")}
    assert s._epoch > epoch  # a lookup that ran meanwhile is not stored
    s.key_changed("key_of_another_process")  # unknown here: harmless
    assert hash_key("b") in s._cache


def test_the_index_follows_the_lru_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CACHE_MAX", 3)
    s = make()
    for n in range(5):
        s._store(hash_key(str(n)), 0.0, principal(n), None)
    assert len(s._cache) == 3
    assert set(s._digests) == {principal(n).key_id for n in (2, 3, 4)}


def test_misses_are_bounded_apart_from_valid_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "CACHE_MAX", 3)
    s = make()
    s._store(hash_key("valid"), 0.0, principal(1), None)
    for n in range(10):  # a spray of unknown keys
        s._store(hash_key(f"random-{n}"), 0.0, None, None)
    assert len(s._misses) == 3 and hash_key("valid") in s._cache


def test_a_key_that_became_unknown_leaves_the_cache_and_its_index() -> None:
    s = make()
    digest = hash_key("a")
    s._store(digest, 0.0, principal(1), None)
    s._store(digest, 1.0, None, None)  # looked up again: revoked
    assert digest not in s._cache and digest in s._misses and s._digests == {}
    s._store(digest, 2.0, principal(1), None)  # and valid again
    assert digest in s._cache and digest not in s._misses


def test_forget_and_untrust() -> None:
    s = make()
    s._store(hash_key("a"), 0.0, principal(1), None)
    s._store(hash_key("b"), 0.0, None, None)
    s._trusted_until = float("inf")
    assert s.cache_trusted()
    s._untrust()
    assert not s.cache_trusted() and not s._cache and not s._digests and not s._misses
