"""Chute versions compare numerically when numeric (the schema checks their characters)."""
import re
from typing import Tuple, Union


def version_key(version: Union[str, int, float]) -> Tuple:
    """Sort key: '10' > '9', '1.10' > '1.9'; numeric parts before text parts at the same position."""
    parts = re.split(r"[._+-]", str(version))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def is_newer(candidate, current) -> bool:
    return version_key(candidate) > version_key(current)
