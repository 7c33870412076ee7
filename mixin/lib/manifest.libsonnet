// Writers for the rendered files, so that they read like the hand-written files they
// replaced and stay byte-stable: jsonnet's own std.manifestJsonEx prints 0.85 as
// 0.84999999999999998 and empty objects over two lines, and std.manifestYamlDoc quotes
// every string and sorts every key (`annotations` before `expr`).
// Debian's jsonnet 0.18 has no std.any or std.all, and its std.escapeStringJson and
// std.findSubstr walk a string a character at a time in jsonnet (seconds for a
// dashboard); std.strReplace is native, so these are built on it.
local contains(s, sub) = std.strReplace(s, sub, '') != s;
local controls = [std.char(c) for c in std.range(0, 31)];
local hasControl(s, except='') = std.foldl(
  function(found, c) found || (c != except && contains(s, c)), controls, false
);
// JSON's escaping of a string, by jsonnet's native writer (the one that prints values):
// `'' + [s]` is the array written as JSON, `["…"]`.
local jsonString(s) = local t = '' + [s]; std.substr(t, 1, std.length(t) - 2);
// Whether only characters of `set` are in s.
local onlyOf(s, set) = std.foldl(function(acc, c) std.strReplace(acc, c, ''), std.stringChars(set), s) == '';

// The shortest %g form that reads back as the same double (0.85, 1e-06), integers as
// integers: what Python's json module and Grafana write.
local number(n) =
  local shortest(p) =
    local s = std.format('%.' + p + 'g', n);
    if p >= 17 || std.parseJson(s) == n then s else shortest(p + 1);
  if n == std.floor(n) && std.abs(n) < 1e15 then std.format('%d', n) else shortest(1);

// JSON with 2-space indentation, keys sorted, `[]` and `{}` when empty.
local json(v, indent='') =
  local inner = indent + '  ';
  if std.isString(v) then jsonString(v)
  else if std.isBoolean(v) then (if v then 'true' else 'false')
  else if v == null then 'null'
  else if std.isNumber(v) then number(v)
  else if std.isArray(v) then
    if std.length(v) == 0 then '[]'
    else '[\n' + std.join(',\n', [inner + json(x, inner) for x in v]) + '\n' + indent + ']'
  else if std.isObject(v) then
    local keys = std.objectFields(v);
    if std.length(keys) == 0 then '{}'
    else '{\n' + std.join(',\n', [
      inner + jsonString(k) + ': ' + json(v[k], inner)
      for k in keys
    ]) + '\n' + indent + '}'
  else error 'cannot write %s as JSON' % std.type(v);

// YAML: these keys first, in this order (a rule reads record/alert, expr, for, labels,
// annotations; annotations summary, description, runbook_url; a Kubernetes object
// apiVersion, kind, metadata, spec), then the others sorted.
local keyOrder = [
  'apiVersion',
  'kind',
  'metadata',
  'spec',
  'name',
  'namespace',
  'interval',
  'record',
  'alert',
  'expr',
  'for',
  'keep_firing_for',
  'labels',
  'annotations',
  'groups',
  'rules',
  'summary',
  'description',
  'runbook_url',
];
local orderedKeys(o) =
  local keys = std.objectFields(o);
  [k for k in keyOrder if std.member(keys, k)]
  + [k for k in keys if !std.member(keyOrder, k)];

// A string YAML reads back unchanged without quotes: not starting with an indicator,
// no `: ` or ` #`, no control character, not a number, boolean or null look-alike.
local plainSafe(s) =
  std.length(s) > 0
  && !std.member('-?:,[]{}#&*!|>\'"%@`~ ', s[0])
  && !std.endsWith(s, ' ')
  && !std.endsWith(s, ':')
  && !contains(s, ': ')
  && !contains(s, ' #')
  && !hasControl(s)
  && !onlyOf(s, '0123456789+-.:eExXoObBaAcCdDfF_')
  && !std.member(['y', 'n', 'yes', 'no', 'on', 'off', 'true', 'false', 'null'], std.asciiLower(s));

local yamlString(s, indent, quote) =
  local lines = std.split(s, '\n');
  local body = if std.endsWith(s, '\n') then lines[0:std.length(lines) - 1] else lines;
  if contains(s, '\n')
     && !std.startsWith(s, ' ')
     && !std.endsWith(s, '\n\n')
     && !hasControl(s, '\n') then
    (if std.endsWith(s, '\n') then '|' else '|-')
    + std.join('', ['\n' + (if l == '' then '' else indent + '  ' + l) for l in body])
  else if !quote && plainSafe(s) then s
  else jsonString(s);

// Strings under `annotations` are always double-quoted (they are templates and prose).
local yamlScalar(v, indent, quote) =
  if std.isString(v) then yamlString(v, indent, quote)
  else if std.isBoolean(v) then (if v then 'true' else 'false')
  else if v == null then 'null'
  else if std.isNumber(v) then number(v)
  else if std.isArray(v) && std.length(v) == 0 then '[]'
  else if std.isObject(v) && std.length(std.objectFields(v)) == 0 then '{}'
  else null;

// The lines of a mapping or sequence at `indent`; a sequence inside a mapping is
// indented by two more spaces (`groups:\n  - name: …`).
local yamlBlock(v, indent, quote=false) =
  if std.isObject(v) then
    std.join('\n', [
      local x = v[k];
      local q = quote || k == 'annotations';
      local s = yamlScalar(x, indent, q);
      indent + k + ':'
      + (if s != null then ' ' + s else '\n' + yamlBlock(x, indent + '  ', q))
      for k in orderedKeys(v)
    ])
  else
    std.join('\n', [
      local s = yamlScalar(x, indent, quote);
      if s != null then indent + '- ' + s
      else
        // The first line of the item goes after the dash.
        local block = yamlBlock(x, indent + '  ', quote);
        indent + '- ' + std.substr(block, std.length(indent) + 2, std.length(block))
      for x in v
    ]);

{
  number:: number,
  // A JSON file (jsonnet -S ends its output with a newline).
  json(v):: json(v),
  // A YAML document of a mapping (jsonnet -S ends its output with a newline).
  yaml(v):: yamlBlock(v, ''),
}
