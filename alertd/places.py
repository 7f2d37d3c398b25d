"""Place names for the texts, from whichever registry this process loaded.

The domain layer (messages, CAP) names places but must not import ``geo``: geo depends on
the domain, not the other way round. So the registry offers itself here when it is first
loaded (``geo.registry.Registry.default``), and a text asks this module. A process that
never loaded a registry gets the codes back: a name is only cosmetic, and an alert must
never fail to render for want of one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Returns the registry entry for a code (with .name and .full_name), or raises.
_lookup: Callable[[str], Any] | None = None
# Returns a district's shapely polygon (None when the registry has no boundary for it).
_geometry: Callable[[str], Any] | None = None


def provide(lookup: Callable[[str], Any], geometry: Callable[[str], Any] | None = None) -> None:
    """Called by the registry that loads first: ``lookup(code)`` gives its entry for a code,
    ``geometry(code)`` its polygon (cell broadcast draws the area from it)."""
    global _lookup, _geometry
    _lookup = lookup
    _geometry = geometry


def geometry(code: str) -> Any | None:
    """A district's polygon (shapely), or None: no boundaries loaded, or none for this code."""
    if _geometry is None:
        return None
    try:
        return _geometry(code)
    except Exception:  # an unknown code: the alert still goes out, by geocode alone
        return None


def entry(code: str) -> Any | None:
    if _lookup is None:
        return None
    try:
        return _lookup(code)
    except Exception:  # an unknown code, a registry that could not load: the code stands in
        return None
