// Chat panel for a stream's room: LivegateChat.mount(element, {stream}).
// Every piece of user text is inserted as text (textContent), never HTML.
// Test hooks (data-testid): chat-log, chat-input, chat-send, chat-name,
// chat-join, chat-count, chat-users, chat-status.
"use strict";
(function () {
  const MAX = 500;
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function mount(root, opts) {
    const stream = opts.stream;
    root.classList.add("chat");
    const head = el("div", { class: "chat-head" });
    const title = el("h2", {}, "Chat");
    const count = el("span", { class: "chat-count", "data-testid": "chat-count", "aria-live": "polite" }, "");
    head.append(title, count);
    const users = el("ul", { class: "chat-users", "data-testid": "chat-users", "aria-label": "Online" });
    const log = el("ol", { class: "chat-log", "data-testid": "chat-log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0" });
    const status = el("p", { class: "chat-status", "data-testid": "chat-status", role: "status" }, "Connecting…");

    const nameForm = el("form", { class: "chat-form" });
    const nameLabel = el("label", {}, "Your name ");
    const nameInput = el("input", { "data-testid": "chat-name", maxlength: "32", autocomplete: "nickname", required: "" });
    nameInput.value = localStorage.getItem("livegate.chat.name") || "";
    nameLabel.append(nameInput);
    const joinBtn = el("button", { type: "submit", "data-testid": "chat-join" }, "Join chat");
    nameForm.append(nameLabel, joinBtn);

    const msgForm = el("form", { class: "chat-form", hidden: "" });
    const msgLabel = el("label", { class: "sr-only", for: "chat-input-" + stream }, "Message");
    const msgInput = el("input", { id: "chat-input-" + stream, "data-testid": "chat-input", maxlength: String(MAX), autocomplete: "off", placeholder: "Say something (/nick name to rename)" });
    const sendBtn = el("button", { type: "submit", "data-testid": "chat-send" }, "Send");
    msgForm.append(msgLabel, msgInput, sendBtn);

    root.replaceChildren(head, users, log, status, nameForm, msgForm);

    let ws = null, me = null, backoff = 500, wantName = "";
    const online = new Map();

    function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
    function add(node) {
      const stick = atBottom();
      log.append(node);
      while (log.children.length > 500) log.firstChild.remove();
      if (stick) log.scrollTop = log.scrollHeight;
    }
    function notice(text) { add(el("li", { class: "chat-notice" }, text)); }
    function message(m) {
      const li = el("li", { class: "chat-msg" + (me && m.user.id === me.id ? " chat-mine" : "") });
      const who = el("b", {}, m.user.name);
      const time = el("time", { datetime: m.ts }, new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      li.append(time, " ", who, ": ", document.createTextNode(m.text));
      add(li);
    }
    function renderUsers(n) {
      count.textContent = n + " online";
      users.replaceChildren(...[...online.values()].sort((a, b) => a.name.localeCompare(b.name)).map((u) =>
        el("li", me && u.id === me.id ? { class: "chat-mine" } : {}, u.name)));
    }

    function connect() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(proto + "//" + location.host + "/chat/" + encodeURIComponent(stream));
      ws.onopen = () => {
        backoff = 500;
        status.textContent = wantName ? "Joining…" : "Pick a name to chat.";
        if (wantName) ws.send(JSON.stringify({ type: "join", name: wantName }));
      };
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        switch (m.type) {
          case "welcome":
            me = m.you; online.clear();
            m.users.forEach((u) => online.set(u.id, u));
            log.replaceChildren();
            m.history.forEach(message);
            renderUsers(m.count);
            nameForm.hidden = true; msgForm.hidden = false;
            status.textContent = "You are " + me.name + ".";
            localStorage.setItem("livegate.chat.name", me.name);
            break;
          case "join": online.set(m.user.id, m.user); renderUsers(m.count); notice(m.user.name + " joined"); break;
          case "leave": online.delete(m.user.id); renderUsers(m.count); notice(m.user.name + " left"); break;
          case "nick":
            online.set(m.user.id, m.user);
            if (me && m.user.id === me.id) { me = m.user; wantName = me.name; status.textContent = "You are " + me.name + "."; localStorage.setItem("livegate.chat.name", me.name); }
            renderUsers(online.size); notice(m.old + " is now " + m.user.name);
            break;
          case "message": message(m); break;
          case "error":
            status.textContent = m.message + " (" + m.code + ")";
            if (!me && (m.code === "name_taken" || m.code === "invalid_name")) { nameForm.hidden = false; wantName = ""; nameInput.focus(); }
            break;
        }
      };
      ws.onclose = () => {
        me = null; msgForm.hidden = true;
        status.textContent = "Disconnected, reconnecting…";
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 10000);
      };
    }

    nameForm.addEventListener("submit", (e) => {
      e.preventDefault();
      wantName = nameInput.value.trim();
      if (wantName && ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "join", name: wantName }));
    });
    msgForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = msgInput.value;
      if (!text.trim() || !ws || ws.readyState !== 1) return;
      ws.send(JSON.stringify({ type: "message", text }));
      msgInput.value = "";
    });
    if (opts.name) { wantName = opts.name; }
    else if (nameInput.value) { wantName = nameInput.value; }
    connect();
  }
  window.LivegateChat = { mount };
})();
