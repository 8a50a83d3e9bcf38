"""Outbound rate limits per provider sender: a burst of replies waits its turn instead of
being refused (429) or piling up in the provider's own queue until it overflows.

Each limit is a token bucket, kept as GCRA (the "generic cell rate algorithm": one number per
bucket, the theoretical arrival time of the next message), so a bucket costs one Redis string.
``rate`` tokens a second refill it, up to ``burst``; a message of ``cost`` tokens (an SMS's
segments) may go when the bucket holds them. Over any window of ``t`` seconds a bucket lets at
most ``rate * t + burst`` tokens through (for costs up to ``burst``; a bigger cost goes once the
bucket is full and leaves it in debt).

Buckets are named by keys such as ``twilio:sms:<sender>``, ``telegram:bot:<bot id>`` or
``telegram:chat:<bot id>:<chat id>`` (``keys_for`` builds them): the first two parts are the
kind, which picks the rate, and the rest is an identity. The limiter never stores, logs or sends
that identity in clear: it becomes a keyed BLAKE2b hash (8 bytes) before it names anything, so a
phone number or chat id is never a Redis key.

``LocalRateLimiter`` limits one process. ``RedisRateLimiter`` shares each bucket between every
process (replica) sending through the same sender, with an atomic Lua script and Redis's own
clock; when Redis cannot be reached it limits in the process for a while, with a warning, rather
than fail the send. ``limiter_for`` picks one. ``wait`` reserves the tokens and sleeps until
they are due (one round trip, first come first served); ``delay`` takes them only if they are
there now. After a provider's 429, ``hold`` keeps a bucket closed for its ``Retry-After``.

Default rates (``DEFAULT_LIMITS``), per kind, as (per second, burst):

- ``twilio:sms`` (1, 4): Twilio documents one message segment a second for a long code (short
  codes and toll-free numbers more: raise it for those); the burst of 4 (one reply of
  ``HELPLINE_SMS_SEGMENT_BUDGET`` parts) is ours. Twilio queues what goes faster, so the limit
  keeps our queue, not Twilio's, the one that waits.
- ``twilio:whatsapp`` (80, 80): Twilio documents 80 messages a second per WhatsApp sender by
  default (text or media); the burst of one second's worth is ours.
- ``twilio:whatsapp_pair`` (1/6, 45): Meta's "pair rate" to one WhatsApp user, one message
  every 6 seconds with bursts of up to 45, as Meta's Cloud API documentation is quoted; Twilio
  answers 63018 when it is passed.
- ``telegram:bot`` (25, 25): Telegram's FAQ says "not more than 30 messages per second or so"
  for a bot; 25 is a conservative default under that.
- ``telegram:chat`` (1, 3): the FAQ says to avoid more than one message a second in a chat, and
  that short bursts may pass; the burst of 3 (a turn's replies) is ours. Groups (20 a minute)
  are not served: the helpline answers private chats only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping

logger = logging.getLogger(__name__)

Limits = Mapping[str, "Rate | tuple[float, int]"]

DEFAULT_LIMITS: dict[str, tuple[float, int]] = {
    "twilio:sms": (1.0, 4),
    "twilio:whatsapp": (80.0, 80),
    "twilio:whatsapp_pair": (1 / 6, 45),
    "telegram:bot": (25.0, 25),
    "telegram:chat": (1.0, 3),
}
ENV_PREFIX = "HELPLINE_RATE_"
REDIS_PREFIX = "helpline:rate:"
MAX_HOLD_SECONDS = 3600.0  # a Retry-After beyond this is the queue's business, not a bucket's
_KIND = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
_EPSILON = 1e-9  # seconds: float noise, not a wait


class RateLimited(Exception):
    """``wait(..., max_wait=...)``: the tokens are further off than the caller will wait; the
    caller should put the message back in its queue for ``delay`` seconds (nothing was taken)."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"rate limited for {delay:.3f} s")
        self.delay = delay


