#!/usr/bin/env bash
# Renders the monitoring mixin (mixin/*.libsonnet) with jsonnet (Debian's package
# `jsonnet`, which scripts/install-deps.sh installs) into the files the repository ships:
#
#   alerts/sqlalchemy.rules.yml             recording rules and alerts
#   dashboards/sqlalchemy-*.json            Grafana dashboards
#   deploy/kubernetes/prometheusrule.yaml   the rules as a Prometheus Operator PrometheusRule
#
# Usage: mixin/render.sh [OUTDIR [CONFIG]]
#   OUTDIR  where to write them (default: the repository, i.e. regenerate the committed
#           files after a change to mixin/; tests/mixin.rs checks they are up to date)
#   CONFIG  a jsonnet object merged into the mixin's _config (mixin/config.libsonnet),
#           e.g. '{selector: "job=~\"sqla.*\"", groupLabels: ["cluster"]}'
set -euo pipefail
mixin="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$mixin/..}"
config="${2:-}"
[ -n "$config" ] || config="{}"
command -v jsonnet >/dev/null 2>&1 || {
  echo "render.sh: jsonnet not found: install Debian's jsonnet package (scripts/install-deps.sh)" >&2
  exit 1
}
# jsonnet -m writes into existing directories only.
mkdir -p "$out/alerts" "$out/dashboards" "$out/deploy/kubernetes"
jsonnet -J "$mixin" -S -m "$out" --tla-code "config=$config" "$mixin/render.jsonnet" >/dev/null
