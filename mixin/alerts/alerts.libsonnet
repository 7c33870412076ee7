// The alerts, group `sqlalchemy.alerts` (contract: docs/capacity-and-rules.md, "Alerts";
// what to do when one fires: docs/runbook.md, one section per alert; unit tests:
// alerts/tests/*.yml). Thresholds and `for:` durations come from _config
// (config.libsonnet), and the descriptions state them as configured.
//
// Labels: an alert has the labels of the series it reads (host, program, job, instance,
// or database, job, instance, plus any group labels) and severity.
//
// Warning and critical: SQLAlchemyPoolSaturation has a warning rule (> poolUsageWarning,
// 85 %) and a critical rule (> poolUsageCritical, 95 %) with the same alert name. Both
// fire while usage is above the critical threshold: the warning never stops and restarts
// when usage crosses it in either direction (a warning limited to 85-95 % would leave a
// hole of the critical rule's `for` when usage climbs, and would restart its own `for`
// when usage falls back below 95 %). Let Alertmanager drop the duplicate with an inhibit
// rule (docs/runbook.md#warning-and-critical; it is in examples/alertmanager.yml):
//
//   inhibit_rules:
//     - source_matchers: [severity="critical"]
//       target_matchers: [severity="warning"]
//       equal: [alertname, job, instance, host, program]   # and the group labels
local text = import '../lib/text.libsonnet';

