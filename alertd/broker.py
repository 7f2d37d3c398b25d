"""How alertd reaches an MQTT broker: address, TLS and credentials, from one URL.

``mqtt://host:1883`` is plain; ``mqtts://user:pass@host:8883`` is TLS with a
login. The deployment's broker (``ALERTD_MQTT_URL``) may take its user name and
password from ``ALERTD_MQTT_USERNAME`` / ``ALERTD_MQTT_PASSWORD`` instead, and
its private CA from ``ALERTD_MQTT_CA_FILE``. The feed, the ack listener, the
state publisher and subscriber endpoints all connect through :class:`Broker`,
so they cannot disagree on how to get in.

A broker's ``str`` is ``host:port`` and nothing else: the password stays out
of logs, errors and /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from alertd.tls import client_context

PLAIN_PORT = 1883
TLS_PORT = 8883


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def parse(
        cls, url: str, *, username: str | None = None, password: str | None = None, ca_file: str | None = None,
        what: str = "ALERTD_MQTT_URL",
    ) -> Broker:
        """The broker of an ``mqtt(s)://`` URL; credentials in the URL win over the ones given."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"{what} must look like mqtt://host:port or mqtts://user:pass@host:8883") from None
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not parts.hostname:
            raise ValueError(f"{what} must look like mqtt://host:port or mqtts://user:pass@host:8883")
        tls = parts.scheme in ("mqtts", "ssl")
        if parts.username is not None:
            username = unquote(parts.username)
            password = unquote(parts.password) if parts.password is not None else None
        return cls(
            host=parts.hostname, port=port or (TLS_PORT if tls else PLAIN_PORT), tls=tls,
            username=username or None, password=password, ca_file=ca_file,
        )  # fmt: skip

    @classmethod
    def from_env(cls, url: str) -> Broker:
        """The deployment's broker as the engine reaches it, for tools beside it (drills)."""
        return cls.parse(
            url, username=os.environ.get("ALERTD_MQTT_USERNAME") or None,
            password=os.environ.get("ALERTD_MQTT_PASSWORD") or None,
            ca_file=os.environ.get("ALERTD_MQTT_CA_FILE") or None,
        )  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        """``aiomqtt.Client`` keyword arguments: where, how (TLS) and as whom."""
        return {
            "hostname": self.host, "port": self.port, "username": self.username, "password": self.password,
            "tls_context": self.tls_context(),
        }  # fmt: skip

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        return client_context(self.ca_file, what=f"the MQTT broker at {self}") if self.tls else None

    def check(self) -> None:
        """Raise now (at start) if the CA file cannot be used, rather than on every reconnect."""
        self.tls_context()


async def stop_client_task(task: asyncio.Task[Any], seconds: float = 2.0) -> None:
    """Cancel a task that runs an ``async with aiomqtt.Client``, waiting for it at most
    ``2 × seconds``. Cancelled, the client's exit sends DISCONNECT and waits for the
    connection to close with no time limit (aiomqtt 2.5): a broker or a loop too busy to
    finish that must not keep whoever stops it (a drill's report) waiting for ever. A
    second cancel ends that wait."""
    for _ in range(2):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
            return
