// vp-ray review: the grid of clips and the clip page. Plain JS, no build step.
"use strict";
const $ = (sel) => document.querySelector(sel);
const PAGE = 48;
const state = { f: [], sort: "clip_id", desc: false, q: "", page: 0, version: -1,
                clip: null, detail: null, points: [], box: null, fps: 8, frames: 1 };

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (!response.ok) {
    let detail = response.statusText;
    try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) {}
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}
const getJSON = async (path) => (await api(path)).json();
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(body) });

function queryString(extra = {}) {
  const params = new URLSearchParams();
  state.f.forEach((f) => params.append("f", f));
  if (state.sort !== "clip_id") params.set("sort", state.sort);
  if (state.desc) params.set("desc", "1");
  if (state.q) params.set("q", state.q);
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  return params.toString();
}

function readHash() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  state.f = params.getAll("f");
  state.sort = params.get("sort") || "clip_id";
  state.desc = params.get("desc") === "1";
  state.q = params.get("q") || "";
  state.page = Number(params.get("page") || 0);
  const match = (path || "").match(/^\/clip\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}
function go(clipId) {
  const page = clipId ? "" : (state.page ? `&page=${state.page}` : "");
  location.hash = (clipId ? `/clip/${encodeURIComponent(clipId)}` : "/") + "?" + queryString() + page;
}

// ------------------------------------------------------------------ badges

function badges(row) {
  const out = [];
  const status = row.status || "";
  out.push([status, status.replace("_", " ")]);
  if (row.degraded === true) out.push(["degraded", "degraded"]);
  if (row.review_verdict) out.push(["reviewed", "reviewed"], [row.review_verdict, row.review_verdict]);
  const requeue = { pending: ["pending", "requeue pending"], done: ["done", "redone"],
                    failed: ["redo-failed", "redo failed"] }[row.review_requeue];
  if (requeue) out.push(requeue);
  return out.map(([cls, label]) => `<span class="badge b-${cls}">${escapeHtml(label)}</span>`).join("");
}
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const show = (v) => (v === null || v === undefined ? "" : typeof v === "number" && !Number.isInteger(v) ? +v.toPrecision(4) : v);

// ------------------------------------------------------------------ the grid

const QUICK = [["all", null], ["ok", "status:=:ok"], ["suspect", "status:=:suspect"], ["failed", "status:=:failed"],
  ["degraded", "degraded:=:true"], ["done before", "status:=:done_before"], ["unreviewed", "review_verdict:empty:"],
  ["accepted", "review_verdict:=:accepted"], ["rejected", "review_verdict:=:rejected"],
  ["requeued", "review_verdict:=:requeued"]];

function renderControls(columns) {
  const options = columns.map((c) => `<option value="${escapeHtml(c.name)}">${escapeHtml(c.name)}</option>`).join("");
  $("#f-column").innerHTML = options;
  $("#sort").innerHTML = options;
  $("#quick").innerHTML = QUICK.map(([label, f]) => `<button data-f="${f || ""}">${label}</button>`).join(" ");
  $("#quick").onclick = (e) => {
    const f = e.target.dataset.f;
    if (f === undefined) return;
    state.f = f ? [f] : [];
    state.page = 0; go(null);
  };
}

function renderChips() {
  $("#chips").innerHTML = state.f.map((f, i) => `<span class="chip" data-i="${i}" title="remove">${escapeHtml(f.replace(/:/g, " "))} &times;</span>`).join(" ");
  $("#sort").value = state.sort;
  $("#desc").innerHTML = state.desc ? "&darr;" : "&uarr;";
  $("#search").value = state.q;
  for (const b of $("#quick").querySelectorAll("button")) b.classList.toggle("on", state.f.length <= 1 && (b.dataset.f || "") === (state.f[0] || ""));
}

