// Every file the mixin renders, by its path in the repository: the rules file, the
// dashboards and the Prometheus Operator's PrometheusRule. render.sh writes them; a
// config (the TLA `config`, an object merged into _config) renders a customised set:
//
//   jsonnet -S -m OUT --tla-code 'config={selector: "job=\"my-job\""}' mixin/render.jsonnet
local manifest = import 'lib/manifest.libsonnet';

function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  local cfg = mixin._config;
  local groups = mixin.prometheusRules.groups + mixin.prometheusAlerts.groups;
  local customised = config != {};
  local header(lines) = std.join('', ['#' + (if l == '' then '' else ' ' + l) + '\n' for l in lines]);
  local generated = [
    'Generated from the monitoring mixin in mixin/ by mixin/render.sh: do not edit by hand.',
  ] + (
    if customised then ['Rendered with the _config override: ' + std.manifestJsonMinified(config)]
    else [
      'To change a rule, edit mixin/ (the explanations of the rules are there, next to',
      'each rule) and run mixin/render.sh; tests/mixin.rs checks this file is up to date.',
    ]
  ) + [
    '',
    'Another job selector, group labels (e.g. cluster), thresholds, `for:` durations or the',
    'runbook URL: render your own copy with a _config override (README, "Monitoring',
    'mixin"; the fields are in mixin/config.libsonnet), for example',
    '',
    '  mixin/render.sh OUT \'{selector: "job=\\"my-job\\"", groupLabels: ["cluster"]}\'',
  ];
  {
    'alerts/sqlalchemy.rules.yml':
      header(
        ['Prometheus recording and alerting rules for sqlalchemy-collectd-exporter.', '']
        + generated
        + [
          '',
          'Contract: docs/capacity-and-rules.md (record names and expressions, alert names);',
          'what to do when an alert fires: docs/runbook.md (one section per alert).',
          'Unit tests: alerts/tests/*.yml (`promtool test rules alerts/tests/*.yml`).',
        ]
      )
      + '\n' + manifest.yaml({ groups: groups }),

    'deploy/kubernetes/prometheusrule.yaml':
      header(
        [
          'The rules of alerts/sqlalchemy.rules.yml as a Prometheus Operator PrometheusRule.',
          'Its labels must match the ruleSelector of your Prometheus resource; the alerts',
          'select the scrape job with %s: give the ServiceMonitor or PodMonitor' % cfg.selector,
          'that job (a relabeling to target label job), or render the rules for yours.',
          '',
        ] + generated
      )
      + '\n' + manifest.yaml({
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'PrometheusRule',
        metadata: {
          name: cfg.prometheusRuleName,
          namespace: cfg.prometheusRuleNamespace,
          labels: cfg.prometheusRuleLabels,
        },
        spec: { groups: groups },
      }),
  } + {
    ['dashboards/' + name]: manifest.json(mixin.grafanaDashboards[name])
    for name in std.objectFields(mixin.grafanaDashboards)
  }
