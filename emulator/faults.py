"""Injectable faults for the emulated WeChat API: answer an errcode, answer late, or hang up."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Iterator

ANY_ENDPOINT = "*"


@dataclass
class Fault:
    """One rule. `endpoint` is the path after /cgi-bin/ ("message/custom/send"), or "*" for all
    of them; "sms" is the emulated SMS gateway (emulator/sms.py), which "*" does not affect.

    The effects combine: the answer is delayed by `delay` seconds, then the connection is closed
    without an answer (`drop`) or the call is answered `{"errcode": errcode}` instead of being
    served; with neither, the call is served normally after the delay. `times` (None: forever)
    counts the calls the rule has affected; `probability` is tried on every matching call.
    """

    id: int
    endpoint: str
    errcode: int | None = None
    delay: float = 0.0
    drop: bool = False
    times: int | None = None
    probability: float = 1.0
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The active rules, tried in the order they were added; the first one that fires applies."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._rules: list[Fault] = []
        self._next_id = 1

    def add(
        self,
        endpoint: str,
        errcode: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
        probability: float = 1.0,
    ) -> Fault:
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("endpoint: a path after /cgi-bin/, e.g. 'message/custom/send', or '*'")
        endpoint = endpoint.strip("/")
        if endpoint.startswith("cgi-bin/"):
            endpoint = endpoint[len("cgi-bin/"):]
        if errcode is not None and (isinstance(errcode, bool) or not isinstance(errcode, int)):
            raise ValueError("errcode: an integer such as -1, 40001 or 45009")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError("delay: seconds, not negative")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError("times: a positive integer, or null for every call")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise ValueError("probability: between 0 and 1")
        if errcode is None and not drop and not delay:
            raise ValueError("a fault needs an errcode, a delay or drop")
        rule = Fault(self._next_id, endpoint, errcode, float(delay), bool(drop), times, float(probability))
        self._next_id += 1
        self._rules.append(rule)
        return rule

    def remove(self, fault_id: int) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != fault_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def take(self, endpoint: str, *, wildcard: bool = True) -> Fault | None:
        """The rule that affects this call, if any; counts the hit and retires spent rules.

        `wildcard=False` ignores "*" rules: services other than WeChat's API (the SMS gateway,
        target "sms") are affected only by rules naming them.
        """
        for rule in self._rules:
            if rule.endpoint != endpoint and not (wildcard and rule.endpoint == ANY_ENDPOINT):
                continue
            if rule.probability < 1 and self._rng.random() >= rule.probability:
                continue
            rule.hits += 1
            if rule.times is not None and rule.hits >= rule.times:
                self._rules.remove(rule)
            return rule
        return None

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)
