// Home page: the live streams, refreshed every few seconds.
"use strict";
(function () {
  const list = document.getElementById("streams");
  const empty = document.getElementById("empty");

  function since(t) {
    const s = Math.max(0, Math.floor((Date.now() - new Date(t).getTime()) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(sec).padStart(2, "0");
  }

  function card(s) {
    const li = document.createElement("li");
    li.className = "card";
    const a = document.createElement("a");
    a.href = "/watch/" + encodeURIComponent(s.name);
    const img = document.createElement("img");
    img.alt = "";
    img.src = "/live/" + encodeURIComponent(s.name) + "/thumb.jpg?t=" + Date.now();
    img.onerror = () => { img.removeAttribute("src"); };
    const title = document.createElement("strong");
    title.textContent = s.name;
    const meta = document.createElement("div");
    meta.className = "muted";
    meta.textContent = s.viewers + " watching · live for " + since(s.started_at);
    a.append(img, title, meta);
    li.append(a);
    return li;
  }

  async function refresh() {
    try {
      const res = await fetch("/api/streams");
      const streams = await res.json();
      list.replaceChildren(...streams.map(card));
      empty.hidden = streams.length > 0;
    } catch (e) { /* next round */ }
  }
  refresh();
  setInterval(refresh, 5000);
})();
