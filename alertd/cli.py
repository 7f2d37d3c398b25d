"""The ``alertd`` command: serve | demo | issue | status | geo | jma | drill | test-broadcast | audit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from alertd import logs, loop
from alertd.httpclient import CliError
from alertd.httpclient import call as _http
from alertd.redact import redact_url


async def _until_signalled() -> None:
    """Wait for SIGINT or SIGTERM: how operators and process supervisors stop alertd.

    A child of ``alertd serve`` (ALERTD_PARENT_PID set) also stops when its parent is gone:
    an orphaned public listener would otherwise keep a port for a deployment that is no more.
    """
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            running.add_signal_handler(sig, stop.set)
    parent = os.environ.get("ALERTD_PARENT_PID")
    if parent and parent.isdigit():

        async def watch_parent() -> None:
            # Nothing signals a parent's death: look every second.
            while os.getppid() == int(parent):  # noqa: ASYNC110
                await asyncio.sleep(1)
            logs.get("alertd.child").warning("child.parent_gone", parent_pid=int(parent))
            stop.set()

        watcher = running.create_task(watch_parent())
        try:
            await stop.wait()
        finally:
            watcher.cancel()
        return
    await stop.wait()


def _metrics_dir(args: argparse.Namespace) -> str | None:
    """With child processes, /metrics must count them too: prometheus-client's
    multiprocess mode, each process writing its values to files in one directory that
    the scraped process sums. Set before prometheus_client is first imported (it picks
    its value store then). An operator's PROMETHEUS_MULTIPROC_DIR is used as it is (and
    must be emptied before the deployment starts); otherwise a fresh one is made here
    and removed at exit. Returns the directory to remove, if this made one."""
    if "prometheus_client" in sys.modules:  # imported already (an embedding): leave it be
        return None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _clear_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return None
    if args.workers <= 1 and args.public_port is None:
        return None
    path = tempfile.mkdtemp(prefix="alertd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _clear_dead_processes(path: str) -> None:
    """Remove the metric files of processes no longer running (prometheus-client's files are
    ``<kind>_<pid>.db``). Left there, a dead process's gauges (an open circuit, an old
    build) stay in /metrics for ever, as the units keep the directory across restarts. Files
    of running processes stay: an alertd-worker@ unit sharing the directory keeps counting."""
    try:
        names = os.listdir(path)
    except OSError:
        return  # not there yet: prometheus-client says so at import, in words
    for name in names:
        stem, _, pid = name.removesuffix(".db").rpartition("_")
        if not (name.endswith(".db") and stem and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # running
        except PermissionError:
            continue  # running, as another user
        except ProcessLookupError:
            pass
        with contextlib.suppress(OSError):
            os.remove(os.path.join(path, name))


def _refuse_example_secrets(settings: Any) -> None:
    """ValueError with the sentence to stop on, when a secret is an example's or too weak."""
    from alertd import example_secrets
    from alertd.config import load_seed

    try:
        seed = load_seed(settings.seed_file) if settings.seed_file else None
    except (OSError, ValueError):
        seed = None  # the engine's start says what is wrong with the file
    refusal = example_secrets.refusal(settings, seed)
    if refusal is not None:
        raise ValueError(refusal)


def _start_failed(command: str, exc: Exception) -> int:
    detail = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
    logs.get(f"alertd.{command}").error(f"{command}.start_failed", error=detail)
    print(f"alertd {command}: could not start: {detail}", file=sys.stderr)
    return 2


