""" "Did you mean ...?" for misspelt names: field names, region codes, env names.  Pure.

A typo (``memry_mb``, ``region`` for ``regions``) is found by pydantic as an unknown field;
:func:`field_suggestion` walks the desired-state file model along the error's location to the
object that holds the bad key and proposes its closest known field names (``difflib``: close
spellings, not meanings).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["closest", "did_you_mean", "field_suggestion", "known_fields"]

_CUTOFF = 0.6  # difflib's default: "memry_mb" -> "memory_mb", "region" -> "regions"


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates spelt like ``word``, best first (exact matches excluded)."""
    pool = sorted({c for c in candidates if c != word})
    return difflib.get_close_matches(word, pool, n=n, cutoff=_CUTOFF)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'regions'?"`` (or ``'a' or 'b'``), or ``""`` when nothing is close."""
    found = closest(word, candidates)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional: the type that holds the next location part."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def known_fields(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model object at ``loc`` (a path into a document of ``model``),
    or None when the path does not lead to a model object."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif origin is dict:
            current = typing.get_args(current)[1]
        elif origin in (list, tuple) and isinstance(part, int):
            current = typing.get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def field_suggestion(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """The "did you mean" text for an unknown field at ``loc`` (its last part), or ``""``."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    fields = known_fields(model, loc[:-1])
    return did_you_mean(loc[-1], fields) if fields else ""
