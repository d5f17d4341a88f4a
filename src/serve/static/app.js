// rekap review page: plain JS, no build step, no inline script (CSP default-src 'self').
"use strict";

const S = { me: null, csrf: "", item: null, skip: [], photo: null, busy: false };
const $ = (id) => document.getElementById(id);

function show(view) {
  for (const v of ["login-view", "queue-view", "item-view"]) $(v).hidden = v !== view;
}

async function api(method, url, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = S.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(url, opts);
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) {
    const e = new Error((data && data.error && data.error.message) || res.statusText);
    e.status = res.status;
    e.code = data && data.error && data.error.code;
    throw e;
  }
  return data;
}

function text(el, s) { el.textContent = s == null ? "" : String(s); return el; }
function mk(tag, cls, s) { const e = document.createElement(tag); if (cls) e.className = cls; if (s != null) e.textContent = s; return e; }
function fmtVal(v) { return v === null || v === undefined ? "(blank)" : String(v); }

// ---------------------------------------------------------------- login / queue

async function start() {
  try {
    const me = await api("GET", "/api/me");
    loggedIn(me);
  } catch (e) {
    show("login-view");
    $("login-name").focus();
  }
}

function loggedIn(me) {
  S.me = me; S.csrf = me.csrf;
  text($("who"), me.user + " (" + me.role + (me.double_entry ? ", double entry" : "") + ")");
  $("logout").hidden = false;
  $("supervisor-links").hidden = me.role === "reviewer";
  $("upload-box").hidden = me.role === "reviewer";
  showQueue();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  text($("login-error"), "");
  try {
    const me = await api("POST", "/api/login", { name: $("login-name").value, password: $("login-password").value });
    $("login-password").value = "";
    loggedIn(me);
  } catch (e) {
    text($("login-error"), e.message);
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (_) { /* session already gone */ }
  S.me = null; S.csrf = ""; $("logout").hidden = true; text($("who"), "");
  show("login-view");
});

async function showQueue(note) {
  S.item = null;
  show("queue-view");
  text($("queue-note"), note || "");
  try {
    const q = await api("GET", "/api/queue?limit=200");
    text($("queue-count"), q.items.length);
    const tb = $("queue-table").querySelector("tbody");
    tb.replaceChildren();
    for (const it of q.items) {
      const tr = mk("tr");
      tr.append(mk("td", null, it.submission), mk("td", null, it.field), mk("td", null, fmtVal(it.machine_value)),
        mk("td", null, it.confidence.toFixed(3)), mk("td", null, it.flags.join(", ") + (it.state === "disputed" ? " (disputed)" : "")));
      tb.append(tr);
    }
    $("start").disabled = q.items.length === 0;
    $("start").focus();
    if (S.me && S.me.role !== "reviewer") refreshSubmissions();
  } catch (e) {
    if (e.status === 401) { show("login-view"); return; }
    text($("queue-note"), e.message);
  }
}

async function refreshSubmissions() {
  const r = await api("GET", "/api/submissions");
  const tb = $("subs-table").querySelector("tbody");
  tb.replaceChildren();
  let pending = false;
  for (const sub of r.submissions.slice().reverse()) {
    const tr = mk("tr");
    tr.append(mk("td", null, sub.id), mk("td", null, sub.name), mk("td", null, sub.state + (sub.error ? ": " + sub.error : "")),
      mk("td", null, sub.open_fields + " / " + sub.total_fields), mk("td", null, sub.uploaded_by || ""));
    tb.append(tr);
    if (sub.state === "queued" || sub.state === "processing") pending = true;
  }
  // While something is being read, refresh the lists every few seconds.
  if (pending) setTimeout(() => { if (!$("queue-view").hidden) showQueue(); }, 3000);
}

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const files = $("upload-photos").files;
  const fd = new FormData();
  for (const f of files) fd.append("photo", f, f.name);
  const code = $("upload-code").value.trim();
  if (code) fd.append("tps", JSON.stringify({ code }));
  text($("upload-status"), "Uploading…");
  try {
    const res = await fetch("/api/submissions", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": S.csrf }, body: fd });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
    text($("upload-status"), data.duplicate ? "These photos were uploaded before (submission #" + data.id + ")." : "Stored as submission #" + data.id + "; reading in the background.");
    $("upload-form").reset();
    showQueue();
  } catch (e) {
    text($("upload-status"), "Upload refused: " + e.message);
  }
});

