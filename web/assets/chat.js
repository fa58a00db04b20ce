// livegate chat panel: the chat room of a stream, over the /chat/{stream}
// WebSocket. Plain JavaScript, no build step.
//
//   const chat = LivegateChat.mount(element, { stream: "name", name: "optional",
//                                             token: "optional", key: "optional" });
//   chat.close(); // stops it (mounting again on the same element does this too)
//
// A token (?token=) or publish key (?key=) goes on the chat connection: a
// moderate or publish token, or the publish key, makes a moderator, and the
// panel becomes the moderator's console: a delete button on each message
// (shown on hover or focus), a menu on each member's name (ban for 5
// minutes or 24 hours), slow mode and clear. Every member sees a badge
// beside moderators' names, deleted messages go at once, a clear empties
// the log, and slow mode shows under the messages.
//
// Every piece of user text (names, messages) is inserted with textContent or
// text nodes, never as HTML. The name is remembered in localStorage
// ("livegate.chat.name"); the panel reconnects with backoff after a drop and
// joins again under the same name.
//
// Test hooks (data-testid), stable:
//   chat-status   status line (connecting, errors, who you are)
//   chat-count    "N online"
//   chat-users    list of online users (li, yours has class chat-mine)
//   chat-log      message log (li.chat-msg for messages, li.chat-mine for
//                 your own, li.chat-notice for join/leave/rename notices;
//                 a big room sends presence summaries instead of joins and
//                 leaves: the count follows them, without notices)
//   chat-name     name input; chat-join its submit button (joins, or renames
//                 once joined); chat-name-cancel cancels a rename
//   chat-input    message input; chat-send its submit button;
//                 chat-counter "used/max" characters
//   chat-rename   opens the name form to rename
//   chat-jump     "new messages" button, shown when scrolled up
//   chat-badge    the moderator badge beside a name
//   chat-slow-state  "Slow mode: ..." line, shown while slow mode is on
// Moderator's console (shown to moderators only):
//   chat-modbar   its toolbar: chat-slow (select: seconds, 0 off), chat-clear
//   chat-del      a message's delete button (li.chat-msg has data-id)
//   chat-member   a member's name as a button, opening chat-menu with
//                 chat-ban-300 and chat-ban-86400; chat-unban in a ban notice
"use strict";
(function () {
  const NAME_KEY = "livegate.chat.name";
  const MAX_LOG = 500; // messages and notices kept in the log
  const MAX_LISTED = 200; // users shown in the list (the count is exact)

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function load() { try { return localStorage.getItem(NAME_KEY) || ""; } catch (e) { return ""; } }
  function save(name) { try { localStorage.setItem(NAME_KEY, name); } catch (e) { /* private mode */ } }
  function runes(s) { let n = 0; for (const _ of s) n++; return n; } // code points, as the server counts

  let panels = 0;

  function mount(root, opts) {
    if (root.__livegateChat) root.__livegateChat.close();
    const stream = String(opts.stream || "");
    const uid = "chat" + ++panels;
    let maxText = 500;

    root.classList.add("chat");
    const head = el("div", { class: "chat-head" });
    const title = el("h2", { id: uid + "-title" }, "Chat");
    const count = el("span", { class: "chat-count", "data-testid": "chat-count" }, "");
    const renameBtn = el("button", { type: "button", class: "chat-rename", "data-testid": "chat-rename", hidden: "" }, "Rename");
    head.append(title, count, renameBtn);
    const users = el("ul", { class: "chat-users", "data-testid": "chat-users", "aria-label": "Online" });
    // the live region wraps the list, which keeps its list semantics
    const logWrap = el("div", { class: "chat-logwrap", role: "log", "aria-live": "polite", "aria-label": "Chat messages" });
    const log = el("ol", { class: "chat-log", "data-testid": "chat-log", "aria-label": "Messages", tabindex: "0" });
    const jump = el("button", { type: "button", class: "chat-jump", "data-testid": "chat-jump", hidden: "" }, "New messages ↓");
    logWrap.append(log, jump);
    const status = el("p", { class: "chat-status", "data-testid": "chat-status", role: "status" }, "Connecting…");
    const slowState = el("p", { class: "chat-slow-state", "data-testid": "chat-slow-state", hidden: "" }, "");

    // the moderator's console: shown once the welcome says we moderate
    const modbar = el("div", { class: "chat-modbar", "data-testid": "chat-modbar", role: "group", "aria-label": "Moderation", hidden: "" });
    const slowLabel = el("label", { for: uid + "-slow" }, "Slow mode");
    const slowSel = el("select", { id: uid + "-slow", "data-testid": "chat-slow" });
    for (const [v, t] of [[0, "Off"], [10, "10 s"], [30, "30 s"], [60, "1 min"], [300, "5 min"]]) slowSel.append(el("option", { value: String(v) }, t));
    const clearBtn = el("button", { type: "button", "data-testid": "chat-clear" }, "Clear chat");
    modbar.append(slowLabel, slowSel, clearBtn);

    const nameForm = el("form", { class: "chat-form chat-nameform" });
    const nameLabel = el("label", { for: uid + "-name" }, "Your name");
    const nameInput = el("input", { id: uid + "-name", "data-testid": "chat-name", maxlength: "32", autocomplete: "nickname", required: "" });
    const joinBtn = el("button", { type: "submit", class: "primary", "data-testid": "chat-join" }, "Join chat");
    const cancelBtn = el("button", { type: "button", "data-testid": "chat-name-cancel", hidden: "" }, "Cancel");
    nameForm.append(nameLabel, nameInput, joinBtn, cancelBtn);

    const msgForm = el("form", { class: "chat-form chat-msgform", hidden: "" });
    const msgLabel = el("label", { class: "sr-only", for: uid + "-input" }, "Message");
    const msgInput = el("input", { id: uid + "-input", "data-testid": "chat-input", autocomplete: "off",
      placeholder: "Say something (/nick name to rename)", "aria-describedby": uid + "-counter" });
    const counter = el("span", { id: uid + "-counter", class: "chat-counter", "data-testid": "chat-counter", "aria-live": "off" }, "");
    const sendBtn = el("button", { type: "submit", "data-testid": "chat-send" }, "Send");
    msgForm.append(msgLabel, msgInput, sendBtn, counter);

    root.replaceChildren(head, modbar, users, logWrap, slowState, status, nameForm, msgForm);
    nameInput.value = opts.name || load();

    let ws = null, me = null, closed = false, timer = 0, retryTimer = 0;
    let backoff = 500, wantName = "", auto = false, takenRetries = 0, renaming = false, online = 0;
    let banned = false, lastText = "", slow = 0;
    const people = new Map(); // id -> user, as far as the welcome listed them and events told

    // --- log and scrolling: stick to the bottom only when already there
    function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
    function add(node) {
      const stick = atBottom();
      log.append(node);
      while (log.children.length > MAX_LOG) log.firstChild.remove();
      if (stick) log.scrollTop = log.scrollHeight;
      else jump.hidden = false;
    }
    log.addEventListener("scroll", () => { if (atBottom()) jump.hidden = true; });
    jump.addEventListener("click", () => { log.scrollTop = log.scrollHeight; jump.hidden = true; log.focus(); });

    function notice(text, extra) {
      const li = el("li", { class: "chat-notice" }, text);
      if (extra) li.append(" ", extra);
      add(li);
    }
    const isMod = (u) => !!u && u.role === "moderator";
    const moderating = () => isMod(me);
    function badge(u) { return isMod(u) ? [" ", el("span", { class: "chat-badge", "data-testid": "chat-badge", title: "Moderator" }, "mod")] : []; }
    function duration(s) { return s % 86400 === 0 ? s / 86400 + (s === 86400 ? " day" : " days") : s % 3600 === 0 ? s / 3600 + " h" : s % 60 === 0 ? s / 60 + " min" : s + " s"; }

    // a member's name: for a moderator, a button opening the member's menu
    // (ban), unless that member is a moderator too or oneself
    let openMenu = null;
    function closeMenu(focusBack) {
      if (!openMenu) return;
      const { menu, button } = openMenu;
      openMenu = null;
      menu.remove();
      button.setAttribute("aria-expanded", "false");
      if (focusBack) button.focus();
    }
    function nameNode(u) {
      const name = (u && u.name) || "?";
      if (!moderating() || !u || isMod(u) || u.id === me.id) return el("b", {}, name);
      const b = el("button", { type: "button", class: "chat-member", "data-testid": "chat-member", "aria-haspopup": "true", "aria-expanded": "false",
        "aria-label": name + ": moderate" }, name);
      b.addEventListener("click", () => {
        const again = openMenu && openMenu.button === b;
        closeMenu(false);
        if (again) return;
        const menu = el("span", { class: "chat-menu", "data-testid": "chat-menu", role: "group", "aria-label": "Moderate " + name });
        for (const [secs, label] of [[300, "Ban 5 min"], [86400, "Ban 24 h"]]) {
          const item = el("button", { type: "button", "data-testid": "chat-ban-" + secs }, label);
          item.addEventListener("click", () => { closeMenu(true); if (send({ type: "ban", user: u.id, seconds: secs })) setStatus("Banning " + name + "…"); });
          menu.append(item);
        }
        const cancel = el("button", { type: "button" }, "Cancel");
        cancel.addEventListener("click", () => closeMenu(true));
        menu.append(cancel);
        menu.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.stopPropagation(); closeMenu(true); } });
        b.after(menu);
        b.setAttribute("aria-expanded", "true");
        openMenu = { menu, button: b };
        menu.firstChild.focus();
      });
      return b;
    }
    function messageNode(m) {
      const mine = me && m.user && m.user.id === me.id;
      const li = el("li", { class: "chat-msg" + (mine ? " chat-mine" : ""), "data-id": String(m.id || "") });
      const d = new Date(m.ts);
      const time = el("time", { datetime: String(m.ts) }, isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      li.append(time, " ", nameNode(m.user), ...badge(m.user), ": ", document.createTextNode(String(m.text)));
      if (moderating()) {
        const del = el("button", { type: "button", class: "chat-del", "data-testid": "chat-del",
          "aria-label": "Delete this message from " + ((m.user && m.user.name) || "?") }, "Delete");
        del.addEventListener("click", () => { if (send({ type: "delete", id: m.id })) setStatus("Deleting…"); });
        li.append(" ", del);
      }
      return li;
    }
    function removeMessage(id) {
      for (const li of log.querySelectorAll("li.chat-msg")) {
        if (li.dataset.id === id) {
          if (li.contains(document.activeElement)) log.focus();
          li.remove();
        }
      }
    }
    function showSlow(s) {
      slow = s > 0 ? s : 0;
      slowState.hidden = !slow;
      slowState.textContent = slow ? "Slow mode: one message every " + duration(slow) + (moderating() ? " (not for moderators)." : ".") : "";
      slowSel.value = String(slow);
      if (slowSel.value !== String(slow)) { slowSel.append(el("option", { value: String(slow) }, duration(slow))); slowSel.value = String(slow); }
    }

    // --- presence: rendering is batched (a big room's joins come in bursts)
    let renderQueued = false;
    function renderUsers() {
      count.textContent = online + " online";
      if (renderQueued) return;
      renderQueued = true;
      setTimeout(() => {
        renderQueued = false;
        const list = [...people.values()].sort((a, b) => a.name.localeCompare(b.name));
        const items = list.slice(0, MAX_LISTED).map((u) => {
          const li = el("li", me && u.id === me.id ? { class: "chat-mine" } : {});
          li.append(u.name, ...badge(u));
          return li;
        });
        if (online > items.length) items.push(el("li", { class: "chat-more" }, "and " + (online - items.length) + " more"));
        users.replaceChildren(...items);
      }, 100);
    }

    function setStatus(text, error) {
      status.textContent = text;
      status.classList.toggle("chat-error", !!error);
    }
    function showNameForm(rename, keepValue) {
      renaming = rename;
      nameForm.hidden = false;
      joinBtn.textContent = rename ? "Rename" : "Join chat";
      cancelBtn.hidden = !rename;
      if (rename && !keepValue) nameInput.value = me.name;
      nameInput.focus();
      nameInput.select();
    }
    function hideNameForm() { nameForm.hidden = true; renaming = false; cancelBtn.hidden = true; }
    function updateCounter() {
      const n = runes(msgInput.value);
      counter.textContent = n + "/" + maxText;
      counter.classList.toggle("chat-over", n > maxText);
      msgInput.setAttribute("aria-invalid", n > maxText ? "true" : "false");
    }
    msgInput.addEventListener("input", updateCounter);

    function send(obj) {
      if (!ws || ws.readyState !== WebSocket.OPEN) { setStatus("Not connected yet, try again in a moment.", true); return false; }
      ws.send(JSON.stringify(obj));
      return true;
    }
    function join(name, automatic) {
      wantName = name; auto = automatic;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "join", name }));
    }

    // done: a moderator's own command came back; the status says who we are again
    function done(m) { if (me && m.by && m.by.id === me.id) setStatus("You are " + me.name + ", a moderator."); }
    function onEvent(m) {
      if (m.by) done(m);
      switch (m.type) {
        case "welcome": {
          me = m.you; online = m.count; takenRetries = 0; auto = false;
          if (m.max_text > 0) maxText = m.max_text;
          people.clear();
          (m.users || []).forEach((u) => people.set(u.id, u));
          const stick = atBottom();
          closeMenu(false);
          modbar.hidden = !moderating();
          log.replaceChildren(...(m.history || []).map(messageNode));
          if (stick) log.scrollTop = log.scrollHeight;
          showSlow(m.slow || 0);
          renderUsers();
          hideNameForm(); msgForm.hidden = false; renameBtn.hidden = false;
          updateCounter();
          setStatus("You are " + me.name + (moderating() ? ", a moderator." : "."));
          save(me.name); wantName = me.name;
          break;
        }
        case "join": people.set(m.user.id, m.user); online = m.count; renderUsers(); notice(m.user.name + " joined"); break;
        case "leave": people.delete(m.user.id); online = m.count; renderUsers(); notice(m.user.name + " left"); break;
        case "presence": // a big room: joins and leaves since the last summary, a few of them named, no notices
          (m.joined_users || []).forEach((u) => people.set(u.id, u));
          (m.left_users || []).forEach((u) => people.delete(u.id));
          online = m.count; renderUsers();
          break;
        case "nick":
          people.set(m.user.id, m.user);
          if (me && m.user.id === me.id) {
            me = m.user; wantName = me.name; save(me.name);
            hideNameForm();
            setStatus("You are " + me.name + ".");
          }
          renderUsers(); notice(m.old + " is now " + m.user.name);
          break;
        case "message": add(messageNode(m)); break;
        case "delete": removeMessage(String(m.id)); break;
        case "clear":
          closeMenu(false);
          log.replaceChildren();
          notice("The chat was cleared by " + ((m.by && m.by.name) || "a moderator") + ".");
          break;
        case "slow":
          showSlow(m.seconds);
          notice(m.seconds > 0 ? "Slow mode on (" + duration(m.seconds) + ") by " + ((m.by && m.by.name) || "a moderator") + "."
            : "Slow mode off, by " + ((m.by && m.by.name) || "a moderator") + ".");
          break;
        case "ban": {
          const who = (m.user && m.user.name) || "?";
          let undo = null;
          if (moderating() && m.user) {
            undo = el("button", { type: "button", class: "chat-unban", "data-testid": "chat-unban" }, "Unban");
            undo.addEventListener("click", () => { if (send({ type: "unban", user: m.user.id })) { undo.disabled = true; setStatus("Unbanning " + who + "…"); } });
          }
          notice(who + " was banned for " + duration(m.seconds) + " by " + ((m.by && m.by.name) || "a moderator") + ".", undo);
          break;
        }
        case "unban":
          notice(((m.user && m.user.name) || "?") + " may chat again (" + ((m.by && m.by.name) || "a moderator") + ").");
          break;
        case "error": onError(m); break;
      }
    }
    function onError(m) {
      const text = String(m.message || m.code);
      if (m.code === "banned") { banned = true; setStatus(text, true); return; }
      if (m.code === "slow_mode" && !msgInput.value) { msgInput.value = lastText; updateCounter(); } // keep what was not sent
      if (!me && m.code === "name_taken" && auto && takenRetries < 12) {
        // our previous connection may still hold the name for a while
        takenRetries++;
        setStatus("The name " + wantName + " is still in use (perhaps by your previous connection); trying again…", true);
        retryTimer = setTimeout(() => { if (!me && auto) join(wantName, true); }, 5000);
        showNameForm(false, true);
        return;
      }
      setStatus(text + (m.code === "name_taken" ? ": pick another name." : ""), true);
      if (m.code === "name_taken" || m.code === "invalid_name") {
        auto = false;
        showNameForm(!!me, true);
      }
    }

    function connect() {
      if (closed) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = new URLSearchParams();
      if (opts.token) q.set("token", opts.token);
      if (opts.key) q.set("key", opts.key);
      const sock = new WebSocket(proto + "//" + location.host + "/chat/" + encodeURIComponent(stream) + (q.toString() ? "?" + q : ""));
      ws = sock;
      sock.onopen = () => {
        backoff = 500;
        if (wantName) { setStatus("Joining…"); sock.send(JSON.stringify({ type: "join", name: wantName })); }
        else { setStatus("Pick a name to chat."); showNameForm(false); }
      };
      sock.onmessage = (e) => {
        let m;
        try { m = JSON.parse(e.data); } catch (err) { return; }
        if (m && typeof m.type === "string") onEvent(m);
      };
      sock.onclose = (e) => {
        if (ws !== sock) return;
        ws = null;
        const was = me; me = null;
        msgForm.hidden = true; renameBtn.hidden = true; modbar.hidden = true;
        closeMenu(false);
        if (closed) return;
        if (banned) { nameForm.hidden = true; people.clear(); online = 0; users.replaceChildren(); count.textContent = ""; return; } // the status says why; a reload tries again
        if (was) auto = true; // join again under the same name
        if (e.code === 1008) backoff = Math.max(backoff, 10000); // closed for abuse: slow down
        const wait = Math.round(backoff * (0.75 + Math.random() / 2));
        setStatus((e.code === 1008 ? "Disconnected: " + (e.reason || "too many errors") + "." : "Disconnected.") +
          " Reconnecting in " + Math.ceil(wait / 1000) + " s…", true);
        timer = setTimeout(connect, wait);
        backoff = Math.min(backoff * 2, 30000);
      };
    }

    nameForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = nameInput.value.trim();
      if (!name) return;
      if (renaming && me) {
        if (name !== me.name && send({ type: "nick", name })) setStatus("Renaming…");
        else hideNameForm();
        return;
      }
      clearTimeout(retryTimer); takenRetries = 0;
      setStatus("Joining…");
      join(name, false);
    });
    cancelBtn.addEventListener("click", () => { hideNameForm(); renameBtn.focus(); });
    renameBtn.addEventListener("click", () => { if (me) showNameForm(true); });
    nameInput.addEventListener("keydown", (e) => { if (e.key === "Escape" && renaming) { hideNameForm(); renameBtn.focus(); } });
    msgForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = msgInput.value;
      if (!text.trim()) return;
      if (runes(text) > maxText) { setStatus("Messages are at most " + maxText + " characters.", true); return; }
      if (send({ type: "message", text })) {
        lastText = text;
        msgInput.value = ""; updateCounter();
        if (status.classList.contains("chat-error")) setStatus("You are " + me.name + ".");
      }
    });

    slowSel.addEventListener("change", () => { if (!send({ type: "slow", seconds: Number(slowSel.value) })) showSlow(slow); });
    clearBtn.addEventListener("click", () => send({ type: "clear" }));
    const outside = (e) => { if (openMenu && !openMenu.menu.contains(e.target) && e.target !== openMenu.button) closeMenu(false); };
    document.addEventListener("click", outside);

    wantName = (opts.name || nameInput.value || "").trim();
    updateCounter();
    connect();

    const handle = {
      close() {
        closed = true; clearTimeout(timer); clearTimeout(retryTimer);
        document.removeEventListener("click", outside);
        if (ws) { const s = ws; ws = null; s.close(1000); }
        if (root.__livegateChat === handle) delete root.__livegateChat;
      },
    };
    root.__livegateChat = handle;
    return handle;
  }

  window.LivegateChat = { mount };
})();