def _listener_tls(args: argparse.Namespace, settings: Any) -> tuple[Any, Any, list[str]]:
    """The desk's and the public listener's TLS contexts, and the public child's TLS flags.

    The public side defaults to the desk's pair; either may be plain HTTP.
    """
    from alertd.tls import server_context

    cert, key = args.tls_cert or settings.tls_cert, args.tls_key or settings.tls_key
    desk = server_context(cert, key, names=("--tls-cert (ALERTD_TLS_CERT)", "--tls-key (ALERTD_TLS_KEY)"))
    public_cert = getattr(args, "public_tls_cert", None) or settings.public_tls_cert
    public_key = getattr(args, "public_tls_key", None) or settings.public_tls_key
    if public_cert or public_key:
        public = server_context(public_cert, public_key, names=(
            "--public-tls-cert (ALERTD_PUBLIC_TLS_CERT)", "--public-tls-key (ALERTD_PUBLIC_TLS_KEY)"
        ))  # fmt: skip
    else:
        public_cert, public_key, public = cert, key, desk
    child_flags = ["--tls-cert", public_cert, "--tls-key", public_key] if public is not None else []
    return desk, public, child_flags


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from alertd.api import make_app
    from alertd.config import Settings
    from alertd.engine import Engine
    from alertd.tls import scheme

    settings = Settings.from_env()
    if args.config:
        settings.seed_file = args.config
    try:
        # Before anything starts: a listener must never fall back to plain HTTP.
        desk_tls, public_tls, public_flags = _listener_tls(args, settings)
        _refuse_example_secrets(settings)
    except ValueError as exc:
        return _start_failed("serve", exc)
    # The desk port first, before Redis, the broker or any child: serve must never run
    # without its listener (a taken port once left it delivering with no desk and no error).
    try:
        desk_socket = _listen(args.host, args.port)
    except OSError as exc:
        return _start_failed("serve", OSError(f"could not listen on {args.host}:{args.port}: {exc.strerror or exc}"))
    engine = Engine(settings, workers=not args.no_workers, settle_heap=True)
    try:
        await engine.start()
    except Exception as exc:
        # A bad configuration (a short token, an unknown district) or an unreachable
        # server: say so and exit, never hang half-started.
        desk_socket.close()
        await engine.stop()
        return _start_failed("serve", exc)
    # Extra delivery processes share the lanes through the consumer group: a
    # single Python process tops out around two thousand deliveries a second.
    children = ChildProcesses(settings)
    for i in range(args.workers - 1):
        children.add(f"w{i}", ["worker"])
    split = args.public_port is not None
    if split:
        # The public face in a process of its own: a flood of anonymous reads
        # then costs the desk and the flash lane nothing but a share of the CPU.
        children.add(
            "public", ["public", "--host", args.public_host, "--port", str(args.public_port), *public_flags]
        )
    children.start()
    engine.health_sources.append(children.problems)
    desk_app = make_app(engine, desk=True, public=not split)
    runner = web.AppRunner(desk_app, access_log=None)
    log = logs.get("alertd.serve")
    try:
        await runner.setup()
        await web.SockSite(runner, desk_socket, ssl_context=desk_tls).start()
        log.info(
            "serve.listening", desk=f"{scheme(desk_tls)}://{args.host}:{args.port}",
            public=f"{scheme(public_tls)}://{args.public_host}:{args.public_port} (own process)" if split else None,
            redis=redact_url(settings.redis_url or ""), mqtt=redact_url(settings.mqtt_url or ""),
        )  # fmt: skip
        await _until_signalled()
        log.info("serve.stopping")
    finally:
        # Whatever ended serve, its children and its engine end with it: no child left
        # running (or dead and never reaped) under a serve that no longer watches it.
        await runner.cleanup()
        desk_socket.close()
        children.stop()
        await engine.stop()
    return 0


