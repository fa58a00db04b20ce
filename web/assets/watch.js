// Viewer page: hls.js in low-latency mode (native HLS where MSE is
// missing), quality menu, latency, offline/ended states with retry, chat.
// When the stream is not live but has a recording, it plays the recording
// as VOD from the start, and switches to live when a new broadcast starts.
// A viewer of a live that ends is offered its recording once it is served.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const src = "/live/" + encodeURIComponent(name) + "/index.m3u8";
  const video = $("video"), quality = $("quality"), golive = $("golive"), replay = $("replay");
  const dbg = { errors: [], hls: null, video };
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
    const res = await fetch("/api/streams/" + encodeURIComponent(name)).catch(() => null);
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
      hls = new Hls(recording ? { startPosition: 0, manifestLoadingMaxRetry: 4 }
        : { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, backBufferLength: 30, manifestLoadingMaxRetry: 4 });
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
    $("latency").textContent = "Latency " + hls.latency.toFixed(1) + " s";
    golive.hidden = !(hls.targetLatency && hls.latency > hls.targetLatency + 2);
  }, 1000);

  // viewer count, a new broadcast after the last one ended or while a
  // recording plays, and the recording of the live that ended here
  let ended = false;
  video.addEventListener("ended", () => { ended = true; over = !recording; });
  setInterval(async () => {
    const res = await fetch("/api/streams/" + encodeURIComponent(name)).catch(() => null);
    if (!res) return;
    const info = await res.json().catch(() => null);
    if (!info) return;
    $("viewers").textContent = (info.viewers || 0) + " watching";
    if ((ended || recording) && info.live) { ended = false; load(); }
    else if (over && !info.live && info.recording && replay.hidden) {
      replay.hidden = false;
      say("The stream has ended. Its recording is ready.");
    }
  }, 5000);

  if (window.LivegateChat) window.LivegateChat.mount($("chat"), { stream: name });
  load();
})();
