"""Runtime fault injection for the sandbox's /3.0 API.

Faults are configured through the control API and decided per request. Random faults
draw from one ``random.Random(seed)`` so a test that sets a seed gets the same sequence
every run; one-shot rules (``next``) are fully deterministic.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .errors import TOO_MANY_CONNECTIONS, ApiError, too_many_requests

DEFAULT_BATCH_OPS_PER_SECOND = 20_000.0
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 1.0

_ERROR_DETAILS = {
    500: (
        "Internal Server Error",
        "An unexpected internal error has occurred. Please contact Support for more information.",
    ),
    502: ("Bad Gateway", "The server received an invalid response. Please try again later."),
    503: (
        "Service Unavailable",
        "This service is temporarily unavailable. Please try again later.",
    ),
    504: ("Gateway Timeout", "The server did not respond in time. Please try again later."),
}


# Faults that are not a plain HTTP status (one-shot rules may name them too).
SPECIAL_FAULTS = ("timeout", "drop", "signup_limit", "empty_403")


def signup_limit_error(address: str) -> ApiError:
    """Mailchimp's temporary refusal of an address that joined many lists lately."""
    return ApiError(
        400,
        "Invalid Resource",
        f"{address} has signed up to a lot of lists very recently; we're not allowing "
        "more signups for now",
    )


