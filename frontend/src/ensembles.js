// @ts-check
/* SUA Portal: a project's ensembles page (admins). Each member's loss per epoch as a small SVG line (from
 * the history the training task records), followed while the ensemble trains; heatmaps computed for a
 * cohort with progress per slide and cancel; the import form's dry run shown before the real import; the
 * training form filled from the chosen recipe. Every URL comes from the page's data attributes. */

import { api, describe, getJSON, urlWithId } from "./http.js";

const POLL_MS = 2000;
const CURVE = { width: 180, height: 44, pad: 3 };
const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * One finished epoch of one member, as `analysis.training` reports it.
 * @typedef {{ epoch: number, train_loss: number, val_loss: number, val_dice: number, learning_rate: number }} Epoch
 */
/** @typedef {{ index: number, seed?: number | null, status?: string, history: Epoch[] }} Member */
/** @typedef {{ id: number, slide: number, slide_name: string, status: string, progress: number, failure_reason: string }} Heatmap */

/**
 * @param {Element} root
 * @param {string} selector
 * @returns {HTMLElement}
 */
function find(root, selector) {
  const element = root.querySelector(selector);
  if (!(element instanceof HTMLElement)) throw new Error("The page has no " + selector);
  return element;
}

/**
 * A number as the tables show it: three significant digits, or a dash.
 * @param {number | null | undefined} value
 */
function figure(value) {
  return typeof value === "number" && Number.isFinite(value) ? value.toPrecision(3) : "—";
}

/**
 * The loss per epoch of one member as a small SVG: training loss solid, validation loss dashed.
 * @param {Epoch[]} history
 * @returns {SVGSVGElement}
 */
export function lossCurve(history) {
  const svg = /** @type {SVGSVGElement} */ (document.createElementNS(SVG_NS, "svg"));
  svg.setAttribute("viewBox", `0 0 ${CURVE.width} ${CURVE.height}`);
  svg.setAttribute("width", String(CURVE.width));
  svg.setAttribute("height", String(CURVE.height));
  svg.setAttribute("class", "loss-curve");
  svg.setAttribute("role", "img");
  const last = history[history.length - 1];
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = last
    ? `Loss over ${history.length} epoch${history.length === 1 ? "" : "s"}: training ${figure(last.train_loss)}, validation ${figure(last.val_loss)}`
    : "No epoch finished yet";
  svg.setAttribute("aria-label", title.textContent);
  svg.appendChild(title);
  const values = history.flatMap((e) => [e.train_loss, e.val_loss]).filter((v) => Number.isFinite(v));
  if (!values.length) return svg;
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const x = (/** @type {number} */ i) => CURVE.pad + (history.length > 1 ? i / (history.length - 1) : 0.5) * (CURVE.width - 2 * CURVE.pad);
  const y = (/** @type {number} */ v) => CURVE.pad + (1 - (v - low) / span) * (CURVE.height - 2 * CURVE.pad);
  for (const [key, kind] of /** @type {const} */ ([["train_loss", "train"], ["val_loss", "val"]])) {
    const points = history.map((e, i) => [x(i), y(e[key])]).filter(([, v]) => Number.isFinite(v));
    if (!points.length) continue;
    const line = document.createElementNS(SVG_NS, points.length > 1 ? "polyline" : "circle");
    if (points.length > 1) {
      line.setAttribute("points", points.map(([a, b]) => a.toFixed(1) + "," + b.toFixed(1)).join(" "));
    } else {
      line.setAttribute("cx", String(points[0][0]));
      line.setAttribute("cy", String(points[0][1]));
      line.setAttribute("r", "2");
    }
    line.setAttribute("class", "loss-" + kind);
    svg.appendChild(line);
  }
  return svg;
}

/**
 * Fill one member row: epochs, latest loss and Dice, the curve.
 * @param {HTMLElement} row
 * @param {Epoch[]} history
 */
