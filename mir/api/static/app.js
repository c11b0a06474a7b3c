// mir's page: hash routes over the JSON API (#/, #/track/ID, #/upload, #/user/NAME).
// Text from the library is always set with textContent, never parsed as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE = 50;
let offset = 0;
let playlistSeeds = [];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

class NeedToken extends Error {}

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (r.status === 401) throw new NeedToken();
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const detail = body && body.detail !== undefined ? body.detail : body;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
}

function fail(where, err) {
  if (err instanceof NeedToken) { show("token-view"); return; }
  where.textContent = String(err.message || err);
  where.classList.add("error");
}

function fmt(x, digits = 0) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
function keyText(key, mode) { return key ? `${key}${mode ? " " + mode : ""}` : "–"; }
function name(t) { return [t.artist, t.title].filter(Boolean).join(" – ") || t.track_id; }

function tagBars(target, probs, decided) {
  target.replaceChildren();
  const on = new Set(decided || []);
  const entries = Object.entries(probs || {}).sort((a, b) => b[1] - a[1]);
  for (const [tag, p] of entries) {
    const fill = el("div", { className: "fill" });
    fill.style.width = `${Math.round(100 * p)}%`;
    target.append(el("div", { className: on.has(tag) ? "tagbar on" : "tagbar" },
      el("span", { textContent: tag }), el("div", { className: "track" }, fill),
      el("span", { className: "p", textContent: p.toFixed(2) })));
  }
}

function resultList(target, results) {
  target.replaceChildren();
  for (const r of results) {
    const link = el("a", { href: `#/track/${r.track_id}`, textContent: name(r) });
    const player = el("audio", { controls: true, preload: "none", src: `/tracks/${r.track_id}/audio` });
    const li = el("li", { className: "result" }, link, ` (${fmt(r.score, 3)})`, player);
    if (r.explanation) li.append(el("span", { className: "why", textContent: r.explanation }));
    target.append(li);
  }
}

// --- library ----------------------------------------------------------------------------------
async function library() {
  show("library-view");
  const params = new URLSearchParams({ limit: PAGE, offset });
  for (const f of ["q", "genre", "tag", "bpm", "key"]) {
    const v = $("#" + f).value.trim();
    if (v) params.set(f, v);
  }
  try {
    const page = await api(`/tracks?${params}`);
    const body = $("#tracks tbody");
    body.replaceChildren();
    for (const t of page.tracks) {
      body.append(el("tr", {},
        el("td", {}, el("a", { className: "track-link", href: `#/track/${t.track_id}`, textContent: t.title || t.track_id })),
        el("td", { textContent: t.artist || "" }), el("td", { textContent: t.genre || t.genre_pred || "" }),
        el("td", { textContent: fmt(t.bpm) }), el("td", { textContent: keyText(t.key, t.mode) }),
        el("td", { className: "tags", textContent: (t.tags || []).join(", ") })));
    }
    const last = Math.min(page.offset + page.tracks.length, page.total);
    $("#count").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total} tracks` : "no track matches";
    $("#count").classList.remove("error");
    $("#prev").disabled = page.offset === 0;
    $("#next").disabled = last >= page.total;
  } catch (err) { fail($("#count"), err); }
}

// --- one track ----------------------------------------------------------------------------------
async function track(id) {
  show("track-view");
  $("#similar").replaceChildren();
  $("#tags").replaceChildren();
  try {
    const t = await api(`/tracks/${encodeURIComponent(id)}`);
    $("#track-title").textContent = name(t);
    $("#track-meta").textContent = [t.album, t.year, t.format, t.duration ? `${fmt(t.duration, 1)} s` : null, t.track_id]
      .filter(Boolean).join(" · ");
    $("#player").src = `/tracks/${t.track_id}/audio`;
    $("#generate-from").href = `#/generate/${t.track_id}`;
    $("#spectrogram").src = `/tracks/${t.track_id}/spectrogram.png`;
    $("#track-genre").textContent = [t.genre, t.genre_pred ? `predicted ${t.genre_pred}` : null].filter(Boolean).join(", ") || "–";
    $("#track-bpm").textContent = fmt(t.descriptors.tempo, 1);
    $("#track-key").textContent = keyText(t.descriptors.key, t.descriptors.mode);
    $("#track-music").textContent = musicText(t.music);
    $("#track-model").textContent = t.model_id || "not tagged";
    tagBars($("#tags"), t.tag_probs, t.tags);
    const sim = await api(`/similar?track=${t.track_id}&k=10`);
    resultList($("#similar"), sim.results);
  } catch (err) { fail($("#track-meta"), err); }
}

