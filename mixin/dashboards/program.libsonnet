// The Program dashboard: one program's pools in detail (select host and program).
local g = import '../lib/grafana.libsonnet';
local text = import '../lib/text.libsonnet';

{
  grafanaDashboards+:: {
    'sqlalchemy-program.json':
      local cfg = $._config;
      g.dashboard(
        cfg,
        'program',
        "One program's connection pools (select host and program): connections by state against capacity, checkouts, churn, invalidations, processes and pools, per host.",
        ['fleet', 'exporter'],
        [g.hostVariable, g.programVariable],
        [
          g.stat(
            1,
            'Processes',
            'Live processes of the selected program(s) on the selected host(s).',
            g.pos(0, 0, 3, 4),
            [
              g.rangeQuery('sum(sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            2,
            'Pools',
            'Connection pools (SQLAlchemy Engines) in those processes.',
            g.pos(3, 0, 3, 4),
            [
              g.rangeQuery('sum(sqlalchemy_pools{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            3,
            'Open connections',
            'Open DBAPI connections of the selection.',
            g.pos(6, 0, 3, 4),
            [
              g.rangeQuery('sum(sqlalchemy_connections{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            4,
            'Checked out',
            'Connections in use by the application.',
            g.pos(9, 0, 3, 4),
            [
              g.rangeQuery('sum(sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            5,
            'Capacity',
            "Configured capacity: (pool_size + max_overflow) x pools, from the exporter's --config.file. Empty when no pools entry matches.",
            g.pos(12, 0, 3, 4),
            [
              g.rangeQuery('sum(sqlalchemy_connections_max{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            6,
            'Pool usage',
            'Highest pool usage (checked out / capacity) among the selected host/programs (recording rule host_program:sqlalchemy_pool_usage:ratio).',
            g.pos(15, 0, 3, 4),
            [
              g.rangeQuery('max(host_program:sqlalchemy_pool_usage:ratio{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: {
                  steps: [
                    { color: 'green', value: null },
                    { color: 'orange', value: cfg.poolUsageWarning },
                    { color: 'red', value: cfg.poolUsageCritical },
                  ],
                },
                unit: 'percentunit',
                decimals: 1,
              },
            },
          },
          g.stat(
            7,
            'Invalidations in range',
            "Connections invalidated during the dashboard's time range (increase over $__range).",
            g.pos(18, 0, 3, 4),
            [
              g.instantQuery('sum(increase(sqlalchemy_invalidations_total{job=~"$job", host=~"$host", program=~"$program"}[$__range]))', 'A'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: { steps: [{ color: 'green', value: null }, { color: 'orange', value: 1 }] },
                decimals: 0,
              },
            },
            options+: { graphMode: 'none' },
          },
          g.stat(
            8,
            'Oldest last report',
            'Time since the exporter last received a report, for the host/program that reported longest ago. The real client reports every 2 s; its processes count as dead after 6 s without one.',
            g.pos(21, 0, 3, 4),
            [
              g.rangeQuery('max(time() - sqlalchemy_last_report_timestamp_seconds{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: {
                  steps: [
                    { color: 'green', value: null },
                    { color: 'orange', value: 10 },
                    { color: 'red', value: 60 },
                  ],
                },
                unit: 's',
                decimals: 1,
              },
            },
          },
          g.timeseries(
            9,
            'Connections: checked out, idle, detached vs capacity',
            'Stacked: connections checked out (in use), checked in (idle in the pools) and detached from their pool, summed over the selection; the dashed red line is the configured capacity (pool_size + max_overflow per pool). Checked out reaching the line means checkouts wait for pool_timeout and then fail. (sqlalchemy-collectd 0.0.8 reports one idle connection too many in a process after a hard invalidate().)',
            g.pos(0, 4, 24, 9),
            [
              g.rangeQuery('sum(sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A', 'checked out'),
              g.rangeQuery('sum(sqlalchemy_connections_checked_in{job=~"$job", host=~"$host", program=~"$program"})', 'B', 'idle (checked in)'),
              g.rangeQuery('sum(sqlalchemy_connections_detached{job=~"$job", host=~"$host", program=~"$program"})', 'C', 'detached'),
              g.rangeQuery('sum(sqlalchemy_connections_max{job=~"$job", host=~"$host", program=~"$program"})', 'D', 'capacity'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: { custom+: { fillOpacity: 60, stacking+: { mode: 'normal' } }, min: 0 },
              overrides: [
                {
                  matcher: { id: 'byFrameRefID', options: 'D' },
                  properties: [
                    { id: 'custom.stacking', value: { group: 'A', mode: 'none' } },
                    { id: 'custom.fillOpacity', value: 0 },
                    { id: 'custom.lineWidth', value: 2 },
                    { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                    { id: 'color', value: { fixedColor: 'red', mode: 'fixed' } },
                  ],
                },
              ],
            },
          },
          g.timeseries(
            19,
            'Checked out: peak between scrapes vs at scrape',
            "The most connections checked out at any moment within the exporter's --peak-window (1m by default), as the exporter saw them after every report (solid), beside the value at each scrape (dashed), against the configured capacity (red). A peak touching the capacity while the scraped value stays below it is a burst between scrapes: checkouts waited for pool_timeout although every scrape looked healthy (SQLAlchemyPoolLimitBursts). Summed over the selected hosts, the peak is an upper bound of the fleet's.",
            g.pos(0, 13, 24, 8),
            [
              g.rangeQuery('sum(sqlalchemy_connections_checked_out_peak{job=~"$job", host=~"$host", program=~"$program"})', 'A', 'checked out, peak'),
              g.rangeQuery('sum(sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'B', 'checked out, at scrape'),
              g.rangeQuery('sum(sqlalchemy_connections_max{job=~"$job", host=~"$host", program=~"$program"})', 'C', 'capacity'),
              g.rangeQuery('sum(sqlalchemy_connections_peak{job=~"$job", host=~"$host", program=~"$program"})', 'D', 'open connections, peak'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: { min: 0 },
              overrides: [
                {
                  matcher: { id: 'byFrameRefID', options: 'C' },
                  properties: [
                    { id: 'custom.fillOpacity', value: 0 },
                    { id: 'custom.lineWidth', value: 2 },
                    { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                    { id: 'color', value: { fixedColor: 'red', mode: 'fixed' } },
                  ],
                },
                {
                  matcher: { id: 'byFrameRefID', options: 'B' },
                  properties: [
                    { id: 'custom.lineStyle', value: { dash: [4, 4], fill: 'dash' } },
                    { id: 'custom.fillOpacity', value: 0 },
                  ],
                },
              ],
            },
          },
          g.timeseries(
            10,
            'Pool usage',
            'Checked out / configured capacity per host/program; dashed lines at '
            + text.percentSpaced(cfg.poolUsageWarning) + ' (warning) and ' + text.percentSpaced(cfg.poolUsageCritical)
            + ' (critical) as in SQLAlchemyPoolSaturation.',
            g.pos(0, 21, 12, 8),
            [
              g.rangeQuery('max by (host, program) (host_program:sqlalchemy_pool_usage:ratio{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                custom+: { thresholdsStyle+: { mode: 'dashed' } },
                thresholds+: {
                  steps: [
                    { color: 'green', value: null },
                    { color: 'orange', value: cfg.poolUsageWarning },
                    { color: 'red', value: cfg.poolUsageCritical },
                  ],
                },
                unit: 'percentunit',
                min: 0,
              },
            },
          },
          g.timeseries(
            11,
            'Checkouts/s',
            'Connection checkouts per second per program, over $__rate_interval (finer than the 5-minute recording rule).',
            g.pos(12, 21, 12, 8),
            [
              g.rangeQuery('sum by (program) (rate(sqlalchemy_checkouts_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'A', '{{program}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            12,
            'Connects and disconnects/s',
            'New DBAPI connections per second (up) and closed ones (down, drawn negative). A steady flow of both is churn: the pool is too small for the load or connections are recycled (pool_recycle, pre-ping failures); SQLAlchemyConnectionChurn watches connects per checkout.',
            g.pos(0, 29, 12, 8),
            [
              g.rangeQuery('sum by (program) (rate(sqlalchemy_connects_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'A', '{{program}} connects'),
              g.rangeQuery('sum by (program) (rate(sqlalchemy_disconnects_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'B', '{{program}} disconnects'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: { unit: 'ops' },
              overrides: [
                {
                  matcher: { id: 'byFrameRefID', options: 'B' },
                  properties: [{ id: 'custom.transform', value: 'negative-Y' }],
                },
              ],
            },
          },
          g.timeseries(
            13,
            'Invalidations/s',
            'Invalidated connections per second per program, over $__rate_interval: connectivity errors such as database restarts or failovers.',
            g.pos(12, 29, 12, 8),
            [
              g.rangeQuery('sum by (program) (rate(sqlalchemy_invalidations_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'A', '{{program}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            14,
            'Processes',
            'Live processes per host/program. A drop to 0 is a program that stopped reporting (SQLAlchemyProgramDown).',
            g.pos(0, 37, 12, 8),
            [
              g.rangeQuery('sum by (host, program) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0, decimals: 0 } } },
          g.timeseries(
            15,
            'Pools per process',
            'Engines (connection pools) per live process (recording rule host_program:sqlalchemy_pools_per_process:ratio). More than one or two usually means create_engine() is called per request or per task: a pool leak (SQLAlchemyTooManyPools).',
            g.pos(12, 37, 12, 8),
            [
              g.rangeQuery('max by (host, program) (host_program:sqlalchemy_pools_per_process:ratio{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            16,
            'Checked-out connections by host',
            'Connections in use per host, selected programs summed.',
            g.pos(0, 45, 12, 8),
            [
              g.rangeQuery('sum by (host) (sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{host}}'),
            ],
          ) + {
            fieldConfig+: { defaults+: { custom+: { fillOpacity: 60, stacking+: { mode: 'normal' } }, min: 0 } },
          },
          g.timeseries(
            17,
            'Last report age',
            'Seconds since the exporter last received a datagram for each host/program. The real client sends every 2 s; a rising line is a program whose processes stopped (or whose datagrams are lost).',
            g.pos(12, 45, 12, 8),
            [
              g.rangeQuery('time() - max by (host, program) (sqlalchemy_last_report_timestamp_seconds{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: {
                  steps: [
                    { color: 'green', value: null },
                    { color: 'orange', value: 10 },
                    { color: 'red', value: 60 },
                  ],
                },
                unit: 's',
                min: 0,
              },
            },
          },
          g.table(
            18,
            'Hosts',
            'Per host/program now: processes, pools, connections by state, configured capacity and usage, rates over $__rate_interval, and the time since the last report.',
            g.pos(0, 53, 24, 9),
            [
              g.tableQuery('sum by (host, program) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
              g.tableQuery('sum by (host, program) (sqlalchemy_pools{job=~"$job", host=~"$host", program=~"$program"})', 'B'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'C'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_checked_in{job=~"$job", host=~"$host", program=~"$program"})', 'D'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_detached{job=~"$job", host=~"$host", program=~"$program"})', 'E'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_max{job=~"$job", host=~"$host", program=~"$program"})', 'F'),
              g.tableQuery('max by (host, program) (host_program:sqlalchemy_pool_usage:ratio{job=~"$job", host=~"$host", program=~"$program"})', 'G'),
              g.tableQuery('sum by (host, program) (rate(sqlalchemy_checkouts_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'H'),
              g.tableQuery('sum by (host, program) (rate(sqlalchemy_invalidations_total{job=~"$job", host=~"$host", program=~"$program"}[$__rate_interval]))', 'I'),
              g.tableQuery('time() - max by (host, program) (sqlalchemy_last_report_timestamp_seconds{job=~"$job", host=~"$host", program=~"$program"})', 'J'),
            ],
          ) + {
            fieldConfig+: {
              overrides: [
                {
                  matcher: { id: 'byName', options: 'Processes' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Pools' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Checked out' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Idle' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Detached' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Capacity' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Usage' },
                  properties: [
                    { id: 'unit', value: 'percentunit' },
                    { id: 'custom.cellOptions', value: { mode: 'gradient', type: 'gauge' } },
                    { id: 'min', value: 0 },
                    { id: 'max', value: 1 },
                    {
                      id: 'thresholds',
                      value: {
                        mode: 'absolute',
                        steps: [
                          { color: 'green', value: null },
                          { color: 'orange', value: cfg.poolUsageWarning },
                          { color: 'red', value: cfg.poolUsageCritical },
                        ],
                      },
                    },
                  ],
                },
                {
                  matcher: { id: 'byName', options: 'Checkouts/s' },
                  properties: [{ id: 'unit', value: 'ops' }],
                },
                {
                  matcher: { id: 'byName', options: 'Invalidations/s' },
                  properties: [
                    { id: 'unit', value: 'ops' },
                    { id: 'custom.cellOptions', value: { type: 'color-text' } },
                    {
                      id: 'thresholds',
                      value: {
                        mode: 'absolute',
                        steps: [{ color: 'green', value: null }, { color: 'red', value: 1e-06 }],
                      },
                    },
                  ],
                },
                {
                  matcher: { id: 'byName', options: 'Last report' },
                  properties: [
                    { id: 'unit', value: 's' },
                    { id: 'custom.cellOptions', value: { type: 'color-text' } },
                    {
                      id: 'thresholds',
                      value: {
                        mode: 'absolute',
                        steps: [
                          { color: 'green', value: null },
                          { color: 'orange', value: 10 },
                          { color: 'red', value: 60 },
                        ],
                      },
                    },
                  ],
                },
              ],
            },
            options+: { sortBy: [{ desc: true, displayName: 'Checked out' }] },
            transformations: [
              { id: 'merge', options: {} },
              {
                id: 'organize',
                options: {
                  excludeByName: { Time: true },
                  indexByName: {
                    host: 0,
                    program: 1,
                    Processes: 2,
                    Pools: 3,
                    'Checked out': 4,
                    Idle: 5,
                    Detached: 6,
                    Capacity: 7,
                    Usage: 8,
                    'Checkouts/s': 9,
                    'Invalidations/s': 10,
                    'Last report': 11,
                  },
                  renameByName: {
                    'Value #A': 'Processes',
                    'Value #B': 'Pools',
                    'Value #C': 'Checked out',
                    'Value #D': 'Idle',
                    'Value #E': 'Detached',
                    'Value #F': 'Capacity',
                    'Value #G': 'Usage',
                    'Value #H': 'Checkouts/s',
                    'Value #I': 'Invalidations/s',
                    'Value #J': 'Last report',
                  },
                },
              },
            ],
          },
        ],
      ),
  },
}