async function loadGrid() {
  renderChips();
  const data = await getJSON(`/api/clips?${queryString({ offset: state.page * PAGE, limit: PAGE })}`);
  state.version = data.version;
  const first = data.matched ? state.page * PAGE + 1 : 0;
  $("#page-info").textContent = `${first}-${Math.min((state.page + 1) * PAGE, data.matched)} of ${data.matched} matching (${data.total} clips)`;
  $("#prev-page").disabled = state.page === 0;
  $("#next-page").disabled = (state.page + 1) * PAGE >= data.matched;
  const shownColumn = state.sort !== "clip_id" ? state.sort : null;
  $("#cards").innerHTML = data.rows.map((row) => {
    const image = row.has_folder ? `<img loading="lazy" src="/api/thumbs/${encodeURIComponent(row.clip_id)}?v=${row.committed_at}" alt="">`
                                 : `<div class="noimg">${row.status === "failed" ? "failed at " + escapeHtml(row.failed_stage) : "no files"}</div>`;
    const scores = ["qa_drift", "qa_flicker", "qa_seam", "qa_object"].filter((k) => row[k] !== null && row[k] !== undefined)
      .map((k) => `${k.slice(3)} ${show(row[k])}`).join(" · ");
    const extra = shownColumn ? `<div>${escapeHtml(shownColumn)}: ${escapeHtml(show(row[shownColumn]))}</div>` : "";
    return `<div class="card" data-clip-id="${escapeHtml(row.clip_id)}">${image}<div class="body">
      <div class="id">${escapeHtml(row.clip_id)}</div><div>${badges(row)}</div>${extra}<div>${escapeHtml(scores)}</div></div></div>`;
  }).join("");
  document.body.dataset.gridVersion = String(data.version);
  document.body.dataset.matched = String(data.matched);
}

// ------------------------------------------------------------------ the clip page

const video = () => $("#video");

async function openClip(clipId) {
  const [detail, around] = await Promise.all([getJSON(`/api/clips/${encodeURIComponent(clipId)}`),
    getJSON(`/api/neighbours/${encodeURIComponent(clipId)}?${queryString()}`)]);
  const changed = !state.detail || state.clip !== clipId;
  state.clip = clipId; state.detail = detail; state.around = around;
  const row = detail.row;
  $("#clip-title").textContent = clipId;
  $("#clip-badges").innerHTML = badges(row);
  $("#position").textContent = around.position === null ? "(not in the filtered list)" : `${around.position + 1} / ${around.matched}`;
  $("#prev-clip").disabled = !around.previous; $("#next-clip").disabled = !around.next;
  state.fps = row.out_fps || 8;
  renderInfo(detail);
  const review = detail.review || {};
  $("#verdict-state").textContent = review.verdict ? `verdict: ${review.verdict} (${review.reviewed_at})` : "no verdict yet";
  $("#note").value = review.note || "";
  if (changed || video().dataset.src !== (detail.files["result_vis.mp4"] || detail.files["mask.mp4"] || "")) loadVideo(detail);
  if (changed) loadEditor(detail);
  document.body.dataset.clip = clipId;
}

function renderInfo(detail) {
  const row = detail.row;
  const keys = ["status", "prompt", "video_path", "mask_kind", "num_frames", "out_fps", "seconds", "effective_seed",
    "effective_max_seconds", "source_width", "source_height", "attempts", "degraded", "memory_plan",
    "attention_backend", "compiled", "mask_area",
    "time_prepare_s", "time_segment_s", "time_inpaint_s", "time_write_s", "step_s_median", "qa_drift", "qa_flicker",
    "qa_seam", "qa_object", "qa_flags", "warnings", "review_verdict", "review_requeue", "review_note"];
  $("#record").innerHTML = keys.filter((k) => row[k] !== undefined && row[k] !== "" && row[k] !== null)
    .map((k) => `<tr><td>${k}</td><td>${escapeHtml(show(row[k]))}</td></tr>`).join("");
  $("#failure").textContent = row.status === "failed" ? `failed at ${row.failed_stage} (${row.error_type}): ${row.error}` :
    (detail.review && detail.review.requeue_error ? `the last redo failed: ${detail.review.requeue_error}` : "");
  $("#meta").textContent = detail.meta ? JSON.stringify(detail.meta, null, 2) : "(no meta.json)";
}

function loadVideo(detail) {
  const v = video();
  const source = detail.files["result_vis.mp4"] || detail.files["mask.mp4"] || "";
  v.classList.toggle("whole", !detail.files["result_vis.mp4"]);
  v.dataset.src = source;
  v.pause();
  stopWatchingFrames();
  if (source) { v.src = source; v.load(); watchFrames(); } else { v.removeAttribute("src"); }
  if (detail.frame) {  // the panels take the frame's size now, not when the first frame arrives
    const { width, height } = detail.frame;
    for (const id of ["#c-original", "#c-mask"]) { $(id).width = width; $(id).height = height; }
    $("#crop").style.aspectRatio = `${width} / ${height}`;
  }
  state.frames = Math.max(1, detail.row.num_frames || 1);
  $("#scrub").max = String(state.frames - 1);
  $("#scrub").value = "0";
}

