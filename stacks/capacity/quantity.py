"""Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity suffixes) as plain numbers."""

from __future__ import annotations

import math
import re
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|m|k|M|G|T|P|)")


def value(q: Any) -> float:
    """ "500m" -> 0.5, "2" -> 2, "12Gi" -> 12 * 2**30, "1G" -> 1e9; a bare number as is."""
    if isinstance(q, int | float):
        return float(q)
    m = _QUANTITY.fullmatch(str(q).strip())
    if m is None:
        raise ValueError(f"not a Kubernetes quantity: {q!r}")
    num, suffix = float(m.group(1)), m.group(2)
    return num * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def millicores(q: Any) -> int:
    return math.ceil(round(value(q) * 1000, 6))


def mib(q: Any) -> float:
    return value(q) / 2**20


def gib(q: Any) -> float:
    return value(q) / 2**30
