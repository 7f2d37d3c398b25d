"""TLS for alertd's own listeners and for the connections it makes to Redis and the broker.

A deployment whose desk, Redis or broker sits on another host crosses a network
(an LGWAN segment, the internet): every such hop can be TLS. Modern TLS only
(1.2 and later); certificates are verified against the system's CAs plus the
deployment's own CA file, and host names are always checked.

A wrong path, a certificate without its key or a key that does not belong to
the certificate stops the start with a :class:`TlsConfigError` sentence: a
listener that silently fell back to plain HTTP would send desk tokens in clear.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class TlsConfigError(ValueError):
    """A TLS setting that cannot work; ``detail`` is the sentence for the operator."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _readable(path: str, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsConfigError(f"cannot read the {what} {path!r} ({exc.strerror or exc}).") from None


def _no_passphrase(key: str) -> Callable[[], str]:
    def refuse() -> str:
        raise TlsConfigError(
            f"the TLS key {key!r} is encrypted: give alertd an unencrypted key (readable by it alone)."
        )

    return refuse


def server_context(
    cert: str | None, key: str | None, *, names: tuple[str, str] = ("--tls-cert", "--tls-key")
) -> ssl.SSLContext | None:
    """The TLS context of a listener: None for plain HTTP (neither file), else both PEM files.

    ``names`` are the settings the operator used, so the sentence points at them.
    """
    if not cert and not key:
        return None
    if not cert or not key:
        given, missing = names if cert else names[::-1]
        raise TlsConfigError(
            f"{given} was given without {missing}: TLS needs both the certificate and its key (PEM files)."
        )
    _readable(cert, "TLS certificate")
    _readable(key, "TLS key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # An encrypted key would make OpenSSL prompt on the terminal, hanging a service start.
        context.load_cert_chain(cert, key, password=_no_passphrase(key))
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"the TLS key {key!r} does not belong to the certificate {cert!r}, or one of them is not a PEM file "
            f"({exc.reason or exc})."
        ) from None
    return context


def client_context(ca_file: str | None, *, what: str) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, plus ``ca_file`` (a private CA) when given."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        _readable(ca_file, f"CA file for {what}")
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"the CA file {ca_file!r} for {what} holds no PEM certificate ({exc.reason or exc})."
            ) from None
    return context


def redis_tls_options(url: str, ca_file: str | None) -> dict[str, Any]:
    """What redis-py needs besides a ``rediss://`` URL (or ``rediss+sentinel://``,
    ``rediss+cluster://``): the CA to trust, and TLS 1.2+."""
    scheme = urlsplit(url).scheme
    if scheme not in ("rediss", "rediss+sentinel", "rediss+cluster"):
        if ca_file:
            raise TlsConfigError(
                f"ALERTD_REDIS_CA_FILE is set but ALERTD_REDIS_URL is {scheme}://…: "
                "write rediss://host:port to reach Redis over TLS "
                "(rediss+sentinel://… or rediss+cluster://… for Sentinel or a Cluster)."
            )
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_min_version": ssl.TLSVersion.TLSv1_2}
    if ca_file:
        client_context(
            ca_file, what="Redis (ALERTD_REDIS_CA_FILE)"
        )  # a bad file stops the start, not each connect
        options["ssl_ca_certs"] = str(Path(ca_file))
    return options


def scheme(context: ssl.SSLContext | None) -> str:
    """``https`` or ``http``, for log lines and listening URLs."""
    return "https" if context is not None else "http"
