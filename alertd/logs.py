"""Structured logs: one JSON event per line, carrying alert and subscriber ids.

Operators grep and ship these; a line per event with stable keys is what a
log pipeline (Loki, Elasticsearch) indexes without parsing rules.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            # A field never overwrites the line's own keys: an alert's "level" (4) once
            # replaced the log level ("info"), and a pipeline filtering on level lost the line.
            event.update({(f"field_{k}" if k in event else k): v for k, v in fields.items()})
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def setup(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (connection retries) is not an operator's event stream.
    for noisy in ("aiohttp.access", "amqtt", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # paho warns "There are N pending publish calls." for every publish queued while a
    # thousand are in flight (one tsunami message): normal here, and it drowned the log.
    logging.getLogger("mqtt").setLevel(logging.ERROR)


class EventLogger:
    """``log.info("delivery.failed", alert_id=..., subscriber_id=...)``."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log.exception(event, extra={"fields": fields})


def get(name: str) -> EventLogger:
    return EventLogger(name)
