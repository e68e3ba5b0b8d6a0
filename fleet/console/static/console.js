"use strict";
// The console's only script: no data goes into code, every value arrives as escaped HTML.

// The link's ?token= has set the cookie: keep it out of the address bar and history.
(function dropToken() {
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();

// A run in flight: fetch its changing part every second until it has finished.
(function follow() {
  const live = document.getElementById("live");
  if (!live || live.dataset.live !== "1") return;
  const source = live.dataset.src;
  async function refresh() {
    try {
      const resp = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (resp.ok) {
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.getElementById("live");
        const current = document.getElementById("live");
        if (fresh && current) {
          current.replaceWith(document.adoptNode(fresh));
          if (fresh.dataset.live !== "1") return;
        }
      }
    } catch (err) {
      // the console restarted or the network blinked: try again
    }
    window.setTimeout(refresh, 1000);
  }
  window.setTimeout(refresh, 1000);
})();
