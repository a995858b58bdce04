// @ts-check
/* SUA Portal: talking to the portal's API from the pages. Every URL comes from the page (data attributes
 * written by Django's {% url %}), never from this code: the API can move without the scripts changing. */

/** The CSRF token Django set as a cookie: unsafe requests (POST, PUT, DELETE) must echo it. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/**
 * A URL of one object from the page's template for it.
 * The templates reverse such URLs with the id 0 (no row has it: PostgreSQL ids start at 1), so the
 * last "/0/" path segment is where the object's id goes; a query string is kept.
 * @param {string} template e.g. "/api/heatmaps/0/regions/?flagged=1"
 * @param {number | string} id
 * @returns {string}
 */
export function urlWithId(template, id) {
  const query = template.indexOf("?");
  const path = query < 0 ? template : template.slice(0, query);
  const at = path.lastIndexOf("/0/");
  if (at < 0) throw new Error("The page gave no URL template with an id (…/0/…): " + template);
  return path.slice(0, at) + "/" + encodeURIComponent(String(id)) + "/" + template.slice(at + 3);
}

/**
 * A URL the page names in a data attribute of `element`; a page without it is a bug of the template.
 * @param {HTMLElement} element
 * @param {string} name the dataset key, e.g. "heatmapImage" for data-heatmap-image
 * @returns {string}
 */
export function pageUrl(element, name) {
  const url = element.dataset[name];
  if (!url) throw new Error("The page names no URL in data-" + name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()));
  return url;
}

/**
 * GET a JSON document as the signed-in user; a refusal or an error status rejects.
 * @param {string} url
 * @returns {Promise<any>}
 */
export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(response.statusText);
  return response.json();
}

/**
 * An API answer: whether it succeeded, its HTTP status (0: the connection failed) and its JSON body.
 * @typedef {{ ok: boolean, status: number, body: any }} ApiResult
 */

/**
 * Any request to the API with the CSRF token; the answer is read, never thrown.
 * @param {string} url
 * @param {RequestInit & { headers?: Record<string, string> }} [options]
 * @returns {Promise<ApiResult>}
 */
export async function api(url, options) {
  const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options, {
    headers: Object.assign({ "X-CSRFToken": csrfToken(), Accept: "application/json" }, (options || {}).headers),
  }));
  const body = await response.json().catch(() => null);  // an empty or non-JSON answer: no body
  return { ok: response.ok, status: response.status, body: body };
}

/**
 * What went wrong, in the server's words when it gave some.
 * @param {ApiResult} result
 * @returns {string}
 */
export function describe(result) {
  if (result.body && result.body.detail) return result.body.detail;
  if (result.body && typeof result.body === "object") {
    return Object.values(result.body).flat().join(" ");
  }
  return "The server answered " + result.status + ".";
}