function quarters() {
  const v = video();
  const whole = v.classList.contains("whole");
  return { w: whole ? v.videoWidth : v.videoWidth / 4, h: v.videoHeight, whole };
}

function drawFrame() {
  const v = video();
  if (!v.videoWidth) return;
  const { w, h, whole } = quarters();
  for (const id of ["#c-original", "#c-mask"]) {
    const c = $(id);
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
  }
  $("#crop").style.aspectRatio = `${w} / ${h}`;
  const original = $("#c-original").getContext("2d");
  const mask = $("#c-mask").getContext("2d");
  if (whole) {  // a mask-only run: the mask video alone
    mask.drawImage(v, 0, 0, w, h, 0, 0, w, h);
  } else {
    original.globalCompositeOperation = "source-over"; original.globalAlpha = 1;
    original.drawImage(v, 0, 0, w, h, 0, 0, w, h);
    mask.drawImage(v, 2 * w, 0, w, h, 0, 0, w, h);
    if ($("#overlay").checked) {
      const tint = tintCanvas(w, h);
      const t = tint.getContext("2d");
      t.globalCompositeOperation = "source-over";
      t.drawImage(v, 2 * w, 0, w, h, 0, 0, w, h);
      t.globalCompositeOperation = "multiply";
      t.fillStyle = "#ff2020"; t.fillRect(0, 0, w, h);
      original.globalCompositeOperation = "lighter"; original.globalAlpha = 0.6;
      original.drawImage(tint, 0, 0);
      original.globalCompositeOperation = "source-over"; original.globalAlpha = 1;
    }
  }
  const frame = Math.min(state.frames - 1, Math.floor(v.currentTime * state.fps + 1e-3));
  if (document.activeElement !== $("#scrub")) $("#scrub").value = String(frame);
  $("#frame-no").textContent = `frame ${frame + 1} / ${state.frames}`;
}
let tintCache = null;
function tintCanvas(w, h) {
  if (!tintCache || tintCache.width !== w || tintCache.height !== h) {
    tintCache = document.createElement("canvas"); tintCache.width = w; tintCache.height = h;
  }
  return tintCache;
}
// Redraw the canvases for every frame the video presents (one callback pending at a time).
let frameCallback = null;
function watchFrames() {
  const v = video();
  if (!v.requestVideoFrameCallback) {
    if (!v.paused) requestAnimationFrame(() => { drawFrame(); watchFrames(); });
    return;
  }
  if (frameCallback === null) frameCallback = v.requestVideoFrameCallback(() => { frameCallback = null; drawFrame(); watchFrames(); });
}
function stopWatchingFrames() {
  if (frameCallback !== null && video().cancelVideoFrameCallback) video().cancelVideoFrameCallback(frameCallback);
  frameCallback = null;
}

function seekFrame(index) {
  const v = video();
  v.pause();
  const frame = Math.max(0, Math.min(state.frames - 1, index));
  v.currentTime = (frame + 0.5) / state.fps;
}
function togglePlay() {
  const v = video();
  if (v.paused) { if (v.ended || v.currentTime >= v.duration - 1e-3) v.currentTime = 0; v.play(); } else v.pause();
}

// ------------------------------------------------------------------ verdicts and edits

async function judge(verdict) {
  if (!state.clip) return;
  const clipId = state.clip;
  try {
    await post(`/api/clips/${encodeURIComponent(clipId)}/verdict`, { verdict, note: $("#note").value });
    $("#verdict-state").textContent = `${clipId}: ${verdict}`;
    document.body.dataset.lastVerdict = `${clipId}:${verdict}`;
    if (state.around && state.around.next) go(state.around.next); else await openClip(clipId);
  } catch (error) { $("#verdict-state").innerHTML = `<span class="error">${escapeHtml(error.message)}</span>`; }
}

const frame0 = new Image();
function loadEditor(detail) {
  state.points = []; state.box = null;
  const review = detail.review || {};
  const row = detail.row;
  for (const [key, hint] of [["prompt", row.prompt], ["seed", row.effective_seed], ["dilate_size", detail.dilate_size],
                             ["max_seconds", row.effective_max_seconds]]) {
    const input = $(`#e-${key}`);
    input.value = review.requeue && review[key] !== null && review[key] !== undefined ? review[key] : "";
    input.placeholder = hint === null || hint === undefined ? "" : String(show(hint));
  }
  $("#edit-state").textContent = review.requeue ? `requeue ${review.requeue} (${review.requeued_at})` : "";
  $("#track-video").hidden = !detail.tracked_preview;
  if (detail.tracked_preview) $("#track-video").src = detail.tracked_preview;
  const canvas = $("#c-frame0");
  canvas.dataset.preview = "";
  if (!detail.files["frame0_original.png"]) {
    canvas.width = 1; canvas.height = 1; canvas.hidden = true; return;
  }
  canvas.hidden = false;
  frame0.onload = () => { canvas.width = frame0.naturalWidth; canvas.height = frame0.naturalHeight; drawClicks(frame0); };
  frame0.src = detail.files["frame0_original.png"];
}

