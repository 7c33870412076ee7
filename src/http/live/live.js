// The live page: polls the pools document (with each program's history) and
// the status document, renders one row per host/program, and the processes
// of one host/program when the address ends in #processes=HOST/PROGRAM.
// Every URL is relative to the page, so TLS, basic auth and a proxy's prefix
// need nothing here.
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 5000;
  const SAMPLES = 60; // the history's length (store::sqlalchemy::history)
  const TEXT_KEYS = new Set(["host", "program"]);
  const STATE_RANK = { live: 0, late: 1, dead: 2 };
  const $ = (id) => document.getElementById(id);
  const s = {
    sort: { key: "host", dir: 1 },
    filter: "",
    group: false,
    pools: null,
    rates: new Map(),
    status: null,
    datagramRate: null,
    lastOk: null,
    failingSince: null,
    error: null,
    selected: null,
    processes: null,
    processesError: null,
  };

  const esc = (v) =>
    String(v).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(1));
  const rate = (v) => (v === null || v === undefined ? "–" : v.toFixed(1));
  const secs = (v) => (v < 10 ? v.toFixed(1) + "s" : v < 120 ? Math.round(v) + "s" : v < 7200 ? Math.round(v / 60) + "m" : Math.round(v / 3600) + "h");
  const clock = (unix) => new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
  const key = (host, program) => host + "\u0000" + program;

  // The page's directory without the user and password of an address that
  // carries them (user:pass@host/live): fetch() refuses such URLs, and
  // the browser sends the credentials it was given for this origin anyway.
  const base = new URL(".", location.href);
  base.username = "";
  base.password = "";

  async function get(path) {
    const url = new URL(path, base).href;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" }, signal: abort.signal });
      if (!res.ok) {
        let reason = "";
        try {
          reason = (await res.json()).error || "";
        } catch (_) {
          /* not JSON */
        }
        const e = new Error(path.split("?")[0] + ": HTTP " + res.status + (reason ? " — " + reason : ""));
        e.status = res.status;
        throw e;
      }
      return await res.json();
    } catch (e) {
      if (e.name === "AbortError") throw new Error(path.split("?")[0] + ": no answer within " + TIMEOUT_MS / 1000 + "s");
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // Per second between two documents, by the exporter's clock; null when a
  // counter went down (a restart) or no time passed.
  function perSecond(now, before, dt) {
    if (before === undefined || dt <= 0 || now < before) return null;
    return (now - before) / dt;
  }

  function takePools(doc) {
    const before = s.pools;
    const rates = new Map();
    if (before) {
      const dt = doc.server_time_unix - before.server_time_unix;
      const old = new Map(before.programs.map((p) => [key(p.host, p.program), p]));
      for (const p of doc.programs) {
        const o = old.get(key(p.host, p.program));
        rates.set(key(p.host, p.program), {
          checkouts: o ? perSecond(p.checkouts, o.checkouts, dt) : null,
          invalidations: o ? perSecond(p.invalidations, o.invalidations, dt) : null,
        });
      }
    }
    s.pools = doc;
    s.rates = rates;
  }

  function takeStatus(doc) {
    if (s.status) {
      const dt = doc.server_time_unix - s.status.server_time_unix;
      s.datagramRate = perSecond(doc.datagrams_received, s.status.datagrams_received, dt);
    }
    s.status = doc;
  }

  function rowOf(p) {
    const r = s.rates.get(key(p.host, p.program)) || {};
    const history = p.history ? p.history.checked_out : [];
    return {
      host: p.host,
      program: p.program,
      state: p.state,
      age: p.age_seconds,
      interval: p.interval_seconds,
      processes: p.processes,
      connections: p.connections,
      checked_out: p.checked_out,
      checkout_rate: r.checkouts === undefined ? null : r.checkouts,
      invalidation_rate: r.invalidations === undefined ? null : r.invalidations,
      usage: p.usage,
      max: p.connections_max,
      peak: p.checked_out_peak,
      history: history,
      trend: history.length ? Math.max(...history) : null,
    };
  }

  const sumOf = (rows, k) => {
    const known = rows.map((r) => r[k]).filter((v) => v !== null && v !== undefined);
    return known.length ? known.reduce((a, b) => a + b, 0) : null;
  };

  // A host's row: programs summed (usage only when every program has a
  // capacity; late when one program is, dead when all are).
  function hostOf(host, rows) {
    const out = sumOf(rows, "checked_out");
    const max = rows.every((r) => r.max !== null && r.max !== undefined) ? sumOf(rows, "max") : null;
    const history = [];
    for (const r of rows) {
      const h = r.history;
      for (let i = 0; i < h.length; i++) {
        const at = SAMPLES - h.length + i;
        history[at] = (history[at] || 0) + h[i];
      }
    }
    const trend = history.filter((v) => v !== undefined);
    return {
      host: host,
      program: rows.length + (rows.length === 1 ? " program" : " programs"),
      state: rows.every((r) => r.state === "dead") ? "dead" : rows.some((r) => r.state === "late") ? "late" : "live",
      age: Math.min(...rows.map((r) => r.age)),
      interval: rows[0].interval,
      processes: sumOf(rows, "processes"),
      connections: sumOf(rows, "connections"),
      checked_out: out,
      checkout_rate: sumOf(rows, "checkout_rate"),
      invalidation_rate: sumOf(rows, "invalidation_rate"),
      usage: max ? out / max : null,
      max: max,
      peak: null,
      history: trend,
      trend: trend.length ? Math.max(...trend) : null,
    };
  }

  function compare(a, b) {
    const k = s.sort.key;
    let x = a[k];
    let y = b[k];
    if (k === "state") {
      x = STATE_RANK[x];
      y = STATE_RANK[y];
    }
    const xn = x === null || x === undefined;
    const yn = y === null || y === undefined;
    let c = 0;
    if (xn || yn) {
      c = xn && yn ? 0 : xn ? 1 : -1; // unknown last, either way
    } else {
      c = TEXT_KEYS.has(k) ? String(x).localeCompare(String(y)) : x - y;
      c *= s.sort.dir;
    }
    return c || a.host.localeCompare(b.host) || a.program.localeCompare(b.program);
  }

  function spark(r) {
    const h = r.history;
    if (!h.length) return "–";
    const w = 100;
    const ht = 20;
    const top = Math.max(1, r.peak || 0, ...h);
    const pts = h
      .map((v, i) => {
        const x = w - ((h.length - 1 - i) * w) / (SAMPLES - 1);
        const y = ht - 1 - (v / top) * (ht - 2);
        return x.toFixed(1) + "," + y.toFixed(1);
      })
      .join(" ");
    const label = "checked out over the last " + Math.round((h.length * 5) / 60) + " min: from " + num(Math.min(...h)) + " to " + num(Math.max(...h));
    return '<svg class="spark" width="' + w + '" height="' + ht + '" viewBox="0 0 ' + w + " " + ht + '" role="img" aria-label="' + esc(label) + '"><title>' + esc(label) + '</title><rect width="' + w + '" height="' + ht + '"/><polyline points="' + pts + '"/><circle r="2" cx="' + pts.split(" ").pop().replace(",", '" cy="') + '"/></svg>';
  }

  function usage(r) {
    if (r.usage === null || r.usage === undefined) return "–";
    const pct = Math.round(r.usage * 100) + "%";
    return pct + '<meter aria-hidden="true" min="0" max="1" low="0.75" high="0.9" optimum="0" value="' + Math.min(r.usage, 1) + '" title="' + esc(num(r.checked_out) + " of " + num(r.max)) + '"></meter>';
  }

  function cells(r, isHost) {
    const href = "#processes=" + encodeURIComponent(r.host) + "/" + encodeURIComponent(r.program);
    const name = isHost
      ? '<th scope="rowgroup" class="text program" data-col="program">' + esc(r.host) + ' <span class="sub">' + esc(r.program) + "</span></th>"
      : '<th scope="row" class="text program" data-col="program"><a href="' + esc(href) + '" data-key="' + esc(key(r.host, r.program)) + '">' + esc(r.program) + '</a><span class="hostline">' + esc(r.host) + "</span></th>";
    return (
      '<td class="text host" data-col="host">' + esc(r.host) + "</td>" + name +
      '<td class="text" data-col="state">' + esc(r.state) + "</td>" +
      '<td data-col="age">' + secs(r.age) + "/" + num(r.interval) + "s</td>" +
      '<td data-col="processes">' + num(r.processes) + "</td>" +
      '<td data-col="connections">' + num(r.connections) + "</td>" +
      '<td data-col="checked_out">' + num(r.checked_out) + "</td>" +
      '<td data-col="checkout_rate">' + rate(r.checkout_rate) + "</td>" +
      '<td data-col="invalidation_rate">' + rate(r.invalidation_rate) + "</td>" +
      '<td data-col="usage">' + usage(r) + "</td>" +
      '<td data-col="peak">' + num(r.peak) + "</td>" +
      '<td data-col="trend">' + spark(r) + "</td>"
    );
  }

  const rowHtml = (r, cls) =>
    '<tr class="' + r.state + (cls ? " " + cls : "") + '" data-host="' + esc(r.host) + '" data-program="' + esc(r.program) + '">' + cells(r, cls === "host-row") + "</tr>";

  function renderPrograms() {
    const table = $("programs");
    const all = s.pools ? s.pools.programs.map(rowOf) : [];
    const f = s.filter;
    const rows = f ? all.filter((r) => r.host.toLowerCase().includes(f) || r.program.toLowerCase().includes(f)) : all;
    let html = "";
    if (!s.pools) {
      html = '<tbody><tr><td colspan="12" class="empty">' + (s.error ? esc(s.error) : "Loading…") + "</td></tr></tbody>";
    } else if (!rows.length) {
      html = '<tbody><tr><td colspan="12" class="empty">' + (all.length ? "No host/program matches the filter." : "No host/program has reported yet.") + "</td></tr></tbody>";
    } else if (s.group) {
      const hosts = new Map();
      for (const r of rows) {
        if (!hosts.has(r.host)) hosts.set(r.host, []);
        hosts.get(r.host).push(r);
      }
      const groups = [...hosts].map(([h, rs]) => ({ head: hostOf(h, rs), rows: rs.sort(compare) }));
      groups.sort((a, b) => compare(a.head, b.head));
      html = groups.map((g) => "<tbody>" + rowHtml(g.head, "host-row") + g.rows.map((r) => rowHtml(r)).join("") + "</tbody>").join("");
    } else {
      html = "<tbody>" + rows.sort(compare).map((r) => rowHtml(r)).join("") + "</tbody>";
    }
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : undefined;
    for (const b of [...table.tBodies]) b.remove();
    table.querySelector("thead").insertAdjacentHTML("afterend", html);
    if (focused !== undefined) {
      const again = [...table.querySelectorAll("a[data-key]")].find((a) => a.dataset.key === focused);
      if (again) again.focus();
    }
    $("count").textContent = s.pools ? (f ? rows.length + " of " + all.length + " shown" : all.length + " host/programs") : "";
    for (const th of table.querySelectorAll("thead th")) {
      if (th.dataset.key === s.sort.key) th.setAttribute("aria-sort", s.sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
  }

  function renderHealth() {
    const st = s.status;
    if (!st) return;
    $("h-rate").textContent = rate(s.datagramRate);
    const reasons = [];
    for (const [what, all] of [["datagrams", st.datagrams_rejected], ["value lists", st.value_lists_rejected]]) {
      for (const [reason, n] of Object.entries(all)) if (n > 0) reasons.push(reason + " " + n + " " + what);
    }
    $("h-rejected").textContent = reasons.length ? reasons.join(", ") : "none";
    const drops = $("h-drops");
    drops.textContent = st.kernel_drops === null ? "not reported" : String(st.kernel_drops);
    drops.classList.toggle("bad", st.kernel_drops > 0);
    $("h-processes").textContent = st.processes_live + " / " + st.processes_tracked;
    $("h-programs").textContent = String(st.programs);
    $("h-updated").textContent = s.lastOk ? clock(s.lastOk) : "–";
  }

  function renderBanner() {
    const banner = $("banner");
    if (s.failingSince === null) {
      banner.hidden = true;
      document.body.classList.remove("stale");
      document.title = document.title.replace(/^⚠ /, "");
      return;
    }
    banner.hidden = false;
    banner.textContent =
      "The exporter is not answering since " + clock(s.failingSince) + " (" + s.error + "). " +
      (s.lastOk ? "The figures below are from " + clock(s.lastOk) + "." : "Nothing has been received yet.") +
      " Retrying every " + REFRESH_MS / 1000 + " s.";
    document.body.classList.add("stale");
    if (!document.title.startsWith("⚠ ")) document.title = "⚠ " + document.title;
  }

  function renderProcesses() {
    const view = $("processes");
    const fleet = $("fleet");
    if (!s.selected) {
      view.hidden = true;
      fleet.hidden = false;
      return;
    }
    view.hidden = false;
    fleet.hidden = true;
    $("processes-title").textContent = "Processes of " + s.selected.host + "/" + s.selected.program;
    const tbody = $("process-table").tBodies[0];
    const doc = s.processes;
    if (s.processesError) {
      tbody.innerHTML = '<tr><td colspan="13" class="empty">' + esc(s.processesError) + "</td></tr>";
      $("processes-summary").textContent = "";
      return;
    }
    if (!doc) {
      tbody.innerHTML = '<tr><td colspan="13" class="empty">Loading…</td></tr>';
      return;
    }
    $("processes-summary").textContent =
      doc.total + " tracked, " + doc.live + " live" + (doc.total > doc.processes.length ? "; the first " + doc.processes.length + " shown" : "");
    tbody.innerHTML = doc.processes
      .map((p) => {
        const token = p.relayed_processes !== null ? "(relay of " + p.relayed_processes + " processes)" : p.token;
        const offset = p.clock_offset_seconds === null ? "–" : (p.clock_offset_seconds > 0 ? "+" : "") + p.clock_offset_seconds.toFixed(1) + "s";
        return (
          '<tr class="' + p.state + '" data-pid="' + (p.pid === null ? "" : p.pid) + '">' +
          '<th scope="row">' + (p.pid === null ? "–" : p.pid) + "</th>" +
          '<td class="text">' + esc(token) + '</td><td class="text">' + esc(p.state) + "</td>" +
          "<td>" + secs(p.age_seconds) + "/" + num(p.interval_seconds) + "s</td>" +
          "<td>" + num(p.pools) + "</td><td>" + num(p.connections) + "</td><td>" + num(p.checked_out) + "</td>" +
          "<td>" + num(p.checked_in) + "</td><td>" + num(p.detached) + "</td>" +
          "<td>" + num(p.checkouts) + "</td><td>" + num(p.invalidations) + "</td>" +
          "<td>" + num(p.connects) + "/" + num(p.disconnects) + "</td><td>" + offset + "</td></tr>"
        );
      })
      .join("");
  }

  function render() {
    renderBanner();
    renderHealth();
    renderPrograms();
    renderProcesses();
  }

  function processesUrl(sel) {
    return "api/v1/processes?host=" + encodeURIComponent(sel.host) + "&program=" + encodeURIComponent(sel.program);
  }

  async function refreshProcesses() {
    const sel = s.selected;
    if (!sel) return;
    try {
      const doc = await get(processesUrl(sel));
      if (s.selected === sel) {
        s.processes = doc;
        s.processesError = null;
      }
    } catch (e) {
      if (s.selected !== sel) return;
      if (e.status === 404) {
        s.processes = null;
        s.processesError = sel.host + "/" + sel.program + " is not known to the exporter (never seen, or forgotten).";
      } else throw e;
    }
  }

  let timer = null;
  async function tick() {
    clearTimeout(timer);
    try {
      const [pools, status] = await Promise.all([get("api/v1/pools?history=1"), get("api/v1/status")]);
      takePools(pools);
      takeStatus(status);
      await refreshProcesses();
      s.lastOk = Date.now() / 1000;
      s.failingSince = null;
      s.error = null;
    } catch (e) {
      if (s.failingSince === null) s.failingSince = Date.now() / 1000;
      s.error = e.message || String(e);
    }
    render();
    timer = setTimeout(tick, REFRESH_MS);
  }

  function route() {
    const m = /^#processes=([^/]*)\/(.*)$/.exec(location.hash);
    let sel = null;
    if (m) {
      try {
        sel = { host: decodeURIComponent(m[1]), program: decodeURIComponent(m[2]) };
      } catch (_) {
        sel = null;
      }
    }
    const changed = JSON.stringify(sel) !== JSON.stringify(s.selected);
    s.selected = sel;
    if (changed) {
      s.processes = null;
      s.processesError = null;
      renderProcesses();
      if (sel) {
        $("processes-title").focus();
        refreshProcesses().then(renderProcesses, () => {});
      } else {
        renderPrograms();
        const back = sessionStorage.getItem("live-focus");
        const link = back && [...document.querySelectorAll("#programs a[data-key]")].find((a) => a.dataset.key === back);
        if (link) link.focus();
      }
    }
  }

  function init() {
    if (document.body.dataset.api !== "1") {
      s.error = "this exporter does not serve api/v1/pools (--web.telemetry-path or the push path takes it)";
      render();
      return;
    }
    for (const th of $("programs").querySelectorAll("thead th[data-key]")) {
      th.querySelector("button").addEventListener("click", () => {
        const k = th.dataset.key;
        if (s.sort.key === k) s.sort.dir = -s.sort.dir;
        else s.sort = { key: k, dir: TEXT_KEYS.has(k) ? 1 : -1 };
        renderPrograms();
      });
    }
    $("filter").addEventListener("input", (e) => {
      s.filter = e.target.value.trim().toLowerCase();
      renderPrograms();
    });
    $("group").addEventListener("change", (e) => {
      s.group = e.target.checked;
      renderPrograms();
    });
    $("programs").addEventListener("click", (e) => {
      const a = e.target.closest("a[data-key]");
      if (a) sessionStorage.setItem("live-focus", a.dataset.key);
    });
    $("back").addEventListener("click", (e) => {
      e.preventDefault();
      history.pushState(null, "", location.pathname + location.search);
      route();
    });
    document.addEventListener("keydown", (e) => {
      const typing = e.target instanceof HTMLInputElement;
      if (e.key === "/" && !typing) {
        e.preventDefault();
        if (s.selected) $("back").click();
        $("filter").focus();
      } else if (e.key === "Escape") {
        if (e.target === $("filter") && $("filter").value) {
          $("filter").value = "";
          s.filter = "";
          renderPrograms();
        } else if (s.selected) {
          $("back").click();
        }
      }
    });
    window.addEventListener("hashchange", route);
    window.addEventListener("popstate", route);
    route();
    tick();
  }

  init();
})();
