#!/usr/bin/env bash
# System packages and services the full test suite needs; idempotent, safe to run again.
#   - Docker engine (Debian's docker.io) and debootstrap, installed when missing;
#   - OpenSSH's ssh-keygen (Debian's openssh-client), installed when missing: proven identity signs and verifies
#     with `ssh-keygen -Y` (tern/identity/ssh.py);
#   - promtool, extracted from Debian's prometheus package into the venv when missing (alert rules test);
#   - Debian's redis-server, installed when missing: the Bluesky queue server keeps its queue in Redis
#     (tests/bluesky, `tern up --with bluesky`);
#   - Debian's chromium, installed when missing: the Web UI browser tests (tests/test_webui.py) drive it through
#     Playwright; never `playwright install` (no browser download);
#   - dockerd started when it does not answer (systemd when it runs the machine, else in the background);
#   - the sandbox image built when missing (tern.sandbox.image.build_image: skipped when the image with the
#     current content hash exists).
# Environment: TERN_VENV (default ./.venv), DOCKERD_LOG (default /var/log/dockerd.log),
# DOCKERD_WAIT_S (default 60), TERN_SKIP_SANDBOX_IMAGE=1 to skip the image build, TERN_SKIP_CHROMIUM=1 to skip
# chromium (only the browser tests need it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TERN_VENV:-$(pwd)/.venv}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_WAIT_S="${DOCKERD_WAIT_S:-60}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { echo "system-deps: $*" >&2; }

apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ "${TERN_SKIP_CHROMIUM:-0}" = 1 ] || [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # apt-get update only when needed: the package lists do not know a package yet, or are too old to install it.
    apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || { apt_get update -qq && apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
}

docker_ok() { as_root docker info >/dev/null 2>&1; }

start_dockerd() {
  if docker_ok; then return 0; fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    say "starting docker with systemctl"
    as_root systemctl start docker || true
  fi
  if ! docker_ok && ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    as_root sh -c "nohup dockerd >>'$DOCKERD_LOG' 2>&1 &"
  fi
  local waited=0
  until docker_ok; do
    if [ "$waited" -ge "$DOCKERD_WAIT_S" ]; then
      say "ERROR: the Docker engine did not answer 'docker info' within ${DOCKERD_WAIT_S}s. Last lines of $DOCKERD_LOG:"
      as_root tail -n 30 "$DOCKERD_LOG" >&2 || true
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "docker engine is up ($(as_root docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

# promtool (tests/test_alerts.py checks infra/prometheus/alerts.yml with it) from Debian's prometheus package,
# extracted into the venv with dpkg-deb: installing the package would also install and start a Prometheus server.
install_promtool() {
  if [ -x "$VENV/bin/promtool" ] || command -v promtool >/dev/null 2>&1; then return 0; fi
  local tmp
  tmp=$(mktemp -d)
  say "extracting promtool from Debian's prometheus package into $VENV/bin"
  (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt_get update -qq && apt-get download prometheus >/dev/null; }; })
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  install -m 0755 "$tmp/root/usr/bin/promtool" "$VENV/bin/promtool"
  rm -rf "$tmp"
}

build_sandbox_image() {
  if [ "${TERN_SKIP_SANDBOX_IMAGE:-0}" = 1 ]; then say "TERN_SKIP_SANDBOX_IMAGE=1: not building the sandbox image"; return 0; fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "ERROR: no virtual environment at $VENV (run ./dev setup first)"
    exit 1
  fi
  # Needs root for debootstrap; the Python function skips the build when the current image exists.
  as_root "$VENV/bin/python" -c 'from tern.config import get_settings; from tern.sandbox.image import build_image; build_image(get_settings())'
}

install_packages
[ ! -d "$VENV/bin" ] || install_promtool
start_dockerd
build_sandbox_image
