// The dashboard's own script: polls the page while it is shown (slower while hidden), shows
// times in the browser's zone, copies text, and guards the delete form. Pages read fine
// without it.
"use strict";

(function () {
  // The page says how often it is polled (the <body>'s data-poll-*-ms), shown and hidden.
  function pollInterval() {
    const data = document.body.dataset;
    return Number(document.hidden ? data.pollHiddenMs : data.pollVisibleMs);
  }
  let timer = null;

  function offsetText(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    const abs = Math.abs(minutes);
    const pad = (n) => String(n).padStart(2, "0");
    return "UTC" + sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  function localTimes(root) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    for (const element of root.querySelectorAll("time[data-local]")) {
      const date = new Date(element.getAttribute("datetime"));
      if (isNaN(date)) continue;
      const pad = (n) => String(n).padStart(2, "0");
      element.textContent = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" +
        pad(date.getDate()) + " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) +
        ":" + pad(date.getSeconds()) + " " + offsetText(date) + " (" + zone + ")";
    }
  }

  // A part of the page someone is working in is left alone until they are done.
  function inUse(element) {
    const active = document.activeElement;
    if (active && active !== document.body && element.contains(active) &&
        active.matches("input, textarea, select")) return true;
    return element.querySelector("[data-dirty]") !== null;
  }

  async function refresh() {
    try {
      const response = await fetch(location.href, {
        headers: { "X-Dashboard-Poll": "1" }, credentials: "same-origin", redirect: "error",
      });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const fresh of page.querySelectorAll("[data-live][id]")) {
        const current = document.getElementById(fresh.id);
        if (current && !inUse(current)) {
          current.replaceWith(document.importNode(fresh, true));
        }
      }
      document.title = page.title;
      localTimes(document);
    } catch (error) {
      // The service is away for a moment: the next poll tries again.
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, pollInterval());
  }

  document.addEventListener("input", (event) => {
    if (event.target.matches("input, textarea, select")) event.target.dataset.dirty = "1";
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent);
      button.textContent = "Copied";
    } catch (error) {
      window.getSelection().selectAllChildren(source);
    }
  });

  document.addEventListener("submit", (event) => {
    const guard = event.target.querySelector("[data-must-equal]");
    if (guard && guard.value.trim().toLowerCase() !== guard.dataset.mustEqual.toLowerCase()) {
      event.preventDefault();
      guard.setCustomValidity("Type the job's id to confirm.");
      guard.reportValidity();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
    schedule();
  });

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    if (document.querySelector("[data-live]")) schedule();
  });
})();