{
  prometheusAlerts+:: {
    local cfg = $._config,
    local m(metric) = '%s{%s}' % [metric, cfg.selector],
    local n = text.number,
    local words = text.duration,
    local runbook(alert) = cfg.runbookUrlBase + std.asciiLower(alert),
    local alert(name, severity, expr, annotations, extraLabels={}, forDuration=null) =
      { alert: name, expr: expr }
      + (if forDuration != null then { 'for': forDuration } else {})
      + {
        labels: { severity: severity } + extraLabels,
        annotations: annotations { runbook_url: runbook(name) },
      },

    local saturation(severity, threshold, consequence) = alert(
      'SQLAlchemyPoolSaturation',
      severity,
      '%s > %s' % [m('host_program:sqlalchemy_pool_usage:ratio'), n(threshold)],
      {
        summary: 'SQLAlchemy pool of {{ $labels.program }} on {{ $labels.host }} is {{ $value | humanizePercentage }} used',
        description: '{{ $labels.program }} on {{ $labels.host }} has had more than ' + text.percent(threshold)
                     + ' of its configured pool capacity (pool_size + max_overflow, all pools) checked out for '
                     + words(cfg.poolSaturationFor) + ': {{ $value | humanizePercentage }} now. ' + consequence,
      },
      forDuration=cfg.poolSaturationFor,
    ),

    local rejecting(kind, metric, matchers, summary, description) = alert(
      'SQLAlchemyCollectdExporterRejecting',
      'warning',
      'rate(%s{%s}[5m]) > 0' % [
        metric,
        std.join(',', [x for x in [cfg.selector, matchers] if x != '']),
      ],
      {
        summary: summary,
        description: std.strReplace(description, '@FOR@', words(cfg.exporterRejectingFor)),
      },
      extraLabels={ kind: kind },
      forDuration=cfg.exporterRejectingFor,
    ),

    groups+: [
      {
        name: 'sqlalchemy.alerts',
        rules: [
          // Needs capacity config (sqlalchemy_connections_max). Above pool_size +
          // max_overflow a checkout waits up to pool_timeout (30 s) and then fails.
          saturation(
            'warning',
            cfg.poolUsageWarning,
            'Near 100% checkouts wait for pool_timeout and then fail.'
          ),
          saturation(
            'critical',
            cfg.poolUsageCritical,
            'Checkouts are waiting for pool_timeout and failing with QueuePool limit errors.'
          ),

          // Needs capacity config. Bursts at the pool's limit too short for the
          // saturation alert, which sees usage only at each scrape: the peak gauge (the
          // most checked out within the exporter's --peak-window, 1m) reached the
          // capacity in at least poolLimitBurstMinutes (3) of the last 15 one-minute
          // steps. Each step reads the newest peak, which covers the minute or so before
          // it, so one burst shows in at most 2 steps: it takes bursts in two different
          // minutes at least. No `for`: the count is the duration. It resolves once fewer
          // than 3 of the last 15 minutes saw one. Value: minutes.
          alert(
            'SQLAlchemyPoolLimitBursts',
            'warning',
            'count_over_time((%s >= 1)[15m:1m]) >= %s' % [
              m('host_program:sqlalchemy_pool_usage_peak:ratio'),
              n(cfg.poolLimitBurstMinutes),
            ],
            {
              summary: 'SQLAlchemy pool of {{ $labels.program }} on {{ $labels.host }} reaches its limit between scrapes',
              description: '{{ $labels.program }} on {{ $labels.host }} had all of its configured pool capacity (pool_size + max_overflow, all pools) checked out at some moment in {{ $value }} of the last 15 minutes, in bursts shorter than a scrape interval. During each burst new checkouts waited for pool_timeout.',
            },
          ),

          // Works without capacity config: every open connection is in use, at every
          // scrape, for poolExhaustedFor (10m). Value: connections checked out.
          alert(
            'SQLAlchemyPoolExhausted',
            'warning',
            '%s > 0 and %s == 0' % [
              m('sqlalchemy_connections_checked_out'),
              m('sqlalchemy_connections_checked_in'),
            ],
            {
              summary: 'SQLAlchemy pool of {{ $labels.program }} on {{ $labels.host }} has no idle connection',
              description: '{{ $labels.program }} on {{ $labels.host }} has had no idle (checked-in) connection for '
                           + words(cfg.poolExhaustedFor)
                           + ' while {{ $value | humanize }} connections are checked out: every new checkout opens a connection or waits for one.',
            },
            forDuration=cfg.poolExhaustedFor,
          ),

          // Needs capacity config (a `databases` entry).
          alert(
            'SQLAlchemyDatabaseConnectionsHigh',
            'warning',
            '%s > %s' % [
              m('database:sqlalchemy_database_connections:ratio'),
              n(cfg.databaseConnectionsHigh),
            ],
            {
              summary: 'Database {{ $labels.database }} is at {{ $value | humanizePercentage }} of max_connections',
              description: 'The SQLAlchemy programs mapped to database {{ $labels.database }} have held more than '
                           + text.percent(cfg.databaseConnectionsHigh) + ' of its max_connections for '
                           + words(cfg.databaseConnectionsHighFor)
                           + ': {{ $value | humanizePercentage }} now. New connections will soon be refused (too many connections).',
            },
            forDuration=cfg.databaseConnectionsHighFor,
          ),

          // Baseline: the average of the 5m rate over the hour before the current 5
          // minutes (offset 5m, so the spike is not in its own baseline); a program needs
          // about 6 minutes of history to have one. The absolute floor
          // (invalidationSpikeMinRate, 0.1/s = 30 in 5 minutes) keeps a quiet program
          // with a few invalidations quiet. `for: 5m` on a 5m rate: an error rate that
          // stays up; a single step of the counter (one scrape) is in the window for less
          // than 5 minutes and cannot fire here: SQLAlchemyInvalidationBurst below catches
          // it. A sustained new level becomes the baseline: the alert resolves about 25
          // minutes after the spike began.
          alert(
            'SQLAlchemyInvalidationSpike',
            'warning',
            |||
              %(rate)s > %(floor)s
              and
              %(rate)s
                > %(factor)s * avg_over_time(%(rate)s[1h] offset 5m)
            ||| % {
              rate: m('host_program:sqlalchemy_invalidations:rate5m'),
              floor: n(cfg.invalidationSpikeMinRate),
              factor: n(cfg.invalidationSpikeFactor),
            },
            {
              summary: 'Invalidated connections spike in {{ $labels.program }} on {{ $labels.host }}',
              description: '{{ $labels.program }} on {{ $labels.host }} has been invalidating connections at more than '
                           + n(cfg.invalidationSpikeFactor) + ' times its average rate of the hour before, and more than '
                           + n(cfg.invalidationSpikeMinRate) + '/s, for ' + words(cfg.invalidationSpikeFor)
                           + ': {{ $value | printf "%.3g" }}/s now. Connections are failing (disconnects, failovers, network, pre-ping failures).',
            },
            forDuration=cfg.invalidationSpikeFor,
          ),

          // A burst: within 2 minutes, invalidations of at least invalidationBurstShare
          // (half) of the program's open connections (and at least invalidationBurstMin,
          // 10), as when a database fails over or restarts and every pooled connection
          // dies at once. It fires at once (no `for`): the burst is over before a `for`
          // would end. A restart of the exporter is no burst: counters continue across a
          // graceful restart with --storage.path, and otherwise start from a baseline (a
          // reset to about 0, which increase() counts as about 0).
          alert(
            'SQLAlchemyInvalidationBurst',
            'warning',
            |||
              %(increase)s >= %(min)s
              and
              %(increase)s
                >= %(share)s * %(connections)s
            ||| % {
              increase: 'increase(%s[2m])' % m('sqlalchemy_invalidations_total'),
              min: n(cfg.invalidationBurstMin),
              share: n(cfg.invalidationBurstShare),
              connections: m('sqlalchemy_connections'),
            },
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} invalidated connections in a burst',
              description: '{{ $labels.program }} on {{ $labels.host }} invalidated {{ $value | printf "%.0f" }} connections within 2 minutes, at least '
                           + text.share(cfg.invalidationBurstShare)
                           + ' of its open connections: the database failed over or restarted, or the network between them dropped every connection.',
            },
          ),

          // New DBAPI connections per checkout; a healthy pool reuses its connections
          // (close to 0). Only with more than connectionChurnMinCheckoutRate (1)
          // checkout/s, so idle programs stay quiet.
          alert(
            'SQLAlchemyConnectionChurn',
            'warning',
            '%s / (%s > %s) > %s' % [
              m('host_program:sqlalchemy_connects:rate5m'),
              m('host_program:sqlalchemy_checkouts:rate5m'),
              n(cfg.connectionChurnMinCheckoutRate),
              n(cfg.connectionChurnRatio),
            ],
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} opens a new connection for {{ $value | humanizePercentage }} of checkouts',
              description: '{{ $labels.program }} on {{ $labels.host }} has opened a new DBAPI connection for more than '
                           + text.share(cfg.connectionChurnRatio) + ' of its checkouts for ' + words(cfg.connectionChurnFor)
                           + ' ({{ $value | humanizePercentage }} now): connections are not being reused (NullPool, overflow churn, short pool_recycle, invalidations, or an Engine per request).',
            },
            forDuration=cfg.connectionChurnFor,
          ),

          // One or two Engines per process are normal (e.g. primary + replica); more, for
          // tooManyPoolsFor (15 minutes), usually means create_engine() is called per
          // request or per task.
          alert(
            'SQLAlchemyTooManyPools',
            'warning',
            '%s > %s' % [
              m('host_program:sqlalchemy_pools_per_process:ratio'),
              n(cfg.tooManyPoolsPerProcess),
            ],
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} has {{ $value | humanize }} connection pools per process',
              description: '{{ $labels.program }} on {{ $labels.host }} has had more than '
                           + n(cfg.tooManyPoolsPerProcess) + ' connection pools (Engines) per live process for '
                           + words(cfg.tooManyPoolsFor)
                           + ' ({{ $value | humanize }} now): an Engine is probably created per request or per task and never disposed.',
            },
            forDuration=cfg.tooManyPoolsFor,
          ),

          // A leak: connections checked out and never returned while the program goes
          // on working. The floor of checked-out connections (the least seen in an hour)
          // stays at connectionLeakMinCheckedOut (1) or more and is higher than the hour
          // before's, while checkouts go on. A busy program holds connections all the
          // time, but its floor does not keep rising; a program that drains (floor 0) or
          // restarts resolves it. Needs two hours of history.
          alert(
            'SQLAlchemyConnectionLeak',
            'warning',
            |||
              %(floor)s >= %(min)s
              and
              %(floor)s
                > min_over_time(%(checkedOut)s[1h] offset 1h)
              and
              %(checkouts)s > 0
            ||| % {
              checkedOut: m('sqlalchemy_connections_checked_out'),
              floor: 'min_over_time(%s[1h])' % self.checkedOut,
              min: n(cfg.connectionLeakMinCheckedOut),
              checkouts: m('host_program:sqlalchemy_checkouts:rate5m'),
            },
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} may be leaking connections',
              description: '{{ $labels.program }} on {{ $labels.host }} has not had fewer than {{ $value | printf "%.0f" }} connections checked out for an hour, more than in the hour before, while it goes on checking connections out: connections that are never returned to the pool (a leak).',
            },
            forDuration=cfg.connectionLeakFor,
          ),

          // Detached connections (Connection.detach()) leave the pool's accounting and
          // must be closed by the application; a count that has not been 0 for 30
          // minutes and keeps growing means they are not.
          alert(
            'SQLAlchemyDetachedConnectionsGrowing',
            'warning',
            |||
              %(detached)s > 0
              and
              min_over_time(%(detached)s[30m]) > 0
              and
              deriv(%(detached)s[30m]) > 0
            ||| % { detached: m('sqlalchemy_connections_detached') },
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} has {{ $value | printf "%.0f" }} detached connections, and growing',
              description: '{{ $labels.program }} on {{ $labels.host }} has had detached connections for 30 minutes, growing for '
                           + text.minutesOrDuration(cfg.detachedConnectionsGrowingFor)
                           + ' ({{ $value | printf "%.0f" }} now): connections taken out of the pool with detach() and never closed.',
            },
            forDuration=cfg.detachedConnectionsGrowingFor,
          ),

          // The exporter keeps a program whose processes are all gone with processes 0
          // for --forget-after (1h); this alert fires in that window and ends when the
          // program reports again, or when the exporter forgets it.
          alert(
            'SQLAlchemyProgramDown',
            'warning',
            '%s == 0' % m('sqlalchemy_processes'),
            {
              summary: '{{ $labels.program }} on {{ $labels.host }} stopped reporting',
              description: '{{ $labels.program }} on {{ $labels.host }} was reporting SQLAlchemy statistics but has had no live process for '
                           + words(cfg.programDownFor)
                           + ' (the exporter forgets it after --forget-after, 1h by default, and the alert then ends).',
            },
            forDuration=cfg.programDownFor,
          ),

          // Critical: while the exporter is down every other alert in this group is
          // blind. absent(): no target at all (service discovery lost it, the job was
          // renamed); drop that half on Prometheus servers that are not meant to scrape
          // the exporter. absent() has the labels of the selector's equality matchers
          // only: none for a regex selector, and never a group label, so one target
          // left anywhere keeps it quiet.
          alert(
            'SQLAlchemyCollectdExporterDown',
            'critical',
            '%s == 0 or absent(%s)' % [m('up'), m('up')],
            {
              summary: 'sqlalchemy-collectd-exporter {{ with $labels.instance }}{{ . }} is down{{ else }}has no scrape target{{ end }}',
              description: '{{ with $labels.instance }}Prometheus has failed to scrape sqlalchemy-collectd-exporter at {{ . }}{{ else }}Prometheus has had no scrape target for sqlalchemy-collectd-exporter{{ end }} (job {{ $labels.job }}) for '
                           + words(cfg.exporterDownFor) + ': SQLAlchemy pool statistics and alerts are blind.',
            },
            forDuration=cfg.exporterDownFor,
          ),

          // Three rules, one alert name, told apart by the label `kind`: rejected
          // datagrams (every reason), rejected value lists (malformed, over_limit) and
          // kernel receive drops, each still increasing after exporterRejectingFor (10
          // minutes: a non-zero 5m rate at every evaluation), so a single bad datagram
          // does not fire.
          rejecting(
            'datagrams',
            'sqlalchemy_collectd_exporter_datagrams_rejected_total',
            '',
            'sqlalchemy-collectd-exporter {{ $labels.instance }} rejects datagrams ({{ $labels.reason }})',
            'sqlalchemy-collectd-exporter at {{ $labels.instance }} has been rejecting datagrams as {{ $labels.reason }} for @FOR@ ({{ $value | printf "%.3g" }}/s): the statistics of some senders are lost. Run it with --log.level debug to see the senders.',
          ),
          rejecting(
            'value_lists',
            'sqlalchemy_collectd_exporter_value_lists_rejected_total',
            'reason=~"malformed|over_limit"',
            'sqlalchemy-collectd-exporter {{ $labels.instance }} rejects value lists ({{ $labels.reason }})',
            'sqlalchemy-collectd-exporter at {{ $labels.instance }} has been rejecting value lists as {{ $labels.reason }} for @FOR@ ({{ $value | printf "%.3g" }}/s): the statistics of some processes or programs are lost.',
          ),
          rejecting(
            'kernel_drops',
            'sqlalchemy_collectd_exporter_kernel_receive_drops_total',
            '',
            'sqlalchemy-collectd-exporter {{ $labels.instance }} loses datagrams in the kernel ({{ $labels.listener }})',
            'The kernel has been dropping datagrams for listener {{ $labels.listener }} of sqlalchemy-collectd-exporter at {{ $labels.instance }} for @FOR@ ({{ $value | printf "%.3g" }}/s) because the socket receive buffer is full: raise --collectd.udp-buffer and net.core.rmem_max, or spread the senders over more exporters.',
          ),
        ],
      },
    ],
  },
}
