"""Signed CAP: a broadcaster can prove a document came from alertd and was not changed.

With ALERTD_SIGNING_KEY and ALERTD_SIGNING_CERT set, every CAP document alertd emits (the
webhook push, the MQTT feed) carries an enveloped XML-DSig signature that the ``xmlsec1``
command line and signxml both verify, and the document still validates against the OASIS
CAP 1.2 schema.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from alertd.cap_signature import DSIG_NS, BadSignature, CapSigner, SigningConfigError, UnsignedCap, verify
from alertd.engine import Engine
from alertd.xmlsafe import load_schema
from tests.conftest import RunningEngine, Sink, make_settings, start_engine, stop_engine
from tests.support import CAP_XSD, ROOT

ORDER = {"municipality": "08211", "level": 4, "action": "issue", "districts": ["三坂町"], "reason": "洪水",
         "status": "Exercise"}  # fmt: skip


def key_and_cert(tmp: Path, kind: str = "rsa") -> tuple[Path, Path]:
    """A key and a self-signed certificate, as a municipality's PKI would issue them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else \
        ec.generate_private_key(ec.SECP256R1())  # fmt: skip
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"alertd test {kind}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))  # fmt: skip
    key_path, cert_path = tmp / f"{kind}-key.pem", tmp / f"{kind}-cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def xmlsec1_verifies(document: bytes, cert: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("xmlsec1")
    if binary is None:
        pytest.skip("xmlsec1 is not installed (make test installs it: apt-get install xmlsec1)")
    path = tmp / "doc.xml"
    path.write_bytes(document)
    return subprocess.run([binary, "--verify", "--pubkey-cert-pem", str(cert), str(path)],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
async def test_every_emitted_cap_is_signed_verifies_with_xmlsec1_and_still_passes_the_schema(
    kind: str, tmp_path: Path, sink: Sink, mqtt: aiomqtt.Client
) -> None:
    key, cert = key_and_cert(tmp_path, kind)
    running = await start_engine(make_settings(signing_key=str(key), signing_cert=str(cert)))
    try:
        token = await running.add_issuer("joso", ["08211"])
        await running.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08"])
        await mqtt.subscribe(running.topics.alert("08211"), qos=1)
        status, answer = await running.post("/api/v1/evacuation-orders", token, ORDER)
        assert status == 202, answer
        await sink.wait_for(1)
        pushed = sink.at("/tv")[0]["body"]
        status, served = await running.get(f"/api/v1/alerts/{answer['id']}.cap")
        assert status == 200
        served = served.encode() if isinstance(served, str) else served
        async with asyncio.timeout(15):
            async for message in mqtt.messages:
                fed = bytes(message.payload)  # type: ignore[arg-type]
                break
    finally:
        await stop_engine(running)

    for document in (pushed, fed, served):
        root = etree.fromstring(document)
        assert root[-1].tag == f"{{{DSIG_NS}}}Signature"  # where CAP 1.2 allows it: the alert's end
        result = xmlsec1_verifies(document, cert, tmp_path)
        assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stderr
        verify(document, cert.read_bytes())  # signxml agrees
        if CAP_XSD.exists():
            schema = load_schema(CAP_XSD)
            assert schema.validate(root), schema.error_log
    # One changed word and neither verifier accepts it.
    tampered = pushed.replace("三坂町".encode(), "若宮戸".encode(), 1)
    assert tampered != pushed
    assert xmlsec1_verifies(tampered, cert, tmp_path).returncode != 0
    with pytest.raises(BadSignature):
        verify(tampered, cert.read_bytes())
    assert json.dumps(answer)  # the desk's answer is unchanged by signing


def test_a_document_signed_by_another_key_or_not_at_all_is_refused(tmp_path: Path) -> None:
    key, cert = key_and_cert(tmp_path, "rsa")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_cert = key_and_cert(other_dir, "rsa")
    document = (ROOT / "tests/fixtures/cap/joso-evacuation-order.xml").read_bytes()
    signed = CapSigner.from_files(key, cert).sign(document)
    verify(signed, cert.read_bytes())
    with pytest.raises(BadSignature, match="does not verify"):
        verify(signed, other_cert.read_bytes())
    with pytest.raises(UnsignedCap, match="no ds:Signature"):
        verify(document, cert.read_bytes())


async def test_a_half_configured_or_mismatched_signing_key_stops_the_start_with_the_reason(
    tmp_path: Path,
) -> None:
    key, cert = key_and_cert(tmp_path, "rsa")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_cert = key_and_cert(other_dir, "ecdsa")
    with pytest.raises(SigningConfigError, match="both"):
        await Engine(make_settings(signing_key=str(key))).start()
    with pytest.raises(SigningConfigError, match="not the certificate"):
        await Engine(make_settings(signing_key=str(key), signing_cert=str(other_cert))).start()
    with pytest.raises(SigningConfigError, match="cannot read"):
        await Engine(make_settings(signing_key=str(tmp_path / "missing.pem"), signing_cert=str(cert))).start()


async def test_an_issuer_with_a_registered_certificate_must_sign_its_cap_and_nothing_else_gets_in(
    tmp_path: Path, engine: RunningEngine, sink: Sink
) -> None:
    """Unsigned CAP is a 401, a signature by another key a 422, and neither writes anything."""
    key, cert = key_and_cert(tmp_path, "ecdsa")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_key, other_cert = key_and_cert(other_dir, "ecdsa")
    token = await engine.add_issuer("joso", ["08211"], senders=["bousai@city.joso.lg.jp"],
                                    cap_certificate=cert.read_text())  # fmt: skip
    status, shown = await engine.get("/api/v1/issuers/joso", headers=engine.admin)
    assert status == 200 and shown["cap_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    await engine.add_subscriber(id="tv", adapter="broadcaster", endpoint=f"{sink.url}/tv", districts=["08"])
    document = cap_now("unsigned-1")
    cap = {"Content-Type": "application/cap+xml"}
    status, problem = await engine.post("/api/v1/alerts", token, document, headers=cap)
    assert status == 401 and "must be signed" in problem["detail"], problem
    forged = CapSigner.from_files(other_key, other_cert).sign(cap_now("forged-1"))
    status, problem = await engine.post("/api/v1/alerts", token, forged, headers=cap)
    assert status == 422 and "does not verify" in problem["detail"], problem
    status, listed = await engine.get("/api/v1/alerts")
    assert status == 200 and listed == [], "a refused CAP wrote nothing"
    signed = CapSigner.from_files(key, cert).sign(cap_now("signed-1"))
    status, answer = await engine.post("/api/v1/alerts", token, signed, headers=cap)
    assert status == 202, answer
    await sink.wait_for(1)
    assert len(sink.received) == 1  # only the signed one went out
    # A certificate that is not one is refused when the issuer is registered.
    async with engine.http.post(f"{engine.url}/api/v1/issuers", headers=engine.admin, json={
        "id": "x", "name": "x", "token": "x" * 20, "jurisdiction": ["08211"],
        "cap_certificate": "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"}) as resp:  # fmt: skip
        assert resp.status == 422 and (await resp.json())["field"] == "cap_certificate"


def cap_now(identifier: str) -> bytes:
    """The Joso fixture, sent now, as 常総市's own sender."""
    from datetime import timedelta

    from alertd.cap import parse_cap, to_cap
    from alertd.models import utcnow

    alert = parse_cap((ROOT / "tests/fixtures/cap/joso-evacuation-order.xml").read_bytes())
    alert.identifier, alert.sender = identifier, "bousai@city.joso.lg.jp"
    alert.sent = utcnow().replace(microsecond=0)
    for info in alert.infos:
        info.effective, info.onset, info.expires = alert.sent, None, alert.sent + timedelta(hours=6)
    return to_cap(alert)
