#!/usr/bin/env bash
# Installs what the tests and the benchmark's reference pipeline need on a
# fresh Debian machine: Debian packages with apt-get (only those missing) and
# the real sqlalchemy-collectd client from PyPI in .venv. Run by
# scripts/test.sh, and by the benchmark when its reference pipeline is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_install() {
  # Another apt run (an unattended upgrade) may hold the lock: wait for it.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "$@"
}

missing=()
# prometheus: prometheus and promtool; collectd-core: the daemon, whose write_http
# and python plugins need libyajl2 and libpython3.11, and whose write_prometheus
# plugin (the benchmark's reference pipeline) needs libmicrohttpd12 and
# libprotobuf-c1 (all only suggested by it);
# tmux: tests/top.rs drives the terminal UI in it; curl is the HTTPS client of
# tests/web_config.rs;
# systemd (systemd-analyze), zsh, fish, groff-base, man-db: tests/packaging.rs checks the
# systemd unit, the completion scripts and the manual page with them;
# postgresql (the server, initdb and psql under /usr/lib/postgresql/*/bin) and
# pgbouncer: tests/database.rs starts both in temporary directories of its own;
# victoria-metrics: the central store of tests/scale_out.rs (Prometheus agents
# remote-write into it);
# buildah builds the image of tests/container.rs (scripts/container-image.sh),
# podman runs it, with runc (crun refuses cgroups in hybrid mode, as some
# container hosts have them) and slirp4netns (the container's own network
# namespace, its ports published on 127.0.0.1 only);
# nodejs and npm run the prometheus-operator API's validators of
# tests/kubernetes.rs (tests/kubernetes/package.json);
# chromium and chromium-driver: tests/browser.rs drives the live page in a
# headless Chromium over WebDriver;
# jsonnet: mixin/render.sh renders the monitoring mixin with it, tests/mixin.rs checks it.
for pkg in prometheus prometheus-alertmanager collectd-core libyajl2 libpython3.11 \
  libmicrohttpd12 libprotobuf-c1 tmux curl systemd zsh fish groff-base man-db \
  postgresql pgbouncer victoria-metrics buildah podman runc slirp4netns \
  chromium chromium-driver jsonnet; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv || { apt_install python3-venv && python3 -m venv .venv; }
fi
echo "== installing the Python client (tests/clients/requirements.txt)"
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt
echo "== installing the manifest validators (tests/kubernetes/requirements.txt, package-lock.json)"
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/kubernetes/requirements.txt
npm ci --prefix tests/kubernetes --no-audit --no-fund --silent