@dataclasses.dataclass(frozen=True)
class Rate:
    """``per_s`` tokens a second, at most ``burst`` at once."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (isinstance(self.per_s, int | float) and math.isfinite(self.per_s)
                and self.per_s > 0):  # fmt: skip
            raise ValueError(
                f"a rate must be a positive number of tokens a second, not {self.per_s!r}"
            )
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 1:
            raise ValueError(f"a burst must be a whole number of at least 1, not {self.burst!r}")

    @property
    def interval(self) -> float:
        """Seconds per token."""
        return 1.0 / self.per_s


def _rates(limits: Limits | None) -> dict[str, Rate]:
    table = dict(DEFAULT_LIMITS if limits is None else limits)
    rates = {}
    for kind, value in table.items():
        if not _KIND.match(kind):
            raise ValueError(f"a rate kind is 'provider:kind' in lower case, not {kind!r}")
        rates[kind] = value if isinstance(value, Rate) else Rate(float(value[0]), int(value[1]))
    return rates


def env_names(kind: str) -> tuple[str, str]:
    """The two variables of a kind: ``twilio:sms`` -> ``HELPLINE_RATE_TWILIO_SMS_PER_S`` and
    ``HELPLINE_RATE_TWILIO_SMS_BURST``."""
    stem = ENV_PREFIX + kind.replace(":", "_").upper()
    return f"{stem}_PER_S", f"{stem}_BURST"


def limits_from_env(
    environ: Mapping[str, str] | None = None,
    overrides: Limits | None = None,
) -> dict[str, Rate]:
    """The rate table: the defaults, then ``HELPLINE_RATE_<KIND>_PER_S`` / ``_BURST`` from
    ``environ`` (``os.environ`` when None; an empty value keeps the default), then
    ``overrides`` (plain values, e.g. from ``bot.settings``). A bad value is an error that names
    its variable, so a typo cannot silently leave a sender unlimited or stuck."""
    environ = os.environ if environ is None else environ
    rates = _rates(None)
    for kind, rate in list(rates.items()):
        per_s_name, burst_name = env_names(kind)
        per_s, burst = rate.per_s, rate.burst
        raw = (environ.get(per_s_name) or "").strip()
        if raw:
            try:
                per_s = float(raw)
            except ValueError:
                raise ValueError(
                    f"{per_s_name}={raw!r} is not a number (messages a second)"
                ) from None
        raw = (environ.get(burst_name) or "").strip()
        if raw:
            try:
                burst = int(raw)
            except ValueError:
                raise ValueError(f"{burst_name}={raw!r} is not a whole number") from None
        try:
            rates[kind] = Rate(per_s, burst)
        except ValueError as exc:
            raise ValueError(f"{per_s_name}/{burst_name}: {exc}") from None
    rates.update(_rates(overrides or {}))
    return rates


def _gcra(
    tat: float, now: float, rate: Rate, cost: int, mode: str, max_wait: float | None
) -> tuple[float, float | None]:
    """One step of the bucket: (seconds to wait, the new arrival time or None if nothing was
    taken). ``mode``: ``take`` takes only when no wait is needed; ``reserve`` takes in any case
    (the caller sleeps the wait), unless the wait is over ``max_wait``. The Lua script below is
    this function again, for Redis."""
    base = max(tat, now)
    need = min(cost, rate.burst)
    wait = base - (rate.burst - need) * rate.interval - now
    wait = 0.0 if wait <= _EPSILON else wait
    if wait == 0.0 or (mode == "reserve" and (max_wait is None or wait <= max_wait)):
        return wait, base + cost * rate.interval
    return wait, None


def _held(tat: float, now: float, rate: Rate, seconds: float) -> float:
    """The arrival time that lets no token through before ``now + seconds``, then one at a
    time: after a 429 the sender starts again slowly, not with a full burst."""
    return max(tat, now + seconds + (rate.burst - 1) * rate.interval)


class RateLimiter:
    """Token buckets by key. ``wait`` before a send; ``hold`` after a 429."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        secret: bytes | str | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        """``limits``: kind -> (per second, burst), ``DEFAULT_LIMITS`` when None. ``secret``
        keys the hash of identities (give the pseudonym key: without one, a phone number's
        8-byte hash could be found by trying every number). ``clock`` (seconds) and ``sleep``
        are injectable so that tests control time."""
        self.limits = _rates(limits)
        if isinstance(secret, str):
            secret = secret.encode()
        self._hash_key = hashlib.blake2b(
            secret or b"", digest_size=32, person=b"helpline-ratekey"
        ).digest()
        self.keyed = bool(secret)
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep

    # --- naming -----------------------------------------------------------------------------
    def _bucket(self, key: str) -> tuple[str, Rate]:
        """The bucket's name (the kind, then the hashed identity) and its rate."""
        parts = key.split(":", 2)
        kind = ":".join(parts[:2])
        rate = self.limits.get(kind) if len(parts) >= 2 else None
        if rate is None:
            shown = kind if _KIND.match(kind) else "(not 'provider:kind')"
            raise ValueError(f"no rate limit for the kind {shown}; known: {sorted(self.limits)}")
        identity = parts[2] if len(parts) == 3 else ""
        if not identity:
            return kind, rate
        digest = hashlib.blake2b(
            identity.encode(), digest_size=8, key=self._hash_key, person=b"helpline-rate"
        ).hexdigest()
        return f"{kind}:{digest}", rate

    @staticmethod
    def _cost(cost: int) -> int:
        if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1:
            raise ValueError(f"a cost is a whole number of tokens of at least 1, not {cost!r}")
        return cost

    # --- the interface ----------------------------------------------------------------------
    def delay(self, key: str, cost: int = 1) -> float:
        """Seconds until ``cost`` tokens of ``key`` are there; 0 when they are, and then they
        are taken. Never sleeps (a Redis limiter makes one round trip)."""
        name, rate = self._bucket(key)
        return self._step(name, rate, self._cost(cost), "take", None, 0.0)[0]

    async def wait(self, key: str, cost: int = 1, *, max_wait: float | None = None) -> float:
        """Waits until ``cost`` tokens of ``key`` are there and takes them; the seconds waited.
        The tokens are reserved at once, so concurrent callers (in any process sharing the
        bucket) are served in the order they asked. With ``max_wait``, a longer wait raises
        ``RateLimited`` instead, and nothing is taken."""
        name, rate = self._bucket(key)
        waited, taken = await self._astep(name, rate, self._cost(cost), "reserve", max_wait, 0.0)
        if not taken:
            raise RateLimited(waited)
        if waited > 0:
            await self._sleep(waited)
        return waited

    async def hold(self, key: str, seconds: float) -> None:
        """No tokens for ``key`` for ``seconds`` (at most ``MAX_HOLD_SECONDS``), in every
        process sharing it: what a provider's 429 with ``Retry-After`` asks for."""
        name, rate = self._bucket(key)
        seconds = min(max(float(seconds), 0.0), MAX_HOLD_SECONDS)
        await self._astep(name, rate, 1, "hold", None, seconds)

    # --- the buckets ------------------------------------------------------------------------
    def _step(
        self, name: str, rate: Rate, cost: int, mode: str, max_wait: float | None, hold: float
    ) -> tuple[float, bool]:
        raise NotImplementedError

    async def _astep(
        self, name: str, rate: Rate, cost: int, mode: str, max_wait: float | None, hold: float
    ) -> tuple[float, bool]:
        return self._step(name, rate, cost, mode, max_wait, hold)