class ChildProcesses:
    """Children of ``alertd serve`` (delivery workers, the public listener), restarted if they die."""

    def __init__(self, settings: Any) -> None:
        # Children use the engine's (possibly embedded) Redis and broker.
        self.env = {
            **os.environ,
            "ALERTD_REDIS_URL": settings.redis_url or "",
            "ALERTD_MQTT_URL": settings.mqtt_url or "",
            "ALERTD_KEY_PREFIX": settings.key_prefix,
        }
        self.env.pop("ALERTD_CONFIG", None)  # the parent already seeded
        self.env["ALERTD_PARENT_PID"] = str(os.getpid())  # children stop when the parent is gone
        self.commands: dict[str, list[str]] = {}
        self.exits: dict[str, list[tuple[float, int]]] = {}  # per child: (when, exit status), last minute
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, name: str, command: list[str]) -> None:
        from alertd import metrics  # imported once the metrics directory is settled (_metrics_dir)

        self.commands[name] = command
        metrics.precreate_tasks([f"child:{name}"])  # its restarts at zero from the start

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "ALERTD_CONSUMER": f"{socket.gethostname()}-{os.getpid()}-{name}"}
        return subprocess.Popen([sys.executable, "-m", "alertd", *self.commands[name]], env=env)

    def start(self) -> None:
        self.procs = {name: self._spawn(name) for name in self.commands}
        if self.procs:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        from alertd import metrics  # imported once the metrics directory is settled (_metrics_dir)

        log = logs.get("alertd.serve")
        while True:
            await asyncio.sleep(1)
            for name, proc in list(self.procs.items()):
                # One child's trouble (its metrics files, a failed spawn) must not end the
                # watch: a watcher that died once left a dead child unreaped for good.
                try:
                    if proc.poll() is None:  # poll() also reaps a child that ended
                        continue
                    log.warning("child.restarted", child=name, exit_status=proc.returncode)
                    metrics.TASK_RESTARTS.labels(f"child:{name}").inc()
                    now = time.monotonic()
                    self.exits[name] = [e for e in self.exits.get(name, []) if now - e[0] < 60]
                    self.exits[name].append((now, proc.returncode))
                    metrics.mark_process_dead(proc.pid)
                    self.procs[name] = self._spawn(name)
                except Exception as exc:
                    log.error("child.watch_failed", child=name, error=f"{type(exc).__name__}: {exc}")

    def problems(self) -> list[str]:
        """For the desk's /healthz: a child that keeps stopping serves nothing (a public
        listener whose port is taken exits at once, and is started again, and again)."""
        now = time.monotonic()
        out = []
        for name, exits in self.exits.items():
            recent = [status for when, status in exits if now - when < 60]
            if len(recent) >= 2:
                what = "the public listener" if name == "public" else f"delivery process {name}"
                out.append(f"{what} keeps stopping ({len(recent)} times in the last minute, exit status "
                           f"{recent[-1]}); see its log line '*.start_failed' for why")  # fmt: skip
        return out

    def stop(self) -> None:
        from alertd import metrics

        if self._task is not None:
            self._task.cancel()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            metrics.mark_process_dead(proc.pid)


async def _public(args: argparse.Namespace) -> int:
    """The public listener alone: alerts, feeds and acks, read from the shared Redis."""
    from aiohttp import web

    from alertd.api import make_app
    from alertd.config import Settings
    from alertd.engine import Engine
    from alertd.tls import scheme, server_context

    settings = Settings.from_env()
    try:
        # Run on its own, the public listener's pair is --tls-cert/--tls-key, else the
        # environment's public pair, else the desk's.
        if args.tls_cert or args.tls_key:
            tls = server_context(args.tls_cert, args.tls_key)
        elif settings.public_tls_cert or settings.public_tls_key:
            tls = server_context(settings.public_tls_cert, settings.public_tls_key,
                                 names=("ALERTD_PUBLIC_TLS_CERT", "ALERTD_PUBLIC_TLS_KEY"))  # fmt: skip
        else:
            tls = server_context(settings.tls_cert, settings.tls_key, names=("ALERTD_TLS_CERT", "ALERTD_TLS_KEY"))
    except ValueError as exc:
        return _start_failed("public", exc)
    # Take the port before connecting to anything: a port that is taken (or an address
    # that is not this host's) then fails in a moment, not after Redis and the broker.
    try:
        listening = _listen(args.host, args.port)
    except OSError as exc:
        return _start_failed("public", OSError(f"could not listen on {args.host}:{args.port}: {exc.strerror or exc}"))
    engine = Engine(settings, reader=True, settle_heap=True)
    try:
        await engine.start()
    except Exception as exc:
        listening.close()
        await engine.stop()
        return _start_failed("public", exc)
    runner = web.AppRunner(make_app(engine, desk=False, public=True), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listening, ssl_context=tls).start()
    logs.get("alertd.public").info("public.listening", url=f"{scheme(tls)}://{args.host}:{args.port}")
    await _until_signalled()
    await runner.cleanup()
    await engine.stop()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, as aiohttp's TCPSite would open it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _worker() -> int:
    """A delivery-only process: no HTTP listener, same Redis, same lanes."""
    from alertd.config import Settings
    from alertd.engine import Engine

    settings = Settings.from_env()
    try:
        _refuse_example_secrets(settings)
    except ValueError as exc:
        return _start_failed("worker", exc)
    engine = Engine(settings, workers=True, ingest=False, settle_heap=True)
    await engine.start()
    await _until_signalled()
    await engine.stop()
    return 0


