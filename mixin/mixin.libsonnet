// The sqlalchemy-collectd-exporter monitoring mixin: Prometheus recording rules
// (prometheusRules), alerts (prometheusAlerts) and Grafana dashboards
// (grafanaDashboards), configured by _config (config.libsonnet). render.sh writes the
// repository's alerts/, dashboards/ and deploy/kubernetes/prometheusrule.yaml from it.
(import 'config.libsonnet')
+ (import 'rules/rules.libsonnet')
+ (import 'alerts/alerts.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
