// aimemory explorer: a page over the JSON API, no build step, no dependencies.
// Safety rule: memories hold anything (including markup), so every user string goes into the page
// through textContent or a validated attribute; innerHTML is never used.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("aimemory.token") || null,
  queryFile: null,     // a File to search by, instead of the text box
  lastQuery: null,     // what the results show: null (recent) or {text|file}
  hits: new Map(),     // id -> hit (or memory, for the recent list)
  blobUrls: [],        // object URLs made for token-authenticated media, revoked on re-render
  current: null,       // the hit shown in the detail view
  ticket: 0,           // the newest search; answers to older ones arrive late and are dropped
  stats: null,         // the last /api/stats answer (the header counts the chosen namespace)
  fromUrl: false,      // the form was just filled from the URL: replace the history entry, not add one
};
const DEFAULT_K = "20";

// -- DOM helpers --------------------------------------------------------------------------------
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function clock(seconds) {
  const m = Math.floor(seconds / 60), s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function setStatus(message) { $("status").textContent = message || ""; }

// -- API ----------------------------------------------------------------------------------------
function authHeaders() { return state.token ? { Authorization: `Bearer ${state.token}` } : {}; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) { askForToken(); throw new Error("this server needs its API token"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  return body;
}

// Media elements cannot send an Authorization header: with a token, fetch the bytes and hand the
// element a blob URL; without one, point it at the URL so audio streams with Range requests.
async function setMedia(node, url, fragment = "") {
  if (!state.token) { node.src = url + fragment; return; }
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) return;
    const blobUrl = URL.createObjectURL(await response.blob());
    state.blobUrls.push(blobUrl);
    node.src = blobUrl + fragment;
  } catch (err) { /* a missing thumbnail is not worth an error line */ }
}

function askForToken() {
  $("token-form").hidden = false;
  $("token").focus();
}

