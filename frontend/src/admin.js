// @ts-check
/* SUA Portal: the admin workspace's forms (projects, members, cohorts). Each form names the API call it
 * makes in data attributes written by Django's {% url %}: data-api (the URL), data-method (POST, PATCH,
 * DELETE), data-confirm (a question asked first), data-then ("reload", or "go" to data-go with the
 * answer's id in place of the 0). Its fields become the JSON body: numbers from number inputs and
 * selects marked data-number, booleans from checkboxes (data-list: the checked values as a list of ids),
 * a blank field marked data-null is null, other blank fields are left out. A refusal shows the server's
 * message in the form (role=alert) and changes nothing on the page. */

import { api, describe, urlWithId } from "./http.js";

/**
 * The JSON body of a form: its named, enabled fields as described above.
 * @param {HTMLFormElement} form
 * @returns {Record<string, unknown>}
 */
export function formBody(form) {
  /** @type {Record<string, unknown>} */
  const body = form.dataset.body ? JSON.parse(form.dataset.body) : {};
  for (const element of Array.from(form.elements)) {
    if (!(element instanceof HTMLInputElement || element instanceof HTMLSelectElement
          || element instanceof HTMLTextAreaElement)) continue;
    const name = element.name;
    if (!name || element.disabled || "skip" in element.dataset) continue;
    if (element instanceof HTMLInputElement && element.type === "checkbox") {
      if ("list" in element.dataset) {
        const list = /** @type {number[]} */ (body[name] || []);
        if (element.checked) list.push(Number(element.value));
        body[name] = list;
      } else {
        body[name] = element.checked;
      }
      continue;
    }
    const raw = element.value.trim();
    if (raw === "") {
      if ("null" in element.dataset) body[name] = null;
      continue;
    }
    const numeric = (element instanceof HTMLInputElement && element.type === "number") || "number" in element.dataset;
    body[name] = numeric ? Number(raw) : raw;
  }
  return body;
}

/**
 * Where a form says what went wrong (made on first use, at the form's end).
 * @param {HTMLElement} form
 * @returns {HTMLElement}
 */
export function errorBox(form) {
  let box = /** @type {HTMLElement | null} */ (form.querySelector(":scope > .form-error"));
  if (!box) {
    box = document.createElement("p");
    box.className = "form-error error";
    box.setAttribute("role", "alert");
    form.appendChild(box);
  }
  return box;
}

/**
 * Send one form to the API; on success do what data-then says, else show the message.
 * @param {HTMLFormElement} form
 */
async function send(form) {
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) return;
  const url = form.dataset.api;
  if (!url) throw new Error("The form names no API URL in data-api");
  const method = (form.dataset.method || "POST").toUpperCase();
  const box = errorBox(form);
  box.textContent = "";
  const buttons = Array.from(form.querySelectorAll("button"));
  buttons.forEach((button) => { button.disabled = true; });
  /** @type {RequestInit & { headers?: Record<string, string> }} */
  const options = { method: method };
  if (method !== "DELETE") {
    options.headers = { "Content-Type": "application/json" };
    options.body = JSON.stringify(formBody(form));
  }
  let result;
  try {
    result = await api(url, options);
  } catch {
    result = { ok: false, status: 0, body: { detail: "The server could not be reached; nothing was changed." } };
  }
  buttons.forEach((button) => { button.disabled = false; });
  if (!result.ok) {
    box.textContent = describe(result);
    form.classList.add("refused");
    return;
  }
  form.classList.remove("refused");
  if (form.dataset.then === "go" && form.dataset.go && result.body && result.body.id) {
    window.location.assign(urlWithId(form.dataset.go, result.body.id));
  } else {
    window.location.reload();
  }
}

for (const form of Array.from(document.querySelectorAll("form[data-api]"))) {
  if (!(form instanceof HTMLFormElement)) continue;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(form);
  });
  // A toggle saves as soon as it changes.
  for (const input of Array.from(form.querySelectorAll("[data-autosubmit]"))) {
    input.addEventListener("change", () => form.requestSubmit());
  }
}

// "Edit" opens a cohort's edit row; "Cancel" closes it again.
for (const button of Array.from(document.querySelectorAll("button[data-toggle]"))) {
  if (!(button instanceof HTMLButtonElement)) continue;
  button.addEventListener("click", () => {
    const target = document.getElementById(button.dataset.toggle || "");
    if (target) target.hidden = !target.hidden;
  });
}
