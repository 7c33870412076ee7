// The recording rules, group `sqlalchemy.rules` (contract: docs/capacity-and-rules.md,
// "Recording rules"; unit tests: alerts/tests/recording_rules.yml).
//
// SQLAlchemy series carry host and program (and Prometheus adds job and instance);
// database series carry database. Every rule here keeps every label of its input (no
// aggregation), so a recorded series has the labels host, program, job, instance (or
// database, job, instance), plus the group labels of _config.groupLabels where the
// scrape adds them, and so do the alerts on it.
{
  prometheusRules+:: {
    local cfg = $._config,
    local m(metric) = '%s{%s}' % [metric, cfg.selector],
    groups+: [
      {
        name: 'sqlalchemy.rules',
        rules: [
          // Fraction of the configured capacity (pool_size + max_overflow per pool) in
          // use. Only for host/programs matched by a `pools` entry of --config.file.
          {
            record: 'host_program:sqlalchemy_pool_usage:ratio',
            expr: '%s / (%s > 0)' % [
              m('sqlalchemy_connections_checked_out'),
              m('sqlalchemy_connections_max'),
            ],
          },
          // The same for the peak between scrapes: the most checked out within the
          // exporter's --peak-window (1m by default) against the capacity.
          {
            record: 'host_program:sqlalchemy_pool_usage_peak:ratio',
            expr: '%s / (%s > 0)' % [
              m('sqlalchemy_connections_checked_out_peak'),
              m('sqlalchemy_connections_max'),
            ],
          },
        ] + [
          // Per-second rates of the counters over 5 minutes, the window the alerts and
          // the Fleet dashboard use.
          {
            record: 'host_program:sqlalchemy_%s:rate5m' % counter,
            expr: 'rate(%s[5m])' % m('sqlalchemy_%s_total' % counter),
          }
          for counter in ['checkouts', 'connects', 'disconnects', 'invalidations']
        ] + [
          // Engines per live process; a dead program (processes 0) has no ratio.
          {
            record: 'host_program:sqlalchemy_pools_per_process:ratio',
            expr: '%s / (%s > 0)' % [m('sqlalchemy_pools'), m('sqlalchemy_processes')],
          },
          // Share of the server's max_connections held by the programs mapped to a
          // database (the `databases` entries of --config.file); max_connections 0 gives
          // no ratio.
          {
            record: 'database:sqlalchemy_database_connections:ratio',
            expr: '%s / (%s > 0)' % [
              m('sqlalchemy_database_connections'),
              m('sqlalchemy_database_connections_max'),
            ],
          },
        ],
      },
    ],
  },
}
