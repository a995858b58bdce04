// @ts-check
/* SUA Portal: the cohort page's annotation upload (admins), one per slide row. A file chosen in a row is
 * sent as the slide's ground truth; when the slide has one already the server refuses (409) with what is
 * there, and the row shows that message with a choice: replace it (the same file again with replace=true)
 * or keep it. Any other refusal shows the server's message; nothing on the slide changes then. */

import { api, describe, pageUrl, urlWithId } from "./http.js";

/**
 * Send `file` as the ground truth of the slide of `cell`'s row.
 * @param {string} url the slide's annotations URL
 * @param {File} file
 * @param {boolean} replace
 */
function send(url, file, replace) {
  const body = new FormData();
  body.set("file", file);
  if (replace) body.set("replace", "true");
  return api(url, { method: "POST", body: body });
}

/**
 * The row's Tumor cell as the slide now is (ground truth sets whether it has tumor).
 * @param {HTMLElement} cell the row's annotations cell
 * @param {string} slideUrl the slide's API URL
 */
async function showTumor(cell, slideUrl) {
  const row = cell.closest("tr");
  const tumor = row ? row.querySelector("td[data-role=tumor]") : null;
  if (!tumor) return;
  const result = await api(slideUrl, { method: "GET" });
  if (!result.ok) return;  // the next reload shows it
  const has = result.body.has_tumor;
  const mark = document.createElement("span");
  mark.className = has === null ? "muted" : has ? "tumor-yes" : "tumor-no";
  mark.textContent = has === null ? "unknown" : has ? "yes" : "no";
  tumor.replaceChildren(mark);
}

/**
 * @param {HTMLElement} cell the row's annotations cell (count, file input, note)
 * @param {string} url
 * @param {string} slideUrl the slide's API URL
 */
function initCell(cell, url, slideUrl) {
  const input = /** @type {HTMLInputElement} */ (cell.querySelector("input[type=file]"));
  const note = /** @type {HTMLElement} */ (cell.querySelector("[data-role=note]"));
  const count = /** @type {HTMLElement} */ (cell.querySelector("[data-role=count]"));

  /**
   * @param {string} text
   * @param {string} kind "ok", "error" or "" (neutral)
   */
  function say(text, kind) {
    note.className = "annotate-note small " + kind;
    note.textContent = text;
  }

  /**
   * @param {File} file
   * @param {boolean} replace
   */
  async function upload(file, replace) {
    say((replace ? "Replacing with " : "Reading ") + file.name + "…", "");
    let result;
    try {
      result = await send(url, file, replace);
    } catch {
      result = { ok: false, status: 0, body: { detail: "The server could not be reached; nothing was changed." } };
    }
    if (result.ok) {
      if (!replace) count.textContent = String(Number(count.textContent || "0") + 1);
      say((replace ? "Replaced: " : "Stored: ") + (result.body.original_filename || file.name) + " is the ground truth.", "ok");
      await showTumor(cell, slideUrl);
      return;
    }
    say(describe(result), "error");
    if (result.status === 409) {
      const replaceButton = document.createElement("button");
      replaceButton.type = "button";
      replaceButton.className = "secondary small";
      replaceButton.dataset.role = "replace";
      replaceButton.textContent = "Replace it with " + file.name;
      replaceButton.addEventListener("click", () => upload(file, true));
      const keep = document.createElement("button");
      keep.type = "button";
      keep.className = "link small";
      keep.textContent = "Keep the one there";
      keep.addEventListener("click", () => say("Kept the ground truth that was there.", ""));
      const choice = document.createElement("span");
      choice.className = "choice";
      choice.append(replaceButton, " ", keep);
      note.append(" ", choice);
    }
  }

  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    input.value = "";  // choosing the same file again fires "change" again
    if (file) upload(file, false);
  });
}

const table = document.getElementById("slides");
if (table && table.dataset.annotations) {
  const template = pageUrl(table, "annotations");
  const slideTemplate = pageUrl(table, "slide");
  for (const cell of Array.from(table.querySelectorAll("td[data-annotate]"))) {
    if (!(cell instanceof HTMLElement)) continue;
    const id = cell.dataset.annotate || "";
    initCell(cell, urlWithId(template, id), urlWithId(slideTemplate, id));
  }
}