$("start").addEventListener("click", () => { S.skip = []; next(); });

// ---------------------------------------------------------------- one field

async function next() {
  if (S.busy) return;
  S.busy = true;
  try {
    const r = await api("POST", "/api/queue/next", { skip: S.skip });
    if (!r.item) { showQueue(S.skip.length ? "No more flags except the ones you skipped." : "Queue empty: nothing left to review."); return; }
    renderItem(r.item);
  } catch (e) {
    if (e.status === 401) { show("login-view"); return; }
    setStatus(e.message, "error");
  } finally {
    S.busy = false;
  }
}

function setStatus(msg, cls) { const s = $("status"); text(s, msg); s.className = cls || ""; }

function renderItem(item) {
  S.item = item;
  show("item-view");
  text($("item-field"), item.field.id);
  text($("item-label"), item.field.label_en || "");
  const tps = item.submission.tps ? " · TPS " + JSON.stringify(item.submission.tps) : "";
  text($("item-submission"), "Submission " + item.submission.name + " (#" + item.submission.id + ")" + tps);
  const fl = $("item-flags"); fl.replaceChildren();
  for (const f of item.flags) fl.append(mk("li", null, f.code + ": " + f.message));
  if (item.flags.length === 0) for (const c of item.state.flags) fl.append(mk("li", null, c));
  renderMachine(item);
  renderChannels(item);
  const v = $("value");
  v.value = "";
  v.placeholder = item.state.machine_value == null ? "" : String(item.state.machine_value);
  v.maxLength = Math.max(1, item.field.boxes || 4);
  setStatus(item.state.state === "disputed" ? "The two blind entries disagree: your decision is final." : "");
  for (const e of item.entries || []) {
    $("machine").append(mk("p", "muted", "Entry by " + e.user + ": " + e.action + " " + fmtVal(e.value)));
  }
  updateRules();
  loadPhoto(item);
  v.focus();
}

function renderMachine(item) {
  const m = $("machine"); m.replaceChildren();
  const r = item.reading || {};
  const p = mk("p");
  p.append("Machine read ", mk("span", "big", fmtVal(item.state.machine_value)),
    " with confidence " + (item.state.confidence || 0).toFixed(3));
  m.append(p);
  if (r.boxes && r.boxes.length) {
    const t = mk("p", "muted");
    t.textContent = "Boxes: " + r.boxes.map((b) => b.label + " (" + b.top.map((x) => x[0] + " " + Number(x[1]).toFixed(2)).join(", ") + ")").join(" | ");
    m.append(t);
  }
  if (r.alternatives && r.alternatives.length > 1) {
    m.append(mk("p", "muted", "Alternatives: " + r.alternatives.map((a) => fmtVal(a.value) + " (" + a.probability.toFixed(3) + ")").join(", ")));
  }
}

function renderChannels(item) {
  const c = $("channels"); c.replaceChildren();
  const ch = (item.reading && item.reading.channels) || {};
  if (ch.bubbles && ch.bubbles.length) {
    c.append(mk("p", null, "Bubbles" + (ch.bubbles_value != null ? " say " + ch.bubbles_value : " (unclear)") + ":"));
    const t = mk("table", "bubbles");
    for (let d = 0; d <= 9; d++) {
      const tr = mk("tr");
      for (const col of ch.bubbles) {
        const td = mk("td", null, String(d));
        const fill = col.fill[d] || 0;
        if (fill >= 0.5) td.classList.add("filled");
        if (col.state && col.state.state === "one" && col.state.digit === d) td.classList.add("chosen");
        td.title = "fill " + fill.toFixed(2);
        tr.append(td);
      }
      t.append(tr);
    }
    c.append(t);
  }
  if (ch.tally) {
    c.append(mk("p", null, "Tally grid: " + ch.tally.cells_marked + " cells marked, so " + ch.tally.min + "–" + ch.tally.max));
  }
}