function showMember(row, history) {
  const last = history[history.length - 1];
  find(row, "[data-role=epochs]").textContent = String(history.length);
  find(row, "[data-role=loss]").textContent = figure(last && last.train_loss);
  find(row, "[data-role=dice]").textContent = figure(last && last.val_dice);
  if (history.length) {
    find(row, "[data-role=curve]").replaceChildren(lossCurve(history));
  } else {
    const none = document.createElement("span");
    none.className = "muted no-history";
    none.textContent = "no epochs recorded";
    find(row, "[data-role=curve]").replaceChildren(none);
  }
}

/**
 * The members table of an ensemble card, rebuilt from the API's members.
 * @param {HTMLElement} card
 * @param {Member[]} members
 */
function showMembers(card, members) {
  const body = find(card, "[data-role=members]");
  if (!members.length) return;
  body.replaceChildren(...members.map((member) => {
    const row = document.createElement("tr");
    row.dataset.member = String(member.index);
    row.innerHTML = '<td></td><td></td><td><span class="badge"></span></td><td class="num" data-role="epochs"></td>'
      + '<td class="num" data-role="loss"></td><td class="num" data-role="dice"></td><td class="curve" data-role="curve"></td>';
    const cells = row.querySelectorAll("td");
    cells[0].textContent = String(member.index);
    cells[1].textContent = member.seed === null || member.seed === undefined ? "—" : String(member.seed);
    const badge = find(row, ".badge");
    badge.textContent = member.status || "";
    badge.classList.add("badge-" + (member.status || "none"));
    showMember(row, member.history || []);
    return row;
  }));
}

/**
 * Follow a training ensemble: its members' epochs as they come; the page again when it is done.
 * @param {HTMLElement} card
 * @param {string} url the ensemble's API URL
 */
function followTraining(card, url) {
  window.setTimeout(async () => {
    try {
      const ensemble = await getJSON(url);
      showMembers(card, ensemble.members);
      if (ensemble.status !== "training") {
        window.location.reload();
        return;
      }
    } catch {
      // The server is busy or restarting: look again in a while.
    }
    followTraining(card, url);
  }, POLL_MS);
}

// --------------------------------------------------------------------------- heatmaps

/**
 * Every page of a list of the API.
 * @param {string} url
 * @returns {Promise<any[]>}
 */
async function allPages(url) {
  /** @type {any[]} */
  const rows = [];
  /** @type {string | null} */
  let next = url;
  while (next) {
    const page = await getJSON(next);
    rows.push(...page.results);
    next = page.next;
  }
  return rows;
}

/**
 * The heatmaps panel of one ready ensemble: compute for the chosen cohort, progress per slide, cancel.
 * @param {HTMLElement} card
 * @param {{ list: string, cancel: string }} urls
 */
