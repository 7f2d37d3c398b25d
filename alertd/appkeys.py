"""The aiohttp application keys the HTTP modules share.

They live here, not in ``alertd.api``, so a module that serves a route
(``alertd.atom``) can read the engine without importing the module that
builds the app, which imports it back: no cycle.
"""

from __future__ import annotations

from aiohttp import web

from alertd.engine import Engine

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
