// The words the alerts' descriptions and the dashboards' panel descriptions use for
// configured numbers, so that a changed threshold or `for:` is stated as configured.
local units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

// Seconds of a Prometheus duration such as '90s', '5m' or '1h30m'.
local seconds(d) =
  local step(acc, c) =
    if std.member('0123456789', c) then acc { digits+: c }
    else if std.objectHas(units, c) && acc.digits != '' then
      { total: acc.total + std.parseInt(acc.digits) * units[c], digits: '' }
    else error 'not a duration this mixin can state in words: %s' % d;
  local r = std.foldl(step, std.stringChars(d), { total: 0, digits: '' });
  if r.digits != '' || d == '' then error 'duration without a unit: %s' % d else r.total;

local plural(n, unit) = std.format('%d %s', [n, unit]) + (if n == 1 then '' else 's');

{
  seconds:: seconds,

  // '5m' -> '5 minutes', '1h' -> '1 hour', '90s' -> '90 seconds'.
  duration(d)::
    local s = seconds(d);
    if s % 3600 == 0 then plural(s / 3600, 'hour')
    else if s % 60 == 0 then plural(s / 60, 'minute')
    else plural(s, 'second'),

  // The number of a duration in minutes without the unit when it is whole minutes
  // ('15m' -> '15'), for a sentence that named the unit just before.
  minutesOrDuration(d)::
    local s = seconds(d);
    if s % 60 == 0 && s % 3600 != 0 then std.format('%d', s / 60) else self.duration(d),

  // 0.85 -> '85%'.
  percent(r):: std.format('%g', r * 100) + '%',

  // 0.85 -> '85 %' (the dashboards' spelling).
  percentSpaced(r):: std.format('%g', r * 100) + ' %',

  // 0.5 -> 'half', otherwise a percentage.
  share(r):: if r == 0.5 then 'half' else self.percent(r),

  // A plain number as PromQL and prose write it: 3, 0.1.
  number(n):: (import 'manifest.libsonnet').number(n),
}
