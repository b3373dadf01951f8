// The console: the filters live in the URL's query string (a view is a link; a reload restores
// it), the messages come a page at a time by cursor (nothing loads the whole table; the
// downloads are the export), and the totals and charts come from /stats and /stats/timeseries. Every value from the API reaches
// the page through textContent or an attribute, never as HTML.
"use strict";
(function () {
  const FILTERS = ["q", "from", "to", "source", "since", "until"];
  const PAGE = 50;
  const HOUR_MS = 3600 * 1000;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#messages tbody");
  const more = document.getElementById("more");
  const notices = document.getElementById("notices");
  let nextCursor = null;
  let loaded = 0;
  // A newer view makes the answers of an older one irrelevant.
  let generation = 0;

  const localTime = (ts) => {
    const t = new Date(ts);
    return Number.isNaN(t.getTime()) ? ts : t.toLocaleString();
  };

  function view() {
    const url = new URLSearchParams(location.search);
    const v = {};
    for (const name of FILTERS) v[name] = url.get(name) || "";
    v.bucket = url.get("bucket") === "hour" ? "hour" : "day";
    return v;
  }

  function showView(v) {
    for (const name of FILTERS) form.elements[name].value = v[name];
    form.elements.bucket.value = v.bucket;
  }

  function query(v, names, extra) {
    const params = new URLSearchParams();
    for (const name of names) if (v[name]) params.set(name, v[name]);
    for (const [k, val] of Object.entries(extra || {})) params.set(k, val);
    return params.toString();
  }

  function notice(kind, text) {
    if (notices.querySelector(`[data-kind="${kind}"]`)?.textContent === text) return;
    const p = document.createElement("p");
    p.className = "notice notice-" + kind;
    p.dataset.kind = kind;
    p.textContent = text;
    notices.append(p);
  }

  // A read: JSON on success; null after saying what went wrong.
  async function read(path, gen) {
    let response;
    try {
      response = await window.ReadToken.fetchRead(path);
    } catch (e) {
      if (gen === generation) notice("error", "The gateway did not answer: " + e.message);
      return null;
    }
    if (gen !== generation) return null;
    if (response.headers.get("Consistency") === "stale") {
      notice("stale", "Some answers may miss the latest messages: the gateway could not confirm " +
        "it has caught up (Consistency: stale). Reload in a moment.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (response.ok) return body;
    complain(path, response, body);
    return null;
  }

  // Says on the page why a read failed: each field of a 422, else the status and its detail.
  function complain(path, response, body) {
    if (response.status === 422 && body && Array.isArray(body.detail)) {
      for (const d of body.detail) {
        const field = Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : "?";
        notice("invalid", `${field}: ${d.msg}`);
      }
    } else {
      const detail = body && typeof body.detail === "string" ? body.detail : "";
      notice("error", `${path.split("?")[0]}: HTTP ${response.status} ${detail}`.trim());
    }
  }

  // Every message of the current filters as a file. A plain link cannot send the read token
  // (and a token in a URL ends up in logs and history), so the export is fetched with the
  // Authorization header and handed to the browser as a blob; the link stays on the page to
  // save it again. The whole file is held by the tab: very large exports are for curl.
  let downloadUrl = null;
  async function download(format) {
    const status = document.getElementById("download-status");
    const link = document.getElementById("download-link");
    const buttons = document.querySelectorAll(".downloads button");
    const path = "/messages?" + query(view(), FILTERS, { format });
    buttons.forEach((b) => { b.disabled = true; });
    status.textContent = "Downloading…";
    try {
      const response = await window.ReadToken.fetchRead(path);
      if (!response.ok) {
        let body = null;
        try {
          body = await response.json();
        } catch (e) {
          body = null;
        }
        status.textContent = "";
        complain(path, response, body);
        return;
      }
      const blob = await response.blob();
      const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const name = named ? named[1] : `messages.${format}`;
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(blob);
      link.href = downloadUrl;
      link.download = name;
      link.dataset.format = format;
      link.textContent = `${name} (${Math.max(1, Math.round(blob.size / 1024))} KiB): save again`;
      link.hidden = false;
      status.textContent = "";
      link.click();
    } catch (e) {
      status.textContent = "";
      notice("error", "The download failed: " + e.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function showTotals(stats) {
    const dl = document.getElementById("totals");
    dl.replaceChildren();
    const rows = [
      ["Messages", stats.total_messages, "total"],
      ["Senders", stats.senders_count, "senders"],
      ["Recipients", stats.recipients_count, "recipients"],
      ["First", stats.first_message_ts ? localTime(stats.first_message_ts) : "–", "first"],
      ["Last", stats.last_message_ts ? localTime(stats.last_message_ts) : "–", "last"],
    ];
    for (const [label, value, key] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dd.dataset.stat = key;
      dl.append(dt, dd);
    }
    window.Charts.horizontal(
      document.getElementById("senders-chart"),
      stats.messages_per_sender.map((s) => ({ label: s.from, value: s.count })),
      (item) => {
        form.elements.from.value = item.label;
        form.requestSubmit();
      },
    );
  }

  function showSeries(v, series) {
    const chart = document.getElementById("series-chart");
    document.getElementById("series-title").textContent = `Messages per ${series.bucket} (UTC)`;
    window.Charts.timeline(chart, series.data, series.bucket === "hour" ? HOUR_MS : 24 * HOUR_MS, localTime);
    chart.dataset.bucket = series.bucket;
    chart.dataset.buckets = String(series.data.length);
    if (series.truncated) {
      notice("truncated", `The chart shows the first ${series.data.length} buckets; narrow ` +
        `Since/Until or use days (more from ${series.next_since}).`);
    }
  }

  function addRows(messages) {
    for (const m of messages) {
      const tr = document.createElement("tr");
      tr.dataset.id = m.message_id;
      const cells = [localTime(m.ts), m.from, m.to, m.text ?? ""];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 0) td.title = "UTC " + m.ts;
        if (i === 3) td.className = "text";
        tr.append(td);
      });
      tr.addEventListener("click", () => showMessage(m));
      tbody.append(tr);
    }
  }

  function showMessage(m) {
    const dl = document.getElementById("detail-fields");
    dl.replaceChildren();
    for (const [k, value] of [["id", m.message_id], ["from", m.from], ["to", m.to],
      ["time", `${localTime(m.ts)} (UTC ${m.ts})`]]) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    document.getElementById("detail-text").textContent = m.text ?? "(no text)";
    document.getElementById("detail").showModal();
  }

  async function loadPage(v, gen) {
    more.disabled = true;
    const extra = { limit: String(PAGE) };
    if (nextCursor) extra.cursor = nextCursor;
    const page = await read("/messages?" + query(v, FILTERS, extra), gen);
    more.disabled = false;
    if (!page) return;
    addRows(page.data);
    loaded += page.data.length;
    nextCursor = page.next_cursor;
    more.hidden = !nextCursor;
    const count = document.getElementById("match-count");
    count.textContent = `(${page.total_estimated ? "about " : ""}${page.total} match)`;
    count.dataset.total = String(page.total);
    const status = document.getElementById("page-status");
    status.textContent = nextCursor ? `${loaded} shown` : `all ${loaded} shown`;
    status.dataset.complete = String(!nextCursor);
  }

  async function load() {
    const gen = ++generation;
    const v = view();
    showView(v);
    notices.replaceChildren();
    tbody.replaceChildren();
    nextCursor = null;
    loaded = 0;
    more.hidden = true;
    document.body.dataset.loaded = "false";
    const stats = read("/stats", gen).then((s) => s && gen === generation && showTotals(s));
    const series = read("/stats/timeseries?" + query(v, ["from", "to", "source", "since", "until"], { bucket: v.bucket }), gen)
      .then((s) => s && gen === generation && showSeries(v, s));
    await Promise.all([stats, series, loadPage(v, gen)]);
    if (gen === generation) document.body.dataset.loaded = "true";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const v = {};
    for (const name of FILTERS) v[name] = form.elements[name].value.trim();
    v.bucket = form.elements.bucket.value;
    const qs = query(v, FILTERS.concat(v.bucket === "hour" ? ["bucket"] : []));
    history.pushState(null, "", qs ? "?" + qs : location.pathname);
    load();
  });
  form.elements.bucket.addEventListener("change", () => form.requestSubmit());
  document.getElementById("clear").addEventListener("click", () => {
    history.pushState(null, "", location.pathname);
    load();
  });
  more.addEventListener("click", () => loadPage(view(), generation));
  for (const button of document.querySelectorAll(".downloads button")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
  window.addEventListener("popstate", load);
  load();
})();
