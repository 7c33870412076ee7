// Grafana building blocks of the three dashboards: panels (what every panel of a type
// shares; a panel adds or overrides the rest with `+`), targets, variables, links, and
// the dashboard itself, which applies _config's selector and group labels to every
// query and variable.
//
// The queries of the panels are written with the matcher `job=~"$job"`; dashboard()
// widens that matcher to _config.dashboardSelector, one `L=~"$L"` per group label L and
// `job=~"$job"`, so every query filters by every variable in the same way.
local datasource = { type: 'prometheus', uid: '${datasource}' };

local panel(base) = function(id, title, description, gridPos, targets)
  base {
    datasource: datasource,
    id: id,
    title: title,
    description: description,
    gridPos: gridPos,
    targets: targets,
  };

local target(expr, refId, legendFormat) =
  {
    datasource: datasource,
    editorMode: 'code',
    expr: expr,
    refId: refId,
  } + (if legendFormat != null then { legendFormat: legendFormat } else {});

// The dashboards, by the key of their uid (uid = dashboardUidPrefix + key) and their
// title (after dashboardTitlePrefix).
local titles = {
  fleet: 'Fleet overview',
  program: 'Program',
  exporter: 'collectd exporter',
};

// Grafana's URL slug of a title: lower case, every run of other characters one dash.
local slug(title) =
  local step(acc, c) =
    if std.member('abcdefghijklmnopqrstuvwxyz0123456789', c) then acc + c
    else if acc == '' || std.endsWith(acc, '-') then acc
    else acc + '-';
  local s = std.foldl(step, std.stringChars(std.asciiLower(title)), '');
  if std.endsWith(s, '-') then std.substr(s, 0, std.length(s) - 1) else s;

local queryVariable(name, label, query, description) = {
  current: { selected: true, text: ['All'], value: ['$__all'] },
  datasource: datasource,
  definition: query,
  description: description,
  hide: 0,
  includeAll: true,
  label: label,
  multi: true,
  name: name,
  options: [],
  query: {
    qryType: 1,
    query: query,
    refId: 'PrometheusVariableQueryEditor-VariableQuery',
  },
  refresh: 2,
  regex: '',
  skipUrlSync: false,
  sort: 1,
  type: 'query',
};

// `{m1, m2}` of the non-empty matchers, or nothing.
local braces(matchers) =
  local m = [x for x in matchers if x != ''];
  if m == [] then '' else '{' + std.join(', ', m) + '}';

local groupMatchers(cfg) = ['%s=~"$%s"' % [l, l] for l in cfg.groupLabels];

