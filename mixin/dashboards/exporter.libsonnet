// The collectd exporter dashboard: the exporter's own health.
local g = import '../lib/grafana.libsonnet';
local text = import '../lib/text.libsonnet';

{
  grafanaDashboards+:: {
    'sqlalchemy-exporter.json':
      local cfg = $._config;
      g.dashboard(
        cfg,
        'exporter',
        'Health of sqlalchemy-collectd-exporter: scrapes, datagrams per listener, rejections by reason, kernel drops, tracked processes, programs and series, config reloads.',
        ['fleet', 'program'],
        [g.instanceVariable, g.hostVariable, g.programVariable],
        [
          g.stat(
            1,
            'Up',
            "Whether Prometheus' last scrape of each exporter succeeded (up). SQLAlchemyCollectdExporterDown fires after "
            + text.duration(cfg.exporterDownFor) + ' down.',
            g.pos(0, 0, 4, 4),
            [
              g.rangeQuery('up{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                mappings: [
                  {
                    options: {
                      '0': { color: 'red', index: 1, text: 'DOWN' },
                      '1': { color: 'green', index: 0, text: 'UP' },
                    },
                    type: 'value',
                  },
                ],
                thresholds+: { steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] },
              },
            },
            options+: { graphMode: 'none' },
          },
          g.stat(
            2,
            'Uptime',
            'Time since each exporter started.',
            g.pos(4, 0, 4, 4),
            [
              g.rangeQuery('time() - sqlalchemy_collectd_exporter_start_time_seconds{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 's' } }, options+: { graphMode: 'none' } },
          g.stat(
            3,
            'Version',
            'Exporter version and revision (build_info), per instance.',
            g.pos(8, 0, 4, 4),
            [
              g.rangeQuery('sqlalchemy_collectd_exporter_build_info{job=~"$job", instance=~"$instance"}', 'A', '{{version}} ({{revision}})'),
            ],
          ) + { options+: { graphMode: 'none', textMode: 'name' } },
          g.stat(
            4,
            'Config reload',
            'Whether the last load of --config.file (start-up, SIGHUP or POST /-/reload) succeeded. A failed reload keeps the previous configuration.',
            g.pos(12, 0, 4, 4),
            [
              g.rangeQuery('sqlalchemy_collectd_exporter_config_last_reload_successful{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                mappings: [
                  {
                    options: {
                      '0': { color: 'red', index: 1, text: 'FAILED' },
                      '1': { color: 'green', index: 0, text: 'OK' },
                    },
                    type: 'value',
                  },
                ],
                thresholds+: { steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] },
              },
            },
            options+: { graphMode: 'none' },
          },
          g.stat(
            5,
            'Live client processes',
            'SQLAlchemy client processes currently reporting, over the selected exporters.',
            g.pos(16, 0, 4, 4),
            [
              g.rangeQuery('sum(sqlalchemy_collectd_exporter_processes{job=~"$job", instance=~"$instance"})', 'A'),
            ],
          ),
          g.stat(
            6,
            'Programs',
            'host/program pairs exported (live and recently dead), over the selected exporters.',
            g.pos(20, 0, 4, 4),
            [
              g.rangeQuery('sum(sqlalchemy_collectd_exporter_programs{job=~"$job", instance=~"$instance"})', 'A'),
            ],
          ),
          g.timeseries(
            7,
            'Datagrams/s per listener',
            'collectd datagrams received per second on each UDP listener. The real client sends two datagrams per process every 2 s, so about one per second per process.',
            g.pos(0, 4, 12, 8),
            [
              g.rangeQuery('sum by (instance, listener) (rate(sqlalchemy_collectd_exporter_datagrams_received_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{instance}} {{listener}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            8,
            'Received bytes/s per listener',
            'Bytes of collectd datagrams received per second on each UDP listener.',
            g.pos(12, 4, 12, 8),
            [
              g.rangeQuery('sum by (instance, listener) (rate(sqlalchemy_collectd_exporter_datagram_bytes_received_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{instance}} {{listener}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'Bps', min: 0 } } },
          g.timeseries(
            9,
            'Datagrams rejected by reason',
            'Whole datagrams dropped per second: malformed, bad_signature, decrypt_failed, below_security_level, source_not_allowed. Reasons are logged at debug level (a warning per reason per minute). SQLAlchemyCollectdExporterRejecting fires on a sustained rate.',
            g.pos(0, 12, 8, 8),
            [
              g.rangeQuery('sum by (reason) (rate(sqlalchemy_collectd_exporter_datagrams_rejected_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{reason}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            10,
            'Value lists rejected by reason',
            "Value lists refused per second: unknown_type, malformed, invalid_value, out_of_order (duplicate or late datagrams), over_limit (a --limits.* cap reached), aggregate_ignored (sqlalchemy-collectd server plugin's per-host aggregate).",
            g.pos(8, 12, 8, 8),
            [
              g.rangeQuery('sum by (reason) (rate(sqlalchemy_collectd_exporter_value_lists_rejected_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{reason}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            11,
            'Decode errors by error',
            'What was wrong with the malformed datagrams, per second.',
            g.pos(16, 12, 8, 8),
            [
              g.rangeQuery('sum by (error) (rate(sqlalchemy_collectd_exporter_decode_errors_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{error}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            12,
            'Value lists/s',
            'Value lists decoded from datagrams and value lists stored, per second; the difference is the rejected ones.',
            g.pos(0, 20, 8, 8),
            [
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_value_lists_received_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', 'received'),
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_value_lists_accepted_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'B', 'accepted'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            13,
            'Kernel receive drops/s',
            "Datagrams the kernel dropped because a listener's socket buffer was full (Linux). Anything above zero loses reports: raise --collectd.udp-buffer and net.core.rmem_max, or add exporters.",
            g.pos(8, 20, 8, 8),
            [
              g.rangeQuery('sum by (instance, listener) (rate(sqlalchemy_collectd_exporter_kernel_receive_drops_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{instance}} {{listener}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: { steps: [{ color: 'green', value: null }, { color: 'red', value: 1e-06 }] },
                unit: 'ops',
                min: 0,
              },
            },
          },
          g.timeseries(
            14,
            'UDP receive buffer',
            'SO_RCVBUF granted to each listener (the kernel may grant less than --collectd.udp-buffer asks; raise net.core.rmem_max).',
            g.pos(16, 20, 8, 8),
            [
              g.rangeQuery('max by (instance, listener) (sqlalchemy_collectd_exporter_udp_receive_buffer_bytes{job=~"$job", instance=~"$instance"})', 'A', '{{instance}} {{listener}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'bytes', min: 0 } } },
          g.timeseries(
            15,
            'Tracked processes, programs and series',
            'Live client processes, processes held in memory (dead ones kept for counter continuity included), host/program pairs exported and SQLAlchemy series in the last scrape, per exporter. Compare with --limits.max-processes and --limits.max-programs.',
            g.pos(0, 28, 12, 8),
            [
              g.rangeQuery('sum by (instance) (sqlalchemy_collectd_exporter_processes{job=~"$job", instance=~"$instance"})', 'A', '{{instance}} live processes'),
              g.rangeQuery('sum by (instance) (sqlalchemy_collectd_exporter_processes_tracked{job=~"$job", instance=~"$instance"})', 'B', '{{instance}} processes tracked'),
              g.rangeQuery('sum by (instance) (sqlalchemy_collectd_exporter_programs{job=~"$job", instance=~"$instance"})', 'C', '{{instance}} programs'),
              g.rangeQuery('sum by (instance) (sqlalchemy_collectd_exporter_series{job=~"$job", instance=~"$instance"})', 'D', '{{instance}} series'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            16,
            'Expiries/s',
            'Processes that stopped reporting (expired), dead processes and host/programs dropped from memory (forgotten), generic value lists expired, per second.',
            g.pos(12, 28, 12, 8),
            [
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_processes_expired_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', 'processes expired'),
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_processes_forgotten_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'B', 'processes forgotten'),
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_programs_forgotten_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'C', 'programs forgotten'),
              g.rangeQuery('sum(rate(sqlalchemy_collectd_exporter_generic_value_lists_expired_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'D', 'generic value lists expired'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            17,
            'Generic value lists and conflicts',
            'Generic (non-SQLAlchemy) collectd value lists held, and the samples left out of the last scrape to keep it valid, by kind (duplicate_series, type_mismatch). Conflicts mean two senders map to one series name.',
            g.pos(0, 36, 8, 8),
            [
              g.rangeQuery('sum by (instance) (sqlalchemy_collectd_exporter_generic_value_lists{job=~"$job", instance=~"$instance"})', 'A', '{{instance}} value lists'),
              g.rangeQuery('sum by (kind) (sqlalchemy_collectd_exporter_generic_conflicts{job=~"$job", instance=~"$instance"})', 'B', 'conflicts: {{kind}}'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            18,
            'write_http requests/s by code',
            'POST /collectd-post (collectd write_http JSON) requests per second by HTTP status.',
            g.pos(8, 36, 8, 8),
            [
              g.rangeQuery('sum by (code) (rate(sqlalchemy_collectd_exporter_http_push_requests_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{code}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'reqps', min: 0 } } },
          g.timeseries(
            19,
            'Notifications/s by severity',
            'collectd notifications received per second, by severity.',
            g.pos(16, 36, 8, 8),
            [
              g.rangeQuery('sum by (severity) (rate(sqlalchemy_collectd_exporter_notifications_received_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))', 'A', '{{severity}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 'ops', min: 0 } } },
          g.timeseries(
            20,
            'Scrape duration',
            "How long Prometheus' scrape of each exporter took (scrape_duration_seconds); it grows with the number of series.",
            g.pos(0, 44, 8, 8),
            [
              g.rangeQuery('scrape_duration_seconds{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + { fieldConfig+: { defaults+: { unit: 's', min: 0 } } },
          g.timeseries(
            21,
            'Samples per scrape',
            'Samples Prometheus took from each exporter per scrape (scrape_samples_scraped).',
            g.pos(8, 44, 8, 8),
            [
              g.rangeQuery('scrape_samples_scraped{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            22,
            'Up',
            'Whether each scrape of each exporter succeeded (1) or failed (0).',
            g.pos(16, 44, 8, 8),
            [
              g.rangeQuery('up{job=~"$job", instance=~"$instance"}', 'A', '{{instance}}'),
            ],
          ) + {
            fieldConfig+: {
              defaults+: {
                thresholds+: { steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] },
                min: 0,
                max: 1,
                decimals: 0,
              },
            },
          },
          g.table(
            23,
            'Build info',
            'Version and revision of each exporter (sqlalchemy_collectd_exporter_build_info).',
            g.pos(0, 52, 8, 8),
            [
              g.tableQuery('sqlalchemy_collectd_exporter_build_info{job=~"$job", instance=~"$instance"}', 'A'),
            ],
          ) + {
            fieldConfig+: {
              overrides: [
                {
                  matcher: { id: 'byName', options: 'Value' },
                  properties: [{ id: 'unit', value: 'short' }],
                },
              ],
            },
            options+: { sortBy: [] },
            transformations: [
              { id: 'merge', options: {} },
              {
                id: 'organize',
                options: {
                  excludeByName: { Time: true, __name__: true, job: true, Value: true },
                  indexByName: { instance: 0, version: 1, revision: 2, Value: 3 },
                  renameByName: { 'Value #A': 'Value' },
                },
              },
            ],
          },
          g.timeseries(
            24,
            'SQLAlchemy series per program',
            "Series each selected host/program adds to the exporter's scrape (cardinality); filtered by host and program.",
            g.pos(8, 52, 8, 8),
            [
              g.rangeQuery('count by (host, program) ({__name__=~"sqlalchemy_.+", host!="", job=~"$job", instance=~"$instance", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
            ],
          ) + { fieldConfig+: { defaults+: { min: 0 } } },
          g.timeseries(
            25,
            'Last report age by program',
            'Seconds since each exporter last received a datagram for each selected host/program: where reports stop arriving.',
            g.pos(16, 52, 8, 8),
            [
              g.rangeQuery('time() - max by (host, program) (sqlalchemy_last_report_timestamp_seconds{job=~"$job", instance=~"$instance", host=~"$host", program=~"$program"})', 'A', '{{program}} @ {{host}}'),
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
        ],
      ),
  },
}