// the music gate's probability (0.5 as in mir.models.gate.MUSIC_THRESHOLD), or – without a gate
const musicText = (p) => p == null ? "–" : `${fmt(p, 2)}${p < 0.5 ? " (not music)" : ""}`;

// --- upload -------------------------------------------------------------------------------------
async function analyse(file) {
  const status = $("#upload-status");
  status.classList.remove("error");
  status.textContent = `analysing ${file.name} …`;
  $("#upload-result").hidden = true;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const a = await api("/analyze?similar=10", { method: "POST", body: form });
    status.textContent = `${a.file}: ${fmt(a.duration, 1)} s, model ${a.model_id}`;
    $("#upload-genre").textContent = a.genre;
    $("#upload-bpm").textContent = fmt(a.bpm, 1);
    $("#upload-key").textContent = keyText(a.key, a.mode);
    $("#upload-music").textContent = musicText(a.music);
    tagBars($("#upload-tags"), a.tag_probs, a.tags);
    resultList($("#upload-similar"), a.similar || []);
    $("#upload-result").hidden = false;
  } catch (err) { fail(status, err); }
}

// --- a user -------------------------------------------------------------------------------------
async function user(name) {
  show("user-view");
  $("#user").value = name || "";
  $("#recs").replaceChildren();
  $("#playlist").replaceChildren();
  $("#m3u").hidden = true;
  $("#make-playlist").disabled = true;
  if (!name) return;
  const status = $("#user-status");
  status.classList.remove("error");
  status.textContent = "…";
  try {
    const r = await api(`/users/${encodeURIComponent(name)}/recommendations?k=20`);
    status.textContent = `${r.method}${r.known_user ? "" : " (no history: most popular tracks)"}`;
    resultList($("#recs"), r.recommendations);
    playlistSeeds = r.recommendations.slice(0, 1).map((x) => x.track_id);
    $("#make-playlist").disabled = playlistSeeds.length === 0;
  } catch (err) { fail(status, err); }
}

async function makePlaylist() {
  const status = $("#user-status");
  const request = (format) => api("/playlists", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ seeds: playlistSeeds, length: 20, format }),
  });
  try {
    const pl = await request("json");
    resultList($("#playlist"), pl.tracks);
    const m3u = await request("m3u");
    const link = $("#m3u");
    link.href = URL.createObjectURL(new Blob([m3u], { type: "audio/x-mpegurl" }));
    link.hidden = false;
  } catch (err) { fail(status, err); }
}

// --- generate -----------------------------------------------------------------------------------
let generating = 0;  // the poll loop of the newest job; older loops stop when it changes

function generateView(seed) {
  show("generate-view");
  if (seed) $("#gen-tracks").value = seed;
  jobList();
}

// the 20 newest jobs (GET /jobs): a player for each finished piece, Cancel while queued or running,
// Remove once finished
let listing = 0;  // the newest GET /jobs call: an older answer arriving later is not drawn over it

async function jobList() {
  const target = $("#jobs");
  const mine = ++listing;
  try {
    const { jobs } = await api("/jobs?limit=20");
    if (mine !== listing) return;
    target.replaceChildren();
    for (const job of jobs) {
      const when = new Date(job.created * 1000).toLocaleString();
      const seeds = [...(job.params.track_ids || []).map((t) => t.slice(0, 12)), ...(job.params.tags || [])].join(", ");
      const item = el("li", { className: `job ${job.status}` },
        el("span", { textContent: `${job.status} · ${when} · ${job.params.duration} s from ${seeds || job.params.user || "?"}` }));
      if (job.status === "done") item.append(el("audio", { controls: true, preload: "none", src: job.result.audio }));
      if (job.status === "failed") item.append(el("span", { className: "why", textContent: job.error }));
      const unfinished = job.status === "queued" || job.status === "running";
      const button = el("button", { type: "button", textContent: unfinished ? "Cancel" : "Remove" });
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await api(unfinished ? `/jobs/${job.id}/cancel` : `/jobs/${job.id}`, { method: unfinished ? "POST" : "DELETE" });
        } catch (err) { fail($("#gen-status"), err); }
        jobList();
      });
      item.append(" ", button);
      target.append(item);
    }
    if (!jobs.length) target.append(el("li", { className: "muted", textContent: "none yet" }));
  } catch (err) { fail($("#gen-status"), err); }
}

