// Inspector station page: plain JavaScript, no build step (see inspector/web/app.py).
"use strict";

const csrf = () => document.querySelector('meta[name="csrf"]').content;

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await r.json(); } catch (e) { data = {}; }
  if (!r.ok && data.ok === undefined) data = {ok: false, error: data.detail || r.statusText};
  data.status = r.status;
  return data;
}

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = bad ? "show bad" : "show";
  clearTimeout(t._timer);
  t._timer = setTimeout(() => { t.className = ""; }, 6000);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// -- live ---------------------------------------------------------------------------
function fmt(x, digits) { return x === undefined || x === null ? "–" : Number(x).toFixed(digits); }

function showLive(s) {
  const st = s.stats || {};
  const c = st.counters || {};
  document.getElementById("f-recipe").textContent =
    s.recipe ? `${s.recipe.id} rev ${s.recipe.rev}` : "–";
  document.getElementById("f-fps").textContent = fmt(st.fps, 2);
  document.getElementById("f-ng").textContent =
    s.ng_rate === null ? "–" : `${(100 * s.ng_rate).toFixed(1)} %`;
  document.getElementById("f-parts").textContent =
    `${c.results || 0} (${c.ok || 0} / ${c.ng || 0})`;
  const tot = (st.latency_ms || {}).total;
  document.getElementById("f-latency").textContent =
    tot ? `${fmt(tot.p50, 1)} / ${fmt(tot.p99, 1)} ms` : "–";
  document.getElementById("f-cameras").textContent =
    Object.entries(st.cameras || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "–";
  const ob = st.outbox;
  document.getElementById("f-outbox").textContent = ob
    ? `${ob.connected ? "connected" : "DISCONNECTED"}, ${ob.depth ?? 0} in outbox` +
      (ob.fault ? `, ${ob.fault}` : "") : "no broker";
  const body = document.querySelector("#stages tbody");
  body.replaceChildren(...Object.entries(st.latency_ms || {}).map(([k, q]) =>
    el("tr", {}, el("td", {}, k), el("td", {}, fmt(q.p50, 1)), el("td", {}, fmt(q.p99, 1)))));
  const box = document.getElementById("cameras");
  const cand = document.getElementById("show-candidates").checked ? 1 : 0;
  const canTeach = box.dataset.canTeach === "1";
  for (const [cam, p] of Object.entries(s.parts || {})) {
    let card = document.getElementById(`cam-${cam}`);
    if (!card) {
      card = el("figure", {id: `cam-${cam}`, class: "camera"},
                el("img", {alt: `latest part of ${cam}`}), el("figcaption", {}));
      box.append(card);
    }
    const img = card.querySelector("img");
    const src = `/img/${p.event_id}.jpg?overlay=1&candidates=${cand}`;
    if (img.getAttribute("src") !== src) img.setAttribute("src", src);
    const cap = card.querySelector("figcaption");
    const verdict = el("span", {class: `verdict ${p.verdict}`}, `${p.verdict} ${p.code ?? ""}`);
    const parts = [verdict, ` ${cam} #${p.seq} · ${p.recipe} · ${p.latency_ms} ms `];
    if (canTeach) parts.push(el("a", {href: `/teach?event=${p.event_id}`}, "teach…"));
    cap.replaceChildren(...parts);
    card.dataset.event = p.event_id;
    card.dataset.verdict = p.verdict;
  }
}

function startLive() {
  const es = new EventSource("/events");
  es.onmessage = (ev) => showLive(JSON.parse(ev.data));
  es.onerror = () => { document.getElementById("f-cameras").textContent = "(reconnecting…)"; };
}

// -- review -------------------------------------------------------------------------
function startReview() {
  for (const fig of document.querySelectorAll("figure.part")) {
    const send = async (mark) => {
      const cls = fig.querySelector(".right-cls").value || null;
      const r = await post("/api/review", {event_id: fig.dataset.event, mark, cls});
      if (!r.ok) return toast(r.error, true);
      const m = fig.querySelector(".mark");
      m.dataset.mark = mark;
      m.textContent = `marked ${mark.replace("_", " ")}${cls ? ` (${cls})` : ""}`;
    };
    fig.querySelector(".mark-true").onclick = () => send("true_defect");
    fig.querySelector(".mark-false").onclick = () => send("false_call");
  }
}

// -- teach -------------------------------------------------------------------------
function startTeach() {
  const canvas = document.getElementById("teach-canvas");
  if (!canvas) return;
  const ctx = canvas.getContext("2d");
  const img = new Image();
  // the brushed mask lives on a canvas of the frame's size: white = defect pixel
  const mask = document.createElement("canvas");
  mask.width = canvas.width; mask.height = canvas.height;
  const mctx = mask.getContext("2d");
  let box = null, start = null, brushed = false;
  const tool = () => document.getElementById("tool-brush").checked ? "brush" : "box";
  const redraw = () => {
    ctx.drawImage(img, 0, 0);
    if (brushed) {
      ctx.save(); ctx.globalAlpha = 0.45; ctx.drawImage(tinted(), 0, 0); ctx.restore();
    }
    if (box) {
      ctx.lineWidth = 2; ctx.strokeStyle = "#00e5ff";
      ctx.strokeRect(box[0], box[1], box[2], box[3]);
    }
  };
  const tinted = () => {  // the mask in the page's accent colour, for display only
    const t = document.createElement("canvas");
    t.width = mask.width; t.height = mask.height;
    const tc = t.getContext("2d");
    tc.drawImage(mask, 0, 0);
    tc.globalCompositeOperation = "source-in";
    tc.fillStyle = "#ff00ff"; tc.fillRect(0, 0, t.width, t.height);
    return t;
  };
  img.onload = redraw;
  img.src = canvas.dataset.src;
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [Math.round((ev.clientX - r.left) * canvas.width / r.width),
            Math.round((ev.clientY - r.top) * canvas.height / r.height)];
  };
  let last = null;
  const paint = (p) => {  // a round stroke from the last point, so fast moves leave no gaps
    mctx.strokeStyle = "#fff";
    mctx.lineWidth = Number(document.getElementById("brush-size").value);
    mctx.lineCap = "round";
    mctx.beginPath();
    mctx.moveTo(...(last || p)); mctx.lineTo(...p); mctx.stroke();
    last = p;
    brushed = true;
  };
  canvas.onmousedown = (ev) => {
    start = at(ev);
    last = null;
    if (tool() === "brush") { paint(start); redraw(); }
  };
  canvas.onmousemove = (ev) => {
    if (!start) return;
    const p = at(ev);
    if (tool() === "brush") {
      paint(p);
    } else {
      box = [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
             Math.abs(p[0] - start[0]), Math.abs(p[1] - start[1])];
    }
    redraw();
  };
  canvas.onmouseup = () => {
    start = null;
    last = null;
    document.getElementById("box").value = box ? box.join(", ") : "";
  };
  document.getElementById("clear-mask").onclick = () => {
    mctx.clearRect(0, 0, mask.width, mask.height); brushed = false; redraw();
  };
  document.getElementById("teach-form").onsubmit = async (ev) => {
    ev.preventDefault();
    if (!box || box[2] < 2 || box[3] < 2) return toast("drag a box around the defect first", true);
    const isNew = document.getElementById("kind-new").checked;
    const body = {event_id: canvas.dataset.event, box};
    if (brushed) body.mask_png = mask.toDataURL("image/png");
    if (isNew) {
      body.cls = document.getElementById("new-cls").value;
      body.plc_code = Number(document.getElementById("new-code").value);
      body.severity = document.getElementById("new-severity").value;
      if (!body.cls || !body.plc_code) return toast("a new class needs a name and a PLC code", true);
    } else {
      body.cls = document.getElementById("old-cls").value;
    }
    const button = document.getElementById("enrol");
    button.disabled = true;
    let job = await post("/api/teach", body);
    const bar = document.getElementById("teach-progress");
    const status = document.getElementById("teach-status");
    while (job.ok !== false && !job.error && job.step < job.steps) {
      bar.value = job.step;
      status.textContent = `${job.stage}… ${job.elapsed_s} s`;
      await new Promise((res) => setTimeout(res, 250));
      const r = await fetch(`/api/jobs/${job.id}`, {credentials: "same-origin"});
      job = await r.json();
    }
    button.disabled = false;
    if (job.error || job.ok === false) {
      status.textContent = `refused: ${job.error}`;
      status.className = "error";
      return;
    }
    bar.value = job.steps;
    status.className = "ok";
    status.textContent = `done: ${job.cls} is in ${job.recipe.id} rev ${job.rev}; switched after ` +
      `${job.switched_s} s, first part judged by it after ${job.first_part_s ?? "–"} s`;
    status.dataset.done = "1";
  };
}

