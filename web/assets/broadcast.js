// Broadcaster page: camera and microphone to MediaRecorder to the
// /ingest/{stream} WebSocket. Query: stream, key, autostart=1.
// The hello frame carries the capture clock ("clock": when the recorder
// started, ms since 1970) and a {"type":"clock","t":ms} frame every second
// lets the gateway compare clocks, so that it dates every segment by its
// capture time; status frames then tell how far behind the viewers are.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const ui = { name: $("name"), key: $("key"), camera: $("camera"), mic: $("mic"), quality: $("quality"),
    go: $("go"), stop: $("stop"), state: $("state"), note: $("note"), preview: $("preview"), share: $("share") };
  const TYPES = ["video/webm;codecs=h264,opus", "video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus",
    "video/webm", "video/mp4;codecs=avc1,mp4a.40.2", "video/mp4"];
  const BITRATE = { 360: 800e3, 480: 1200e3, 720: 2500e3, 1080: 4500e3 };
  // upload steps for adapting to the link, highest first
  const STEPS = [4500e3, 2500e3, 1200e3, 800e3, 500e3, 300e3];
  const ERRORS = {
    token_missing: "This gateway needs a publish key or a token.", key_wrong: "The publish key is wrong.",
    token_invalid: "The token is not valid here.", token_expired: "The token has expired: get a new one.",
    token_wrong_stream: "The token is for another stream.", token_wrong_role: "The token does not allow publishing.",
    too_many_connections: "Too many connections from this address.", full: "The gateway has no room for another stream now: try again later.",
    directory_unavailable: "The gateways cannot agree on stream names right now: try again in a moment.",
    busy: "Someone is already live on this stream name.", unsupported_media: "The gateway cannot read this browser's video format.",
    undecodable: "The gateway could not decode the video.", transcoder_failed: "The gateway's encoder failed.",
    overrun: "The gateway could not keep up with the upload.", frame_too_big: "A piece of video was too big for the gateway.",
    idle: "Nothing was sent for too long.", replaced: "Another window took over this stream.",
    origin: "The gateway does not accept publishing from this page's address.", shutdown: "The gateway is shutting down.",
    unreachable: "Cannot reach the gateway: check the connection, then press Go live.",
    no_websocket: "The gateway answered, but the WebSocket failed (a proxy in between may block WebSockets).",
  };
  // What getUserMedia's errors mean for the camera, and for the microphone
  // (without which the page goes live with video only), in plain words.
  const CAMERA_ERRORS = {
    NotAllowedError: "Camera blocked: allow the camera for this site, then press Go live.",
    NotFoundError: "No camera found: connect a camera, then press Go live.",
    NotReadableError: "The camera is in use by another program or cannot start: close that program, then press Go live.",
    OverconstrainedError: "The chosen camera is not available: pick another one, then press Go live.",
  };
  const MIC_NOTES = {
    NotAllowedError: "Microphone blocked: live without sound.",
    NotFoundError: "No microphone found: live without sound.",
    NotReadableError: "The microphone is in use by another program: live without sound.",
    OverconstrainedError: "The chosen microphone is not available: live without sound.",
    none: "No microphone chosen: live without sound.",
  };
  CAMERA_ERRORS.SecurityError = CAMERA_ERRORS.NotAllowedError;
  MIC_NOTES.SecurityError = MIC_NOTES.NotAllowedError;
  // Browsers give the camera only to secure pages (https://, or localhost):
  // over plain http:// from another machine there is no camera at all.
  const NO_CAMERA = !window.isSecureContext
    ? { code: "insecure", message: "The camera needs a secure connection: open this page over https://, or run livegate with --acme-domain or --tls-cert (see the README)." }
    : !(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)
      ? { code: "no_media_devices", message: "This browser gives web pages no camera: try a current Chrome, Edge, Firefox or Safari." }
      : null;

  let media = null, ws = null, recorder = null, session = "", live = false, startedAt = 0;
  let sentBytes = 0, lastSent = 0, reconnects = 0;
  let bitrate = 0, maxBitrate = 0, congested = 0, clear = 0, adapting = false, rate = 0, lastWaiting = 0;
  let connSent = 0, inflight = 0; // bytes sent on this connection, and not yet received by the gateway
  const state = { mime: "" };
  window.__livegate = { state, status: null, errors: [] };

  ui.name.value = params.get("stream") || "stream" + Math.floor(Math.random() * 1e4);
  ui.key.value = params.get("key") || "";
  const token = params.get("token") || ""; // a publish token: for publishing and for the chat (as a moderator)

  function say(text, cls) { ui.state.textContent = text; ui.state.className = cls || ""; }
  // note shows what stays true while live (no sound), beside the changing state.
  function note(text) { ui.note.textContent = text; ui.note.hidden = !text; window.__livegate.note = text; }
  // pickType picks a recording format; without audio, the same one minus its audio codec.
  function pickType(audio) {
    const types = audio ? TYPES : TYPES.map((t) => t.replace(/,(opus|mp4a\.40\.2)$/, ""));
    return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
  }

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
        if (!sel.options.length) sel.append(new Option(kind === "videoinput" ? "Default camera" : "Default microphone", ""));
        if (kind === "audioinput") sel.append(new Option("No microphone", "none"));
        if (cur) sel.value = cur;
      }
    } catch (e) { /* no devices yet */ }
  }

  async function capture(constraints) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (e) {
      if (e.name !== "OverconstrainedError") throw e;
      delete constraints.video.height.max; // a camera that cannot scale down
      return navigator.mediaDevices.getUserMedia(constraints);
    }
  }

  async function openMedia() {
    const h = Number(ui.quality.value);
    // never above the chosen quality: browsers scale a bigger camera down
    const video = { height: { ideal: h, max: h }, width: { ideal: Math.round(h * 16 / 9) }, frameRate: { ideal: 30 } };
    if (ui.camera.value) video.deviceId = { exact: ui.camera.value };
    if (ui.mic.value === "none") { note(MIC_NOTES.none); return capture({ video }); }
    const audio = ui.mic.value ? { deviceId: { exact: ui.mic.value } } : true;
    try {
      return await capture({ video, audio });
    } catch (e) {
      // One request for both fails as a whole: ask for the camera alone.
      const m = await capture({ video });
      note(MIC_NOTES[e.name] || "Microphone unavailable (" + e.name + "): live without sound.");
      return m;
    }
  }

  // whyRefused asks the gateway over plain HTTP why it refused a WebSocket
  // (401, 403, 409 before the upgrade reach the page only as a bare close)
  // and returns it as {code, message}. A free stream answers 400 (not a
  // WebSocket) and is left as it was.
  async function whyRefused(url) {
    let res;
    try { res = await fetch(url.replace(/^ws/, "http"), { cache: "no-store" }); } catch (e) { return { code: "unreachable", message: e.message }; }
    const body = await res.json().catch(() => null);
    if (!body || !body.error) return { code: "no_websocket", message: "HTTP " + res.status };
    // 409 busy is this name taken, 503 busy the gateway full
    return { code: body.error === "busy" && res.status === 503 ? "full" : body.error, message: body.message };
  }

  function connect() {
    const name = ui.name.value.trim();
    const q = new URLSearchParams();
    if (ui.key.value) q.set("key", ui.key.value);
    if (token) q.set("token", token);
    if (session) q.set("session", session);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = proto + "//" + location.host + "/ingest/" + encodeURIComponent(name) + "?" + q;
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    connSent = 0; inflight = 0;
    let lastError = null, opened = false;
    ws.onopen = () => {
      opened = true;
      recorder = new MediaRecorder(media, { mimeType: state.mime, videoBitsPerSecond: bitrate, audioBitsPerSecond: 128e3 });
      recorder.ondataavailable = (e) => { if (e.data && e.data.size && ws.readyState === 1) { ws.send(e.data); sentBytes += e.data.size; connSent += e.data.size; } };
      recorder.start(100);
      // the hello still comes first: the first chunk follows 100 ms later
      const clock = Date.now();
      window.__livegate.clock0 = clock;
      ws.send(JSON.stringify({ type: "hello", mime: state.mime, clock }));
      if (!adapting) say(reconnects ? "Reconnected, live again." : "Connected, starting…", "state-live");
      adapting = false;
    };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "status") {
        session = m.session;
        window.__livegate.status = m;
        inflight = Math.max(0, connSent - m.bytes);
        $("s-speed").textContent = m.speed ? m.speed.toFixed(2) + "×" : "–";
        $("s-viewers").textContent = m.viewers;
        $("s-behind").textContent = typeof m.viewer_latency === "number" ? m.viewer_latency.toFixed(1) + " s" : "–";
        if (m.state === "live" && !startedAt) startedAt = Date.now();
        if (m.state === "live") say(m.lagging ? "Live, but the gateway is behind." : "Live.", "state-live");
      } else if (m.type === "error") {
        lastError = m;
        window.__livegate.errors.push(m);
      }
    };
    ws.onclose = async (e) => {
      if (recorder && recorder.state !== "inactive") recorder.stop();
      recorder = null;
      if (!live) return;
      // Only a first connection asks: with a session the question would take the stream over.
      if (!opened && !session && !lastError) {
        lastError = await whyRefused(url);
        window.__livegate.errors.push(lastError);
      }
      // A gateway that restarts or stops (close 1012 "restart", 1001
      // "shutdown") keeps the session for another one: reconnect with it.
      if (lastError && !["idle", "restart", "shutdown"].includes(lastError.code)) {
        stop();
        say((ERRORS[lastError.code] || lastError.message) + " (" + lastError.code + ")", "state-error");
        return;
      }
      if (adapting) { connect(); return; } // same session, new recorder
      reconnects++;
      window.__livegate.reconnects = reconnects;
      say("Connection lost, reconnecting…", "state-error");
      setTimeout(() => { if (live) connect(); }, 1000);
    };
  }

  async function start() {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(ui.name.value.trim())) { say("Stream names use letters, digits, _ and -, up to 64.", "state-error"); return; }
    if (NO_CAMERA) { say(NO_CAMERA.message, "state-error"); window.__livegate.errors.push(NO_CAMERA); return; }
    if (!pickType(true)) { say("This browser cannot record video (no MediaRecorder).", "state-error"); return; }
    note("");
    try {
      media = await openMedia();
    } catch (e) {
      note("");
      say(CAMERA_ERRORS[e.name] || "Camera unavailable (" + e.name + "): allow the camera, then press Go live.", "state-error");
      window.__livegate.errors.push({ code: "camera", message: e.name });
      return;
    }
    state.mime = pickType(media.getAudioTracks().length > 0);
    ui.preview.srcObject = media;
    listDevices();
    $("s-mime").textContent = state.mime;
    const watch = location.origin + "/watch/" + encodeURIComponent(ui.name.value.trim());
    ui.share.href = watch; ui.share.textContent = watch;
    live = true; session = ""; reconnects = 0; startedAt = 0; sentBytes = 0; lastSent = 0; rate = 0; lastWaiting = 0;
    bitrate = maxBitrate = BITRATE[ui.quality.value] || 2500e3; congested = clear = 0;
    $("s-target").textContent = Math.round(bitrate / 1000) + " kbit/s";
    ui.go.disabled = true; ui.stop.disabled = false;
    connect();
  }

  function stop() {
    live = false;
    if (recorder && recorder.state !== "inactive") recorder.stop();
    if (ws && ws.readyState <= 1) ws.close(1000, "done");
    if (media) media.getTracks().forEach((t) => t.stop());
    ui.go.disabled = false; ui.stop.disabled = true;
    note("");
    say("Not live.");
  }

  setInterval(() => {
    if (!live) return;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "clock", t: Date.now() }));
    if (startedAt) { const s = Math.floor((Date.now() - startedAt) / 1000); $("s-time").textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
    const produced = sentBytes - lastSent;
    rate = rate ? rate * 0.8 + produced * 0.2 : produced;
    $("s-rate").textContent = Math.round(produced * 8 / 1000) + " kbit/s";
    lastSent = sentBytes;
    $("s-buffered").textContent = ws ? Math.round(Math.max(inflight, ws.bufferedAmount) / 1024) + " KiB" : "–";
    adapt();
  }, 1000);

  // adapt steps the recorder's bitrate down when more than three seconds of
  // what the recorder makes is sent but not yet received by the gateway (the
  // socket's bufferedAmount, or the gap to the bytes the status frames
  // count: the network buffers hide the first) and keeps growing, and back
  // up after a clear minute. A
  // new bitrate needs a new recorder: the connection is closed and resumed
  // with the same session, so viewers keep watching.
  function adapt() {
    if (!ws || ws.readyState !== 1 || adapting) return;
    const waiting = Math.max(ws.bufferedAmount, inflight);
    congested = waiting > Math.max(128 * 1024, 3 * rate) && waiting >= lastWaiting ? congested + 1 : 0;
    lastWaiting = waiting;
    clear = waiting < Math.max(32 * 1024, rate) ? clear + 1 : 0;
    let next = 0;
    if (congested >= 3) next = STEPS.find((b) => b < bitrate) || 0;
    else if (clear >= 60 && bitrate < maxBitrate) next = Math.min(maxBitrate, [...STEPS].reverse().find((b) => b > bitrate));
    if (!next) return;
    const down = next < bitrate;
    bitrate = next; congested = clear = 0; adapting = true;
    window.__livegate.bitrate = bitrate;
    $("s-target").textContent = Math.round(bitrate / 1000) + " kbit/s";
    say((down ? "The upload cannot keep up: lowering the quality to " : "The upload has room again: raising the quality to ") + Math.round(bitrate / 1000) + " kbit/s.", down ? "state-error" : "state-live");
    ws.close(4000, "adapt");
  }

  // Enter in a field must not reload the page (no inline handler: the CSP forbids them).
  $("form").addEventListener("submit", (e) => e.preventDefault());
  ui.go.addEventListener("click", start);
  ui.stop.addEventListener("click", stop);
  if (NO_CAMERA) say(NO_CAMERA.message, "state-error");
  else listDevices();
  // the chat of the stream, as its moderator: with the token or the key
  const mountChat = () => window.LivegateChat && window.LivegateChat.mount($("chat"), { stream: ui.name.value.trim(), token, key: ui.key.value });
  mountChat();
  ui.name.addEventListener("change", mountChat);
  ui.key.addEventListener("change", mountChat);
  if (params.get("autostart") === "1") start();
})();
