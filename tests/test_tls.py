"""TLS everywhere a deployment crosses a network, over real sockets.

A throwaway CA signs certificates for 127.0.0.1; then ``alertd serve`` answers
HTTPS on both listeners, the engine works through a TLS-only Redis
(``rediss://``) and a TLS-only, password-protected Mosquitto (``mqtts://``),
and a refused broker login is reported by /healthz without the password.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import secrets
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alertd.metrics import REPLICATION_SHORT
from simulations import faults
from tests.conftest import (
    ADMIN_TOKEN,
    MQTT_URL,
    REDIS_URL,
    RunningEngine,
    Sink,
    free_port,
    make_settings,
    start_engine,
    stop_engine,
    wipe,
)
from tests.servers import MosquittoServer, RedisServer, TlsFiles
from tests.support import ROOT

ORDER = {
    "municipality": "08211", "level": 4, "action": "issue", "districts": ["all"], "reason": "洪水",
    "status": "Exercise",
}  # fmt: skip


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def make_pki(where: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 and localhost, signed by it, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alertd test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files = TlsFiles(ca=str(where / "ca.pem"), cert=str(where / "server.pem"), key=str(where / "server.key"))
    Path(files.ca).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(files.key).write_bytes(_pem_key(key))
    Path(files.key).chmod(0o600)
    return files


@pytest.fixture
def pki(tmp_path: Path) -> TlsFiles:
    return make_pki(tmp_path)


def trusting(pki: TlsFiles) -> ssl.SSLContext:
    """What a client that was given the deployment's CA trusts."""
    return ssl.create_default_context(cafile=pki.ca)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


# --- the listeners -------------------------------------------------------------------------


async def _answers(http: aiohttp.ClientSession, url: str, context: ssl.SSLContext) -> bool:
    try:
        async with http.get(url, ssl=context) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, OSError):
        return False


