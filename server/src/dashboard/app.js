// dynamo-server dashboard: polls /api/cluster every second and draws this
// node's view of the cluster. Plain JavaScript, inline SVG, no dependencies.
"use strict";

(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 2500;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2",
    "#edc948", "#9c755f", "#ff9da7", "#bab0ac", "#1f77b4", "#8c564b",
  ];

  let previous = null; // {at, ae, repairs} of the previous successful poll
  let lastOk = null; // Date.now() of the last successful poll

  const $ = (id) => document.getElementById(id);

  function esc(value) {
    return String(value == null ? "" : value)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  function short(id) {
    return id ? id.slice(0, 8) : "—";
  }

  function colourOf(ids) {
    const map = new Map();
    ids.forEach((id, i) => {
      map.set(id, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360} 55% 55%)`);
    });
    return map;
  }

  function fmtInt(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  function fmtBytes(n) {
    n = Number(n || 0);
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function fmtUs(us) {
    if (us == null || !isFinite(us)) return "—";
    if (us < 1000) return Math.round(us) + " µs";
    if (us < 1e6) return (us / 1000).toFixed(us < 10000 ? 2 : 1) + " ms";
    return (us / 1e6).toFixed(2) + " s";
  }

  function fmtAxisUs(us) {
    const trim = (v) => String(Number(v.toPrecision(3)));
    if (us === 0) return "0";
    if (us < 1000) return trim(us) + " µs";
    if (us < 1e6) return trim(us / 1000) + " ms";
    return trim(us / 1e6) + " s";
  }

  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function fmtRate(perSec) {
    if (perSec == null) return "";
    if (perSec === 0) return "0/s";
    return (perSec >= 100 ? perSec.toFixed(0) : perSec.toFixed(1)) + "/s";
  }

  function stat(label, value, extra) {
    return `<div class="stat"><div class="stat-value">${esc(value)}</div>` +
      `<div class="stat-label">${esc(label)}${extra ? ` <span class="rate">${esc(extra)}</span>` : ""}</div></div>`;
  }

  // ---------- ring ----------

  function arcPath(cx, cy, r0, r1, a0, a1) {
    // An annular sector from angle a0 to a1 (radians, 0 = top, clockwise).
    const p = (r, a) => [cx + r * Math.sin(a), cy - r * Math.cos(a)];
    const large = a1 - a0 > Math.PI ? 1 : 0;
    const [x0, y0] = p(r1, a0);
    const [x1, y1] = p(r1, a1);
    const [x2, y2] = p(r0, a1);
    const [x3, y3] = p(r0, a0);
    const f = (v) => v.toFixed(2);
    return `M${f(x0)},${f(y0)} A${r1},${r1} 0 ${large} 1 ${f(x1)},${f(y1)} ` +
      `L${f(x2)},${f(y2)} A${r0},${r0} 0 ${large} 0 ${f(x3)},${f(y3)} Z`;
  }

  function ringArcs(owners, colours, r0, r1, label) {
    const q = owners.length;
    if (q === 0) return "";
    if (q === 1 || owners.every((o) => o === owners[0])) {
      const c = colours.get(owners[0]) || "#ccc";
      return `<circle cx="160" cy="160" r="${(r0 + r1) / 2}" fill="none" stroke="${c}" ` +
        `stroke-width="${r1 - r0}"><title>${esc(label)}: all ${q} partitions → ${esc(owners[0])}</title></circle>`;
    }
    const step = (2 * Math.PI) / q;
    const gap = q <= 64 ? 0.012 : 0;
    let out = "";
    // One path per partition keeps each partition individually visible.
    for (let i = 0; i < q; i++) {
      const owner = owners[i];
      const c = colours.get(owner) || "#ccc";
      const a0 = i * step + gap / 2;
      const a1 = (i + 1) * step - gap / 2;
      out += `<path d="${arcPath(160, 160, r0, r1, a0, a1)}" fill="${c}" data-partition="${i}">` +
        `<title>${esc(label)} partition ${i} → ${esc(owner)}</title></path>`;
    }
    return out;
  }

  function drawRing(data, colours) {
    const ring = data.ring;
    const target = ring.target;
    let svg = `<circle cx="160" cy="160" r="150" fill="none" stroke="#e5e7eb" stroke-width="1"/>`;
    svg += ringArcs(ring.owners, colours, 118, 148, "ring v" + ring.version);
    if (target) {
      svg += ringArcs(target.owners, colours, 84, 110, "target v" + target.version);
      svg += `<text x="160" y="150" class="ring-center">Q = ${ring.q}</text>`;
      svg += `<text x="160" y="170" class="ring-sub">outer: ring v${ring.version}</text>`;
      svg += `<text x="160" y="186" class="ring-sub">inner: target v${target.version}</text>`;
    } else {
      svg += `<text x="160" y="156" class="ring-center">Q = ${ring.q}</text>`;
      svg += `<text x="160" y="176" class="ring-sub">ring v${ring.version}</text>`;
    }
    $("ring").innerHTML = svg;

    const counts = new Map();
    ring.owners.forEach((o) => counts.set(o, (counts.get(o) || 0) + 1));
    const targetCounts = new Map();
    if (target) target.owners.forEach((o) => targetCounts.set(o, (targetCounts.get(o) || 0) + 1));
    let legend = "";
    for (const [id, c] of colours) {
      const m = data.members.find((x) => x.id === id);
      if (m && m.membership === "removed" && !counts.get(id) && !targetCounts.get(id)) continue;
      const n = counts.get(id) || 0;
      const t = target ? ` → ${targetCounts.get(id) || 0}` : "";
      legend += `<li data-legend-node="${esc(id)}"><span class="swatch" style="background:${c}"></span>` +
        `<code>${esc(short(id))}</code><span class="muted">${n}${t} partition${n === 1 && !t ? "" : "s"}</span></li>`;
    }
    $("legend").innerHTML = legend;
    $("ring-caption").textContent =
      `v${ring.version} · balance ${Number(ring.balance).toFixed(2)}` + (ring.digest ? ` · digest ${ring.digest.slice(0, 8)}` : "");

    const t = data.transition;
    if (t) {
      const waiting = t.waiting_for.length
        ? t.waiting_for.map((w) => `<code>${esc(short(w.node))}</code>` + (w.count ? ` (${w.count})` : "")).join(", ")
        : "nobody";
      const done = t.moves ? Math.round((100 * (t.moves - t.pending_moves)) / t.moves) : 100;
      $("transition").innerHTML =
        `<div class="transition" data-phase="${esc(t.phase)}"><span class="phase">transition: ${esc(t.phase)}</span>` +
        `<span>${t.moves - t.pending_moves}/${t.moves} moves synced</span>` +
        `<div class="bar"><div style="width:${done}%"></div></div>` +
        `<span class="muted">waiting for ${waiting}</span></div>`;
    } else {
      $("transition").innerHTML = `<div class="settled">ring settled · no transition</div>`;
    }
  }

  // ---------- nodes ----------

  function drawNodes(data, colours) {
    const now = data.generated_at_ms;
    let rows = "";
    for (const m of data.members) {
      const c = colours.get(m.id) || "#ccc";
      const status = m.status === "down"
        ? `<span class="badge down">down</span><span class="since">since ${esc(fmtClock(m.down_since_ms))} (${esc(fmtDuration((now - m.down_since_ms) / 1000))})</span>`
        : `<span class="badge up">up</span>`;
      const parts = m.target_partitions !== m.partitions ? `${m.partitions} → ${m.target_partitions}` : `${m.partitions}`;
      rows += `<tr data-node-id="${esc(m.id)}" data-status="${esc(m.status)}" data-membership="${esc(m.membership)}"` +
        (m.self ? ` data-self="true"` : "") + ` class="${m.status}${m.membership === "removed" ? " removed" : ""}">` +
        `<td><span class="swatch" style="background:${c}"></span><code title="${esc(m.id)}">${esc(m.id)}</code>` +
        (m.self ? ` <span class="tag">this node</span>` : "") + `</td>` +
        `<td><div>${esc(m.client_addr)}</div><div class="muted">${esc(m.peer_addr)}</div></td>` +
        `<td class="status">${status}</td>` +
        `<td><span class="membership ${esc(m.membership)}">${esc(m.membership)}</span></td>` +
        `<td class="num">${esc(m.weight)}</td>` +
        `<td class="num">${esc(parts)}<div class="muted">fair ${Number(m.fair_share).toFixed(1)}</div></td>` +
        `<td class="num">${m.hints_pending ? fmtInt(m.hints_pending) : `<span class="muted">0</span>`}</td></tr>`;
    }
    $("nodes").innerHTML = rows;
    const up = data.members.filter((m) => m.status === "up" && m.membership !== "removed").length;
    const total = data.members.filter((m) => m.membership !== "removed").length;
    $("node-stats").innerHTML =
      stat("members up", `${up} / ${total}`) +
      stat("keys on this node", fmtInt(data.node.keys)) +
      stat("clients", `${data.clients.connected}`) +
      stat("in flight", fmtInt(data.requests.foreground_in_flight)) +
      stat("replica req/s", fmtInt(data.requests.replica_requests_per_sec)) +
      stat("quorum failures", fmtInt(data.requests.quorum_failures));
  }

  // ---------- latency chart ----------

  function niceMax(v) {
    if (v <= 0) return 1000;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawLatency(data) {
    const samples = data.latency || [];
    const tail = samples.length ? samples[samples.length - 1] : null;
    const last = tail && tail.ops ? tail : null; // idle: no percentiles to show
    const lat = data.requests.foreground_latency_us;
    $("latency-now").innerHTML =
      `<div class="stat"><div class="stat-value"><span class="key p50"></span>${fmtUs(last && last.p50_us)}</div><div class="stat-label">p50</div></div>` +
      `<div class="stat"><div class="stat-value"><span class="key p99"></span>${fmtUs(last && last.p99_us)}</div><div class="stat-label">p99</div></div>` +
      `<div class="stat"><div class="stat-value"><span class="key p999"></span>${fmtUs(last && last.p999_us)}</div><div class="stat-label">p99.9</div></div>` +
      stat("ops in last second", fmtInt(tail ? tail.ops : 0)) +
      stat("mean, last 0.5 s", fmtUs(lat));

    const W = 640, H = 170, L = 56, R = 10, T = 10, B = 24;
    let svg = "";
    if (samples.filter((s) => s.ops).length < 2) {
      svg += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" class="plot-bg"/>`;
      svg += `<text x="${(W + L) / 2}" y="${H / 2}" class="empty-chart">no requests measured yet</text>`;
      $("latency").innerHTML = svg;
      return;
    }
    const t1 = samples[samples.length - 1].at_ms;
    const t0 = Math.min(samples[0].at_ms, t1 - 60000);
    const ymax = niceMax(Math.max(...samples.map((s) => (s.ops ? s.p999_us || 0 : 0)), 1));
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - Math.min(v, ymax) / ymax) * (H - T - B);
    svg += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" class="plot-bg"/>`;
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      const yy = y(v).toFixed(1);
      svg += `<line x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" class="grid"/>`;
      svg += `<text x="${L - 6}" y="${yy}" class="axis-y">${fmtAxisUs(v)}</text>`;
    }
    const span = (t1 - t0) / 1000;
    const tick = span > 240 ? 60 : span > 120 ? 30 : 15;
    for (let s = 0; s <= span; s += tick) {
      const xx = x(t1 - s * 1000).toFixed(1);
      svg += `<line x1="${xx}" x2="${xx}" y1="${T}" y2="${H - B}" class="grid"/>`;
      const label = s === 0 ? "now" : s % 60 === 0 ? `−${s / 60} min` : `−${s} s`;
      svg += `<text x="${xx}" y="${H - 8}" class="axis-x">${label}</text>`;
    }
    for (const [key, cls] of [["p50_us", "p50"], ["p99_us", "p99"], ["p999_us", "p999"]]) {
      let d = "";
      let gapBefore = true;
      for (let i = 0; i < samples.length; i++) {
        const s = samples[i];
        if (!s.ops) {
          gapBefore = true;
          continue;
        }
        d += (gapBefore ? "M" : "L") + x(s.at_ms).toFixed(1) + "," + y(s[key] || 0).toFixed(1) + " ";
        gapBefore = false;
      }
      svg += `<path d="${d}" class="line ${cls}"/>`;
    }
    $("latency").innerHTML = svg;
  }

  // ---------- counters, transfers, hints ----------

  function rate(cur, prev, dt) {
    if (prev == null || dt <= 0) return null;
    return Math.max(0, (cur - prev) / dt);
  }

  function drawCounters(data) {
    const ae = data.anti_entropy;
    const now = data.generated_at_ms;
    const dt = previous ? (now - previous.at) / 1000 : 0;
    const p = previous || {};
    $("anti-entropy").innerHTML =
      stat("rounds", fmtInt(ae.rounds), fmtRate(rate(ae.rounds, p.rounds, dt))) +
      stat("partitions synced", fmtInt(ae.partitions_synced), fmtRate(rate(ae.partitions_synced, p.partitions_synced, dt))) +
      stat("keys repaired", fmtInt(ae.keys_repaired), fmtRate(rate(ae.keys_repaired, p.keys_repaired, dt))) +
      stat("exchanged", fmtBytes(ae.bytes), previous ? fmtBytes(rate(ae.bytes, p.bytes, dt)) + "/s" : "");
    const sib = data.siblings;
    $("repairs").innerHTML =
      stat("read repairs", fmtInt(data.read_repairs), fmtRate(rate(data.read_repairs, p.read_repairs, dt))) +
      stat("sibling writes", fmtInt(sib.sibling_writes)) +
      stat("most siblings on a key", `${fmtInt(sib.max_seen)} / ${fmtInt(sib.max_siblings)}`) +
      stat("sibling-limit rejections", fmtInt(sib.limit_rejections)) +
      stat("tombstones pending", fmtInt(data.tombstones.pending)) +
      stat("tombstones collected", fmtInt(data.tombstones.collected));
    previous = {
      at: now,
      rounds: ae.rounds,
      partitions_synced: ae.partitions_synced,
      keys_repaired: ae.keys_repaired,
      bytes: ae.bytes,
      read_repairs: data.read_repairs,
    };
  }

  function drawTransfers(data) {
    const transfers = data.transfers || [];
    if (!transfers.length) {
      $("transfers").innerHTML = `<div class="empty">No transfers in progress</div>`;
      return;
    }
    let rows = "";
    for (const t of transfers) {
      const pct = Math.max(0, Math.min(100, Number(t.percent) || 0));
      rows += `<tr data-partition="${esc(t.partition)}"><td class="num">${esc(t.partition)}</td>` +
        `<td><code>${esc(short(t.from))}</code></td>` +
        `<td><div class="progress"><div class="bar"><div style="width:${pct}%"></div></div><span>${pct.toFixed(1)}%</span></div></td>` +
        `<td class="num">${fmtInt(t.keys)}</td><td class="num">${fmtBytes(t.bytes)}</td>` +
        `<td class="num">${fmtInt(t.rate)}/s</td>` +
        `<td class="muted">${t.waiting ? esc(t.waiting) : ""}</td></tr>`;
    }
    $("transfers").innerHTML =
      `<table class="transfers"><thead><tr><th class="num">partition</th><th>from</th><th>progress</th>` +
      `<th class="num">keys</th><th class="num">bytes</th><th class="num">rate</th><th>waiting</th></tr></thead>` +
      `<tbody>${rows}</tbody></table>`;
  }

  function drawHints(data, colours) {
    const h = data.hints;
    let html = `<div class="counters">` +
      stat("pending", fmtInt(h.total)) + stat("stored", fmtInt(h.stored)) +
      stat("delivered", fmtInt(h.delivered)) + stat("dropped", fmtInt(h.dropped)) + `</div>`;
    if (h.pending.length) {
      const max = Math.max(...h.pending.map((p) => p.count), 1);
      html += `<ul class="hint-bars">`;
      for (const p of h.pending) {
        const c = colours.get(p.node) || "#999";
        html += `<li data-hints-for="${esc(p.node)}"><code>${esc(short(p.node))}</code>` +
          `<div class="bar"><div style="width:${(100 * p.count) / max}%;background:${c}"></div></div>` +
          `<span class="num">${fmtInt(p.count)}</span></li>`;
      }
      html += `</ul>`;
    } else {
      html += `<div class="empty">No hints pending</div>`;
    }
    $("hints").innerHTML = html;
  }

  // ---------- header, polling ----------

  function drawHeader(data) {
    const n = data.node;
    const mode = n.mode === "cluster" ? `cluster <b>${esc(n.cluster_name)}</b>` : esc(n.mode);
    $("node-summary").innerHTML =
      `node <code>${esc(n.id)}</code> · ${mode} · ${esc(n.client_addr)} · ` +
      `N=${data.quorum.n} R=${data.quorum.r} W=${data.quorum.w} · up ${esc(fmtDuration(n.uptime_s))} · v${esc(n.version)}`;
    document.title = `dynamo ${short(n.id)} · dashboard`;
    document.body.dataset.nodeId = n.id;
  }

  function render(data) {
    const ids = data.members.map((m) => m.id).slice().sort();
    for (const o of data.ring.owners) if (!ids.includes(o)) ids.push(o);
    const colours = colourOf(ids);
    drawHeader(data);
    drawRing(data, colours);
    drawNodes(data, colours);
    drawLatency(data);
    drawCounters(data);
    drawTransfers(data);
    drawHints(data, colours);
  }

  function showFreshness() {
    const el = $("last-update");
    if (lastOk == null) return;
    const ago = (Date.now() - lastOk) / 1000;
    el.textContent = `last update ${fmtClock(lastOk)}` + (ago >= 2 ? ` (${fmtDuration(ago)} ago)` : "");
    el.dataset.ms = String(lastOk);
  }

  function setLive(ok, message) {
    const pill = $("live-pill");
    const banner = $("error-banner");
    if (ok) {
      pill.textContent = "live";
      pill.className = "pill ok";
      banner.hidden = true;
      document.body.dataset.state = "live";
    } else {
      pill.textContent = "not answering";
      pill.className = "pill bad";
      banner.hidden = false;
      const since = lastOk ? ` Showing the last data received, from ${fmtClock(lastOk)}.` : "";
      banner.textContent = `This node is not answering (${message}).${since} Retrying every second…`;
      document.body.dataset.state = "error";
    }
  }

  async function poll() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch("/api/cluster", { cache: "no-store", signal: ctrl.signal });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const data = await res.json();
      render(data);
      lastOk = Date.now();
      setLive(true);
    } catch (e) {
      setLive(false, e && e.name === "AbortError" ? "timed out" : (e && e.message) || "error");
    } finally {
      clearTimeout(timer);
      showFreshness();
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
