#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine
# (Prometheus and promtool, Alertmanager, the collectd daemon and the libraries
# its write_http and python plugins need, the real sqlalchemy-collectd client
# from PyPI in .venv, the crates), then runs every check and test.
# A test whose peer is missing fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_install() {
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@"
}

missing=()
# prometheus: prometheus and promtool; collectd-core: the daemon, whose write_http
# and python plugins need libyajl2 and libpython3.11, and whose write_prometheus
# plugin (the benchmark's reference pipeline) needs libmicrohttpd12 and
# libprotobuf-c1 (all only suggested by it);
# tmux: tests/top.rs drives the terminal UI in it; curl is the HTTPS client of
# tests/web_config.rs;
# systemd (systemd-analyze), zsh, fish, groff-base, man-db: tests/packaging.rs checks the
# systemd unit, the completion scripts and the manual page with them.
for pkg in prometheus prometheus-alertmanager collectd-core libyajl2 libpython3.11 \
  libmicrohttpd12 libprotobuf-c1 tmux curl systemd zsh fish groff-base man-db; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
SCE_PYTHON="$PWD/.venv/bin/python" cargo test --locked "$@"

# Coverage-guided fuzzing of the decoders and parsers, FUZZ_SECONDS per target.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "== scripts/fuzz.sh ${FUZZ_SECONDS:-60}"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
