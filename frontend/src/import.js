// @ts-check
/* SUA Portal: importing a cohort from a dropped folder or zip (docs/cohort-import.md). The files are listed here
 * (a zip's directory read without unpacking it), the server plans the import and the page shows the plan:
 * what will be created, what is missing, unmatched or left out, and what stops the import. "Import" then sends
 * each file in resumable chunks, with progress per file and overall, and asks the server to make each slide
 * as soon as its files are there. The import's id is kept in localStorage: after a reload, choosing the same
 * folder again goes on from what the server has. Every URL comes from the page's data attributes. */

import { api, describe, pageUrl, urlWithId } from "./http.js";
import { readZipDirectory, readZipText } from "./zipdir.js";

const CHUNK_BYTES = 8 * 1024 * 1024;
const MAX_RETRIES = 5;

/** @typedef {{ path: string, size: number, entries?: { path: string, size: number }[] | null }} Dropped */
/** @typedef {{ where: string, reason: string }} Problem */
/**
 * @typedef {{ name: string, kind: string, files: string[], size: number, split: string, domain: string,
 *   cohort: string, annotation: string | null, tumor_free: boolean, mpp: number | null, exists: boolean }} PlannedSlide
 * @typedef {{ slides: PlannedSlide[], cohorts: { name: string, split: string, domain: string, slides: number,
 *   exists: boolean }[], unmatched_annotations: string[], missing_from_manifest: string[],
 *   rows_without_files: Problem[], left_out: Problem[], errors: Problem[] }} Plan
 * @typedef {{ id: string, path: string, size: number, offset: number }} Part
 * @typedef {{ position: number, name: string, cohort: string, cohort_id: number, state: string, reason: string,
 *   slide: number | null, annotated: boolean, files: string[], annotation: string | null }} Item
 * @typedef {{ id: number, name: string, archive: string | null, plan: Plan, parts: Part[], items: Item[],
 *   done: boolean }} Session
 */

/**
 * What was chosen: the files by their path, the list the server plans from, and the manifest.
 * @typedef {{ files: Map<string, File>, list: Dropped[], archive: File | null, manifest: string,
 *   manifestPath: string | null }} Selection
 */

/** @param {number} bytes */
function human(bytes) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
}

/**
 * An element with text.
 * @param {string} tag
 * @param {string} [text]
 * @param {string} [className]
 */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

/** A short fingerprint of a selection: the same folder chosen again after a reload is recognised by it.
 * @param {Dropped[]} list */
function signature(list) {
  const text = list.map((f) => f.path + ":" + f.size).sort().join("\n");
  let hash = 5381;
  for (let i = 0; i < text.length; i++) hash = ((hash * 33) ^ text.charCodeAt(i)) >>> 0;
  return list.length + "-" + hash.toString(16);
}

/** The path of a file relative to what was dropped.
 * @param {File} file */
function relativePath(file) {
  return /** @type {any} */ (file).relativePath || file.webkitRelativePath || file.name;
}

/**
 * Every file under a dropped entry (folders walked), each with its relative path.
 * @param {FileSystemEntry} entry
 * @param {File[]} into
 * @returns {Promise<void>}
 */
async function walk(entry, into) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => /** @type {FileSystemFileEntry} */ (entry).file(resolve, reject));
    /** @type {any} */ (file).relativePath = entry.fullPath.replace(/^\//, "");
    into.push(/** @type {File} */ (file));
    return;
  }
  const reader = /** @type {FileSystemDirectoryEntry} */ (entry).createReader();
  for (;;) {
    // readEntries answers in batches (100 in Chromium) until it answers none.
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walk(child, into);
  }
}

/** The shallowest .csv among the paths: the manifest, unless one is chosen.
 * @param {string[]} paths */
function manifestAmong(paths) {
  const csvs = paths.filter((p) => p.toLowerCase().endsWith(".csv"));
  csvs.sort((a, b) => a.split("/").length - b.split("/").length || a.localeCompare(b));
  return csvs.length ? csvs[0] : null;
}

/**
 * The selection of dropped or chosen files: one zip is read as the cohort; otherwise a folder, whose zips
 * (one slide each) have their directories read.
 * @param {File[]} files
 * @param {File | null} manifestFile
 * @returns {Promise<Selection>}
 */
