// Home page: the live streams and the recordings of recent broadcasts,
// refreshed every few seconds.
"use strict";
(function () {
  const list = document.getElementById("streams");
  const empty = document.getElementById("empty");
  const recordings = document.getElementById("recordings");
  const past = document.getElementById("past");

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

  function duration(seconds) {
    const s = Math.round(seconds), m = Math.floor(s / 60);
    return (m >= 60 ? Math.floor(m / 60) + ":" + String(m % 60).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0");
  }

  // a recording: no thumbnail (they are made from live segments only)
  function recordingCard(s) {
    const li = document.createElement("li");
    li.className = "card";
    const a = document.createElement("a");
    a.href = "/watch/" + encodeURIComponent(s.name);
    const title = document.createElement("strong");
    title.textContent = s.name;
    const meta = document.createElement("div");
    meta.className = "muted";
    meta.textContent = "Recorded " + new Date(s.recorded_at).toLocaleString() + " · " + duration(s.duration);
    a.append(title, meta);
    li.append(a);
    return li;
  }

  async function refresh() {
    try {
      const [live, recorded] = await Promise.all(["/api/streams", "/api/recordings"].map(async (u) => (await fetch(u)).json()));
      list.replaceChildren(...live.map(card));
      empty.hidden = live.length > 0;
      recordings.replaceChildren(...recorded.map(recordingCard));
      past.hidden = recorded.length === 0;
    } catch (e) { /* next round */ }
  }
  refresh();
  setInterval(refresh, 5000);
})();