async def test_serve_with_a_certificate_speaks_https_on_both_listeners_and_delivers(
    pki: TlsFiles, sink: Sink
) -> None:
    port, public_port = free_port(), free_port()
    prefix = f"alertd-test-{secrets.token_hex(4)}"
    env = {
        **os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL, "ALERTD_KEY_PREFIX": prefix,
        "ALERTD_TOPIC_PREFIX": f"{prefix}/alerts/v1", "ALERTD_ADMIN_TOKEN": ADMIN_TOKEN,
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "serve", "--port", str(port), "--public-port", str(public_port),
        "--tls-cert", pki.cert, "--tls-key", pki.key,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    # Read as it comes, so a chatty log never fills the pipe and stalls serve.
    output = asyncio.create_task(proc.stdout.read())
    desk, public = f"https://127.0.0.1:{port}", f"https://127.0.0.1:{public_port}"
    tls = trusting(pki)
    try:
        async with aiohttp.ClientSession() as http:
            await eventually(
                lambda: _answers(http, f"{desk}/healthz", tls), 60, "serve answering https /healthz"
            )
            await eventually(lambda: _answers(http, f"{public}/api/v1/alerts", tls), 60,
                             "the public listener answering over https")  # fmt: skip
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = f"token-joso-{secrets.token_hex(8)}"
            issuer = {"id": "joso", "name": "常総市", "token": token, "jurisdiction": ["08211"]}
            async with http.post(f"{desk}/api/v1/issuers", json=issuer, headers=admin, ssl=tls) as resp:
                assert resp.status == 201, await resp.text()
            subscriber = {
                "id": "portal",
                "adapter": "isp",
                "endpoint": f"{sink.url}/portal",
                "districts": ["08211"],
                "drills": True,
            }
            async with http.post(
                f"{desk}/api/v1/subscribers", json=subscriber, headers=admin, ssl=tls
            ) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(f"{desk}/api/v1/evacuation-orders", json=ORDER, ssl=tls,
                                 headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
                answer = await resp.json()
                assert resp.status == 202, answer
            await sink.wait_for(1)
            assert json.loads(sink.at("/portal")[0]["body"])["id"] == answer["id"]

            # The public listener serves the alert over TLS too.
            async with http.get(f"{public}/api/v1/alerts/{answer['id']}", ssl=tls) as resp:
                assert resp.status == 200

            # The operator commands reach it too, trusting the CA through OpenSSL's SSL_CERT_FILE.
            status_cmd = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alertd", "status", "--url", desk, "--public-url", public,
                cwd=ROOT, env={**os.environ, "SSL_CERT_FILE": pki.ca},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(status_cmd.communicate(), 60)
            assert status_cmd.returncode == 0, err.decode()
            assert answer["id"] in out.decode()

            # Plain HTTP to either port gets no answer: a token never travels in clear.
            for plain in (
                f"http://127.0.0.1:{port}/healthz",
                f"http://127.0.0.1:{public_port}/api/v1/alerts",
            ):
                with pytest.raises(aiohttp.ClientError):
                    async with http.get(plain) as resp:
                        await resp.read()
            # A client that does not trust the deployment's CA refuses the listener.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.get(f"{desk}/healthz", ssl=ssl.create_default_context()) as resp:
                    await resp.read()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await wipe(prefix)
    logged = (await output).decode(errors="replace")
    assert f"https://127.0.0.1:{port}" in logged and f"https://127.0.0.1:{public_port}" in logged


async def _serve_fails(*flags: str) -> str:
    """Run ``alertd serve`` with these flags; it must exit 2 at once. Returns what it said."""
    env = {**os.environ, "ALERTD_REDIS_URL": REDIS_URL, "ALERTD_MQTT_URL": MQTT_URL,
           "ALERTD_KEY_PREFIX": f"alertd-test-{secrets.token_hex(4)}"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "serve", "--port", str(free_port()), *flags,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()
    return err.decode()


async def test_a_certificate_without_its_key_stops_serve_with_a_sentence(pki: TlsFiles) -> None:
    said = await _serve_fails("--tls-cert", pki.cert)
    assert "--tls-cert (ALERTD_TLS_CERT) was given without --tls-key" in said
    assert "Traceback" not in said


async def test_a_key_that_is_not_the_certificates_stops_serve(pki: TlsFiles, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    said = await _serve_fails("--tls-cert", pki.cert, "--tls-key", str(other))
    assert f"the TLS key {str(other)!r} does not belong to the certificate {pki.cert!r}" in said


async def test_an_encrypted_key_stops_serve_instead_of_prompting_for_a_passphrase(
    pki: TlsFiles, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(Path(pki.key).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"passphrase")))  # fmt: skip
    said = await _serve_fails("--tls-cert", pki.cert, "--tls-key", str(encrypted))
    assert f"the TLS key {str(encrypted)!r} is encrypted" in said


async def test_an_unreadable_certificate_stops_serve(pki: TlsFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.pem")
    said = await _serve_fails("--tls-cert", missing, "--tls-key", pki.key)
    assert f"cannot read the TLS certificate {missing!r}" in said


async def test_the_public_listener_alone_refuses_a_half_pair(pki: TlsFiles) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", "public", "--port", str(free_port()), "--tls-key", pki.key,
        cwd=ROOT, env={**os.environ, "ALERTD_REDIS_URL": REDIS_URL},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "--tls-key was given without --tls-cert" in err.decode()


async def joso_desk(running: RunningEngine, sink: Sink) -> str:
    """An issuer for 常総市 and one signage receiver there; the issuer's token."""
    token = await running.add_issuer("joso", ["08211"])
    await running.add_subscriber(id="sign", adapter="signage", endpoint=f"{sink.url}/sign", districts=["08211"])
    return token


async def order_accepted(running: RunningEngine, token: str) -> str:
    """The drill order, answered 202; its id."""
    status, answer = await running.post("/api/v1/evacuation-orders", token, ORDER)
    assert status == 202, answer
    return str(answer["id"])


# --- Redis over TLS --------------------------------------------------------------------------


@pytest.fixture
async def tls_redis(pki: TlsFiles) -> AsyncIterator[RedisServer]:
    server = RedisServer(tls=pki).start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_engine_works_through_a_tls_only_redis(
    tls_redis: RedisServer, pki: TlsFiles, sink: Sink
) -> None:
    assert tls_redis.url.startswith("rediss://127.0.0.1:")
    running = await start_engine(make_settings(redis_url=tls_redis.url, redis_ca_file=pki.ca))
    try:
        status, health = await running.get("/healthz")
        assert status == 200 and health["redis"] == "ok", health
        alert_id = await order_accepted(running, await joso_desk(running, sink))
        await running.wait_deliveries(alert_id, {"delivered"}, count=1)
        assert len(sink.at("/sign")) == 1
    finally:
        await stop_engine(running, wipe_keys=False)


async def test_without_the_ca_file_the_tls_redis_is_not_trusted(tls_redis: RedisServer) -> None:
    from alertd.engine import Engine

    engine = Engine(make_settings(redis_url=tls_redis.url))
    try:
        with pytest.raises(Exception, match="certificate verify failed"):
            await engine.start()
    finally:
        await engine.stop()


async def test_a_ca_file_with_a_plain_redis_url_is_refused_in_a_sentence(pki: TlsFiles) -> None:
    from alertd.engine import Engine
    from alertd.tls import TlsConfigError

    engine = Engine(make_settings(redis_ca_file=pki.ca))
    try:
        with pytest.raises(TlsConfigError, match="write rediss://host:port"):
            await engine.start()
    finally:
        await engine.stop()


# --- Redis over TLS, through Sentinel and as a Cluster ---------------------------------------


def _tls_redis_args(pki: TlsFiles, port: int) -> list[str]:
    """A TLS-only redis-server: the plain port off, replication (and a cluster's bus) over TLS too."""
    return [
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", pki.cert, "--tls-key-file", pki.key,
        "--tls-ca-cert-file", pki.ca, "--tls-auth-clients", "no", "--tls-replication", "yes",
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip


def _tls_client(pki: TlsFiles, port: int) -> redis.Redis:
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=pki.ca, socket_timeout=5, decode_responses=True)


class _TlsSentinel(faults.Process):
    name = "sentinel"

    def __init__(self, pki: TlsFiles, master_port: int) -> None:
        super().__init__()
        self.conf = Path(self.dir) / "sentinel.conf"
        self.conf.write_text("\n".join([
            "port 0", f"tls-port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
            f"tls-cert-file {pki.cert}", f"tls-key-file {pki.key}", f"tls-ca-cert-file {pki.ca}",
            "tls-auth-clients no", "tls-replication yes",  # it speaks TLS to the master and replicas too
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1",
        ]) + "\n")  # fmt: skip

    def args(self) -> list[str]:
        return [faults.binary("redis-server"), str(self.conf), "--sentinel"]


async def test_through_sentinel_over_tls_an_accepted_order_is_on_the_tls_replica_and_delivered(
    pki: TlsFiles, sink: Sink
) -> None:
    master = faults.RedisServer()
    master.extra = _tls_redis_args(pki, master.port)
    replica = faults.RedisServer()
    replica.extra = [*_tls_redis_args(pki, replica.port), "--replicaof", "127.0.0.1", str(master.port)]
    servers: list[faults.Process] = [master.start(), replica.start()]
    try:
        on_replica = _tls_client(pki, replica.port)
        faults.wait_for(lambda: on_replica.info("replication")["master_link_status"] == "up", 15,
                        "the TLS replica did not sync")  # fmt: skip
        sentinel = _TlsSentinel(pki, master.port)
        servers.append(sentinel.start())
        url = f"rediss+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
        # WAIT 1 is the default with Sentinel: the 202 comes once the TLS replica holds the order.
        running = await start_engine(make_settings(redis_url=url, redis_ca_file=pki.ca))
        try:
            status, health = await running.get("/healthz")
            assert status == 200 and health["redis"] == "ok", health
            token = await joso_desk(running, sink)
            short_before = REPLICATION_SHORT._value.get()
            alert_id = await order_accepted(running, token)
            assert on_replica.hexists(running.engine.keys.alert(alert_id), "doc"), "the order is not on the replica"
            assert REPLICATION_SHORT._value.get() == short_before
            await running.wait_deliveries(alert_id, {"delivered"}, count=1)
        finally:
            await stop_engine(running, wipe_keys=False)
        on_replica.close()
    finally:
        for server in reversed(servers):
            server.stop()


async def test_a_tls_redis_cluster_carries_an_order_through_the_master_of_alertds_slot(
    pki: TlsFiles, sink: Sink
) -> None:
    node = faults.RedisServer()
    # The cluster bus gets a free port of its own: the default, port + 10000, is past 65535
    # whenever the free port drawn is above 55535 (a CI run failed that way).
    node.extra = [*_tls_redis_args(pki, node.port), "--cluster-enabled", "yes", "--tls-cluster", "yes",
                  "--cluster-config-file", "nodes.conf", "--cluster-port", str(faults.free_port())]  # fmt: skip
    node.start()
    try:
        admin = _tls_client(pki, node.port)
        admin.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)  # a one-node cluster serving every slot
        faults.wait_for(
            lambda: admin.cluster("info")["cluster_state"] == "ok", 15, "the cluster did not come up"
        )
        url = f"rediss+cluster://127.0.0.1:{node.port}"
        running = await start_engine(
            make_settings(redis_url=url, redis_ca_file=pki.ca, redis_wait_replicas=0)
        )
        try:
            alert_id = await order_accepted(running, await joso_desk(running, sink))
            await running.wait_deliveries(alert_id, {"delivered"}, count=1)
            # Every key in the one hash-tagged slot, read back over TLS.
            assert running.engine.keys.alert(alert_id).startswith("{")
            assert admin.hexists(running.engine.keys.alert(alert_id), "doc")
        finally:
            await stop_engine(running, wipe_keys=False)
        admin.close()
    finally:
        node.stop()


def test_a_tls_sentinel_or_cluster_url_without_the_ca_file_is_not_trusted_and_a_plain_one_refuses_the_ca_file(
    pki: TlsFiles,
) -> None:
    from alertd.tls import TlsConfigError, redis_tls_options

    for url in ("rediss+sentinel://127.0.0.1:26379/mymaster/0", "rediss+cluster://127.0.0.1:7000"):
        assert redis_tls_options(url, pki.ca)["ssl_ca_certs"] == pki.ca
    with pytest.raises(TlsConfigError, match="rediss\\+sentinel://"):
        redis_tls_options("redis+sentinel://127.0.0.1:26379/mymaster/0", pki.ca)


# --- the broker over TLS, with logins --------------------------------------------------------

FEED_PASSWORD = "feed-Pw-" + secrets.token_hex(6)
GATEWAY_PASSWORD = "gw-Pw-" + secrets.token_hex(6)


@pytest.fixture
async def tls_broker(pki: TlsFiles) -> AsyncIterator[MosquittoServer]:
    server = MosquittoServer(tls=pki, users={"alertd": FEED_PASSWORD, "gateway": GATEWAY_PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return json.dumps([[r.getMessage(), getattr(r, "fields", None)] for r in caplog.records], default=str)


async def test_the_feed_deliveries_and_acks_go_through_a_tls_broker_with_a_login(
    tls_broker: MosquittoServer, pki: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = tls_broker.port
    running = await start_engine(make_settings(
        mqtt_url=f"mqtts://alertd:{FEED_PASSWORD}@127.0.0.1:{port}", mqtt_ca_file=pki.ca,
    ))  # fmt: skip
    try:
        token = await running.add_issuer("joso", ["08211"])
        radio_topic = f"radio/{secrets.token_hex(4)}/08211"
        gateway_topic = f"gateway/{secrets.token_hex(4)}/08211"
        # On the deployment's broker with no login of its own: it gets in as the feed does.
        await running.add_subscriber(id="radio", adapter="radio", endpoint=f"mqtts://127.0.0.1:{port}/{radio_topic}",
                                     districts=["08211"])  # fmt: skip
        # A receiver's own account on the broker.
        await running.add_subscriber(
            id="gateway", adapter="isp", districts=["08211"],
            endpoint=f"mqtts://gateway:{GATEWAY_PASSWORD}@127.0.0.1:{port}/{gateway_topic}",
        )  # fmt: skip
        status, listed = await running.get("/api/v1/subscribers", headers=running.admin)
        assert status == 200 and GATEWAY_PASSWORD not in json.dumps(listed)

        async with aiomqtt.Client(
            "127.0.0.1", port, username="gateway", password=GATEWAY_PASSWORD, tls_context=trusting(pki),
            identifier=f"test-{secrets.token_hex(4)}", protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:  # fmt: skip
            feed_topic = running.topics.alert("08211")
            for topic in (feed_topic, radio_topic, gateway_topic):
                await client.subscribe(topic, qos=1)
            status, answer = await running.post("/api/v1/evacuation-orders", token, ORDER)
            assert status == 202, answer
            got: dict[str, bytes] = {}
            async with asyncio.timeout(20):
                async for message in client.messages:
                    got[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]
                    if len(got) == 3:
                        break
            assert b"urn:oasis:names:tc:emergency:cap:1.2" in got[feed_topic]
            assert json.loads(got[gateway_topic])["alert_id"] == answer["id"]
            envelope = json.loads(got[radio_topic])
            assert envelope["alert_id"] == answer["id"]
            # The radio confirms over the same TLS broker; the engine's ack listener takes it.
            ack = {"alert_id": answer["id"], "idempotency_key": envelope["idempotency_key"]}
            await client.publish(envelope["ack_topic"], json.dumps(ack), qos=1)
            rows = await running.wait_deliveries(answer["id"], {"confirmed", "delivered"}, count=2)
            await eventually(
                lambda: _confirmed(running, answer["id"], "radio"), 20, "the radio's MQTT ack being recorded"
            )
            assert {r["subscriber"] for r in rows} == {"radio", "gateway"}
    finally:
        await stop_engine(running)
    logged = _logged(caplog)
    assert "mqtt.connected" in logged
    assert FEED_PASSWORD not in logged and GATEWAY_PASSWORD not in logged


async def _confirmed(running: RunningEngine, alert_id: str, subscriber: str) -> bool:
    rows = await running.deliveries(alert_id)
    return any(r["subscriber"] == subscriber and r["state"] == "confirmed" for r in rows)


async def test_a_refused_broker_login_makes_healthz_503_naming_the_broker_not_the_password(
    tls_broker: MosquittoServer, pki: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = tls_broker.port
    running = await start_engine(make_settings(
        mqtt_url=f"mqtts://127.0.0.1:{port}", mqtt_username="alertd", mqtt_password=FEED_PASSWORD,
        mqtt_ca_file=pki.ca,
    ))  # fmt: skip
    try:
        status, health = await running.get("/healthz")
        assert status == 200, health
        # The broker's password is changed (and the broker restarted) behind alertd's back.
        tls_broker.kill()
        tls_broker.users = {"alertd": "rotated-" + secrets.token_hex(6)}
        tls_broker.start()
        said: dict[str, Any] = {}

        async def says_login_refused() -> bool:
            status, body = await running.get("/healthz")
            said.update(body)
            return status == 503 and any(
                f"MQTT broker at 127.0.0.1:{port}" in c and "refused the user name or password" in c
                for c in body["causes"]
            )

        await eventually(says_login_refused, 20, "/healthz reporting the refused broker login")
        assert FEED_PASSWORD not in json.dumps(said)
    finally:
        await stop_engine(running)
    assert FEED_PASSWORD not in _logged(caplog)


async def test_a_wrong_broker_password_at_start_stops_the_engine_with_a_sentence(
    tls_broker: MosquittoServer, pki: TlsFiles
) -> None:
    from alertd.engine import Engine
    from alertd.feed import FeedUnavailable

    wrong = "wrong-" + secrets.token_hex(6)
    engine = Engine(
        make_settings(mqtt_url=f"mqtts://alertd:{wrong}@127.0.0.1:{tls_broker.port}", mqtt_ca_file=pki.ca)
    )
    try:
        with pytest.raises(FeedUnavailable) as refused:
            await engine.start()
    finally:
        await engine.stop()
    said = refused.value.detail
    assert (
        f"the MQTT broker at 127.0.0.1:{tls_broker.port}" in said
        and "refused the user name or password" in said
    )
    assert wrong not in said