// -- recipes ------------------------------------------------------------------------
function startRecipes() {
  for (const row of document.querySelectorAll("#recipes tr[data-recipe]")) {
    const b = row.querySelector("button.switch");
    if (!b) continue;
    b.onclick = async () => {
      const name = row.dataset.recipe, rev = Number(row.dataset.rev);
      if (!confirm(`Switch the line to ${name} rev ${rev}?`)) return;
      b.disabled = true;
      const r = await post("/api/switch", {recipe_id: name, rev});
      b.disabled = false;
      if (!r.ok) return toast(`switch refused: ${r.error}`, true);
      toast(`switched to ${r.recipe.id} rev ${r.recipe.rev}`);
      setTimeout(() => location.reload(), 800);
    };
  }
  const rules = () => {
    const classes = {};
    for (const tr of document.querySelectorAll("#rules tr[data-cls]")) {
      classes[tr.dataset.cls] = {threshold: Number(tr.querySelector(".thr").value),
                                 min_area_mm2: Number(tr.querySelector(".area").value)};
    }
    return {classes};
  };
  const status = document.getElementById("rules-status");
  const pv = document.getElementById("preview");
  if (pv) pv.onclick = async () => {
    const r = await post("/api/thresholds/preview", rules());
    if (!r.ok) return toast(r.error, true);
    status.textContent = `${r.parts} recent parts: NG ${r.ng_before} → ${r.ng_after} ` +
      `(${r.to_ng.length} would become NG, ${r.to_ok.length} OK)`;
  };
  const save = document.getElementById("save-rules");
  if (save) save.onclick = async () => {
    if (!confirm("Save these rules as a new rev and switch the line to it?")) return;
    const r = await post("/api/thresholds", rules());
    if (!r.ok) return toast(`refused: ${r.error}`, true);
    toast(`saved and switched: ${r.recipe.id} rev ${r.recipe.rev}`);
    setTimeout(() => location.reload(), 800);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const out = document.getElementById("logout");
  if (out) out.onclick = () => {
    fetch("/logout", {method: "POST", credentials: "same-origin",
                      headers: {"X-CSRF-Token": csrf()}}).then(() => { location.href = "/login"; });
  };
  for (const td of document.querySelectorAll("td.t[data-t]")) {
    td.textContent = new Date(Number(td.dataset.t) * 1000).toLocaleString();
  }
  if (document.getElementById("cameras")) startLive();
  if (document.querySelector("figure.part")) startReview();
  startTeach();
  if (document.getElementById("recipes")) startRecipes();
});