async function select(files, manifestFile) {
  /** @type {Selection} */
  const selection = { files: new Map(), list: [], archive: null, manifest: "", manifestPath: null };
  if (files.length === 1 && files[0].name.toLowerCase().endsWith(".zip")) {
    const archive = files[0];
    const entries = await readZipDirectory(archive);
    selection.archive = archive;
    selection.list = entries.map((e) => ({ path: e.path, size: e.size }));
    const manifest = manifestAmong(entries.map((e) => e.path));
    if (manifest && !manifestFile) {
      selection.manifestPath = manifest;
      selection.manifest = await readZipText(archive, /** @type {any} */ (entries.find((e) => e.path === manifest)));
    }
  } else {
    for (const file of files) {
      const path = relativePath(file);
      selection.files.set(path, file);
      /** @type {Dropped} */
      const dropped = { path: path, size: file.size };
      if (path.toLowerCase().endsWith(".zip")) {
        try {
          dropped.entries = (await readZipDirectory(file)).map((e) => ({ path: e.path, size: e.size }));
        } catch {
          dropped.entries = null;  // the plan says it could not be read
        }
      }
      selection.list.push(dropped);
    }
    const manifest = manifestAmong(selection.list.map((f) => f.path));
    if (manifest && !manifestFile) {
      selection.manifestPath = manifest;
      selection.manifest = await /** @type {File} */ (selection.files.get(manifest)).text();
    }
  }
  if (manifestFile) {
    selection.manifest = await manifestFile.text();
    selection.manifestPath = null;
  }
  return selection;
}

/**
 * The importer of the page.
 * @param {HTMLElement} section
 */
