// @ts-check
/* SUA Portal: the cohort page. Slides are uploaded in resumable chunks (a dropped connection resumes from
 * what the server has), and the page looks again while a worker is still checking slides. The URLs come
 * from the uploader's data attributes. */

import { api, describe, pageUrl, urlWithId } from "./http.js";

// Bytes per PUT: small enough to resume cheaply, large enough that a slide of gigabytes takes few requests.
const CHUNK_BYTES = 8 * 1024 * 1024;
let uploading = false;

/**
 * The URLs of a resumable upload, from the uploader's data attributes.
 * @typedef {{ start: string, upload: string, complete: string }} UploadUrls
 *   start: POST here to begin one (this cohort); upload and complete: templates with the upload's id as 0
 */

/**
 * Send one file: start an upload, PUT its chunks (resuming after errors), then ask the server to check it.
 * @param {UploadUrls} urls
 * @param {File} file
 * @param {HTMLElement} row the file's row in the upload list (a progress bar and a note)
 * @returns {Promise<{ name: string }>} the stored slide
 */
async function uploadFile(urls, file, row) {
  const bar = /** @type {HTMLProgressElement} */ (row.querySelector("progress"));
  const note = /** @type {HTMLElement} */ (row.querySelector(".note"));
  const start = await api(urls.start, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ filename: file.name, size: file.size }),
  });
  if (!start.ok) throw new Error(describe(start));
  const url = urlWithId(urls.upload, start.body.id);
  /** @type {number} */
  let offset = start.body.offset;
  let retries = 0;
  while (offset < file.size) {
    const end = Math.min(file.size, offset + CHUNK_BYTES);
    let result;
    try {
      result = await api(url, {
        method: "PUT",
        headers: { "Content-Type": "application/octet-stream",
                   "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + file.size },
        body: file.slice(offset, end),
      });
    } catch {
      result = { ok: false, status: 0, body: null };
    }
    if (result.ok) {
      offset = result.body.offset;
      retries = 0;
    } else {
      // Resume from what the server has (a dropped connection keeps what arrived).
      if (++retries > 5) throw new Error(describe(result));
      note.textContent = "Connection trouble, resuming…";
      await new Promise((resolve) => setTimeout(resolve, 1000 * retries));
      const status = await api(url, { method: "GET" });
      if (!status.ok) throw new Error(describe(status));
      offset = status.body.offset;
    }
    bar.value = offset / file.size;
    note.textContent = Math.round(100 * offset / file.size) + " %";
  }
  note.textContent = "Checking the file…";
  const done = await api(urlWithId(urls.complete, start.body.id), { method: "POST" });
  if (!done.ok) throw new Error(describe(done));
  return done.body;
}

/**
 * The drop zone and file chooser of the cohort page: each file in turn, then the page again with them.
 * @param {HTMLElement} section the uploader, carrying the upload URLs
 */
function initUploader(section) {
  /** @type {UploadUrls} */
  const urls = { start: pageUrl(section, "start"), upload: pageUrl(section, "upload"),
                 complete: pageUrl(section, "complete") };
  const input = /** @type {HTMLInputElement} */ (document.getElementById("upload-input"));
  const list = /** @type {HTMLElement} */ (document.getElementById("upload-list"));
  const drop = /** @type {HTMLElement} */ (section.querySelector(".drop"));
  /** @param {File[]} files */
  async function handle(files) {
    let stored = 0;
    uploading = true;
    for (const file of files) {
      const row = document.createElement("li");
      row.innerHTML = '<span class="file"></span><progress max="1" value="0"></progress><span class="note"></span>';
      const name = /** @type {HTMLElement} */ (row.querySelector(".file"));
      const note = /** @type {HTMLElement} */ (row.querySelector(".note"));
      name.textContent = file.name;
      list.appendChild(row);
      try {
        const slide = await uploadFile(urls, file, row);
        row.classList.add("done");
        note.textContent = "Stored as " + slide.name + "; the worker checks it now.";
        stored += 1;
      } catch (error) {
        row.classList.add("failed");
        note.textContent = error instanceof Error ? error.message : String(error);
      }
    }
    uploading = false;
    if (stored) setTimeout(() => window.location.reload(), 1500);
  }
  input.addEventListener("change", () => handle(Array.from(input.files || [])));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    handle(Array.from(event.dataTransfer ? event.dataTransfer.files : []));
  });
}

const uploader = document.getElementById("uploader");
if (uploader) initUploader(uploader);
// Slides still being checked by a worker: look again in a while (never in the middle of an upload).
const table = document.getElementById("slides");
if (table && Number(table.dataset.checking) > 0) {
  setTimeout(function refresh() {
    if (uploading) setTimeout(refresh, 5000); else window.location.reload();
  }, 8000);
}
