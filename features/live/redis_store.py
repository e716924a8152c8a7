"""The Redis backend of the live profile store, shared by many serving replicas and stream consumers.

Keys (``P`` is the configurable prefix):

- ``P e:{user}``  sorted set of retained events, score = event time (epoch µs), member = JSON record;
- ``P m:{user}``  hash: ``v`` (version), ``a:<attribute>`` (JSON CRM values), ``c`` (JSON compacted
  scalars);
- ``P x:{user}``  tombstone of a privacy deletion (holds the deletion's version);
- ``P d:{event_id}``  deduplication marker, expires after ``dedup_ttl_days``;
- ``P users`` set of stored user ids; ``P clock`` the global version counter.

One Lua script per event makes deduplication, the insert, compaction and the version bump a
single atomic step, so concurrent writers (two servers, a server and a consumer, a redelivery)
can neither lose nor double-count an event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from features.live.profile import CompactedHistory, EventRecord, UserProfile, normalize_attributes
from features.live.store import ForgottenUser, ProfileStore, WriteResult
from propensity.errors import ConfigError
from propensity.redact import redact

# KEYS: dedup, events zset, meta hash, tombstone, users set, clock
# ARGV: ts (µs), record JSON, dedup ttl (s), retention (µs), user_id
# Returns 1 applied, 0 duplicate, 2 dropped (deleted user).
_ADD_EVENT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) == false then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], 'v', redis.call('INCR', KEYS[6]))
redis.call('SADD', KEYS[5], ARGV[5])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local newest = tonumber(top[2])
local clast = tonumber(redis.call('HGET', KEYS[3], 'c:last') or '')
if clast and clast > newest then newest = clast end
local cutoff = string.format('%.0f', newest - tonumber(ARGV[4]))
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff)
if #old == 0 then return 1 end
local function num(field) return tonumber(redis.call('HGET', KEYS[3], field) or '') end
local n, purchases, pval = num('c:n') or 0, num('c:purchases') or 0, num('c:pval') or 0
local first, last, atc, buy = num('c:first'), num('c:last'), num('c:atc'), num('c:buy')
local function later(a, b) if a == nil or b > a then return b end return a end
for _, m in ipairs(old) do
  local r = cjson.decode(m)
  local ts = r[1]
  n = n + 1
  if first == nil or ts < first then first = ts end
  last = later(last, ts)
  if r[3] == 'add_to_cart' then atc = later(atc, ts) end
  if r[3] == 'purchase' then
    buy = later(buy, ts)
    purchases = purchases + 1
    if r[6] ~= cjson.null then pval = pval + r[6] end
  end
end
local function int(x) if x == nil then return '' end return string.format('%.0f', x) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff)
redis.call('HSET', KEYS[3], 'c:n', int(n), 'c:purchases', int(purchases),
           'c:pval', string.format('%.17g', pval), 'c:first', int(first), 'c:last', int(last),
           'c:atc', int(atc), 'c:buy', int(buy))
return 1
"""

# KEYS: meta hash, tombstone, users set, clock; ARGV: user_id, reconsent (1/0), attribute/JSON pairs.
# Returns 0 (nothing written) for a deleted user without re-consent.
_UPSERT_USER = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], 'a:' .. ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'v', redis.call('INCR', KEYS[4]))
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: events zset, meta hash, tombstone, users set, clock; ARGV: user_id
_DELETE_USER = """
local removed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], redis.call('INCR', KEYS[5]))
redis.call('SREM', KEYS[4], ARGV[1])
return removed
"""

_COMPACTED_FIELDS = {"c:n": "n_events", "c:first": "first_ts", "c:last": "last_ts",
                     "c:atc": "last_add_to_cart_ts", "c:buy": "last_purchase_ts", "c:purchases": "purchases"}


def _compacted(fields: Mapping[str, str]) -> CompactedHistory:
    if "c:n" not in fields:
        return CompactedHistory()
    ints = {name: (int(fields[key]) if fields.get(key) else None) for key, name in _COMPACTED_FIELDS.items()}
    return CompactedHistory(n_events=ints["n_events"] or 0, first_ts=ints["first_ts"],
                            last_ts=ints["last_ts"],
                            last_add_to_cart_ts=ints["last_add_to_cart_ts"],
                            last_purchase_ts=ints["last_purchase_ts"], purchases=ints["purchases"] or 0,
                            purchase_value=float(fields["c:pval"]))