function initImporter(section) {
  const urls = {
    preview: pageUrl(section, "preview"), start: pageUrl(section, "start"), session: pageUrl(section, "session"),
    part: pageUrl(section, "part"), complete: pageUrl(section, "complete"), cohort: pageUrl(section, "cohortPage"),
  };
  const storageKey = "sua-import:" + section.dataset.project;
  const form = /** @type {HTMLFormElement} */ (document.getElementById("import-form"));
  const folderInput = /** @type {HTMLInputElement} */ (document.getElementById("import-folder"));
  const zipInput = /** @type {HTMLInputElement} */ (document.getElementById("import-zip"));
  const manifestInput = /** @type {HTMLInputElement} */ (document.getElementById("import-manifest"));
  const drop = /** @type {HTMLElement} */ (document.getElementById("import-drop"));
  const chosen = /** @type {HTMLElement} */ (document.getElementById("import-chosen"));
  const previewBox = /** @type {HTMLElement} */ (document.getElementById("import-preview"));
  const startButton = /** @type {HTMLButtonElement} */ (document.getElementById("import-start"));
  const progressBox = /** @type {HTMLElement} */ (document.getElementById("import-progress"));
  const resumeBox = /** @type {HTMLElement} */ (document.getElementById("import-resume"));
  /** @type {File[]} */
  let lastFiles = [];
  /** @type {Selection | null} */
  let selection = null;
  let busy = false;

  /** The URL of one file of an import (the template names the nil UUID for it).
   * @param {string} sessionId @param {string} partId */
  function partUrl(sessionId, partId) {
    return pageUrlWith(urls.part, sessionId).replace("00000000-0000-0000-0000-000000000000", partId);
  }
  /** The template with the import's id in place of its first "/0/".
   * @param {string} template @param {number | string} id */
  function pageUrlWith(template, id) {
    return template.replace("/0/", "/" + encodeURIComponent(String(id)) + "/");
  }

  function body() {
    const data = new FormData(form);
    const s = /** @type {Selection} */ (selection);
    return {
      cohort: String(data.get("cohort") || "").trim(), split: String(data.get("split")),
      domain: String(data.get("domain") || "").trim() || "in-domain",
      files: s.list, manifest: s.manifest, manifest_path: s.manifestPath,
      archive: s.archive ? s.archive.name : null, archive_size: s.archive ? s.archive.size : null,
    };
  }

  /** @param {File[]} files */
  async function choose(files) {
    if (busy || !files.length) return;
    lastFiles = files;
    previewBox.hidden = false;
    previewBox.replaceChildren(el("p", "Reading " + files.length + " file" + (files.length === 1 ? "" : "s") + "…", "muted"));
    startButton.disabled = true;
    try {
      selection = await select(files, manifestInput.files && manifestInput.files[0] ? manifestInput.files[0] : null);
    } catch (error) {
      previewBox.replaceChildren(el("p", error instanceof Error ? error.message : String(error), "error"));
      return;
    }
    const total = selection.list.reduce((sum, f) => sum + f.size, 0);
    chosen.textContent = (selection.archive ? selection.archive.name + ": " : "") + selection.list.length +
      " files, " + human(total) + (selection.manifest ? "; manifest " + (selection.manifestPath || "chosen") : "; no manifest");
    const stored = JSON.parse(localStorage.getItem(storageKey) || "null");
    if (stored && stored.signature === signature(selection.list)) {
      const session = await api(pageUrlWith(urls.session, stored.id), { method: "GET" });
      if (session.ok && !session.body.done) {
        resumeBox.hidden = true;
        await run(session.body);
        return;
      }
    }
    await preview();
  }

  async function preview() {
    if (!selection) return;
    if (!form.reportValidity()) return;
    const answer = await api(urls.preview, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body()),
    });
    if (answer.body && answer.body.slides) renderPlan(answer.body, []);
    else if (answer.body && answer.body.plan) renderPlan(answer.body.plan, answer.body.errors || []);
    else previewBox.replaceChildren(el("p", describe(answer), "error"));
    startButton.disabled = !answer.ok;
  }

  /**
   * @param {Plan} plan
   * @param {Problem[]} errors
   */
  function renderPlan(plan, errors) {
    previewBox.hidden = false;
    const parts = [];
    const fresh = plan.slides.filter((s) => !s.exists);
    const summary = el("p", "", "summary");
    summary.id = "import-summary";
    summary.textContent = fresh.length + " slide" + (fresh.length === 1 ? "" : "s") + " to create in " +
      plan.cohorts.length + " cohort" + (plan.cohorts.length === 1 ? "" : "s") + " (" +
      plan.cohorts.map((c) => c.name + (c.exists ? ", existing" : ", new")).join("; ") + ")" +
      (plan.slides.length > fresh.length ? "; " + (plan.slides.length - fresh.length) + " already there" : "") + ".";
    parts.push(summary);
    if (errors.length) parts.push(problems("Errors: nothing will be imported until they are fixed", errors, "errors"));
    const table = el("table", undefined, "data compact");
    table.id = "import-table";
    const head = el("tr");
    for (const title of ["Slide", "Kind", "Files", "Size", "Cohort", "Split", "Domain", "Annotation", "Tumor-free",
      "Resolution", ""]) head.appendChild(el("th", title));
    table.appendChild(el("thead")).appendChild(head);
    const rows = el("tbody");
    for (const slide of plan.slides) {
      const row = el("tr");
      row.dataset.slide = slide.name;
      for (const text of [slide.name, slide.kind === "file" ? "file" : slide.kind.toUpperCase(), String(slide.files.length),
        human(slide.size), slide.cohort, slide.split, slide.domain, slide.annotation || "—",
        slide.tumor_free ? "yes" : "no", slide.mpp === null ? "from the file" : slide.mpp + " µm/px",
        slide.exists ? "already there" : "new"]) row.appendChild(el("td", text));
      rows.appendChild(row);
    }
    table.appendChild(rows);
    parts.push(table);
    if (plan.missing_from_manifest.length) {
      parts.push(problems("Not in the manifest (not imported)",
        plan.missing_from_manifest.map((name) => ({ where: name, reason: "no manifest row names this slide" })), "missing"));
    }
    if (plan.rows_without_files.length) parts.push(problems("Manifest rows without files", plan.rows_without_files, "rows"));
    if (plan.unmatched_annotations.length) {
      parts.push(problems("Annotations that match no slide (not imported)",
        plan.unmatched_annotations.map((p) => ({ where: p, reason: "no slide of this name" })), "unmatched"));
    }
    if (plan.left_out.length) parts.push(problems("Left out", plan.left_out, "left-out"));
    previewBox.replaceChildren(...parts);
  }

  /**
   * @param {string} title
   * @param {Problem[]} list
   * @param {string} kind
   */
  function problems(title, list, kind) {
    const box = el("div", undefined, "problems problems-" + kind);
    box.dataset.problems = kind;
    box.appendChild(el("h3", title + " (" + list.length + ")"));
    const ul = el("ul");
    for (const p of list) {
      const li = el("li");
      li.appendChild(el("code", p.where));
      li.appendChild(document.createTextNode(": " + p.reason));
      ul.appendChild(li);
    }
    box.appendChild(ul);
    return box;
  }

  async function start() {
    if (!selection || busy) return;
    startButton.disabled = true;
    const answer = await api(urls.start, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body()),
    });
    if (!answer.ok) {
      if (answer.body && answer.body.plan) renderPlan(answer.body.plan, answer.body.errors || []);
      else previewBox.replaceChildren(el("p", describe(answer), "error"));
      return;
    }
    localStorage.setItem(storageKey, JSON.stringify({ id: answer.body.id, signature: signature(selection.list),
                                                      name: answer.body.name }));
    await run(answer.body);
  }

  /**
   * Send what the server still misses, make each slide, show what came of it.
   * @param {Session} session
   */
  async function run(session) {
    const s = /** @type {Selection} */ (selection);
    busy = true;
    startButton.disabled = true;
    renderPlan(session.plan, []);
    progressBox.hidden = false;
    const overall = /** @type {HTMLProgressElement} */ (el("progress"));
    overall.max = 1;
    overall.id = "import-overall";
    const overallNote = el("span", "", "note");
    const list = el("ul", undefined, "upload-list");
    list.id = "import-files";
    progressBox.replaceChildren(el("h2", "Import"), overall, overallNote, list);
    const parts = new Map(session.parts.map((p) => [p.path, p]));
    const total = session.parts.reduce((sum, p) => sum + p.size, 0) || 1;
    let sent = session.parts.reduce((sum, p) => sum + p.offset, 0);
    const showOverall = () => {
      overall.value = sent / total;
      overallNote.textContent = Math.round(100 * sent / total) + " % of " + human(total);
    };
    showOverall();
    /** @param {Part} part @param {(n: number) => void} onProgress */
    async function send(part, onProgress) {
      const file = s.archive && s.archive.name === part.path ? s.archive : s.files.get(part.path);
      if (!file || file.size !== part.size) throw new Error(part.path + " is not among the chosen files (or has changed).");
      const url = partUrl(String(session.id), part.id);
      let offset = part.offset;
      let retries = 0;
      while (offset < part.size) {
        const end = Math.min(part.size, offset + CHUNK_BYTES);
        let result;
        try {
          result = await api(url, {
            method: "PUT", body: file.slice(offset, end),
            headers: { "Content-Type": "application/octet-stream",
                       "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + part.size },
          });
        } catch {
          result = { ok: false, status: 0, body: null };
        }
        if (!result.ok) {
          if (++retries > MAX_RETRIES) throw new Error(describe(result));
          await new Promise((resolve) => setTimeout(resolve, 1000 * retries));
          const status = await api(url, { method: "GET" });
          if (!status.ok) throw new Error(describe(status));
          result = status;
        } else {
          retries = 0;
        }
        onProgress(result.body.offset - offset);
        offset = result.body.offset;
        part.offset = offset;
      }
    }
    for (const item of session.items) {
      const row = el("li");
      row.dataset.item = item.name;
      const bar = /** @type {HTMLProgressElement} */ (el("progress"));
      bar.max = 1;
      const note = el("span", "", "note");
      row.append(el("span", item.name, "file"), bar, note);
      list.appendChild(row);
      if (item.state !== "pending") {
        showItem(row, note, bar, item);
        continue;
      }
      const mine = (session.archive ? [session.archive] : [...item.files, ...(item.annotation ? [item.annotation] : [])])
        .map((path) => parts.get(path)).filter((p) => p !== undefined);
      const size = mine.reduce((sum, p) => sum + /** @type {Part} */ (p).size, 0) || 1;
      let done = mine.reduce((sum, p) => sum + /** @type {Part} */ (p).offset, 0);
      try {
        for (const part of mine) {
          await send(/** @type {Part} */ (part), (n) => {
            done += n;
            sent += n;
            bar.value = done / size;
            note.textContent = Math.round(100 * done / size) + " %";
            showOverall();
          });
        }
        note.textContent = "Making the slide…";
        const made = await api(urlWithId(pageUrlWith(urls.complete, session.id), item.position), { method: "POST" });
        if (!made.ok) throw new Error(describe(made));
        showItem(row, note, bar, made.body);
      } catch (error) {
        row.classList.add("failed");
        note.textContent = (error instanceof Error ? error.message : String(error)) +
          " Choose the same folder again to go on.";
        busy = false;
        return;
      }
    }
    sent = total;
    showOverall();
    overallNote.textContent = "Done: " + outcome(session.items.length, list) + ".";
    startButton.hidden = true;
    localStorage.removeItem(storageKey);
    busy = false;
  }

  /**
   * What came of the import's slides, in words ("5 slides: 4 created, 1 rejected").
   * @param {number} count
   * @param {HTMLElement} list
   */
  function outcome(count, list) {
    const states = Array.from(list.querySelectorAll("li[data-state]")).map((li) => /** @type {HTMLElement} */ (li).dataset.state);
    const counts = ["created", "skipped", "rejected"].map((state) => [state, states.filter((s) => s === state).length])
      .filter(([, n]) => n).map(([state, n]) => n + " " + state);
    return count + " slide" + (count === 1 ? "" : "s") + (counts.length ? ": " + counts.join(", ") : "");
  }

  /**
   * @param {HTMLElement} row
   * @param {HTMLElement} note
   * @param {HTMLProgressElement} bar
   * @param {Item} item
   */
  function showItem(row, note, bar, item) {
    bar.value = 1;
    row.classList.add(item.state === "created" ? "done" : item.state === "skipped" ? "skipped" : "failed");
    row.dataset.state = item.state;
    note.replaceChildren();
    if (item.state === "created") {
      note.append("Created in ");
      const link = /** @type {HTMLAnchorElement} */ (el("a", item.cohort));
      link.href = urlWithId(urls.cohort, item.cohort_id);
      note.append(link, item.annotated ? " with its annotation; the worker checks it now." : "; the worker checks it now.");
    } else {
      note.textContent = (item.state === "skipped" ? "Skipped: " : "Rejected: ") + item.reason;
    }
  }

  folderInput.addEventListener("change", () => choose(Array.from(folderInput.files || [])));
  zipInput.addEventListener("change", () => choose(Array.from(zipInput.files || [])));
  manifestInput.addEventListener("change", () => { if (lastFiles.length) choose(lastFiles); });
  form.addEventListener("change", () => { if (selection && !busy) preview(); });
  form.addEventListener("submit", (event) => { event.preventDefault(); });
  startButton.addEventListener("click", start);
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const items = event.dataTransfer ? Array.from(event.dataTransfer.items) : [];
    /** @type {File[]} */
    const files = [];
    for (const entry of items.map((i) => i.webkitGetAsEntry()).filter((e) => e !== null)) {
      await walk(/** @type {FileSystemEntry} */ (entry), files);
    }
    choose(files);
  });

  // An import interrupted earlier (a reload, a closed tab): say so, and how to go on or give it up.
  const stored = JSON.parse(localStorage.getItem(storageKey) || "null");
  if (stored) {
    api(pageUrlWith(urls.session, stored.id), { method: "GET" }).then((answer) => {
      if (!answer.ok || answer.body.done) { localStorage.removeItem(storageKey); return; }
      const left = answer.body.items.filter((/** @type {Item} */ i) => i.state === "pending").length;
      resumeBox.hidden = false;
      resumeBox.replaceChildren(el("span", "The import “" + answer.body.name + "” stopped with " + left + " slide" +
        (left === 1 ? "" : "s") + " to go. Choose the same folder or zip again to go on from where it stood. "));
      const forget = /** @type {HTMLButtonElement} */ (el("button", "Give it up", "secondary"));
      forget.type = "button";
      forget.addEventListener("click", async () => {
        await api(pageUrlWith(urls.session, stored.id), { method: "DELETE" });
        localStorage.removeItem(storageKey);
        resumeBox.hidden = true;
      });
      resumeBox.appendChild(forget);
    });
  }
}

const importer = document.getElementById("importer");
if (importer) initImporter(importer);
