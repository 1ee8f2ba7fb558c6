// Models panel: what is installed and loaded, the catalog, pull with progress, remove, unload.

import { getJSON, humanBytes, ndjson, request, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  return td;
}

function button(label, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.setAttribute("aria-label", title);
  b.addEventListener("click", onClick);
  return b;
}

function stateText(name, ps) {
  const loaded = ps.models.find((m) => m.name === name);
  if (loaded) {
    if (loaded.in_flight) return `loaded, ${loaded.in_flight} in flight`;
    if (!loaded.expires_at) return `loaded (${loaded.state}), kept`;
    return `loaded, idle until ${new Date(loaded.expires_at).toLocaleTimeString()}`;
  }
  if (ps.loading && ps.loading.name === name) return "loading";
  const failed = ps.failed.find((m) => m.name === name);
  if (failed) return `failed: ${failed.error}`;
  return "not loaded";
}

// Installed models, for this panel and the model pickers of the others.
export let installed = [];

export async function refresh() {
  const [list, ps] = await Promise.all([getJSON("/api/list"), getJSON("/api/ps")]);
  installed = list.models;
  const body = $("installed").tBodies[0];
  body.replaceChildren();
  for (const m of installed) {
    const row = body.insertRow();
    row.dataset.model = m.name;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = m.name;
    row.append(th);
    cell(row, m.type);
    cell(row, humanBytes(m.size));
    cell(row, stateText(m.name, ps)).className = "state";
    const actions = document.createElement("div");
    actions.className = "row";
    if (ps.models.some((p) => p.name === m.name)) {
      actions.append(button("Unload", `Unload ${m.name}`, () => act("/api/unload", "POST", m.name)));
    }
    actions.append(button("Remove", `Remove ${m.name}`, () => remove(m.name)));
    cell(row, actions);
  }
  if (!installed.length) {
    cell(body.insertRow(), "No models installed yet: search the catalog below and pull one.").colSpan = 5;
  }
  document.dispatchEvent(new CustomEvent("vox:models", { detail: installed }));
}

async function act(path, method, name) {
  showError("");
  try {
    await request(path, { method, json: { model: name } });
    await refresh();
  } catch (exc) {
    showError(`${name}: ${exc.message}`);
  }
}

function remove(name) {
  if (confirm(`Remove ${name} from this server's store?`)) act("/api/delete", "DELETE", name);
}

function installedMark() {
  return Object.assign(document.createElement("em"), { textContent: "installed" });
}

async function search(event) {
  event.preventDefault();
  showError("");
  const params = new URLSearchParams();
  if ($("q").value.trim()) params.set("q", $("q").value.trim());
  if ($("qtype").value) params.set("type", $("qtype").value);
  const list = $("results");
  try {
    const { models } = await getJSON(`/api/search?${params}`);
    list.replaceChildren();
    for (const m of models) {
      const item = document.createElement("li");
      item.dataset.model = m.name;
      const title = document.createElement("strong");
      title.textContent = m.name;
      const meta = document.createElement("span");
      meta.className = "hint";
      meta.textContent = ` ${m.type} · ${humanBytes(m.size_bytes)} · ${m.description || ""}`;
      item.append(title, meta, " ");
      if (m.installed) item.append(installedMark());
      else item.append(button("Pull", `Pull ${m.name}`, () => pull(m.name)));
      list.append(item);
    }
    if (!models.length) list.append(Object.assign(document.createElement("li"), { textContent: "Nothing matches." }));
  } catch (exc) {
    showError(`search: ${exc.message}`);
  }
}

export async function pull(name) {
  showError("");
  const bar = $("pull-bar");
  const text = $("pull-text");
  $("pull").hidden = false;
  $("pull-label").textContent = `Pulling ${name}`;
  bar.dataset.state = "pulling";
  bar.removeAttribute("value"); // indeterminate until a file reports its size
  text.textContent = "starting";
  try {
    const response = await request("/api/pull", { method: "POST", json: { model: name } });
    let last = null;
    for await (const event of ndjson(response)) {
      if (event.status === "error" || event.error) {
        throw new Error(event.error?.message || "the pull failed");
      }
      last = event;
      if (event.total) {
        bar.max = event.total;
        bar.value = event.completed || 0;
        text.textContent = `${event.status} ${event.file || ""}: ${humanBytes(event.completed || 0)} of ${humanBytes(event.total)}`;
      } else {
        text.textContent = `${event.status}${event.file ? ` ${event.file}` : ""}`;
      }
    }
    // The files report "success" before the sandbox is made; only the stream's last line
    // says the whole pull is done.
    if (last?.status !== "success") throw new Error("the pull ended without success");
    bar.max = 1;
    bar.value = 1;
    bar.dataset.state = "done";
    text.textContent = `${name}: done`;
    const found = [...$("results").children].find((li) => li.dataset.model === name);
    found?.querySelector("button")?.replaceWith(installedMark());
  } catch (exc) {
    bar.dataset.state = "error";
    text.textContent = `${name}: failed`;
    showError(`pull ${name}: ${exc.message}`);
  }
  await refresh().catch((exc) => showError(exc.message));
}

export function setup() {
  $("refresh").addEventListener("click", () => refresh().catch((exc) => showError(exc.message)));
  // A finished speech or transcript loaded its model: show it loaded, and until when.
  document.addEventListener("vox:used", () => refresh().catch(() => {}));
  $("search-form").addEventListener("submit", search);
}