class RedisProfileStore(ProfileStore):
    """Profiles in Redis; safe for many threads and processes (see :class:`ProfileStore`)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", key_prefix: str = "propensity:",
                 retention_days: float = 90.0, dedup_ttl_days: float = 90.0) -> None:
        super().__init__(retention_days, dedup_ttl_days)
        try:
            # Short timeouts: an outage must become a prompt 503, not a request hanging for minutes.
            self._r = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0,
                                           socket_timeout=5.0, health_check_interval=10)
        except ValueError as exc:
            raise ConfigError(f"store.redis_url: {redact(str(exc))}") from None
        self.prefix = key_prefix
        self._add = self._r.register_script(_ADD_EVENT)
        self._upsert = self._r.register_script(_UPSERT_USER)
        self._delete = self._r.register_script(_DELETE_USER)

    def _keys(self, user_id: str) -> tuple[str, str, str]:
        p = self.prefix
        return f"{p}e:{user_id}", f"{p}m:{user_id}", f"{p}x:{user_id}"

    def add_events(self, events: Iterable[tuple[str, EventRecord]]) -> WriteResult:
        batch = list(events)
        if not batch:
            return WriteResult(0, 0, 0, frozenset())
        p = self.prefix
        pipe = self._r.pipeline(transaction=False)
        for user_id, rec in batch:
            ev, meta, tomb = self._keys(user_id)
            self._add(keys=[f"{p}d:{rec.event_id}", ev, meta, tomb, f"{p}users", f"{p}clock"],
                      args=[rec.ts, json.dumps(list(rec), separators=(",", ":")), self.dedup_ttl_s,
                            self.retention_us, user_id], client=pipe)
        codes = pipe.execute()
        touched = frozenset(u for (u, _), code in zip(batch, codes, strict=True) if code == 1)
        return WriteResult(codes.count(1), codes.count(0), codes.count(2), touched)

    def get_profile(self, user_id: str) -> UserProfile:
        ev, meta, tomb = self._keys(user_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.get(tomb)
        pipe.hgetall(meta)
        pipe.zrange(ev, 0, -1)
        deleted, fields, members = pipe.execute()
        if deleted is not None:
            return UserProfile(user_id, version=int(deleted), deleted=True)
        attrs = {k[2:]: json.loads(v) for k, v in fields.items() if k.startswith("a:")}
        compacted = _compacted(fields)
        events = [EventRecord(*json.loads(m)) for m in members]
        return UserProfile(user_id, attrs, events, compacted, int(fields.get("v", 0)))

    def version(self, user_id: str) -> int:
        ev, meta, tomb = self._keys(user_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.get(tomb)
        pipe.hget(meta, "v")
        deleted, v = pipe.execute()
        return int(deleted if deleted is not None else (v or 0))

    def upsert_user(self, user_id: str, attributes: Mapping[str, Any], *,
                    reconsent: bool = False) -> UserProfile:
        clean = normalize_attributes(attributes)
        _, meta, tomb = self._keys(user_id)
        pairs: list[str] = [user_id, "1" if reconsent else "0"]
        for k, v in clean.items():
            pairs += [k, json.dumps(v)]
        if not self._upsert(keys=[meta, tomb, f"{self.prefix}users", f"{self.prefix}clock"], args=pairs):
            raise ForgottenUser(user_id)
        return self.get_profile(user_id)

    def delete_user(self, user_id: str) -> bool:
        ev, meta, tomb = self._keys(user_id)
        removed = self._delete(keys=[ev, meta, tomb, f"{self.prefix}users", f"{self.prefix}clock"],
                               args=[user_id])
        return bool(removed)

    def count_users(self) -> int:
        return int(self._r.scard(f"{self.prefix}users"))

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._r.close()

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, resets); returns how many."""
        n = 0
        for key in self._r.scan_iter(match=f"{self.prefix}*", count=1000):
            n += self._r.delete(key)
        return n
