// The mixin's configuration. Override any field with
//   (import 'mixin.libsonnet') + { _config+:: { selector: 'job="my-job"' } }
// (README, "Monitoring mixin"). The defaults render the files committed in alerts/,
// dashboards/ and deploy/kubernetes/prometheusrule.yaml.
{
  _config+:: {
    // Label matchers every series the rules read carries, inside the braces of each
    // selector: `{job="sqlalchemy"}`, the job_name of examples/prometheus.yml. Under the
    // Prometheus Operator the job is the Service's name (ServiceMonitor) or
    // `<namespace>/<podmonitor>` (PodMonitor), e.g. 'job=~"sqlalchemy.*"' or
    // 'namespace="db-clients", job="sqlalchemy-collectd-exporter"'.
    selector: 'job="sqlalchemy"',

    // Labels that tell apart the sets of exporters one Prometheus (or a central store:
    // Thanos, Mimir, VictoriaMetrics) sees, e.g. ['cluster'] or ['site', 'cluster'].
    // No rule aggregates a label away, so every recorded series and every alert keeps
    // them (add them to Alertmanager's group_by and inhibit `equal`); every dashboard
    // gets a variable per group label (before Job) and filters every query by it.
    groupLabels: [],

    // Extra matchers of every dashboard query and variable, before the dashboards' own
    // Job variable. Empty by default, so that the Job variable offers every job that
    // runs the exporter whatever its name; set it to the selector to pin the dashboards
    // to it: `_config+:: { selector: 'job=~"sqla.*"', dashboardSelector: self.selector }`.
    dashboardSelector: '',

    // runbook_url of every alert: this prefix and the alert's name in lower case (the
    // anchor of its `## <alert>` section of docs/runbook.md). Point it at a rendered copy,
    // e.g. 'https://github.com/<org>/<repo>/blob/main/docs/runbook.md#'.
    runbookUrlBase: 'docs/runbook.md#',

    // Dashboards: uid = prefix + fleet | program | exporter, title = prefix + name; the
    // tags every dashboard carries (dashboards of one product are found by tag).
    dashboardUidPrefix: 'sqlalchemy-',
    dashboardTitlePrefix: 'SQLAlchemy / ',
    dashboardTags: ['sqlalchemy', 'prometheus'],

    // Thresholds and `for:` durations of the alerts (docs/capacity-and-rules.md).
    // Durations are Prometheus durations (30s, 5m, 1h); the alerts' descriptions state
    // them in words.

    // SQLAlchemyPoolSaturation: checked out / capacity (pool_size + max_overflow).
    poolUsageWarning: 0.85,
    poolUsageCritical: 0.95,
    poolSaturationFor: '5m',
    // SQLAlchemyPoolLimitBursts: the peak at the capacity in at least this many of the
    // last 15 one-minute steps (the count is the alert's duration: no `for`).
    poolLimitBurstMinutes: 3,
    // SQLAlchemyPoolExhausted: no idle connection while some are checked out.
    poolExhaustedFor: '10m',
    // SQLAlchemyDatabaseConnectionsHigh: share of the database's max_connections.
    databaseConnectionsHigh: 0.85,
    databaseConnectionsHighFor: '5m',
    // SQLAlchemyInvalidationSpike: the 5m rate above this multiple of its average over
    // the hour before and above an absolute floor (per second).
    invalidationSpikeFactor: 3,
    invalidationSpikeMinRate: 0.1,
    invalidationSpikeFor: '5m',
    // SQLAlchemyInvalidationBurst: within 2 minutes at least this many invalidations and
    // at least this share of the open connections (no `for`).
    invalidationBurstMin: 10,
    invalidationBurstShare: 0.5,
    // SQLAlchemyConnectionChurn: new connections per checkout, only above a checkout rate
    // (per second).
    connectionChurnRatio: 0.5,
    connectionChurnMinCheckoutRate: 1,
    connectionChurnFor: '15m',
    // SQLAlchemyTooManyPools: Engines per live process.
    tooManyPoolsPerProcess: 2,
    tooManyPoolsFor: '15m',
    // SQLAlchemyConnectionLeak: the hour's floor of checked-out connections.
    connectionLeakMinCheckedOut: 1,
    connectionLeakFor: '30m',
    // SQLAlchemyDetachedConnectionsGrowing.
    detachedConnectionsGrowingFor: '15m',
    // SQLAlchemyProgramDown: processes 0.
    programDownFor: '5m',
    // SQLAlchemyCollectdExporterDown: up 0, or no target at all.
    exporterDownFor: '5m',
    // SQLAlchemyCollectdExporterRejecting: a non-zero 5m rate at every evaluation.
    exporterRejectingFor: '10m',

    // deploy/kubernetes/prometheusrule.yaml: the PrometheusRule's metadata, in the
    // namespace of the other manifests there. The labels must match the Prometheus
    // resource's ruleSelector.
    prometheusRuleName: 'sqlalchemy-collectd-exporter',
    prometheusRuleNamespace: 'monitoring',
    prometheusRuleLabels: {
      'app.kubernetes.io/name': 'sqlalchemy-collectd-exporter',
      'app.kubernetes.io/component': 'alerting-rules',
    },
  },
}