function drawClicks(image) {
  const canvas = $("#c-frame0");
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  const r = Math.max(3, canvas.height / 60);
  for (const [x, y, label] of state.points) {
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = label ? "#00ff00" : "#ff0000"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke();
  }
  if (state.box) { ctx.strokeStyle = "#2060ff"; ctx.lineWidth = 2; const [x0, y0, x1, y1] = state.box; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.lineWidth = 1; }
}

function framePoint(event) {
  const canvas = $("#c-frame0");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
}

let dragFrom = null;
function onFrameDown(event) { event.preventDefault(); dragFrom = framePoint(event); }
function onFrameUp(event) {
  if (!dragFrom) return;
  const to = framePoint(event);
  const from = dragFrom; dragFrom = null;
  const moved = Math.hypot(to[0] - from[0], to[1] - from[1]) * $("#c-frame0").getBoundingClientRect().width / $("#c-frame0").width;
  if (moved > 6) {
    state.box = [Math.min(from[0], to[0]), Math.min(from[1], to[1]), Math.max(from[0], to[0]), Math.max(from[1], to[1])];
  } else {
    state.points.push([+to[0].toFixed(2), +to[1].toFixed(2), event.shiftKey || event.button === 2 ? 0 : 1]);
  }
  requestMask();
}

function currentEdits() {
  const edits = {};
  const prompt = $("#e-prompt").value.trim();
  if (prompt) edits.prompt = prompt;
  for (const key of ["seed", "dilate_size", "max_seconds"]) {
    const value = $(`#e-${key}`).value;
    if (value !== "") edits[key] = Number(value);
  }
  if (state.points.length) edits.points = state.points;
  if (state.box) edits.box = state.box;
  return edits;
}

async function requestMask() {
  const canvas = $("#c-frame0");
  drawClicks(frame0);
  if (!state.points.some((p) => p[2] === 1) && !state.box) { canvas.dataset.preview = ""; return; }
  const body = { points: state.points.length ? state.points : null, box: state.box };
  const dilate = $("#e-dilate_size").value;
  if (dilate !== "") body.dilate_size = Number(dilate);
  canvas.dataset.preview = "waiting";
  $("#edit-state").textContent = "SAM2 ...";
  try {
    const response = await post(`/api/clips/${encodeURIComponent(state.clip)}/mask`, body);
    const area = Number(response.headers.get("X-Mask-Area")), filled = Number(response.headers.get("X-Filled-Area"));
    const image = new Image();
    image.onload = () => { canvas.getContext("2d").drawImage(image, 0, 0); canvas.dataset.preview = "ready"; URL.revokeObjectURL(image.src); };
    image.src = URL.createObjectURL(await response.blob());
    $("#edit-state").textContent = `SAM2 mask on frame 0: ${(100 * area).toFixed(1)} % of the frame; filled after dilation ${(100 * filled).toFixed(1)} %`;
  } catch (error) {
    canvas.dataset.preview = "error";
    $("#edit-state").innerHTML = `<span class="error">${escapeHtml(error.message)}</span>`;
  }
}

async function trackedPreview() {
  $("#edit-state").textContent = "tracking over the clip (the mask-only path) ...";
  try {
    const result = await (await post(`/api/clips/${encodeURIComponent(state.clip)}/track`, { edits: currentEdits() })).json();
    const player = $("#track-video");
    player.hidden = false; player.src = result.url; player.play();
    $("#edit-state").textContent = `tracked preview: ${result.frames} frames, mask ${(100 * result.mask_area).toFixed(1)} % on average`;
  } catch (error) { $("#edit-state").innerHTML = `<span class="error">${escapeHtml(error.message)}</span>`; }
}

async function requeue() {
  const clipId = state.clip;
  try {
    const row = await (await post(`/api/clips/${encodeURIComponent(clipId)}/requeue`, { edits: currentEdits(), note: $("#note").value })).json();
    $("#edit-state").textContent = `requeued ${clipId} (${row.requeued_at}): run the same launch.py command with review.requeue=true`;
    document.body.dataset.lastRequeue = clipId;
    await openClip(clipId);
    $("#edit-state").textContent = `requeued ${clipId} (${row.requeued_at}): run the same launch.py command with review.requeue=true`;
  } catch (error) { $("#edit-state").innerHTML = `<span class="error">${escapeHtml(error.message)}</span>`; }
}