// Live rule checks with the typed value in place of this field's value.
function updateRules() {
  const item = S.item; if (!item) return;
  const box = $("rules"); box.replaceChildren();
  const typed = $("value").value.trim();
  const values = Object.assign({}, item.values);
  if (typed !== "" && /^\d+$/.test(typed)) values[item.field.id] = parseInt(typed, 10);
  const ev = (expr) => {
    let sum = 0, missing = false;
    const parts = [];
    for (const t of expr.terms) {
      if (t.field == null) { sum += t.coef; parts.push(String(t.coef)); continue; }
      const v = values[t.field];
      if (v == null) { missing = true; parts.push(t.field + "=?"); continue; }
      sum += t.coef * v;
      parts.push((t.coef === 1 ? "" : t.coef === -1 ? "-" : t.coef + "×") + v);
    }
    return { sum, missing, text: parts.join(" + ").replace(/\+ -/g, "- ") };
  };
  const ops = { Eq: (a, b) => Math.abs(a - b) < 1e-9, Le: (a, b) => a <= b, Ge: (a, b) => a >= b, Lt: (a, b) => a < b, Gt: (a, b) => a > b };
  const opText = { Eq: "==", Le: "<=", Ge: ">=", Lt: "<", Gt: ">" };
  for (const rule of item.rules) {
    const l = ev(rule.lhs), r = ev(rule.rhs);
    let cls = "unknown", verdict = "cannot check (missing values)";
    if (!l.missing && !r.missing) {
      const ok = ops[rule.op](l.sum, r.sum);
      cls = ok ? "ok" : "violated"; verdict = ok ? "holds" : "VIOLATED";
    }
    const d = mk("div", "rule " + cls);
    d.textContent = rule.id + " (" + rule.kind + "): " + l.text + " " + opText[rule.op] + " " + r.text + " → " + verdict;
    d.title = rule.message_en;
    box.append(d);
  }
}

$("value").addEventListener("input", () => {
  const v = $("value");
  const clean = v.value.replace(/\D/g, "");
  if (clean !== v.value) v.value = clean;
  updateRules();
});

// ---------------------------------------------------------------- photo

function quadBounds(quads) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const q of quads) for (const [x, y] of q) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  return { x0, y0, x1, y1 };
}

function loadPhoto(item) {
  const zoom = $("zoom"), ov = $("overview");
  for (const c of [zoom, ov]) c.getContext("2d").clearRect(0, 0, c.width, c.height);
  $("box-crops").replaceChildren();
  if (!item.photo) { setStatus("No photo for this field (page missing).", "error"); return; }
  const img = new Image();
  img.onload = () => { if (S.item === item) drawPhoto(item, img); };
  img.onerror = () => setStatus("The photo could not be loaded.", "error");
  img.src = item.photo.url;
  if (item.crop_url) {
    const c = new Image();
    c.alt = "crop of the field as the machine sampled it";
    c.className = "pipeline-crop";
    c.src = item.crop_url;
    $("box-crops").append(c);
  }
}

function drawQuads(ctx, quads, sx, sy, ox, oy, width) {
  ctx.strokeStyle = "#ff2a00"; ctx.lineWidth = width;
  for (const q of quads) {
    ctx.beginPath();
    q.forEach(([x, y], i) => { const px = (x - ox) * sx, py = (y - oy) * sy; if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py); });
    ctx.closePath(); ctx.stroke();
  }
}