class LocalRateLimiter(RateLimiter):
    """Buckets in this process: for one process, and the fallback when Redis is down. Each step
    runs under a lock and without awaiting, so concurrent tasks (and threads) cannot both take
    the last token."""

    PRUNE_EVERY = 1024  # steps between forgetting full buckets (per-chat keys come and go)

    def __init__(self, limits: Limits | None = None, **kwargs) -> None:
        super().__init__(limits, **kwargs)
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._steps = 0

    def _step(self, name, rate, cost, mode, max_wait, hold):
        with self._lock:
            now = self._clock()
            tat = self._tats.get(name, now)
            if mode == "hold":
                self._tats[name] = _held(tat, now, rate, hold)
                return 0.0, True
            wait, new_tat = _gcra(tat, now, rate, cost, mode, max_wait)
            if new_tat is not None:
                self._tats[name] = new_tat
            self._steps += 1
            if self._steps % self.PRUNE_EVERY == 0:
                # A bucket whose arrival time has passed is full: forgetting it changes nothing.
                self._tats = {k: v for k, v in self._tats.items() if v > now}
            return wait, new_tat is not None

    def __len__(self) -> int:
        return len(self._tats)


# KEYS[1]: the bucket. ARGV: seconds per token, burst, cost, mode (take, reserve, hold),
# now in ms ("" for Redis's clock), max wait in ms ("" for none), hold in ms.
# Returns {wait in microseconds, 1 if taken}. Times are milliseconds as floats; the key expires
# when the bucket is full again (then it is the same as no key).
_LUA = """
local interval = tonumber(ARGV[1]) * 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local now
if ARGV[5] ~= "" then
  now = tonumber(ARGV[5])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local tat = tonumber(redis.call("GET", KEYS[1]) or "0")
local base = math.max(tat, now)
local new_tat = nil
local wait = 0
if mode == "hold" then
  new_tat = math.max(tat, now + tonumber(ARGV[7]) + (burst - 1) * interval)
else
  wait = base - (burst - math.min(cost, burst)) * interval - now
  if wait <= 0.000001 then wait = 0 end
  if wait == 0 or (mode == "reserve" and (ARGV[6] == "" or wait <= tonumber(ARGV[6]))) then
    new_tat = base + cost * interval
  end
end
if new_tat then
  redis.call("SET", KEYS[1], string.format("%.6f", new_tat),
             "PX", math.ceil(new_tat - now) + 1000)
  return {math.ceil(wait * 1000), 1}
end
return {math.ceil(wait * 1000), 0}
"""


