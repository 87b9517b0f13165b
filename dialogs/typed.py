"""Typed working data of a dialog to and from the JSON kept in the dialog_states row.

A flow declares its working data as a dataclass (`Flow(state=...)`); the engine restores it
before each message and stores it after. Nested dataclasses, lists, dicts, Optional, Decimal and
datetimes are supported: what the application data (storage.applications) is made of. Written
here rather than taken from a library (pydantic, dacite) because these few lines cover every
shape the flows use and keep the dialogs' dependency list short.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from decimal import Decimal
from functools import lru_cache
from typing import Any, Union


def dump(value: Any) -> Any:
    """A dataclass (or any value made of the supported types) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(tp: Any, data: Any) -> Any:
    """The value of type `tp` that `dump` turned into `data`."""
    if data is None or tp is Any:
        return data
    origin = typing.get_origin(tp)
    if origin is Union:
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return load(arms[0], data) if len(arms) == 1 else data
    if origin in (list, tuple, set, frozenset):
        (arg, *_) = typing.get_args(tp) or (Any,)
        return [load(arg, v) for v in data]
    if origin is dict:
        _, arg = typing.get_args(tp) or (Any, Any)
        return {k: load(arg, v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: load(hints[k], v) for k, v in data.items() if k in known})
    if tp is Decimal:
        return Decimal(str(data))
    if tp is dt.datetime:
        return dt.datetime.fromisoformat(data)
    if tp is dt.date:
        return dt.date.fromisoformat(data)
    return data