// -- filters ------------------------------------------------------------------------------------
function localDayIso(value, plusDays = 0) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function filters() {
  const out = { namespace: $("f-namespace").value || "default", k: $("f-k").value };
  if ($("f-modality").value) out.modality = $("f-modality").value;
  if ($("f-since").value) out.since = localDayIso($("f-since").value);
  if ($("f-until").value) out.until = localDayIso($("f-until").value, 1);  // the whole day counts
  const tags = $("f-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) out.tags = tags.join(",");
  if ($("f-hybrid").checked) out.hybrid = "true";
  return out;
}

// -- the URL holds the search: links can be shared, reloads and the back button restore it ----------
function setNamespace(name) {
  const select = $("f-namespace");
  if (![...select.options].some((o) => o.value === name)) select.append(el("option", { value: name, text: name }));
  select.value = name;
}

function formToUrl() {
  const p = new URLSearchParams();
  const text = $("q").value.trim();
  if (text && !state.queryFile) p.set("q", text);
  const namespace = $("f-namespace").value || "default";
  if (namespace !== "default") p.set("namespace", namespace);
  for (const [key, id] of [["modality", "f-modality"], ["since", "f-since"], ["until", "f-until"], ["tags", "f-tags"]]) {
    if ($(id).value.trim()) p.set(key, $(id).value.trim());
  }
  if ($("f-k").value !== DEFAULT_K) p.set("k", $("f-k").value);
  if ($("f-hybrid").checked) p.set("hybrid", "1");
  const query = p.toString();
  return query ? `?${query}` : location.pathname;
}

function syncUrl() {
  const target = formToUrl();
  const same = target === (location.search || location.pathname);
  if (state.fromUrl || same) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  state.fromUrl = false;
}

function urlToForm() {
  const p = new URLSearchParams(location.search);
  $("q").value = p.get("q") || "";
  setNamespace(p.get("namespace") || "default");
  for (const [key, id] of [["modality", "f-modality"], ["since", "f-since"], ["until", "f-until"], ["tags", "f-tags"]]) {
    $(id).value = p.get(key) || "";
  }
  const k = p.get("k") || DEFAULT_K;
  $("f-k").value = [...$("f-k").options].some((o) => o.value === k) ? k : DEFAULT_K;
  $("f-hybrid").checked = ["1", "true"].includes(p.get("hybrid"));
  state.fromUrl = true;
  renderStats();
}

// -- search -------------------------------------------------------------------------------------
async function search() {
  const text = $("q").value.trim();
  const params = filters();
  const ticket = ++state.ticket;
  syncUrl();
  setStatus("");
  try {
    let body;
    if (state.queryFile) {
      const form = new FormData();
      form.append("file", state.queryFile, state.queryFile.name);
      for (const [k, v] of Object.entries(params)) form.append(k, v);
      body = await api("/api/recall", { method: "POST", body: form });
      if (ticket !== state.ticket) return;
      state.lastQuery = { file: state.queryFile.name };
    } else if (text) {
      body = await api("/api/recall?" + new URLSearchParams({ q: text, ...params }), {});
      if (ticket !== state.ticket) return;
      state.lastQuery = { text };
    } else {
      return showRecent();
    }
    const label = state.lastQuery.file ? `file ${state.lastQuery.file}` : `“${text}”`;
    render(body.hits, `Results for ${label}`);
  } catch (err) { setStatus(err.message); }
}

async function showRecent() {
  state.lastQuery = null;
  const ticket = ++state.ticket;
  syncUrl();
  try {
    const { namespace, modality } = filters();
    const body = await api("/api/memories?" + new URLSearchParams({ namespace, limit: 100 }), {});
    if (ticket !== state.ticket) return;
    let memories = body.memories;
    if (modality) memories = memories.filter((m) => m.modality === modality);
    render(memories.map((m) => ({ id: m.id, score: null, modality: m.modality, memory: m,
                                  snippet: m.text || m.transcript, start: null, end: null })),
           "Recent memories");
  } catch (err) { setStatus(err.message); }
}

function refresh() { return state.lastQuery ? search() : showRecent(); }

// -- results ------------------------------------------------------------------------------------
function render(hits, title) {
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
  state.hits = new Map(hits.map((h) => [h.id, h]));
  $("results-title").textContent = `${title} (${hits.length})`;
  const grid = $("results");
  grid.replaceChildren();
  if (!hits.length) {
    grid.append(el("p", { className: "empty", text: state.lastQuery ? "Nothing matches."
      : "No memories yet: drop files anywhere on this page to remember them." }));
    return;
  }
  for (const hit of hits) grid.append(card(hit));
}

function badge(modality) {
  return el("span", { className: `badge badge-${["image", "audio", "text", "video"].includes(modality) ? modality : "x"}`,
                      text: modality });
}

// Text read in an image: outline the words that matched the query. The SVG's viewBox is the image's
// own pixel size and "meet" fits it like the image's object-fit: contain, so boxes land on the words.
const SVG = "http://www.w3.org/2000/svg";
function boxOverlay(hit, className) {
  const size = hit.memory.metadata && hit.memory.metadata.ocr && hit.memory.metadata.ocr.size;
  if (!hit.boxes || !hit.boxes.length || !size) return null;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", className);
  svg.setAttribute("viewBox", `0 0 ${size[0]} ${size[1]}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
  for (const b of hit.boxes) {
    const poly = document.createElementNS(SVG, "polygon");
    poly.setAttribute("points", b.box.map((p) => p.join(",")).join(" "));
    const title = document.createElementNS(SVG, "title");
    title.textContent = b.text;
    poly.append(title);
    svg.append(poly);
  }
  return svg;
}

function card(hit) {
  const m = hit.memory;
  const node = el("div", { className: "card", tabindex: "0", "data-id": hit.id, "data-modality": hit.modality,
                           onclick: (e) => { if (e.target.tagName !== "AUDIO") openDetail(hit.id); },
                           onkeydown: (e) => { if (e.key === "Enter") openDetail(hit.id); } });
  if (hit.modality === "image") {
    const img = el("img", { className: "thumb", alt: m.source || "image memory", loading: "lazy" });
    setMedia(img, m.thumbnail_url + "&size=320");
    node.append(el("div", { className: "thumb-box" }, img, boxOverlay(hit, "ocr-boxes")));
  } else if (hit.modality === "audio") {
    const audio = el("audio", { controls: true, preload: "none" });
    const span = hit.start !== null && hit.start !== undefined ? `#t=${hit.start},${hit.end}` : "";
    setMedia(audio, m.content_url, span);
    node.append(audio);
  } else if (hit.modality === "video" && (hit.frame_url || m.frame_url)) {
    // the frame of the matching span (the first frame in a plain listing); the detail view plays from there
    const img = el("img", { className: "thumb", alt: m.source || "video memory", loading: "lazy" });
    setMedia(img, hit.frame_url || m.frame_url);
    node.append(img);
  }
  const snippet = hit.snippet || m.text || m.transcript;
  if (snippet) node.append(el("p", { className: "snippet", text: snippet }));
  const tags = el("span");
  for (const t of m.tags || []) tags.append(el("span", { className: "tag", text: t }));
  node.append(sourceLine(m.source || m.created_at.slice(0, 19).replace("T", " ")),
              el("div", { className: "meta" }, badge(hit.modality), tags,
                 el("span", { className: "score", text: hit.score === null ? "" : hit.score.toFixed(3) })));
  return node;
}

// A long path is cut in its folders, never in the file name: the folder part shrinks first (CSS).
function sourceLine(text) {
  const cut = text.search(/[^/\\]*$/);  // where the file name starts
  const node = el("div", { className: "source", title: text });
  if (cut > 0) node.append(el("span", { className: "dir", text: text.slice(0, cut) }));
  node.append(el("span", { className: "file", text: text.slice(cut) }));
  return node;
}

// -- detail view --------------------------------------------------------------------------------
async function openDetail(id) {
  const hit = state.hits.get(id);
  if (!hit) return;
  state.current = hit;
  const m = hit.memory;
  $("detail-title").replaceChildren(badge(m.modality), " ", m.source || m.id);
  const media = $("detail-media");
  media.replaceChildren();
  $("detail-span").textContent = "";
  $("detail-text").textContent = "";
  if (m.modality === "image") {
    const img = el("img", { id: "detail-image", alt: m.source || "image memory" });
    setMedia(img, m.content_url);
    media.append(el("div", { className: "image-box" }, img, boxOverlay(hit, "ocr-boxes")));
  } else if (m.modality === "audio" || m.modality === "video") {
    const audio = el(m.modality, { id: `detail-${m.modality}`, controls: true, preload: "auto" });
    if (hit.start !== null && hit.start !== undefined) {
      $("detail-span").textContent = `Best match at ${clock(hit.start)}–${clock(hit.end)}` +
        (hit.snippet ? `: “${hit.snippet}”` : "");
      // start the player at the matching span; the #t fragment does it too where supported
      audio.addEventListener("loadedmetadata", () => { audio.currentTime = hit.start; }, { once: true });
    }
    setMedia(audio, m.content_url);
    media.append(audio);
  }
  $("detail-meta").replaceChildren();
  $("detail").showModal();
  try {
    const full = await api(`/api/memories/${encodeURIComponent(id)}?namespace=${encodeURIComponent(m.namespace)}`);
    if (state.current !== hit) return;
    const ocr = full.metadata && full.metadata.ocr;
    const read = ocr && ocr.lines ? ocr.lines.map((line) => line.text).join("\n") : null;
    const text = full.modality === "text" ? full.text : full.transcript || read;
    const label = full.modality === "text" ? "" : full.modality === "image" ? "Text in the image: " : "Transcript: ";
    if (text) $("detail-text").textContent = label + text;
    const rows = [["id", full.id], ["namespace", full.namespace], ["created", full.created_at],
                  ["source", full.source], ["type", full.mime], ["tags", (full.tags || []).join(", ")],
                  ["score", hit.score === null ? null : hit.score.toFixed(4)], ["matched view", hit.kind]];
    for (const [key, value] of Object.entries(full.metadata || {})) {
      if (key !== "tags" && key !== "ocr") rows.push([key, typeof value === "string" ? value : JSON.stringify(value)]);
    }
    const dl = $("detail-meta");
    for (const [key, value] of rows) {
      if (value !== null && value !== undefined && value !== "") dl.append(el("dt", { text: key }), el("dd", { text: value }));
    }
  } catch (err) { setStatus(err.message); }
}

async function forgetCurrent() {
  const hit = state.current;
  if (!hit || !confirm("Forget this memory? This cannot be undone.")) return;
  try {
    await api(`/api/memories/${encodeURIComponent(hit.id)}?namespace=${encodeURIComponent(hit.memory.namespace)}`,
              { method: "DELETE" });
    $("detail").close();
    state.hits.delete(hit.id);
    const node = document.querySelector(`.card[data-id="${CSS.escape(hit.id)}"]`);
    if (node) node.remove();
    setStatus("");
    $("upload-status").textContent = "Forgotten.";
    loadStats();
  } catch (err) { setStatus(err.message); }
}

// -- upload -------------------------------------------------------------------------------------
function upload(form, label) {
  const bar = $("upload-progress"), status = $("upload-status");
  form.append("namespace", $("f-namespace").value || "default");
  const tags = $("upload-tags").value.trim();
  if (tags) form.append("tags", tags);
  bar.hidden = false; bar.value = 0;
  status.textContent = `Uploading ${label}…`;
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();  // fetch cannot report upload progress
    xhr.open("POST", "/api/memories");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 0.5 * e.loaded / e.total; };
    xhr.onerror = () => { status.textContent = "Upload failed (network error)."; bar.hidden = true; resolve(); };
    xhr.onload = async () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
      if (xhr.status === 401) askForToken();
      if (xhr.status === 202) {
        try { body = await followJob(body.job); } catch (err) {
          status.textContent = `Upload status unknown: ${err.message}`;
          bar.hidden = true; return resolve();
        }
      } else if (xhr.status !== 201) {
        status.textContent = `Upload failed: ${(body.error && body.error.message) || xhr.status}`;
        bar.hidden = true; return resolve();
      }
      bar.value = 1;
      const skipped = (body.skipped || []).length;
      status.textContent = `Remembered ${(body.memories || []).length}` +
        (skipped ? `, skipped ${skipped}: ${body.skipped[0].error.message}` : "") + ".";
      setTimeout(() => { bar.hidden = true; }, 800);
      // a search the user starts while the stats load must not be replaced by this refresh
      const ticket = state.ticket;
      await loadStats();
      if (ticket === state.ticket) await refresh();
      resolve();
    };
    xhr.send(form);
  });
}