def _connection_failures() -> tuple[type[BaseException], ...]:
    import redis.exceptions as errors

    # Down, unreachable, slow, loading, a read-only replica: the send goes on, limited here.
    return (errors.ConnectionError, errors.TimeoutError, errors.ReadOnlyError, OSError)


class RedisRateLimiter(RateLimiter):
    """Buckets in Redis, shared by every process that uses the same Redis and secret. Redis's
    clock decides (one clock for all replicas) unless a ``clock`` is given. If Redis cannot be
    reached, this process limits on its own (``fallback``) for ``retry_after`` seconds, then
    tries Redis again; each replica then allows the full rate, so during an outage N replicas
    may send up to N times it (give ``fallback`` smaller limits if that matters)."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        prefix: str = REDIS_PREFIX,
        fallback: RateLimiter | None = None,
        retry_after: float = 5.0,
        timeout: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(limits, **kwargs)
        self.url = url
        self.prefix = prefix
        self.server_clock = kwargs.get("clock") is None
        self.fallback = fallback or LocalRateLimiter(
            self.limits, secret=kwargs.get("secret"), clock=self._clock, sleep=self._sleep
        )
        self.retry_after = retry_after
        self.timeout = timeout
        self._down_until: float | None = None
        self._sync = None
        self._async = None
        self._async_loop = None
        self._failures = _connection_failures()
        if not self.keyed:
            logger.warning("rate limiter: no secret given, so Redis keys hash identities "
                           "without a key; pass the pseudonym key")  # fmt: skip

    # Clients are made on first use: nothing connects at import or construction.
    def _sync_script(self):
        if self._sync is None:
            import redis

            client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            self._sync = client.register_script(_LUA)
        return self._sync

    def _async_script(self):
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            # redis.asyncio's connections belong to the loop that made them.
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            self._async, self._async_loop = client.register_script(_LUA), loop
        return self._async

    def _args(self, rate: Rate, cost: int, mode: str, max_wait, hold) -> list[str]:
        return [
            repr(rate.interval),
            str(rate.burst),
            str(cost),
            mode,
            "" if self.server_clock else f"{self._clock() * 1000:.6f}",
            "" if max_wait is None else f"{max(max_wait, 0.0) * 1000:.6f}",
            f"{hold * 1000:.6f}",
        ]

    def _redis_up(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def _went_down(self, exc: BaseException) -> None:
        if self._down_until is None:
            # The URL is not logged: it may hold a password.
            logger.warning("rate limiter: Redis unreachable (%s); limiting in this process for "
                           "now", type(exc).__name__)  # fmt: skip
        self._down_until = self._clock() + self.retry_after

    def _came_back(self) -> None:
        if self._down_until is not None:
            logger.warning("rate limiter: Redis reachable again; limits shared again")
            self._down_until = None

    async def aclose(self) -> None:
        """Closes the connections (the async client's belong to the running loop)."""
        if self._async is not None:
            await self._async.registered_client.close(close_connection_pool=True)
            self._async = self._async_loop = None
        if self._sync is not None:
            client = self._sync.registered_client
            client.close()
            client.connection_pool.disconnect()  # redis 4.6's close() leaves the pool open
            self._sync = None

    @staticmethod
    def _result(reply) -> tuple[float, bool]:
        return int(reply[0]) / 1e6, bool(int(reply[1]))

    def _step(self, name, rate, cost, mode, max_wait, hold):
        if self._redis_up():
            try:
                reply = self._sync_script()(
                    keys=[self.prefix + name], args=self._args(rate, cost, mode, max_wait, hold)
                )
            except self._failures as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return self._result(reply)
        return self.fallback._step(name, rate, cost, mode, max_wait, hold)

    async def _astep(self, name, rate, cost, mode, max_wait, hold):
        if self._redis_up():
            try:
                reply = await self._async_script()(
                    keys=[self.prefix + name], args=self._args(rate, cost, mode, max_wait, hold)
                )
            except self._failures as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return self._result(reply)
        return await self.fallback._astep(name, rate, cost, mode, max_wait, hold)


def limiter_for(
    redis_url: str | None,
    limits: Limits | None = None,
    *,
    secret: bytes | str | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
) -> RateLimiter:
    """Redis-backed buckets when a URL is given (shared by the replicas; local while Redis is
    unreachable), buckets in this process otherwise. Connects to nothing until the first use."""
    options = {"secret": secret, "clock": clock, "sleep": sleep}
    if redis_url:
        return RedisRateLimiter(redis_url, limits, **options)
    return LocalRateLimiter(limits, **options)


# --- which buckets a reply uses -------------------------------------------------------------
def sender_id_for(channel: str, settings) -> str:
    """The sender a reply on ``channel`` goes out from, from the channel settings: the bot's id
    (the part of the token before ":", never the token), the SMS number, the WhatsApp sender."""
    if channel == "telegram":
        return (getattr(settings, "telegram_token", "") or "").split(":", 1)[0]
    if channel == "sms":
        return getattr(settings, "twilio_sms_number", "") or ""
    if channel == "whatsapp":
        return getattr(settings, "twilio_whatsapp_sender", "") or ""
    return ""


def keys_for(
    channel: str,
    sender_id: str,
    address: str,
    *,
    text: str | None = None,
    parts_sent: int = 0,
    segment_budget: int = 4,
) -> list[tuple[str, int]]:
    """The (key, cost) buckets one reply takes, narrowest first: wait for them in this order,
    so that the shared bucket (the sender's) is taken last, just before the send. An SMS costs
    the segments still to send (its parts are one segment each, ``bot.sms.split_for_sms``);
    anything else costs 1. A channel without limits (the simulator's) has no buckets."""
    if channel == "telegram":
        return [(f"telegram:chat:{sender_id}:{address}", 1), (f"telegram:bot:{sender_id}", 1)]
    if channel == "whatsapp":
        return [
            (f"twilio:whatsapp_pair:{sender_id}:{address}", 1),
            (f"twilio:whatsapp:{sender_id}", 1),
        ]
    if channel == "sms":
        cost = 1
        if text:
            from bot.sms import split_for_sms

            cost = max(1, len(split_for_sms(text, segment_budget)) - parts_sent)
        return [(f"twilio:sms:{sender_id}", cost)]
    return []


# --- a provider's 429 -----------------------------------------------------------------------
def retry_after_seconds(headers, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date, RFC 9110
    10.2.3), from any mapping of headers (dict, requests' or aiohttp's, ``http.client``'s);
    None when there is none or it cannot be read. Never negative."""
    if not headers:
        return None
    value = None
    for name, raw in headers.items():
        if str(name).lower() == "retry-after":
            value = str(raw).strip()
            break
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def telegram_retry_after(exc) -> float | None:
    """Seconds python-telegram-bot's ``RetryAfter`` asks for (Telegram's
    ``parameters.retry_after``: Telegram's 429 carries it in the body, not in a header)."""
    with warnings.catch_warnings():
        # PTB 22 warns that it will return a timedelta one day: either is read here.
        warnings.simplefilter("ignore")
        value = getattr(exc, "retry_after", None)
    if isinstance(value, dt.timedelta):
        return max(value.total_seconds(), 0.0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(float(value), 0.0)
    return None
