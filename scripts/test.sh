#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine
# (Prometheus and promtool, Alertmanager, the collectd daemon and the libraries
# its write_http and python plugins need, the real sqlalchemy-collectd client
# from PyPI in .venv, the crates), then runs every check and test.
# A test whose peer is missing fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

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