// ------------------------------------------------------------------ wiring

async function route() {
  const clipId = readHash();
  $("#grid-view").hidden = !!clipId;
  $("#clip-view").hidden = !clipId;
  document.body.dataset.view = clipId ? "clip" : "grid";
  try {
    if (clipId) await openClip(clipId); else { state.clip = null; video().pause(); await loadGrid(); }
  } catch (error) {
    (clipId ? $("#position") : $("#page-info")).innerHTML = `<span class="error">${escapeHtml(error.message)}</span>`;
  }
}

async function poll() {
  try {
    const status = await getJSON("/api/status");
    $("#folder").textContent = status.output_dir;
    $("#counts").textContent = Object.entries(status.counts).map(([k, v]) => `${k} ${v}`).join(" · ");
    if (status.version !== state.version) {
      state.version = status.version;
      if (state.clip) await openClip(state.clip); else await loadGrid();
    }
  } catch (error) { $("#counts").textContent = `(server: ${error.message})`; }
}

function onKey(event) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && event.target.type !== "checkbox" && event.target.type !== "range";
  if (typing) { if (event.key === "Escape") event.target.blur(); return; }
  if (!state.clip || event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    a: () => judge("accepted"), r: () => judge("rejected"),
    j: () => state.around.next && go(state.around.next), ArrowRight: () => state.around.next && go(state.around.next),
    k: () => state.around.previous && go(state.around.previous), ArrowLeft: () => state.around.previous && go(state.around.previous),
    " ": togglePlay, m: () => { $("#overlay").checked = !$("#overlay").checked; drawFrame(); },
    ",": () => seekFrame(Number($("#scrub").value) - 1), ".": () => seekFrame(Number($("#scrub").value) + 1),
    Escape: () => go(null),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
}

async function start() {
  renderControls(await getJSON("/api/columns"));
  $("#f-add").onclick = () => { state.f.push(`${$("#f-column").value}:${$("#f-op").value}:${$("#f-value").value}`); state.page = 0; go(null); };
  $("#chips").onclick = (e) => { if (e.target.dataset.i !== undefined) { state.f.splice(Number(e.target.dataset.i), 1); go(null); } };
  $("#sort").onchange = () => { state.sort = $("#sort").value; go(null); };
  $("#desc").onclick = () => { state.desc = !state.desc; go(null); };
  $("#search").onchange = () => { state.q = $("#search").value; state.page = 0; go(null); };
  $("#prev-page").onclick = () => { state.page -= 1; go(null); };
  $("#next-page").onclick = () => { state.page += 1; go(null); };
  $("#cards").onclick = (e) => { const card = e.target.closest(".card"); if (card) go(card.dataset.clipId); };
  $("#back").onclick = () => go(null);
  $("#prev-clip").onclick = () => go(state.around.previous);
  $("#next-clip").onclick = () => go(state.around.next);
  $("#play").onclick = togglePlay;
  $("#overlay").onchange = drawFrame;
  $("#scrub").oninput = () => seekFrame(Number($("#scrub").value));
  $("#accept").onclick = () => judge("accepted");
  $("#reject").onclick = () => judge("rejected");
  $("#clear-clicks").onclick = () => { state.points = []; state.box = null; drawClicks(frame0); $("#c-frame0").dataset.preview = ""; };
  $("#track").onclick = trackedPreview;
  $("#requeue").onclick = requeue;
  const canvas = $("#c-frame0");
  canvas.addEventListener("mousedown", onFrameDown);
  canvas.addEventListener("mouseup", onFrameUp);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  const v = video();
  v.addEventListener("loadeddata", drawFrame);
  v.addEventListener("seeked", drawFrame);
  v.addEventListener("play", () => { $("#play").textContent = "pause (space)"; watchFrames(); });
  v.addEventListener("pause", () => { $("#play").textContent = "play (space)"; });
  document.addEventListener("keydown", onKey);
  // A clicked button keeps no focus: the keys (space above all) stay the page's shortcuts.
  document.addEventListener("click", (e) => { if (e.target.tagName === "BUTTON") e.target.blur(); });
  window.addEventListener("hashchange", route);
  await route();
  setInterval(poll, 2000);
  poll();
}
start();