const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);

async function startGenerate() {
  const status = $("#gen-status");
  const bar = $("#gen-progress");
  status.classList.remove("error");
  $("#gen-result").hidden = true;
  const body = {
    tracks: list($("#gen-tracks").value), tags: list($("#gen-tags").value),
    duration: Number($("#gen-duration").value), seed: Number($("#gen-seed").value),
  };
  const mine = ++generating;
  try {
    let job = await api("/generate", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    bar.hidden = false;
    jobList();
    const cancel = $("#gen-cancel");
    cancel.hidden = false;
    cancel.disabled = false;
    cancel.onclick = async () => {
      cancel.disabled = true;
      try { await api(`/jobs/${job.id}/cancel`, { method: "POST" }); } catch (err) { fail(status, err); }
    };
    while (job.status === "queued" || job.status === "running") {
      bar.value = job.progress;
      status.textContent = `${job.status}: ${job.stage} (${Math.round(100 * job.progress)} %)`;
      await new Promise((ok) => setTimeout(ok, 500));
      if (mine !== generating) return;
      job = await api(`/jobs/${job.id}`);
    }
    bar.value = job.progress;
    cancel.hidden = true;
    jobList();
    if (job.status === "cancelled") { bar.hidden = true; status.textContent = `cancelled: job ${job.id}`; return; }
    if (job.status === "failed") throw new Error(job.error);
    const p = job.result.provenance;
    status.textContent = `done: job ${job.id}`;
    $("#gen-player").src = job.result.audio;
    $("#gen-summary").textContent = `${fmt(p.duration, 1)} s, ${fmt(p.tempo, 1)} BPM, ${p.key}, seed ${p.seed}, ` +
      `generator ${p.generator_id}, ${p.n_beats} beats from ${Object.keys(p.sources).length} tracks`;
    const sources = $("#gen-sources");
    sources.replaceChildren();
    for (const [id, beats] of Object.entries(p.sources).sort((a, b) => b[1] - a[1])) {
      sources.append(el("li", {}, el("a", { href: `#/track/${id}`, textContent: id.slice(0, 12) }), ` ${beats} beats`));
    }
    $("#gen-result").hidden = false;
  } catch (err) { bar.hidden = true; $("#gen-cancel").hidden = true; fail(status, err); }
}

// --- wiring -------------------------------------------------------------------------------------
async function stats() {
  try {
    const s = await api("/stats");
    $("#stats").textContent = `${s.library.tracks} tracks · model ${s.model_id || "none"}` +
      (s.index ? ` · index ${s.index.stale ? "stale" : "ok"}` : "");
  } catch (err) { if (err instanceof NeedToken) show("token-view"); }
}

function route() {
  const [, view, arg] = (location.hash || "#/").split("/");
  if (view === "track" && arg) return track(decodeURIComponent(arg));
  if (view === "upload") return show("upload-view");
  if (view === "generate") return generateView(arg ? decodeURIComponent(arg) : "");
  if (view === "user") return user(arg ? decodeURIComponent(arg) : "");
  return library();
}

window.addEventListener("DOMContentLoaded", () => {
  $("#search").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; library(); });
  $("#prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); library(); });
  $("#next").addEventListener("click", () => { offset += PAGE; library(); });
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    document.cookie = `mir_token=${encodeURIComponent($("#token").value)}; path=/; SameSite=Strict`;
    stats();
    route();
  });
  $("#user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/user/${encodeURIComponent($("#user").value.trim())}`;
  });
  $("#make-playlist").addEventListener("click", makePlaylist);
  $("#generate-form").addEventListener("submit", (e) => { e.preventDefault(); startGenerate(); });
  const drop = $("#drop");
  $("#file").addEventListener("change", (e) => { if (e.target.files.length) analyse(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]);
  });
  window.addEventListener("hashchange", route);
  stats();
  route();
});