function drawPhoto(item, img) {
  const quads = item.photo.boxes_px || [];
  const W = img.naturalWidth, H = img.naturalHeight;
  const ov = $("overview"), octx = ov.getContext("2d");
  const so = Math.min(ov.width / W, ov.height / H);
  octx.fillStyle = "#333"; octx.fillRect(0, 0, ov.width, ov.height);
  octx.drawImage(img, 0, 0, W * so, H * so);
  drawQuads(octx, quads, so, so, 0, 0, 2);
  if (!quads.length) return;
  // Zoom: the boxes with a margin of one box height around them.
  const b = quadBounds(quads);
  const m = Math.max(b.y1 - b.y0, 20) * 1.2;
  let x0 = b.x0 - m, y0 = b.y0 - m, x1 = b.x1 + m, y1 = b.y1 + m;
  const zoom = $("zoom"), z = zoom.getContext("2d");
  const s = Math.min(zoom.width / (x1 - x0), zoom.height / (y1 - y0));
  // Centre the region in the canvas.
  const cw = zoom.width / s, chh = zoom.height / s;
  x0 -= (cw - (x1 - x0)) / 2; y0 -= (chh - (y1 - y0)) / 2;
  z.fillStyle = "#333"; z.fillRect(0, 0, zoom.width, zoom.height);
  z.drawImage(img, x0, y0, cw, chh, 0, 0, zoom.width, zoom.height);
  drawQuads(z, quads, s, s, x0, y0, 2);
  // Each box large, from its bounding rectangle.
  const wrap = $("box-crops");
  for (const q of quads) {
    const qb = quadBounds([q]);
    const c = mk("canvas"); c.height = 110; c.width = Math.max(40, Math.round(110 * (qb.x1 - qb.x0) / Math.max(1, qb.y1 - qb.y0)));
    c.getContext("2d").drawImage(img, qb.x0, qb.y0, qb.x1 - qb.x0, qb.y1 - qb.y0, 0, 0, c.width, c.height);
    wrap.append(c);
  }
}

// ---------------------------------------------------------------- actions (keyboard first)

async function submitReview(action) {
  const item = S.item; if (!item || S.busy) return;
  const typed = $("value").value.trim();
  const body = { action };
  if (action === "correct") {
    if (typed === "") { setStatus("Type the value written on the photo, or press c to confirm the machine's reading.", "error"); return; }
    body.value = parseInt(typed, 10);
  } else if (action === "blank") {
    body.action = "correct"; body.value = null;
  } else if (action === "officer_inconsistency" && typed !== "") {
    body.value = parseInt(typed, 10);
  }
  S.busy = true;
  try {
    const r = await api("POST", "/api/items/" + item.key.submission_id + "/" + encodeURIComponent(item.key.field) + "/review", body);
    const o = r.outcome;
    const msg = o.outcome === "resolved" ? "Saved " + item.field.id + " = " + fmtVal(o.value) + " (" + o.provenance + ")"
      : o.outcome === "recorded" ? "Saved your entry for " + item.field.id + "; a second reviewer enters it blind."
      : "Saved; your entry disagrees with the first one: a supervisor decides.";
    S.busy = false;
    await next();
    setStatus(msg, "saved");
  } catch (e) {
    S.busy = false;
    setStatus("Not saved: " + e.message, "error");
  }
}

document.addEventListener("keydown", (ev) => {
  const inForm = document.activeElement && document.activeElement.closest && document.activeElement.closest("form");
  if (!$("queue-view").hidden && ev.key === "Enter" && !inForm && document.activeElement !== $("logout")) {
    ev.preventDefault(); S.skip = []; next(); return;
  }
  if ($("item-view").hidden || !S.item) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "Enter") { ev.preventDefault(); submitReview("correct"); }
  else if (k === "c" || k === "C") { ev.preventDefault(); submitReview("confirm"); }
  else if (k === "o" || k === "O") { ev.preventDefault(); submitReview("officer_inconsistency"); }
  else if (k === "b" || k === "B") { ev.preventDefault(); submitReview("blank"); }
  else if (k === "n" || k === "N") { ev.preventDefault(); S.skip.push(S.item.key); next(); }
  else if (k === "Escape") { ev.preventDefault(); api("POST", "/api/queue/release").catch(() => {}); showQueue(); }
  else if (k.length === 1 && !/[0-9]/.test(k)) { ev.preventDefault(); }
  else if (/[0-9]/.test(k) && document.activeElement !== $("value")) { $("value").focus(); }
});

$("review-form").addEventListener("submit", (ev) => ev.preventDefault());

start();
