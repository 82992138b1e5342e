// mailprobe console: live parts (the overview's table, a monitor page's state, history and charts)
// fetched every 5 s, and confirmation of deletes. No framework; the pages work without this
// script, only without live updates.
"use strict";

const POLL_MS = 5000;

function live() {
  const box = document.getElementById("live");
  if (!box) return;
  const refresh = async () => {
    if (document.hidden) return;
    try {
      const r = await fetch(box.dataset.src + window.location.search, {
        credentials: "same-origin", headers: { Accept: "text/html" }, redirect: "manual",
      });
      if (r.status === 401) { window.location.assign("/console/login"); return; }
      if (r.ok) box.innerHTML = await r.text();
    } catch (e) {
      // Offline for a moment: the next tick tries again.
    }
  };
  window.setInterval(refresh, POLL_MS);
}

function confirms() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
}

live();
confirms();
