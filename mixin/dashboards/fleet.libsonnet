// The Fleet overview: every program's pools at a glance, the most saturated, per host and per database.
local g = import '../lib/grafana.libsonnet';
local text = import '../lib/text.libsonnet';

{
  grafanaDashboards+:: {
    'sqlalchemy-fleet.json':
      local cfg = $._config;
      g.dashboard(
        cfg,
        'fleet',
        'Connection pools of every program using sqlalchemy-collectd: usage, saturation, invalidations, per host and per database.',
        ['program', 'exporter'],
        [g.hostVariable, g.programVariable],
        [
          g.stat(
            1,
            'Programs reporting',
            'Host/program pairs with at least one live process (a process is live for 3 of its report intervals, 6 s for the real client).',
            g.pos(0, 0, 4, 4),
            [
              g.rangeQuery('count(sum by (host, program) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"}) > 0) or vector(0)', 'A'),
            ],
          ),
          g.stat(
            2,
            'Programs down',
            "Host/program pairs still exported with no live process (sqlalchemy_processes 0): every process stopped reporting. They stay until the exporter's --forget-after (1h). SQLAlchemyProgramDown fires after " + text.duration(cfg.programDownFor) + '.',
            g.pos(4, 0, 4, 4),
            [
              g.rangeQuery('count(sum by (host, program) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"}) == 0) or vector(0)', 'A'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: { thresholds+: { steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] } },
            },
          },
          g.stat(
            3,
            'Processes',
            'Live client processes (every process using sqlalchemy-collectd is one, forked workers included).',
            g.pos(8, 0, 4, 4),
            [
              g.rangeQuery('sum(sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            4,
            'Checked out',
            'Connections checked out (in use by the application) across the selection.',
            g.pos(12, 0, 4, 4),
            [
              g.rangeQuery('sum(sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ),
          g.stat(
            5,
            'Highest pool usage',
            "The highest pool usage of any selected host/program: checked out / configured capacity (pool_size + max_overflow per pool, from the exporter's --config.file). Recording rule host_program:sqlalchemy_pool_usage:ratio; empty where no capacity is configured.",
            g.pos(16, 0, 4, 4),
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
            6,
            'Invalidations/s',
            'Connections invalidated per second across the selection, 5-minute rate (recording rule host_program:sqlalchemy_invalidations:rate5m). Invalidations are mostly connectivity errors (disconnects detected by SQLAlchemy).',
            g.pos(20, 0, 4, 4),
            [
              g.rangeQuery('sum(host_program:sqlalchemy_invalidations:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: { steps: [{ color: 'green', value: null }, { color: 'orange', value: 0.1 }] },
                unit: 'ops',
                decimals: 2,
              },
            },
          },
          g.table(
            7,
            'Programs',
            "Every host/program now. Usage is checked out / configured capacity (only where --config.file configures a pool); rates are 5-minute rates from the recording rules; report age is the time since the exporter last received a datagram from any process of the program. Click a program for its detail dashboard. Peak out: the most checked out at any moment within the exporter's --peak-window (1m by default), bursts between scrapes included.",
            g.pos(0, 4, 24, 10),
            [
              g.tableQuery('sum by (host, program) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A'),
              g.tableQuery('sum by (host, program) (sqlalchemy_pools{job=~"$job", host=~"$host", program=~"$program"})', 'B'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections{job=~"$job", host=~"$host", program=~"$program"})', 'C'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'D'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_checked_out_peak{job=~"$job", host=~"$host", program=~"$program"})', 'K'),
              g.tableQuery('sum by (host, program) (sqlalchemy_connections_max{job=~"$job", host=~"$host", program=~"$program"})', 'E'),
              g.tableQuery('max by (host, program) (host_program:sqlalchemy_pool_usage:ratio{job=~"$job", host=~"$host", program=~"$program"})', 'F'),
              g.tableQuery('sum by (host, program) (host_program:sqlalchemy_checkouts:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'G'),
              g.tableQuery('sum by (host, program) (host_program:sqlalchemy_connects:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'H'),
              g.tableQuery('sum by (host, program) (host_program:sqlalchemy_invalidations:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'I'),
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
                  matcher: { id: 'byName', options: 'Connections' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Checked out' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
                {
                  matcher: { id: 'byName', options: 'Peak out' },
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
                  matcher: { id: 'byName', options: 'Connects/s' },
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
                {
                  matcher: { id: 'byName', options: 'program' },
                  properties: [
                    {
                      id: 'links',
                      value: [
                        {
                          title: 'Program detail',
                          url: g.url(cfg, 'program') + '?${datasource:queryparam}' + g.queryParams(cfg)
                               + '&var-host=${__data.fields.host}&var-program=${__data.fields.program}&${__url_time_range}',
                        },
                      ],
                    },
                  ],
                },
              ],
            },
            options+: { sortBy: [{ desc: true, displayName: 'Usage' }] },
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
                    Connections: 4,
                    'Checked out': 5,
                    Capacity: 7,
                    Usage: 8,
                    'Checkouts/s': 9,
                    'Connects/s': 10,
                    'Invalidations/s': 11,
                    'Last report': 12,
                    'Peak out': 6,
                  },
                  renameByName: {
                    'Value #A': 'Processes',
                    'Value #B': 'Pools',
                    'Value #C': 'Connections',
                    'Value #D': 'Checked out',
                    'Value #E': 'Capacity',
                    'Value #F': 'Usage',
                    'Value #G': 'Checkouts/s',
                    'Value #H': 'Connects/s',
                    'Value #I': 'Invalidations/s',
                    'Value #J': 'Last report',
                    'Value #K': 'Peak out',
                  },
                },
              },
            ],
          },
          g.bargauge(
            8,
            'Most saturated programs',
            'The 10 host/programs with the highest pool usage (checked out / configured capacity) now. Orange from '
            + text.percentSpaced(cfg.poolUsageWarning) + ', red from ' + text.percentSpaced(cfg.poolUsageCritical)
            + ': the SQLAlchemyPoolSaturation thresholds. Past 100 % checkouts wait for pool_timeout and fail.',
            g.pos(0, 14, 12, 8),
            [
              g.instantQuery('topk(10, max by (host, program) (host_program:sqlalchemy_pool_usage:ratio{job=~"$job", host=~"$host", program=~"$program"}))', 'A', '{{program}} @ {{host}}'),
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
              },
            },
          },
          g.timeseries(
            9,
            'Pool usage by program',
            'Pool usage (checked out / configured capacity) of every selected host/program over time; the dashed lines are the '
            + text.percentSpaced(cfg.poolUsageWarning) + ' warning and ' + text.percentSpaced(cfg.poolUsageCritical)
            + ' critical thresholds of SQLAlchemyPoolSaturation.',
            g.pos(12, 14, 12, 8),
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
            10,
            'Checked-out connections by program: at scrape and peak',
            "Connections in use by the application, per program (summed over the selected hosts). The peak series: the most checked out within the exporter's --peak-window, which a scrape between bursts misses.",
            g.pos(0, 22, 8, 8),
            [
              g.rangeQuery('sum by (program) (sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}}'),
              g.rangeQuery('sum by (program) (sqlalchemy_connections_checked_out_peak{job=~"$job", host=~"$host", program=~"$program"})', 'B', '{{program}} peak'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            11,
            'Checkouts/s by program',
            "Connection checkouts per second per program (5-minute rate, recording rule host_program:sqlalchemy_checkouts:rate5m): how busy each program's pools are.",
            g.pos(8, 22, 8, 8),
            [
              g.rangeQuery('sum by (program) (host_program:sqlalchemy_checkouts:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            12,
            'Invalidations/s by program',
            'Invalidated connections per second per program (5-minute rate, recording rule host_program:sqlalchemy_invalidations:rate5m): database restarts, failovers, network errors.',
            g.pos(16, 22, 8, 8),
            [
              g.rangeQuery('sum by (program) (host_program:sqlalchemy_invalidations:rate5m{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{program}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            13,
            'Processes by host',
            'Live client processes per host, all selected programs summed (sum by (host)).',
            g.pos(0, 30, 8, 8),
            [
              g.rangeQuery('sum by (host) (sqlalchemy_processes{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{host}}'),
            ],
          ) + {
            fieldConfig+: { defaults+: { custom+: { fillOpacity: 60, stacking+: { mode: 'normal' } }, min: 0 } },
          },
          g.timeseries(
            14,
            'Open connections by host',
            'Open DBAPI connections per host, all selected programs summed: what each host holds on the database servers.',
            g.pos(8, 30, 8, 8),
            [
              g.rangeQuery('sum by (host) (sqlalchemy_connections{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{host}}'),
            ],
          ) + {
            fieldConfig+: { defaults+: { custom+: { fillOpacity: 60, stacking+: { mode: 'normal' } }, min: 0 } },
          },
          g.timeseries(
            15,
            'Checked-out connections by host',
            'Connections in use per host, all selected programs summed.',
            g.pos(16, 30, 8, 8),
            [
              g.rangeQuery('sum by (host) (sqlalchemy_connections_checked_out{job=~"$job", host=~"$host", program=~"$program"})', 'A', '{{host}}'),
            ],
          ) + {
            fieldConfig+: { defaults+: { custom+: { fillOpacity: 60, stacking+: { mode: 'normal' } }, min: 0 } },
          },
          g.bargauge(
            16,
            'Database connection usage',
            "Share of each database's max_connections held by the SQLAlchemy programs mapped to it in the exporter's --config.file (recording rule database:sqlalchemy_database_connections:ratio). Only the clients reporting to the exporter count: other users of the database do not show. Not filtered by host/program.",
            g.pos(0, 38, 12, 8),
            [
              g.instantQuery('max by (database) (database:sqlalchemy_database_connections:ratio{job=~"$job"})', 'A', '{{database}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: {
                  steps: [
                    { color: 'green', value: null },
                    // Orange from SQLAlchemyDatabaseConnectionsHigh's threshold.
                    { color: 'orange', value: cfg.databaseConnectionsHigh },
                    { color: 'red', value: 0.95 },
                  ],
                },
              },
            },
          },
          g.timeseries(
            17,
            'Database connections',
            "Open connections of the programs mapped to each database (summed over exporters), and the database's configured max_connections (dashed). Not filtered by host/program.",
            g.pos(12, 38, 12, 8),
            [
              g.rangeQuery('sum by (database) (sqlalchemy_database_connections{job=~"$job"})', 'A', '{{database}} open'),
              g.rangeQuery('max by (database) (sqlalchemy_database_connections_max{job=~"$job"})', 'B', '{{database}} max_connections'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: { min: 0 },
              overrides: [
                {
                  matcher: { id: 'byFrameRefID', options: 'B' },
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
        ],
      ),
  },
}
