// @ts-check
/* SUA Portal: the demo build's panel (base.html) follows the build. While `make demo` builds the demo in
 * the background, the panel is fetched again every few seconds (its data-poll URL, written by {% url %})
 * and put in place; on the start page the whole page is loaded again when the build reaches a new step,
 * so that what the step made (cohorts, the ensemble, the demo run) shows up in the page itself. */

const PERIOD_MS = 3000;

/** @param {HTMLElement} panel */
function follow(panel) {
  const url = panel.dataset.poll;
  if (!url) return;
  const onHome = document.body.dataset.page === "home";
  window.setTimeout(async () => {
    /** @type {HTMLElement | null} */
    let next = panel;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.ok) {
        const holder = document.createElement("div");
        holder.innerHTML = await response.text();
        next = holder.querySelector("#demo-build");
        if (onHome && next && next.dataset.step !== panel.dataset.step) {
          window.location.reload();
          return;
        }
        if (next) panel.replaceWith(next);
        else panel.remove();
      }
    } catch {
      // The server is restarting or busy: the next look may get through.
    }
    if (next) follow(next);
  }, PERIOD_MS);
}

const panel = document.getElementById("demo-build");
if (panel) follow(panel);