def _need_token(token: str | None, what: str) -> str:
    if not token:
        raise CliError(f"{what} needs your desk's token: give --token or set ALERTD_ISSUER_TOKEN.")
    return token


def _issue(args: argparse.Namespace) -> int:
    body = {
        "municipality": args.municipality,
        "level": args.level,
        "action": "lift" if args.lift else "issue",
        "districts": args.districts or ["all"],
        "reason": args.reason,
        "status": args.status,
    }
    if args.identifier:
        body["identifier"] = args.identifier
    token = _need_token(args.token, "Issuing an order")
    path = "/api/v1/evacuation-orders/preview" if args.preview else "/api/v1/evacuation-orders"
    status, data = _http("POST", args.url.rstrip("/") + path, token, body)
    if status >= 400:
        print(f"refused ({status}): {data.get('detail')}", file=sys.stderr)
        return 1
    if args.geojson and isinstance(data, dict):
        with open(args.geojson, "w", encoding="utf-8") as fh:
            json.dump(data.get("geojson"), fh, ensure_ascii=False)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    elif args.preview:
        print(_preview_summary(data))
    else:
        print(_accepted_summary(data))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    """取消 of a mis-sent alert: a Cancel referencing it, with the alert's own status."""
    token = _need_token(args.token, "Cancelling an alert")
    base = args.url.rstrip("/")
    public = (args.public_url or base).rstrip("/")
    status, alert = _http("GET", f"{public}/api/v1/alerts/{args.alert}", None)
    if status >= 400:
        print(f"refused ({status}): {alert.get('detail')}", file=sys.stderr)
        return 1
    body = {"status": alert["status"], "msg_type": "Cancel", "references": [args.alert]}
    status, data = _http("POST", f"{base}/api/v1/alerts", token, body)
    if status >= 400:
        print(f"refused ({status}): {data.get('detail')}", file=sys.stderr)
        return 1
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else _accepted_summary(data))
    return 0


def _levels_table(rows: list[dict[str, Any]]) -> str:
    from alertd.report import table

    def level(value: Any) -> str:
        return "-" if value is None else f"L{value}"

    return table(["district", "before", "after"],
                 [[r["name"], level(r["level_before"]), level(r["level_after"])] for r in rows])  # fmt: skip


def _preview_summary(data: dict[str, Any]) -> str:
    """What a desk officer checks before sending: where, what it says, who gets it, what it ends."""
    lines = [
        "PREVIEW — nothing was sent.",
        f"districts:  {'、'.join(data.get('district_names') or [])}",
        f"headline:   {(data.get('headline') or {}).get('ja-JP') or ''}",
        f"receivers:  {data.get('deliveries')}",
    ]
    if data.get("ends"):
        lines.append(f"ends:       {', '.join(data['ends'])}")
    for alert_id, districts in (data.get("lifts_from") or {}).items():
        lines.append(f"lifts from: {alert_id} ({'、'.join(districts)})")
    for item in data.get("still_in_force") or []:
        lines.append(f"still in force: L{item['level']} in {'、'.join(item['districts'])}")
    if data.get("levels"):
        lines += ["", _levels_table(data["levels"])]
    lines.append("(map outline: --geojson FILE; everything: --json)")
    return "\n".join(lines)


