// floe's live web view: polls the node's /api/v1 JSON every POLL_MS and
// updates the tables in place (no reload, no framework, no build step).
//
// Rates are this page's own: the differences of two successive samples of a
// stream's counters (which only grow) over the node's clocks of those
// samples (time_ms). A counter that goes down means the node restarted: that
// sample starts over and shows no rate.
//
// State, on <body data-state> and #status[data-state]:
//   loading      before the first answer
//   live         the last poll got every view
//   degraded     the node answered with an error (e.g. 503: the bank did not answer)
//   unreachable  no answer (connection refused, reset, or none within TIMEOUT_MS)
// The tables keep the last data they had while degraded or unreachable.
// <body data-polls> counts the polls that got every view.
"use strict";

(function () {
  const POLL_MS = 1500;
  const TIMEOUT_MS = 4000;

  const previous = new Map();  // stream name -> {time_ms, messages, bytes}: the last sample
  let polls = 0;
  let lastGood = null;  // Date of the last poll that got every view

  class HttpError extends Error {}

  async function getJson(path) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(path, {signal: abort.signal, cache: "no-store"});
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        // An answer that is not JSON: reported by its status below.
      }
      if (!res.ok) {
        const err = body && body.error;
        throw new HttpError(err ? `${err.code}: ${err.message}` : `HTTP ${res.status}`);
      }
      if (body === null) throw new HttpError(`${path}: not JSON`);
      return body;
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`no answer within ${TIMEOUT_MS / 1000} s`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- formatting -------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
  const decimal = new Intl.NumberFormat("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1});

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return i === 0 ? `${integer.format(n)} B` : `${decimal.format(n)} ${units[i]}`;
  }

  function age(ms) {
    if (ms < 0) ms = 0;
    if (ms < 10000) return `${decimal.format(ms / 1000)} s ago`;
    if (ms < 120000) return `${integer.format(ms / 1000)} s ago`;
    if (ms < 7200000) return `${integer.format(ms / 60000)} min ago`;
    return `${integer.format(ms / 3600000)} h ago`;
  }

  function clock(date) {
    return date.toLocaleTimeString("en-GB", {hour12: false});
  }

  const DASH = "\u2014";

  // ---- tables -----------------------------------------------------------

  // A cell: {f: data-field, t: text, v: raw value for data-value (optional),
  // c: class (optional), title (optional)}.
  function cell(f, t, extra) {
    return Object.assign({f: f, t: String(t)}, extra || {});
  }
  function num(f, v, extra) {
    return cell(f, integer.format(v), Object.assign({v: v, c: "num"}, extra || {}));
  }

  // Makes tbody's rows those of `items`, in order, keyed by attribute `key`
  // (one row per key, kept across polls so only changed text is touched).
  // `sampleMs`, when given, goes on each row as data-sample-ms: the node's
  // clock of the answer the row shows (its rates end there).
  function syncRows(tbody, key, items, keyOf, cellsOf, sampleMs) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.getAttribute(key), tr);
    items.forEach((item, i) => {
      const k = keyOf(item);
      let tr = old.get(k);
      if (tr) {
        old.delete(k);
      } else {
        tr = document.createElement("tr");
        tr.setAttribute(key, k);
      }
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
      if (sampleMs !== undefined) tr.dataset.sampleMs = String(sampleMs);
      const cells = cellsOf(item);
      cells.forEach((c, j) => {
        let td = tr.cells[j];
        if (!td) {
          td = document.createElement("td");
          tr.appendChild(td);
        }
        if (td.dataset.field !== c.f) td.dataset.field = c.f;
        if (td.textContent !== c.t) td.textContent = c.t;
        const cls = c.c || "";
        if (td.className !== cls) td.className = cls;
        if (c.v === undefined) td.removeAttribute("data-value");
        else if (td.dataset.value !== String(c.v)) td.dataset.value = String(c.v);
        if (c.title) td.title = c.title;
        else td.removeAttribute("title");
      });
      while (tr.cells.length > cells.length) tr.deleteCell(-1);
    });
    for (const tr of old.values()) tr.remove();
    const count = document.getElementById(tbody.id.replace(/-body$/, "-count"));
    if (count) count.textContent = `(${items.length})`;
  }

  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

  function renderNodes(cluster) {
    const nodes = cluster.nodes.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    syncRows(document.getElementById("nodes-body"), "data-node", nodes, (n) => n.id, (n) => {
      const state = n.alive ? (n.drained ? "alive, drained" : "alive") : "dead";
      return [
        cell("id", n.id + (n.id === cluster.node ? " (this node)" : "")),
        cell("address", n.address, {c: "mono"}),
        cell("mqtt_address", n.mqtt_address || DASH, {c: "mono"}),
        cell("alive", state, {v: n.alive, c: n.alive ? (n.drained ? "drained" : "alive") : "dead"}),
        cell("heartbeat_age_ms", age(n.heartbeat_age_ms), {v: n.heartbeat_age_ms, c: "num"}),
        num("streams", n.streams),
        num("sessions", n.sessions),
        num("mqtt_connections", n.mqtt_connections),
        num("publish_rate", n.publish_rate, {title: "messages acknowledged per second, at its last heartbeat"}),
      ];
    });
  }

  // Rates of one stream from its previous sample; null for its first one.
  function rates(s, timeMs) {
    const c = s.counters;
    const p = previous.get(s.name);
    previous.set(s.name, {time_ms: timeMs, messages: c.published_messages, bytes: c.published_bytes});
    if (!p || timeMs <= p.time_ms || c.published_messages < p.messages || c.published_bytes < p.bytes) return null;
    const seconds = (timeMs - p.time_ms) / 1000;
    return {messages: (c.published_messages - p.messages) / seconds, bytes: (c.published_bytes - p.bytes) / seconds};
  }

  function renderStreams(view) {
    const streams = view.streams.slice().sort(byName);
    const seen = new Set(streams.map((s) => s.name));
    for (const name of Array.from(previous.keys())) if (!seen.has(name)) previous.delete(name);
    syncRows(document.getElementById("streams-body"), "data-stream", streams, (s) => s.name, (s) => {
      const r = rates(s, view.time_ms);
      const here = s.served_here && s.frontier !== undefined;
      const elsewhere = {title: s.owner ? `served by ${s.owner}` : "no node holds the stream"};
      return [
        cell("name", s.name),
        cell("owner", s.owner || "(none)", {c: s.owner ? "" : "dead"}),
        num("epoch", s.epoch),
        here ? num("first_seq", s.first_seq) : cell("first_seq", DASH, Object.assign({c: "num"}, elsewhere)),
        here ? num("frontier", s.frontier) : cell("frontier", DASH, Object.assign({c: "num"}, elsewhere)),
        r ? cell("messages_rate", decimal.format(r.messages), {v: r.messages, c: "num"}) :
            cell("messages_rate", DASH, {c: "num"}),
        r ? cell("bytes_rate", `${bytes(r.bytes)}/s`, {v: r.bytes, c: "num"}) : cell("bytes_rate", DASH, {c: "num"}),
        num("published_messages", s.counters.published_messages, {title: bytes(s.counters.published_bytes)}),
        num("delivered_messages", s.counters.delivered_messages),
        num("redelivered_messages", s.counters.redelivered_messages),
        here ? cell("segment_file_bytes", bytes(s.segment_file_bytes), {v: s.segment_file_bytes, c: "num"}) :
               cell("segment_file_bytes", DASH, {c: "num"}),
        here ? num("holes", s.holes) : cell("holes", DASH, {c: "num"}),
        here ? num("consumers", s.consumers.length) : cell("consumers", DASH, {c: "num"}),
      ];
    }, view.time_ms);
    // The durable consumers of the streams served here.
    const consumers = [];
    for (const s of streams)
      for (const c of s.consumers || []) consumers.push(Object.assign({stream: s.name}, c));
    syncRows(document.getElementById("consumers-body"), "data-consumer", consumers, (c) => `${c.stream}/${c.name}`,
             (c) => [
               cell("stream", c.stream),
               cell("name", c.name),
               num("ack_floor", c.ack_floor),
               num("next_seq", c.next_seq),
               num("pending", c.pending),
               num("lag", c.lag, {c: c.lag > 0 ? "num lagging" : "num"}),
               cell("lag_seconds", decimal.format(c.lag_seconds), {v: c.lag_seconds, c: "num"}),
             ]);
  }

  function renderSessions(view) {
    const key = (s) => `${s.stream}\u0000${s.consumer}\u0000${s.id}`;
    const sessions = view.sessions.slice().sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    syncRows(document.getElementById("sessions-body"), "data-session", sessions, (s) => s.id, (s) => [
      cell("id", s.id, {c: "mono"}),
      cell("kind", s.kind),
      cell("stream", s.stream || DASH),
      cell("consumer", s.consumer || DASH),
      cell("holder", s.holder || "(detached)", {c: s.holder ? "" : "drained"}),
      num("epoch", s.epoch),
      cell("updated_ms", age(view.time_ms - s.updated_ms), {v: s.updated_ms, c: "num"}),
      num("last_seq", s.last_seq),
      num("messages", s.messages),
      num("pending", s.pending),
      cell("bytes_conveyed", bytes(s.bytes_conveyed), {v: s.bytes_conveyed, c: "num"}),
    ]);
  }

  // ---- the loop ---------------------------------------------------------

  function setState(state, text) {
    document.body.dataset.state = state;
    const status = document.getElementById("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  async function poll() {
    const names = ["cluster", "streams", "sessions"];
    const answers = await Promise.allSettled(names.map((n) => getJson(`/api/v1/${n}`)));
    const [cluster, streams, sessions] = answers.map((a) => (a.status === "fulfilled" ? a.value : null));
    if (cluster) {
      document.getElementById("node-id").textContent = cluster.node;
      document.title = `floe ${cluster.node}`;
      renderNodes(cluster);
    }
    if (streams) renderStreams(streams);
    if (sessions) renderSessions(sessions);

    const failed = answers.filter((a) => a.status === "rejected").map((a) => a.reason);
    const since = lastGood ? ` (showing data from ${clock(lastGood)})` : "";
    if (failed.length === 0) {
      lastGood = new Date();
      polls++;
      document.body.dataset.polls = String(polls);
      setState("live", "live");
      document.getElementById("updated").textContent =
          `updated ${clock(lastGood)}, every ${decimal.format(POLL_MS / 1000)} s`;
    } else if (failed.every((e) => e instanceof HttpError)) {
      setState("degraded", `node answered with an error: ${failed[0].message}${since}`);
    } else {
      const e = failed.find((x) => !(x instanceof HttpError));
      setState("unreachable", `node unreachable: ${e.message}${since}`);
    }
  }

  async function loop() {
    try {
      await poll();
    } catch (e) {
      // A bug in rendering must not stop the page: say so and keep polling.
      setState("degraded", `page error: ${e.message}`);
      console.error(e);
    }
    setTimeout(loop, POLL_MS);
  }

  loop();
})();