function initHeatmaps(card, urls) {
  const form = /** @type {HTMLFormElement} */ (find(card, "form.compute-form"));
  const select = /** @type {HTMLSelectElement} */ (find(form, "select[name=cohort]"));
  const cancelAll = /** @type {HTMLButtonElement} */ (find(form, "[data-role=cancel-all]"));
  const summary = find(card, "[data-role=summary]");
  const error = find(card, "[data-role=error]");
  const table = find(card, "[data-role=heatmaps]");
  const body = find(table, "tbody");
  const runUrl = card.dataset.run || "";
  /** @type {Heatmap[]} */
  let shown = [];
  /** @type {number | undefined} */
  let timer;

  const active = () => shown.filter((h) => h.status === "queued" || h.status === "running");

  /** @param {Heatmap} heatmap */
  async function cancel(heatmap) {
    const result = await api(urlWithId(urls.cancel, heatmap.id), { method: "POST" });
    // Finished meanwhile: the next look shows how it ended.
    if (!result.ok && result.status !== 400) error.textContent = describe(result);
  }

  /** @param {Heatmap[]} heatmaps */
  function render(heatmaps) {
    shown = heatmaps;
    table.hidden = heatmaps.length === 0;
    body.replaceChildren(...heatmaps.map((heatmap) => {
      const row = document.createElement("tr");
      row.dataset.heatmap = String(heatmap.id);
      row.dataset.status = heatmap.status;
      row.innerHTML = '<td class="name"></td><td><span class="badge"></span></td>'
        + '<td><progress max="100"></progress> <span class="small"></span></td><td class="num"></td>';
      find(row, ".name").textContent = heatmap.slide_name;
      const badge = find(row, ".badge");
      badge.textContent = heatmap.status;
      badge.classList.add("badge-" + heatmap.status);
      if (heatmap.failure_reason) badge.title = heatmap.failure_reason;
      /** @type {HTMLProgressElement} */ (find(row, "progress")).value = heatmap.progress;
      find(row, "span.small").textContent = Math.round(heatmap.progress) + " %";
      if (heatmap.status === "queued" || heatmap.status === "running") {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link danger";
        button.textContent = "Cancel";
        button.addEventListener("click", async () => { await cancel(heatmap); refresh(); });
        row.lastElementChild?.appendChild(button);
      }
      return row;
    }));
    /** @type {Record<string, number>} */
    const counts = {};
    for (const heatmap of heatmaps) counts[heatmap.status] = (counts[heatmap.status] || 0) + 1;
    const order = ["done", "running", "queued", "cancelled", "failed"];
    summary.textContent = heatmaps.length
      ? order.filter((s) => counts[s]).map((s) => counts[s] + " " + s).join(", ") + " of " + heatmaps.length + " slides."
      : "No heatmaps of this cohort yet.";
    cancelAll.hidden = active().length === 0;
  }

  async function refresh() {
    window.clearTimeout(timer);
    const query = "?ensemble=" + encodeURIComponent(card.dataset.ensemble || "")
      + "&cohort=" + encodeURIComponent(select.value) + "&limit=1000";
    try {
      render(await allPages(urls.list + query));
    } catch (problem) {
      error.textContent = "The heatmaps could not be read: " + (problem instanceof Error ? problem.message : String(problem));
    }
    if (active().length) timer = window.setTimeout(refresh, POLL_MS);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const button = /** @type {HTMLButtonElement} */ (find(form, "[data-role=compute]"));
    button.disabled = true;
    const result = await api(runUrl, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ cohorts: [Number(select.value)] }),
    });
    button.disabled = false;
    if (!result.ok) {
      error.textContent = describe(result);
      return;
    }
    await refresh();
    if (Array.isArray(result.body) && result.body.length === 0) {
      summary.textContent += " Nothing new to compute: every ready slide has its heatmaps or is on its way.";
    }
  });
  cancelAll.addEventListener("click", async () => {
    cancelAll.disabled = true;
    await Promise.all(active().map(cancel));
    cancelAll.disabled = false;
    refresh();
  });
  select.addEventListener("change", () => { error.textContent = ""; refresh(); });
  refresh();
}

// --------------------------------------------------------------------------- import with its dry run

/**
 * The import form: "Check" sends the files with dry_run and shows what each member is; "Import" is
 * possible only after a dry run of exactly these inputs passed.
 * @param {HTMLFormElement} form
 */
function initImport(form) {
  const url = form.dataset.api || "";
  const report = find(form, "#dry-run");
  const error = find(form, ":scope > .form-error");
  const importButton = /** @type {HTMLButtonElement} */ (find(form, "[data-role=import]"));
  const checkButton = /** @type {HTMLButtonElement} */ (find(form, "[data-role=check]"));

  /** @param {boolean} dryRun */
  function body(dryRun) {
    const data = new FormData(form);
    data.set("project", form.dataset.project || "");
    if (dryRun) data.set("dry_run", "true");
    return data;
  }

  function reset() {
    importButton.disabled = true;
    report.replaceChildren();
    error.textContent = "";
  }

  /** @param {any} answer */
  function showDryRun(answer) {
    const table = document.createElement("table");
    table.className = "data compact";
    table.innerHTML = "<thead><tr><th>File</th><th>Format</th><th>Network</th><th class=\"num\">Parameters</th><th class=\"num\">Size</th></tr></thead><tbody></tbody>";
    const rows = find(table, "tbody");
    for (const member of answer.members) {
      const row = document.createElement("tr");
      const config = member.config || {};
      const network = config.growth_rate
        ? `FC-DenseNet (growth ${config.growth_rate}, blocks ${(config.down_blocks || []).join("-")})` : "—";
      for (const [text, numeric] of [[member.file, false], [member.format, false], [String(network), false],
        [Number(member.parameters).toLocaleString("en"), true],
        [(member.size_bytes / 1024 / 1024).toFixed(2) + " MB", true]]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        if (numeric) cell.className = "num";
        row.appendChild(cell);
      }
      rows.appendChild(row);
    }
    const note = document.createElement("p");
    note.className = "ok";
    note.setAttribute("role", "status");
    note.textContent = `Dry run passed: ${answer.members.length} member${answer.members.length === 1 ? "" : "s"} `
      + `segment a ${answer.tile_size} px tile. Nothing is stored yet.`;
    report.replaceChildren(note, table);
  }

  form.addEventListener("input", reset);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    reset();
    checkButton.disabled = true;
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "Checking each member on one tile…";
    report.replaceChildren(note);
    const result = await api(url, { method: "POST", body: body(true) });
    checkButton.disabled = false;
    if (!result.ok) {
      report.replaceChildren();
      error.textContent = describe(result);
      return;
    }
    showDryRun(result.body);
    importButton.disabled = false;
  });
  importButton.addEventListener("click", async () => {
    importButton.disabled = true;
    const result = await api(url, { method: "POST", body: body(false) });
    if (!result.ok) {
      error.textContent = describe(result);
      return;
    }
    window.location.reload();
  });
}

