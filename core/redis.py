"""A small key-value interface with a Redis implementation and an in-process fallback."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis as redis_lib


class StoreUnavailable(Exception):
    """The key-value store could not be reached."""


class KeyValueStore(Protocol):
    prefix: str

    def incr(self, key: str, ttl: int) -> int: ...
    def decr(self, key: str) -> int: ...
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl: int, *, only_if_absent: bool = False) -> bool: ...
    def delete(self, *keys: str) -> None: ...
    def take(self, key: str, *, mark: tuple[str, str, int] | None = None) -> str | None: ...
    def ttl(self, key: str) -> int: ...
    def ping(self) -> bool: ...
    def add_to_hash(self, key: str, counts: dict[str, int], amounts: dict[str, float]) -> None: ...
    def read_hash(self, key: str) -> dict[str, str]: ...


# Decrement a live counter, never below zero, and never bring back one that expired.
_DECR_SCRIPT = """
local value = tonumber(redis.call('get', KEYS[1]) or '0')
if value <= 0 then return 0 end
return redis.call('decr', KEYS[1])
"""


_TAKE_SCRIPT = """
local value = redis.call('getdel', KEYS[1])
if value then redis.call('set', KEYS[2], ARGV[1] .. '\\n' .. value, 'EX', ARGV[2]) end
return value
"""


class RedisStore:
    """Keys in Redis; every call fails with StoreUnavailable when Redis is down."""

    kind = "redis"

    def __init__(self, url: str, prefix: str = ""):
        self.url = url
        self.client = redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                               decode_responses=True)
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis_lib.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def incr(self, key: str, ttl: int) -> int:
        """Increment a counter; the window starts at the first increment."""
        def run():
            pipe = self.client.pipeline()
            pipe.incr(self._k(key))
            pipe.expire(self._k(key), ttl, nx=True)
            return pipe.execute()[0]
        return int(self._call(run))

    def decr(self, key: str) -> int:
        """Take one off a live counter (not below zero); its window is kept."""
        return int(self._call(self.client.eval, _DECR_SCRIPT, 1, self._k(key)))

    def get(self, key: str) -> str | None:
        """Return the value or None."""
        return self._call(self.client.get, self._k(key))

    def set(self, key: str, value: str, ttl: int, *, only_if_absent: bool = False) -> bool:
        """Set a value with a time to live; with only_if_absent, tell whether it was set."""
        return bool(self._call(self.client.set, self._k(key), value, ex=ttl, nx=only_if_absent))

    def delete(self, *keys: str) -> None:
        """Remove keys."""
        if keys:
            self._call(self.client.delete, *(self._k(k) for k in keys))

    def take(self, key: str, *, mark: tuple[str, str, int] | None = None) -> str | None:
        """Return a value and remove it in one step: of two callers, only one gets it.

        With `mark` (key, note, ttl), the same step leaves `note + "\n" + value` under that key, so
        later callers can learn who took it.
        """
        if mark is None:
            return self._call(self.client.getdel, self._k(key))
        mark_key, note, ttl = mark
        return self._call(self.client.eval, _TAKE_SCRIPT, 2, self._k(key), self._k(mark_key), note, ttl)

    def ttl(self, key: str) -> int:
        """Return the seconds a key has left (0 when absent)."""
        return max(0, int(self._call(self.client.ttl, self._k(key))))

    def add_to_hash(self, key: str, counts: dict[str, int], amounts: dict[str, float]) -> None:
        """Add whole and fractional amounts to a hash's fields, in one round trip."""
        def run():
            pipe = self.client.pipeline(transaction=False)
            for name, value in counts.items():
                pipe.hincrby(self._k(key), name, value)
            for name, value in amounts.items():
                pipe.hincrbyfloat(self._k(key), name, value)
            pipe.execute()
        self._call(run)

    def read_hash(self, key: str) -> dict[str, str]:
        """Return a hash's fields and values."""
        return self._call(self.client.hgetall, self._k(key))

    def ping(self) -> bool:
        """Tell whether Redis answers."""
        try:
            return bool(self.client.ping())
        except redis_lib.RedisError:
            return False


class MemoryStore:
    """Keys in this process, for a single-process run with no Redis configured."""

    kind = "memory"

    def __init__(self, prefix: str = "", clock=time.monotonic):
        self.prefix = prefix
        self._data: dict[str, tuple[str, float]] = {}
        self._hashes: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, key: str):
        item = self._data.get(self.prefix + key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[self.prefix + key]
            return None
        return item

    def incr(self, key: str, ttl: int) -> int:
        """Increment a counter; the window starts at the first increment."""
        with self._lock:
            item = self._live(key)
            value, expires = (int(item[0]) + 1, item[1]) if item else (1, self._clock() + ttl)
            self._data[self.prefix + key] = (str(value), expires)
            return value

    def decr(self, key: str) -> int:
        """Take one off a live counter (not below zero); its window is kept."""
        with self._lock:
            item = self._live(key)
            if item is None or int(item[0]) <= 0:
                return 0
            value = int(item[0]) - 1
            self._data[self.prefix + key] = (str(value), item[1])
            return value

    def get(self, key: str) -> str | None:
        """Return the value or None."""
        with self._lock:
            item = self._live(key)
            return item[0] if item else None

    def set(self, key: str, value: str, ttl: int, *, only_if_absent: bool = False) -> bool:
        """Set a value with a time to live; with only_if_absent, tell whether it was set."""
        with self._lock:
            if only_if_absent and self._live(key):
                return False
            self._data[self.prefix + key] = (value, self._clock() + ttl)
            return True

    def delete(self, *keys: str) -> None:
        """Remove keys."""
        with self._lock:
            for key in keys:
                self._data.pop(self.prefix + key, None)

    def take(self, key: str, *, mark: tuple[str, str, int] | None = None) -> str | None:
        """Return a value and remove it in one step: of two callers, only one gets it (see RedisStore)."""
        with self._lock:
            item = self._live(key)
            if item is None:
                return None
            del self._data[self.prefix + key]
            if mark is not None:
                mark_key, note, ttl = mark
                self._data[self.prefix + mark_key] = (f"{note}\n{item[0]}", self._clock() + ttl)
            return item[0]

    def ttl(self, key: str) -> int:
        """Return the seconds a key has left (0 when absent)."""
        with self._lock:
            item = self._live(key)
            return max(0, int(item[1] - self._clock() + 0.999)) if item else 0

    def add_to_hash(self, key: str, counts: dict[str, int], amounts: dict[str, float]) -> None:
        """Add whole and fractional amounts to a hash's fields (kept as long as the process)."""
        with self._lock:
            fields = self._hashes.setdefault(self.prefix + key, {})
            for name, value in [*counts.items(), *amounts.items()]:
                fields[name] = fields.get(name, 0) + value

    def read_hash(self, key: str) -> dict[str, str]:
        """Return a hash's fields and values."""
        with self._lock:
            return {name: str(value) for name, value in self._hashes.get(self.prefix + key, {}).items()}

    def ping(self) -> bool:
        """Always answers: it lives in this process."""
        return True


def make_store(url: str | None, prefix: str) -> RedisStore | MemoryStore:
    """Pick Redis when a URL is configured, the in-process store otherwise."""
    return RedisStore(url, prefix) if url else MemoryStore(prefix)
