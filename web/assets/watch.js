// Viewer page: hls.js in low-latency mode (native HLS where MSE is
// missing), quality menu, latency, offline/ended states with retry, chat.
// When the stream is not live but has a recording, it plays the recording
// as VOD from the start, and switches to live when a new broadcast starts.
// A viewer of a live that ends is offered its recording once it is served.
// Latency: the gateway dates segments (#EXT-X-PROGRAM-DATE-TIME) by the
// broadcaster's capture clock, so now - the date of the frame shown is the
// latency from camera to screen; the page shows it, reports it to the
// gateway (POST /api/streams/{stream}/latency, whose answers also give the
// gateway's clock) and steers hls.js to LIVE_TARGET from the playlist edge.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const name = decodeURIComponent(location.pathname.split("/").pop());
  // A view token (?token=) goes on every request: playlists fetched with it
  // carry it on every URI inside, so hls.js needs it only here.
  const token = new URLSearchParams(location.search).get("token") || "";
  const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  const src = withToken("/live/" + encodeURIComponent(name) + "/index.m3u8");
  const api = withToken("/api/streams/" + encodeURIComponent(name));
  const video = $("video"), quality = $("quality"), golive = $("golive"), replay = $("replay");
  const dbg = { errors: [], hls: null, video, glass: null };
  // Distance from the playlist's live edge the page plays at, seconds: the
  // gateway lists a part about 0.2 s after its capture, so the picture is
  // about LIVE_TARGET + 0.2 s behind the camera.
  const LIVE_TARGET = 0.6;
  window.__livegate = dbg;
  let hls = null, retry = null;
  let recording = null; // the API's description of the recording playing, or null when live
  let over = false; // the live playing (or last loaded) has ended

  $("title").textContent = name;
  document.title = name + " · livegate";
  function say(text) { $("state").textContent = text; }
  function recordingText() {
    const at = new Date(recording.recorded_at);
    return "Recording of " + name + (isNaN(at) ? "" : " from " + at.toLocaleString());
  }

  function scheduleRetry(text) {
    say(text);
    clearTimeout(retry);
    retry = setTimeout(load, 3000);
  }

  function fillLevels() {
    const cur = quality.value;
    const opts = [new Option("Auto", "-1")];
    hls.levels.forEach((l, i) => opts.push(new Option(l.height + "p" + (l.bitrate ? " · " + Math.round(l.bitrate / 1000) + " kbit/s" : ""), String(i))));
    quality.replaceChildren(...opts);
    quality.value = cur && Number(cur) < hls.levels.length ? cur : "-1";
  }

  async function load() {
    const res = await fetch(api).catch(() => null);
    if (res && (res.status === 401 || res.status === 403)) {
      const why = await res.json().catch(() => ({}));
      dbg.errors.push("private:" + why.error);
      recording = null;
      scheduleRetry(why.error === "token_expired" ? "This stream is private, and your link has expired: ask for a new one."
        : "This stream is private: open it with the link you were given.");
      return;
    }
    if (!res || !res.ok) { recording = null; scheduleRetry("Offline. Waiting for the stream to start…"); return; }
    const info = await res.json();
    $("viewers").textContent = info.viewers + " watching";
    recording = !info.live && info.recording ? info : null;
    dbg.recording = !!recording;
    over = !info.live && !recording;
    replay.hidden = true;
    if (recording) say(recordingText());
    else if (!info.live && info.ended_at) say("The stream has ended.");
    else say("Starting…");
    if (window.Hls && Hls.isSupported()) {
      if (hls) hls.destroy();
      // live: hls.js starts LIVE_TARGET from the edge; a stall adds only
      // 0.1 s to its target (steer() takes that back), and it jumps back
      // to the edge when more than 4 s behind. Its own rate control stays
      // off (maxLiveSyncPlaybackRate 1): more than a second from its
      // target it would hold the rate at 1 against steer()
      hls = new Hls(recording ? { startPosition: 0, manifestLoadingMaxRetry: 4 }
        : { lowLatencyMode: true, liveSyncDuration: LIVE_TARGET, liveMaxLatencyDuration: 4, liveSyncOnStallIncrease: 0.1,
          maxLiveSyncPlaybackRate: 1, backBufferLength: 30, manifestLoadingMaxRetry: 4 });
      dbg.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => { fillLevels(); video.play().catch(() => {}); });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
        const l = hls.levels[d.level];
        say((recording ? recordingText() + " · " : "") + (hls.autoLevelEnabled ? "Auto · " : "") + "playing " + l.height + "p");
      });
      hls.on(Hls.Events.ERROR, (_, d) => {
        if (!d.fatal) return;
        dbg.errors.push(d.type + ":" + d.details);
        hls.destroy(); hls = null;
        scheduleRetry("Stream unavailable, retrying…");
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
      video.play().catch(() => {});
    } else {
      say("This browser cannot play HLS.");
    }
  }

  quality.addEventListener("change", () => { if (hls) hls.currentLevel = Number(quality.value); });
  replay.addEventListener("click", load);
  golive.addEventListener("click", () => { if (hls && hls.liveSyncPosition) video.currentTime = hls.liveSyncPosition; });
  video.addEventListener("ended", () => say(recording ? "End of the recording." : "The stream has ended."));
  setInterval(() => {
    if (recording) { golive.hidden = true; $("latency").textContent = ""; return; }
    if (!hls || hls.latency === undefined || !isFinite(hls.latency)) return;
    const g = glass();
    $("latency").textContent = "Latency " + (g !== null ? g : hls.latency).toFixed(1) + " s";
    golive.hidden = !(hls.targetLatency && hls.latency > hls.targetLatency + 2);
  }, 1000);

  // The gateway's clock minus ours, ms, from the report answer with the
  // shortest round trip (NTP's estimate); null before the first answer.
  let offset = null, bestRTT = Infinity, dated = true;
  // glass is the latency from camera to screen, seconds, or null when the
  // playlist has no dates or the clocks are not compared yet.
  function glass() {
    if (!hls || offset === null || !dated || video.paused) return null;
    const d = hls.playingDate;
    if (!d || isNaN(d.getTime())) return null;
    const v = (Date.now() + offset - d.getTime()) / 1000;
    dbg.glass = v;
    return v > 0 && v < 60 ? v : null;
  }

  // steer keeps the player near LIVE_TARGET from the edge: hls.js itself
  // plays faster only with over a second buffered, which a sub-second
  // target never has, and it starts where the edge was before its start
  // took a second or more. A little faster while behind and buffered, a little
  // slower when the buffer runs low (a stall costs more than a slow
  // moment), and after a stall the target back where it was.
  let stalls = 0, lastTime = -1, movedAt = 0;
  setInterval(() => {
    if (!hls || recording || video.paused || !hls.media) return;
    const lat = hls.latency, b = video.buffered, now = performance.now();
    let ahead = 0;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= video.currentTime + 0.1 && video.currentTime <= b.end(i)) ahead = b.end(i) - video.currentTime;
    // far behind (a slow start, a stall) with the live position
    // buffered: jump there rather than play fast for many seconds
    const sync = hls.liveSyncPosition;
    if (lat > LIVE_TARGET + 1 && sync && sync > video.currentTime) {
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) <= sync && sync + 0.2 < b.end(i)) { video.currentTime = sync; return; }
      }
    }
    // stuck for 2 s with nothing buffered ahead and the live position
    // further on: the segments it waits for may be gone (they left with a
    // gateway that stopped, and the one that took the stream over goes on
    // after a hole, where hls.js finds nothing to load): go live
    if (video.currentTime !== lastTime) { lastTime = video.currentTime; movedAt = now; }
    else if (ahead < 0.1 && sync && sync > video.currentTime + 1 && now - movedAt > 2000 &&
      hls.latestLevelDetails && hls.latestLevelDetails.live && !video.ended) {
      video.currentTime = sync; movedAt = now; dbg.jumps = (dbg.jumps || 0) + 1; return;
    }
    let rate = 1;
    if (ahead < 0.15) rate = 0.95;
    else if (lat > LIVE_TARGET + 0.5 && ahead > 0.4) rate = 1.25;
    else if (lat > LIVE_TARGET + 0.15 && ahead > 0.3) rate = 1.1;
    if (video.playbackRate !== rate) video.playbackRate = rate;
    if (hls.targetLatency > LIVE_TARGET + 0.05 && ++stalls > 20) { hls.targetLatency = LIVE_TARGET; stalls = 0; }
  }, 250);

  // report sends the latency (or, the first time, only asks for the clock)
  // and schedules the next report when the gateway says.
  let reportTimer = null;
  async function report() {
    clearTimeout(reportTimer);
    let next = 5000;
    try {
      const g = glass();
      const body = g !== null ? JSON.stringify({ latency: Math.round(g * 1000) / 1000 }) : "{}";
      const t0 = Date.now();
      const res = await fetch("/api/streams/" + encodeURIComponent(name) + "/latency" + location.search,
        { method: "POST", body, headers: { "Content-Type": "application/json" }, cache: "no-store" });
      const t1 = Date.now();
      if (res.ok) {
        const a = await res.json();
        dated = true;
        if (t1 - t0 < bestRTT) { bestRTT = t1 - t0; offset = a.now - (t0 + t1) / 2; }
        next = (a.interval || 5) * 1000;
      } else if (res.status === 429) {
        next = (Number(res.headers.get("Retry-After")) || 5) * 1000;
      } else if (res.status === 409) {
        dated = false; // the publisher sends no capture clock: hls.js's own estimate only
        next = 30000;
      } else {
        next = 30000;
      }
    } catch (e) { next = 30000; }
    reportTimer = setTimeout(report, next);
  }
  video.addEventListener("playing", () => { if (!recording && !reportTimer) report(); });

  // viewer count, a new broadcast after the last one ended or while a
  // recording plays, and the recording of the live that ended here
  let ended = false;
  video.addEventListener("ended", () => { ended = true; over = !recording; });
  setInterval(async () => {
    const res = await fetch(api).catch(() => null);
    if (!res || !res.ok) return;
    const info = await res.json().catch(() => null);
    if (!info) return;
    $("viewers").textContent = (info.viewers || 0) + " watching";
    if ((ended || recording) && info.live) { ended = false; load(); }
    else if (over && !info.live && info.recording && replay.hidden) {
      replay.hidden = false;
      say("The stream has ended. Its recording is ready.");
    }
  }, 5000);

  if (window.LivegateChat) window.LivegateChat.mount($("chat"), { stream: name, token });
  load();
})();