def _accepted_summary(data: dict[str, Any]) -> str:
    if data.get("state") == "awaiting_approval":
        # Under the issuer's two-person rule nothing has gone out: never say SENT.
        return "\n".join([
            f"HELD FOR APPROVAL: draft {data.get('id')}. Nothing was sent.",
            "Another person with the approver role must approve it: POST /api/v1/drafts/"
            f"{data.get('id')}/approve (GET /api/v1/drafts lists what waits).",
        ])  # fmt: skip
    lines = [
        f"SENT: alert {data.get('id')} ({data.get('status')}, {data.get('msg_type')}, {data.get('priority')} lane), "
        f"{data.get('deliveries')} receivers.",
        f"Follow it with: alertd status {data.get('id')}",
    ]
    if data.get("levels"):
        lines += ["", _levels_table(data["levels"])]
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from alertd.report import deliveries_table

    base = args.url.rstrip("/")
    if args.alert:
        # Deliveries name receivers and their errors: an issuer's or the admin's token is needed.
        token = _need_token(args.token, "Seeing who got an alert")
        status, data = _http("GET", f"{base}/api/v1/alerts/{args.alert}/deliveries", token)
        if status >= 400:
            print(f"refused ({status}): {data.get('detail')}", file=sys.stderr)
            return 1
        print(
            json.dumps(data, ensure_ascii=False, indent=2)
            if args.json
            else deliveries_table(data["deliveries"])
        )
        return 0
    _, health = _http("GET", f"{base}/healthz", None)
    # With split ports the alerts are read from the public listener.
    public = (args.public_url or base).rstrip("/")
    status, alerts = _http("GET", f"{public}/api/v1/alerts?active=true&status=all", None)
    if status >= 400 or not isinstance(alerts, list):
        raise CliError(
            f"{public} does not serve the alerts in force (HTTP {status}). With 'serve --public-port', "
            "give the public address with --public-url or ALERTD_PUBLIC_URL."
        )
    if args.json:
        print(json.dumps({"health": health, "active": alerts}, ensure_ascii=False, indent=2))
        return 0
    print(f"engine: {health.get('status')}  queue: {health.get('queue_depth')}")
    for cause in health.get("causes") or []:
        print(f"  ! {cause}")
    for a in alerts:
        event = (a.get("infos") or [{}])[0].get("event", "")
        # Only what stands: a district a later lift ended is no longer under this order.
        lifted = set(a.get("lifted_districts") or [])
        stands = [d for d in a["districts"] if d not in lifted]
        ended = f"  (lifted: {sorted(lifted)})" if lifted else ""
        print(f"{a['id']}  {a['status']:<8} {a['msg_type']:<6} level={a.get('level')} {event}  {stands}{ended}")
    return 0