def is_member_write(method: str, path: str) -> bool:
    """A request that may sign someone up: POST/PUT on a list's members."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    if segments[:1] == ["3.0"]:
        segments = segments[1:]
    return (
        method.upper() in ("POST", "PUT")
        and len(segments) in (3, 4)
        and segments[0] == "lists"
        and segments[2] == "members"
    )


class FaultConfigError(ValueError):
    """The control API was given a fault configuration it cannot apply."""


@dataclass
class Rule:
    """A one-shot fault: applies to the next ``count`` requests that match it."""

    status: int | str  # an HTTP status or one of SPECIAL_FAULTS
    count: int = 1
    method: str | None = None
    path_contains: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.status == "signup_limit" and not is_member_write(method, path):
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "count": self.count,
            "method": self.method,
            "path_contains": self.path_contains,
        }


@dataclass(frozen=True)
class Decision:
    """What to do to one request: answer with ``status``, time out, or drop."""

    kind: str  # "error", "timeout", "drop", "signup_limit" or "empty_403"
    status: int = 0


def injected_error(status: int, retry_after: float) -> ApiError:
    if status == 429:
        return too_many_requests(TOO_MANY_CONNECTIONS, retry_after)
    title, detail = _ERROR_DETAILS.get(
        status, (HTTPStatus(status).phrase, "An error was injected by the sandbox.")
    )
    return ApiError(status, title, detail)


def _rate(config: dict[str, Any], key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultConfigError(f"{key} must be a probability between 0 and 1")
    return float(value)


def _non_negative(config: dict[str, Any], key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultConfigError(f"{key} must be a non-negative number")
    return float(value)


def _status(value: object) -> int | str:
    if value in SPECIAL_FAULTS:
        return str(value)
    try:
        status = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise FaultConfigError(f"unknown fault status {value!r}") from None
    if not 400 <= status <= 599:
        raise FaultConfigError(f"fault status must be 4xx or 5xx, not {status}")
    return status


def _rule(raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise FaultConfigError("each rule in 'next' must be an object")
    count = raw.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise FaultConfigError("rule count must be a positive integer")
    return Rule(_status(raw.get("status")), count, raw.get("method"), raw.get("path_contains"))


class Faults:
    """The current fault configuration plus the random source and pending rules."""

    KEYS = frozenset(
        {
            "latency_ms",
            "error_rates",
            "retry_after",
            "timeout_rate",
            "timeout_seconds",
            "drop_rate",
            "batch_ops_per_second",
            "expire_results",
            "expire_batches",
            "expire_results_rate",
            "batch_start_delay",
            "signup_limit_rate",
            "empty_403_rate",
            "next",
            "seed",
        }
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Sleeping requests wait on this event, so clear() can wake them at once
        # instead of leaving them holding connection slots into the next test.
        self._wake = threading.Event()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.latency_ms = 0.0
            self.error_rates: dict[int, float] = {}
            self.retry_after = DEFAULT_RETRY_AFTER
            self.timeout_rate = 0.0
            self.timeout_seconds = DEFAULT_TIMEOUT_SECONDS
            self.drop_rate = 0.0
            self.batch_ops_per_second = DEFAULT_BATCH_OPS_PER_SECOND
            self.expire_results = False
            # Results of these batches (ids) expire; and this fraction of all batches.
            self.expire_batches: set[str] = set()
            self.expire_results_rate = 0.0
            # Seconds a batch stays "pending" after submission before it starts.
            self.batch_start_delay = 0.0
            self.signup_limit_rate = 0.0
            self.empty_403_rate = 0.0
            self.rules: list[Rule] = []
            self.seed: int | None = None
            self._random = random.Random()
            self._wake.set()
            self._wake = threading.Event()

    def configure(self, config: dict[str, Any]) -> None:
        """Merge the given settings into the current ones (validated as a whole first)."""
        unknown = set(config) - self.KEYS
        if unknown:
            raise FaultConfigError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        updates: dict[str, Any] = {}
        for key in (
            "latency_ms",
            "retry_after",
            "timeout_seconds",
            "batch_ops_per_second",
            "batch_start_delay",
        ):
            if key in config:
                updates[key] = _non_negative(config, key)
        for key in ("timeout_rate", "drop_rate", "expire_results_rate"):
            if key in config:
                updates[key] = _rate(config, key)
        for key in ("signup_limit_rate", "empty_403_rate"):
            if key in config:
                updates[key] = _rate(config, key)
        if "error_rates" in config:
            rates = config["error_rates"]
            if not isinstance(rates, dict):
                raise FaultConfigError("error_rates must map status codes to probabilities")
            updates["error_rates"] = {int(_status(code)): _rate(rates, code) for code in rates}
        if "expire_results" in config:
            updates["expire_results"] = bool(config["expire_results"])
        if "expire_batches" in config:
            ids = config["expire_batches"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise FaultConfigError("expire_batches must be a list of batch ids")
            updates["expire_batches"] = set(ids)
        if "next" in config:
            if not isinstance(config["next"], list):
                raise FaultConfigError("next must be a list of rules")
            updates["rules"] = [_rule(raw) for raw in config["next"]]
        with self._lock:
            merged = {
                "timeout_rate": self.timeout_rate,
                "drop_rate": self.drop_rate,
                "error_rates": self.error_rates,
                "signup_limit_rate": self.signup_limit_rate,
                "empty_403_rate": self.empty_403_rate,
                **updates,
            }
            rates = ("timeout_rate", "drop_rate", "signup_limit_rate", "empty_403_rate")
            if sum(merged[k] for k in rates) + sum(merged["error_rates"].values()) > 1:
                raise FaultConfigError("the fault probabilities add up to more than 1")
            for key, value in updates.items():
                setattr(self, key, value)
            if "seed" in config:
                self.seed = int(config["seed"])
                self._random = random.Random(self.seed)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "error_rates": {str(k): v for k, v in self.error_rates.items()},
                "retry_after": self.retry_after,
                "timeout_rate": self.timeout_rate,
                "timeout_seconds": self.timeout_seconds,
                "drop_rate": self.drop_rate,
                "batch_ops_per_second": self.batch_ops_per_second,
                "expire_results": self.expire_results,
                "expire_batches": sorted(self.expire_batches),
                "expire_results_rate": self.expire_results_rate,
                "batch_start_delay": self.batch_start_delay,
                "signup_limit_rate": self.signup_limit_rate,
                "empty_403_rate": self.empty_403_rate,
                "next": [rule.to_json() for rule in self.rules],
                "seed": self.seed,
            }

    def decide(self, method: str, path: str) -> Decision | None:
        """Pick the fault (if any) for one /3.0 request; consumes one-shot rules."""
        with self._lock:
            # Rules form a queue: only the head is considered, so a test can script
            # "first the PUT fails, then the batch poll" without ambiguity.
            if self.rules and self.rules[0].matches(method, path):
                rule = self.rules[0]
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.pop(0)
                if isinstance(rule.status, str):
                    return Decision(rule.status)
                return Decision("error", rule.status)
            chances: list[tuple[Decision, float]] = [
                (Decision("timeout"), self.timeout_rate),
                (Decision("drop"), self.drop_rate),
                (Decision("empty_403"), self.empty_403_rate),
            ]
            if is_member_write(method, path):
                chances.append((Decision("signup_limit"), self.signup_limit_rate))
            chances += [(Decision("error", s), p) for s, p in sorted(self.error_rates.items())]
            if not any(p for _, p in chances):
                return None
            draw = self._random.random()
            for decision, probability in chances:
                if draw < probability:
                    return decision
                draw -= probability
            return None

    def decide_operation(self, method: str, path: str) -> bool:
        """True when a batched member write meets the "signed up to a lot of lists" 400.

        Only that fault reaches batch operations (it is about the address, not the HTTP
        call); one-shot ``signup_limit`` rules at the head of the queue apply too.
        """
        if not is_member_write(method, path):
            return False
        with self._lock:
            head = self.rules[0] if self.rules else None
            if head is not None and head.status == "signup_limit" and head.matches(method, path):
                head.count -= 1
                if head.count <= 0:
                    self.rules.pop(0)
                return True
            return bool(self.signup_limit_rate) and self._random.random() < self.signup_limit_rate

    def results_expired(self, batch_id: str) -> bool:
        """Whether one batch's results are gone (all, listed ids, or a stable fraction)."""
        with self._lock:
            if self.expire_results or batch_id in self.expire_batches:
                return True
            if not self.expire_results_rate:
                return False
            # Drawn from the batch id (and seed), so a batch's answer never flips.
            draw = random.Random(f"{self.seed}:{batch_id}").random()
            return draw < self.expire_results_rate

    def hold(self) -> threading.Event:
        """What :meth:`clear` sets, as of now. A request takes it before it reads any
        setting, and sleeps on it: a clear at any later moment then wakes whatever it
        sleeps (its latency, a timeout), even one it decided on before the clear."""
        with self._lock:
            return self._wake

    def sleep(self, seconds: float, wake: threading.Event | None = None) -> bool:
        """Sleep unless the faults are cleared meanwhile (since ``wake`` was taken, if
        given); True if it slept fully."""
        if seconds <= 0:
            return True
        if wake is None:
            wake = self.hold()
        return not wake.wait(seconds)