// --------------------------------------------------------------------------- training

/**
 * The training form: settings filled from the chosen recipe, sent as the ensemble's config.
 * @param {HTMLFormElement} form
 * @param {Record<string, any>} presets each recipe's values, and "_optimizers": { choices }
 */
function initTraining(form, presets) {
  const recipe = /** @type {HTMLSelectElement} */ (find(form, "select[name=preset]"));
  const error = find(form, ":scope > .form-error");
  const settings = /** @type {(HTMLInputElement | HTMLSelectElement)[]} */ (Array.from(form.querySelectorAll("[data-setting]")));
  for (const field of settings) {
    if (field instanceof HTMLSelectElement) {
      for (const choice of presets._optimizers.choices) field.add(new Option(choice, choice));
    }
  }
  function fill() {
    const values = presets[recipe.value] || {};
    for (const field of settings) field.value = values[field.name] === null || values[field.name] === undefined ? "" : String(values[field.name]);
  }
  recipe.addEventListener("change", fill);
  fill();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    /** @type {Record<string, unknown>} */
    const config = { preset: recipe.value };
    for (const field of settings) {
      if (field.value.trim() === "") continue;
      config[field.name] = field.dataset.setting === "choice" ? field.value : Number(field.value);
    }
    const result = await api(form.dataset.api || "", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        project: Number(form.dataset.project), name: String(data.get("name") || ""),
        cohorts: data.getAll("cohorts").map(Number), validation_cohorts: data.getAll("validation_cohorts").map(Number),
        config: config,
      }),
    });
    if (!result.ok) {
      error.textContent = describe(result);
      return;
    }
    window.location.reload();
  });
}

// --------------------------------------------------------------------------- the page

const section = document.getElementById("ensembles");
if (section) {
  const histories = JSON.parse(find(document.body, "#ensemble-histories").textContent || "{}");
  const urls = { list: section.dataset.heatmaps || "", cancel: section.dataset.cancel || "" };
  for (const card of Array.from(section.querySelectorAll("article.ensemble"))) {
    if (!(card instanceof HTMLElement)) continue;
    /** @type {Member[]} */
    const members = histories[card.dataset.ensemble || ""] || [];
    for (const member of members) {
      const row = card.querySelector(`tr[data-member="${member.index}"]`);
      if (row instanceof HTMLElement) showMember(row, member.history || []);
    }
    if (card.dataset.status === "training") followTraining(card, urlWithId(section.dataset.detail || "", card.dataset.ensemble || ""));
    if (card.dataset.status === "ready") initHeatmaps(card, urls);
  }
}
const importForm = document.getElementById("import-form");
if (importForm instanceof HTMLFormElement) initImport(importForm);
const trainForm = document.getElementById("train-form");
if (trainForm instanceof HTMLFormElement) {
  initTraining(trainForm, JSON.parse(find(document.body, "#training-presets").textContent || "{}"));
}