async function followJob(job) {
  const bar = $("upload-progress"), status = $("upload-status");
  while (job.status === "queued" || job.status === "running") {
    bar.value = 0.5 + 0.5 * job.progress;
    status.textContent = `Storing ${job.done}/${job.total}…`;
    await new Promise((r) => setTimeout(r, 400));
    job = (await api(`/api/jobs/${encodeURIComponent(job.id)}`)).job;
  }
  if (job.status === "failed") return { memories: [], skipped: [{ error: job.error }] };
  return job;
}

function uploadFiles(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  return upload(form, files.length === 1 ? files[0].name : `${files.length} files`);
}

function setQueryFile(file) {
  state.queryFile = file;
  $("query-file").hidden = !file;
  $("query-file-name").textContent = file ? file.name : "";
  $("q").placeholder = file ? "" : "Search: type words, or drop an image or audio file here";
  if (file) { $("q").value = ""; search(); }
}

// -- stats and namespaces -----------------------------------------------------------------------
async function loadStats() {
  try {
    const s = await api("/api/stats");
    state.stats = s;
    const select = $("f-namespace"), chosen = select.value || "default";
    const names = new Set(["default", chosen, ...Object.keys(s.namespaces || {})]);
    select.replaceChildren(...[...names].sort().map((n) => el("option", { value: n, text: n })));
    select.value = chosen;
    renderStats();
  } catch (err) { setStatus(err.message); }
}

