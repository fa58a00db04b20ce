// Home page: the live streams and the recordings of recent broadcasts,
// refreshed every few seconds.
"use strict";
(function () {
  const list = document.getElementById("streams");
  const empty = document.getElementById("empty");
  const recordings = document.getElementById("recordings");
  const past = document.getElementById("past");

  // clock formats seconds as m:ss or h:mm:ss
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds)), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0");
  }

  // a card linking to the watch page, with the stream's thumbnail
  function card(name, text) {
    const li = document.createElement("li");
    li.className = "card";
    const a = document.createElement("a");
    a.href = "/watch/" + encodeURIComponent(name);
    const img = document.createElement("img");
    img.alt = "";
    img.src = "/live/" + encodeURIComponent(name) + "/thumb.jpg?t=" + Date.now();
    img.onerror = () => { img.removeAttribute("src"); };
    a.append(img);
    const title = document.createElement("strong");
    title.textContent = name;
    const meta = document.createElement("div");
    meta.className = "muted";
    meta.textContent = text;
    a.append(title, meta);
    li.append(a);
    return li;
  }

  async function refresh() {
    try {
      const [live, recorded] = await Promise.all(["/api/streams", "/api/recordings"].map(async (u) => (await fetch(u)).json()));
      list.replaceChildren(...live.map((s) => card(s.name, s.viewers + " watching · live for " + clock((Date.now() - new Date(s.started_at).getTime()) / 1000))));
      empty.hidden = live.length > 0;
      recordings.replaceChildren(...recorded.map((s) => card(s.name, "Recorded " + new Date(s.recorded_at).toLocaleString() + " · " + clock(s.duration))));
      past.hidden = recorded.length === 0;
    } catch (e) { /* next round */ }
  }
  refresh();
  setInterval(refresh, 5000);
})();
