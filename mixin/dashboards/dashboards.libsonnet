// The Grafana dashboards, by file name (dashboards/<name> in the repository).
(import 'fleet.libsonnet')
+ (import 'program.libsonnet')
+ (import 'exporter.libsonnet')