// The header counts the namespace being searched; the total over all namespaces is in its tooltip.
function renderStats() {
  const s = state.stats;
  if (!s) return;
  const namespace = $("f-namespace").value || "default";
  const n = (s.namespaces || {})[namespace] || 0;
  $("stats").textContent = `${n} memor${n === 1 ? "y" : "ies"} in ${namespace} · ${s.model}`;
  $("stats").title = `${s.memories} memories in all namespaces`;
}

// -- wiring -------------------------------------------------------------------------------------
function hasFiles(e) { return e.dataTransfer && [...e.dataTransfer.types].includes("Files"); }

function wire() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  for (const id of ["f-modality", "f-since", "f-until", "f-k", "f-hybrid"]) $(id).addEventListener("change", refresh);
  $("f-namespace").addEventListener("change", () => { renderStats(); refresh(); });
  window.addEventListener("popstate", () => { setQueryFile(null); urlToForm(); runFromForm(); });
  $("f-tags").addEventListener("change", refresh);
  $("query-file-clear").addEventListener("click", () => { setQueryFile(null); showRecent(); });
  $("query-file-input").addEventListener("change", (e) => { if (e.target.files[0]) setQueryFile(e.target.files[0]); e.target.value = ""; });
  $("file-input").addEventListener("change", async (e) => { await uploadFiles([...e.target.files]); e.target.value = ""; });
  $("upload-text-btn").addEventListener("click", async () => {
    const text = $("upload-text").value.trim();
    if (!text) return;
    const form = new FormData();
    form.append("text", text);
    await upload(form, "note");
    $("upload-text").value = "";
  });
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", () => { state.current = null; $("detail-media").replaceChildren(); });
  $("forget-btn").addEventListener("click", forgetCurrent);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim() || null;
    if (state.token) sessionStorage.setItem("aimemory.token", state.token);
    $("token-form").hidden = true;
    loadStats(); refresh();
  });

  // Dropping onto the search box searches by the file; dropping anywhere else remembers the files.
  const box = $("search-box"), overlay = $("drop-overlay");
  let depth = 0;
  document.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; overlay.hidden = box.contains(e.target); } });
  document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; overlay.hidden = true; } });
  document.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    const onBox = box.contains(e.target);
    box.classList.toggle("drag", onBox);
    overlay.hidden = onBox;
  });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0; overlay.hidden = true; box.classList.remove("drag");
    const files = [...e.dataTransfer.files];
    if (box.contains(e.target)) setQueryFile(files[0]);
    else uploadFiles(files);
  });
}

function runFromForm() { return $("q").value.trim() ? search() : showRecent(); }

wire();
urlToForm();
loadStats();
runFromForm();
