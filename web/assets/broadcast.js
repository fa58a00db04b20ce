// Broadcaster page: camera and microphone to MediaRecorder to the
// /ingest/{stream} WebSocket. Query: stream, key, autostart=1.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const ui = { name: $("name"), key: $("key"), camera: $("camera"), mic: $("mic"), quality: $("quality"),
    go: $("go"), stop: $("stop"), state: $("state"), preview: $("preview"), share: $("share") };
  const TYPES = ["video/webm;codecs=h264,opus", "video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus",
    "video/webm", "video/mp4;codecs=avc1,mp4a.40.2", "video/mp4"];
  const BITRATE = { 360: 800e3, 480: 1200e3, 720: 2500e3, 1080: 4500e3 };
  const ERRORS = {
    key_required: "This gateway needs a publish key.", key_wrong: "The publish key is wrong.",
    busy: "Someone is already live on this stream name.", unsupported_media: "The gateway cannot read this browser's video format.",
    undecodable: "The gateway could not decode the video.", transcoder_failed: "The gateway's encoder failed.",
    overrun: "The gateway could not keep up with the upload.", frame_too_big: "A piece of video was too big for the gateway.",
    idle: "Nothing was sent for too long.", replaced: "Another window took over this stream.",
  };

  let media = null, ws = null, recorder = null, session = "", live = false, startedAt = 0;
  let sentBytes = 0, lastSent = 0, reconnects = 0;
  const state = { mime: "" };
  window.__livegate = { state, status: null, errors: [] };

  ui.name.value = params.get("stream") || "stream" + Math.floor(Math.random() * 1e4);
  ui.key.value = params.get("key") || "";

  function say(text, cls) { ui.state.textContent = text; ui.state.className = cls || ""; }
  function pickType() { return TYPES.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || ""; }

  async function listDevices() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      for (const [sel, kind] of [[ui.camera, "videoinput"], [ui.mic, "audioinput"]]) {
        const cur = sel.value;
        sel.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => {
          const o = document.createElement("option");
          o.value = d.deviceId; o.textContent = d.label || kind + " " + (i + 1);
          return o;
        }));
        if (kind === "audioinput") { const o = document.createElement("option"); o.value = "none"; o.textContent = "No microphone"; sel.append(o); }
        if (cur) sel.value = cur;
      }
    } catch (e) { /* no devices yet */ }
  }

  async function openMedia() {
    const h = Number(ui.quality.value);
    const video = { height: { ideal: h }, width: { ideal: Math.round(h * 16 / 9) }, frameRate: { ideal: 30 } };
    if (ui.camera.value) video.deviceId = { exact: ui.camera.value };
    const wantAudio = ui.mic.value !== "none";
    const audio = wantAudio ? (ui.mic.value ? { deviceId: { exact: ui.mic.value } } : true) : false;
    try {
      return await navigator.mediaDevices.getUserMedia({ video, audio });
    } catch (e) {
      if (!audio) throw e;
      const m = await navigator.mediaDevices.getUserMedia({ video });
      say("Microphone unavailable (" + e.name + "): going live without sound.", "state-error");
      return m;
    }
  }

  function connect() {
    const name = ui.name.value.trim();
    const q = new URLSearchParams();
    if (ui.key.value) q.set("key", ui.key.value);
    if (session) q.set("session", session);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/ingest/" + encodeURIComponent(name) + "?" + q);
    ws.binaryType = "arraybuffer";
    let lastError = null;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "hello", mime: state.mime }));
      recorder = new MediaRecorder(media, { mimeType: state.mime, videoBitsPerSecond: BITRATE[ui.quality.value] || 2500e3, audioBitsPerSecond: 128e3 });
      recorder.ondataavailable = (e) => { if (e.data && e.data.size && ws.readyState === 1) { ws.send(e.data); sentBytes += e.data.size; } };
      recorder.start(100);
      say(reconnects ? "Reconnected, live again." : "Connected, starting…", "state-live");
    };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "status") {
        session = m.session;
        window.__livegate.status = m;
        $("s-speed").textContent = m.speed ? m.speed.toFixed(2) + "×" : "–";
        $("s-viewers").textContent = m.viewers;
        if (m.state === "live" && !startedAt) startedAt = Date.now();
        if (m.state === "live") say(m.lagging ? "Live, but the gateway is behind." : "Live.", "state-live");
      } else if (m.type === "error") {
        lastError = m;
        window.__livegate.errors.push(m);
      }
    };
    ws.onclose = (e) => {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      recorder = null;
      if (!live) return;
      if (lastError && lastError.code !== "idle") {
        stop();
        say((ERRORS[lastError.code] || lastError.message) + " (" + lastError.code + ")", "state-error");
        return;
      }
      reconnects++;
      say("Connection lost, reconnecting…", "state-error");
      setTimeout(() => { if (live) connect(); }, 1000);
    };
  }

  async function start() {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(ui.name.value.trim())) { say("Stream names use letters, digits, _ and -, up to 64.", "state-error"); return; }
    state.mime = pickType();
    if (!state.mime) { say("This browser cannot record video (no MediaRecorder).", "state-error"); return; }
    try {
      media = await openMedia();
    } catch (e) {
      say("Camera unavailable: " + e.name + ". Allow the camera and try again.", "state-error");
      return;
    }
    ui.preview.srcObject = media;
    listDevices();
    $("s-mime").textContent = state.mime;
    const watch = location.origin + "/watch/" + encodeURIComponent(ui.name.value.trim());
    ui.share.href = watch; ui.share.textContent = watch;
    live = true; session = ""; reconnects = 0; startedAt = 0; sentBytes = 0; lastSent = 0;
    ui.go.disabled = true; ui.stop.disabled = false;
    connect();
  }

  function stop() {
    live = false;
    if (recorder && recorder.state !== "inactive") recorder.stop();
    if (ws && ws.readyState <= 1) ws.close(1000, "done");
    if (media) media.getTracks().forEach((t) => t.stop());
    ui.go.disabled = false; ui.stop.disabled = true;
    say("Not live.");
  }

  setInterval(() => {
    if (!live) return;
    if (startedAt) { const s = Math.floor((Date.now() - startedAt) / 1000); $("s-time").textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
    $("s-rate").textContent = Math.round((sentBytes - lastSent) * 8 / 1000) + " kbit/s";
    lastSent = sentBytes;
    $("s-buffered").textContent = ws ? Math.round(ws.bufferedAmount / 1024) + " KiB" : "–";
  }, 1000);

  ui.go.addEventListener("click", start);
  ui.stop.addEventListener("click", stop);
  listDevices();
  if (window.LivegateChat) window.LivegateChat.mount($("chat"), { stream: ui.name.value.trim() });
  if (params.get("autostart") === "1") start();
})();
