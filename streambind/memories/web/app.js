// The memories page: one form posted as multipart/form-data to /api/search, results drawn
// as cards. No framework, no build step, nothing fetched from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function when(iso) {
  return iso.replace("T", " ").replace("+00:00", "Z");
}

function seconds(startNs, endNs) {
  return ((endNs - startNs) / 1e9).toFixed(1) + " s";
}

function card(hit, rank) {
  const thumb = hit.thumbnail
    ? el("img", { class: "thumb", src: hit.thumbnail, alt: hit.modality + " preview" })
    : el("div", { class: "thumb none" }, hit.modality);
  const labels = el("div", { class: "labels" },
    ...(hit.labels.length ? hit.labels : ["(no label)"]).map(
      (l) => el("span", { class: hit.labels.length ? "label" : "label none" }, l)));
  const more = el("button", { type: "button", class: "more" }, "more like this");
  more.addEventListener("click", () => moreLike(hit.window_id));
  return el("article", { class: "result", "data-window-id": hit.window_id,
                         "data-rank": String(rank), "data-score": String(hit.score) },
    thumb,
    el("div", { class: "body" },
      el("div", { class: "top" },
        el("span", { class: "score", title: "cosine similarity" }, hit.score.toFixed(3)),
        el("span", { class: "device" }, hit.device_id),
        el("span", { class: "modality" }, hit.modalities.join(" + "))),
      labels,
      el("div", { class: "time" }, when(hit.start), " · ", seconds(hit.moment_start_ns,
        hit.moment_end_ns), hit.windows > 1 ? ` · ${hit.windows} windows` : ""),
      el("div", { class: "id muted", title: hit.window_id }, hit.window_id.slice(0, 16)),
      more));
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function post(form) {
  const started = performance.now();
  $("status").textContent = "searching...";
  showError("");
  $("results").setAttribute("aria-busy", "true");
  try {
    const response = await fetch("api/search", { method: "POST", body: form });
    const data = await response.json();
    if (!response.ok) {
      const err = data.error || {};
      throw new Error(`${response.status} ${err.code || ""}: ${err.message || "error"}`);
    }
    $("results").replaceChildren(...data.results.map((hit, i) => card(hit, i + 1)));
    const ms = Math.round(performance.now() - started);
    $("status").textContent = `${data.count} result${data.count === 1 ? "" : "s"} ` +
      `(${data.plan && data.plan.exact ? "exact" : "indexed"} search, ${ms} ms)`;
    document.body.dataset.state = "done";
  } catch (err) {
    $("results").replaceChildren();
    $("status").textContent = "";
    showError(err.message);
    document.body.dataset.state = "error";
  } finally {
    $("results").removeAttribute("aria-busy");
    // A counter of finished searches: scripts (and the browser test) wait on it.
    document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1);
  }
}

function formData() {
  const form = new FormData($("search"));
  for (const name of ["since", "until"]) {  // datetime-local has no zone: the page says UTC
    const value = form.get(name);
    form.delete(name);
    if (value) form.append(name, value.length === 16 ? value + ":00Z" : value + "Z");
  }
  return form;
}

function moreLike(windowId) {
  $("like").value = windowId;
  $("text").value = "";
  $("file").value = "";
  document.body.dataset.state = "busy";
  post(formData());
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  document.body.dataset.state = "busy";
  post(formData());
});

fetch("api/info").then((r) => r.json()).then((info) => {
  $("info").textContent = info.error ? info.error.message
    : `${info.rows} windows · model ${info.model}`;
}).catch(() => { $("info").textContent = "server unreachable"; });