def _tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS (env ALERTD_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert (env ALERTD_TLS_KEY)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertd", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("ALERTD_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the engine and the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--public-host", default="127.0.0.1", help="listener for feeds, reads and acks")
    p.add_argument("--public-port", type=int, default=None, help="serve public routes on their own port")
    p.add_argument("--config", help="YAML file seeding issuers and subscribers")
    p.add_argument("--no-workers", action="store_true", help="API only; deliveries left to other processes")
    p.add_argument("--workers", type=int, default=int(os.environ.get("ALERTD_WORKERS", "1")),
                   help="delivery processes in all (this one included); default 1")  # fmt: skip
    _tls_flags(p)
    p.add_argument("--public-tls-cert", help="the public listener's own certificate (default: --tls-cert)")
    p.add_argument("--public-tls-key", help="the public listener's own key (default: --tls-key)")

    sub.add_parser("worker", help="a delivery-only process sharing the lanes of a running engine")

    p = sub.add_parser("public", help="the public listener alone (alerts, feeds, acks), as serve --public-port runs it")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    _tls_flags(p)

    p = sub.add_parser("demo", help="a Joso flood drill on embedded Redis and MQTT, with a delivery report")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--speed", type=float, default=1.0)

    p = sub.add_parser("issue", help="send an evacuation order to a running engine")
    p.add_argument("--url", default=os.environ.get("ALERTD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("ALERTD_ISSUER_TOKEN"))
    p.add_argument("--municipality", required=True)
    p.add_argument("--level", type=int, required=True, choices=[3, 4, 5])
    p.add_argument("--districts", nargs="*")
    p.add_argument("--reason", required=True, help="why, as the desk would say it: 洪水, 土砂災害, 高潮 …")
    p.add_argument("--status", required=True, choices=["Actual", "Exercise", "Test"])
    p.add_argument("--lift", action="store_true")
    p.add_argument("--identifier", help="your own id for the order; sending it again is safe")
    p.add_argument("--preview", action="store_true", help="show districts, receivers and what a lift ends; send nothing")
    p.add_argument("--geojson", help="with --preview: write the map outline to this file")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")

    p = sub.add_parser("cancel", help="取消: withdraw a mis-sent alert (a Cancel that references it)")
    p.add_argument("alert", help="the alertd id of the alert to withdraw")
    p.add_argument("--url", default=os.environ.get("ALERTD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--public-url", default=os.environ.get("ALERTD_PUBLIC_URL"))
    p.add_argument("--token", default=os.environ.get("ALERTD_ISSUER_TOKEN"))
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("status", help="engine health and alerts in force, or one alert's deliveries")
    p.add_argument("--url", default=os.environ.get("ALERTD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("ALERTD_ISSUER_TOKEN") or os.environ.get("ALERTD_ADMIN_TOKEN"),
                   help="issuer or admin token, for one alert's deliveries")  # fmt: skip
    p.add_argument("--public-url", default=os.environ.get("ALERTD_PUBLIC_URL"),
                   help="the public listener, when serve runs with --public-port")  # fmt: skip
    p.add_argument("alert", nargs="?")
    p.add_argument("--json", action="store_true")

    sub.add_parser("geo", help="geo import PATH…: build the boundary cache from N03 data; geo layer add MUNI "
                   "LAYER FILE: load 自治区, 学区 … from GeoJSON or CSV", add_help=False)
    sub.add_parser("jma", help="JMA XML tools (jma parse FILE…; jma poll --to DIR)", add_help=False)
    sub.add_parser("drill", help="drill scenarios (drill run SCENARIO)", add_help=False)
    sub.add_parser("test-broadcast", help="the transmission test", add_help=False)
    sub.add_parser("audit", help="audit verify | audit export [--since SEQ]: check or archive the audit trail",
                   add_help=False)  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-tools with their own parsers get the rest of the line untouched.
    if argv and argv[0] == "jma":
        from alertd.jma.cli import main as jma_main

        return jma_main(argv[1:])
    if argv[:2] == ["geo", "layer"]:
        from alertd.layer_cli import main as layer_main

        return layer_main(argv[2:])
    if argv[:2] == ["geo", "import"]:
        from geo.importer import main_import

        logs.setup(os.environ.get("ALERTD_LOG_LEVEL", "INFO"))
        return main_import(argv[2:])
    if argv and argv[0] == "drill":
        from alertd.drills.cli import main as drill_main

        logs.setup(os.environ.get("ALERTD_LOG_LEVEL", "WARNING"))
        return drill_main(argv[1:])
    if argv and argv[0] == "audit":
        from alertd.audit import main as audit_main

        return audit_main(argv[1:])
    if argv and argv[0] == "test-broadcast":
        from alertd.testbroadcast import main as tb_main

        logs.setup(os.environ.get("ALERTD_LOG_LEVEL", "WARNING"))
        return tb_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from alertd.demo import main as demo_main

        logs.setup(os.environ.get("ALERTD_LOG_LEVEL", "WARNING"))
        return demo_main(args)
    logs.setup(args.log_level)
    if args.command == "serve":
        owned = _metrics_dir(args)
        try:
            return loop.run(_serve(args))
        finally:
            if owned is not None:
                shutil.rmtree(owned, ignore_errors=True)
    if args.command == "worker":
        return loop.run(_worker())
    if args.command == "public":
        return loop.run(_public(args))
    try:
        if args.command == "issue":
            return _issue(args)
        if args.command == "status":
            return _status(args)
        if args.command == "cancel":
            return _cancel(args)
    except CliError as err:
        print(err, file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