{
  pos(x, y, w, h):: { x: x, y: y, w: w, h: h },

  // Targets: a range query (graphs, stats), an instant query (bar gauges) and an
  // instant query as a table (the tables' columns, merged by host and program).
  rangeQuery(expr, refId, legendFormat=null)::
    target(expr, refId, legendFormat) { instant: false, range: true },
  instantQuery(expr, refId, legendFormat=null)::
    target(expr, refId, legendFormat) { instant: true, range: false },
  tableQuery(expr, refId):: target(expr, refId, null) { format: 'table', instant: true, range: false },

  stat:: panel({
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        mappings: [],
        thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
        unit: 'short',
      },
      overrides: [],
    },
    options: {
      colorMode: 'value',
      graphMode: 'area',
      justifyMode: 'auto',
      orientation: 'auto',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showPercentChange: false,
      textMode: 'auto',
      wideLayout: true,
    },
    type: 'stat',
  }),

  table:: panel({
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true, inspect: false },
        mappings: [],
        thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
        unit: 'short',
      },
    },
    options: {
      cellHeight: 'sm',
      footer: { countRows: false, fields: '', reducer: ['sum'], show: false },
      showHeader: true,
    },
    type: 'table',
  }),

  bargauge:: panel({
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        mappings: [],
        min: 0,
        max: 1,
        thresholds: { mode: 'absolute' },
        unit: 'percentunit',
      },
      overrides: [],
    },
    options: {
      displayMode: 'gradient',
      maxVizHeight: 300,
      minVizHeight: 16,
      minVizWidth: 8,
      namePlacement: 'auto',
      orientation: 'horizontal',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showUnfilled: true,
      sizing: 'auto',
      valueMode: 'color',
    },
    type: 'bargauge',
  }),

  timeseries:: panel({
    fieldConfig: {
      defaults: {
        color: { mode: 'palette-classic' },
        custom: {
          axisBorderShow: false,
          axisCenteredZero: false,
          axisColorMode: 'text',
          axisLabel: '',
          axisPlacement: 'auto',
          barAlignment: 0,
          drawStyle: 'line',
          fillOpacity: 10,
          gradientMode: 'none',
          hideFrom: { legend: false, tooltip: false, viz: false },
          insertNulls: false,
          lineInterpolation: 'linear',
          lineWidth: 1,
          pointSize: 5,
          scaleDistribution: { type: 'linear' },
          showPoints: 'never',
          spanNulls: false,
          stacking: { group: 'A', mode: 'none' },
          thresholdsStyle: { mode: 'off' },
        },
        mappings: [],
        thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
        unit: 'short',
      },
      overrides: [],
    },
    options: {
      legend: {
        calcs: ['lastNotNull', 'max'],
        displayMode: 'table',
        placement: 'bottom',
        showLegend: true,
      },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
    type: 'timeseries',
  }),

  // Threshold steps: green, then each [color, value].
  steps(more):: [{ color: 'green', value: null }] + [{ color: s[0], value: s[1] } for s in more],

  // Variables. Those of host, program and instance are written with `job=~"$job"` like
  // the panels' queries; dashboard() adds the datasource, group-label and job variables.
  hostVariable:: queryVariable(
    'host',
    'Host',
    'label_values(sqlalchemy_processes{job=~"$job"}, host)',
    "host label: the client's collectd_report_host (default: the machine's hostname).",
  ) { allValue: '.*' },
  programVariable:: queryVariable(
    'program',
    'Program',
    'label_values(sqlalchemy_processes{job=~"$job", host=~"$host"}, program)',
    "program label: the client's collectd_program_name (default: the script's name).",
  ) { allValue: '.*' },
  instanceVariable:: queryVariable(
    'instance',
    'Exporter',
    'label_values(sqlalchemy_collectd_exporter_build_info{job=~"$job"}, instance)',
    'Exporter instance(s) (scrape targets).',
  ) { allValue: '.*' },

  uid(cfg, key):: cfg.dashboardUidPrefix + key,
  title(cfg, key):: cfg.dashboardTitlePrefix + titles[key],
  // The path of another dashboard: /d/<uid>/<slug>.
  url(cfg, key):: '/d/%s/%s' % [self.uid(cfg, key), slug(self.title(cfg, key))],
  // `&${L:queryparam}` for each group label then the job: a link's variables.
  queryParams(cfg):: std.join('', ['&${%s:queryparam}' % l for l in cfg.groupLabels + ['job']]),

  // A dashboard: `key` (fleet, program or exporter), its description, the keys of the
  // dashboards it links to, its own variables and its panels.
  dashboard(cfg, key, description, links, variables, panels)::
    local matchers = std.join(', ', [x for x in [cfg.dashboardSelector] if x != '']
                                    + groupMatchers(cfg) + ['job=~"$job"']);
    local widen(s) = std.strReplace(s, 'job=~"$job"', matchers);
    local widenVariable(v) = v { definition: widen(v.definition), query+: { query: widen(v.query.query) } };
    local widenPanel(p) = p { targets: [t { expr: widen(t.expr) } for t in p.targets] };
    local buildInfo(matchers) = 'sqlalchemy_collectd_exporter_build_info' + braces(matchers);
    local groupVariables = [
      local l = cfg.groupLabels[i];
      queryVariable(
        l,
        l,
        'label_values(%s, %s)' % [buildInfo([cfg.dashboardSelector] + groupMatchers(cfg)[0:i]), l],
        "Group label %s of the exporters (the mixin's _config.groupLabels)." % l,
      ) { allValue: '.*' }
      for i in std.range(0, std.length(cfg.groupLabels) - 1)
    ];
    local jobVariable = queryVariable(
      'job',
      'Job',
      'label_values(%s, job)' % buildInfo([cfg.dashboardSelector] + groupMatchers(cfg)),
      'Scrape job(s) of sqlalchemy-collectd-exporter (the recording rules assume %s).' % cfg.selector,
    );
    {
      annotations: {
        list: [
          {
            builtIn: 1,
            datasource: { type: 'grafana', uid: '-- Grafana --' },
            enable: true,
            hide: true,
            iconColor: 'rgba(0, 211, 255, 1)',
            name: 'Annotations & Alerts',
            type: 'dashboard',
          },
        ],
      },
      description: description,
      editable: true,
      fiscalYearStartMonth: 0,
      graphTooltip: 1,
      id: null,
      links: [
        {
          asDropdown: false,
          icon: 'dashboard',
          includeVars: true,
          keepTime: true,
          tags: [],
          targetBlank: false,
          title: titles[other],
          tooltip: $.title(cfg, other),
          type: 'link',
          url: $.url(cfg, other),
        }
        for other in links
      ],
      panels: [widenPanel(p) for p in panels],
      refresh: '30s',
      schemaVersion: 39,
      tags: cfg.dashboardTags,
      templating: {
        list: [
          {
            current: {},
            description: 'Prometheus data source that scrapes the exporter.',
            hide: 0,
            includeAll: false,
            label: 'Data source',
            multi: false,
            name: 'datasource',
            options: [],
            query: 'prometheus',
            refresh: 1,
            regex: '',
            skipUrlSync: false,
            type: 'datasource',
          },
        ] + groupVariables + [jobVariable] + [widenVariable(v) for v in variables],
      },
      time: { from: 'now-3h', to: 'now' },
      timepicker: {},
      timezone: '',
      title: $.title(cfg, key),
      uid: $.uid(cfg, key),
      version: 1,
      weekStart: '',
    },
}
