// Reference chat server for bench/chat.sh: the classic Node.js "ws" broadcast
// demo, speaking the subset of livegate's /chat/{stream} protocol that the
// benchmark uses (join, message, nick; welcome, join, leave, message, nick,
// error). It is the benchmark's yardstick, NOT part of livegate.
//
// On purpose it does what the classic demos do: one room, and for each
// message a loop over the clients calling client.send(JSON.stringify(msg)),
// stringifying once per recipient.
//
// Usage: node server.js [PORT]   (or PORT=... node server.js); it listens on
// 127.0.0.1 only. Any path is accepted as the room.
'use strict';

const crypto = require('crypto');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 8090);
const HISTORY = 50;
const MAX_TEXT = 500;
const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;

const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 64 * 1024 });
const users = new Map(); // ws -> {id, name}
const history = [];

function broadcast(msg) {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN && users.has(client)) {
      client.send(JSON.stringify(msg));
    }
  }
}

function sendError(ws, code, message) {
  ws.send(JSON.stringify({ type: 'error', code, message }));
}

function nameTaken(name) {
  const lower = name.toLowerCase();
  for (const u of users.values()) {
    if (u.name.toLowerCase() === lower) return true;
  }
  return false;
}

function rename(ws, user, name) {
  if (!NAME_RE.test(name)) return sendError(ws, 'invalid_name', 'invalid name');
  if (nameTaken(name)) return sendError(ws, 'name_taken', 'name taken');
  const old = user.name;
  user.name = name;
  broadcast({ type: 'nick', user: { ...user }, old });
}

wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data);
    } catch (e) {
      return sendError(ws, 'bad_request', 'bad JSON');
    }
    const user = users.get(ws);
    if (m.type === 'join') {
      if (user) return sendError(ws, 'bad_request', 'already joined');
      const name = String(m.name || '');
      if (!NAME_RE.test(name)) return sendError(ws, 'invalid_name', 'invalid name');
      if (nameTaken(name)) return sendError(ws, 'name_taken', 'name taken');
      const u = { id: crypto.randomUUID(), name };
      users.set(ws, u);
      ws.send(JSON.stringify({
        type: 'welcome', you: u, users: [...users.values()], count: users.size, history,
      }));
      broadcast({ type: 'join', user: u, count: users.size });
      return;
    }
    if (!user) return sendError(ws, 'not_joined', 'join first');
    if (m.type === 'nick') return rename(ws, user, String(m.name || ''));
    if (m.type !== 'message') return sendError(ws, 'bad_request', 'unknown type');
    const text = String(m.text || '');
    if (text.length > MAX_TEXT) return sendError(ws, 'too_long', 'message too long');
    if (text.startsWith('/nick ')) return rename(ws, user, text.slice(6).trim());
    const msg = {
      type: 'message', id: crypto.randomUUID(), user, text, ts: new Date().toISOString(),
    };
    history.push(msg);
    if (history.length > HISTORY) history.shift();
    broadcast(msg);
  });
  ws.on('close', () => {
    const u = users.get(ws);
    if (!u) return;
    users.delete(ws);
    broadcast({ type: 'leave', user: u, count: users.size });
  });
  ws.on('error', () => {});
});

wss.on('listening', () => console.log(`chat-node listening on ws://127.0.0.1:${port}/`));
wss.on('error', (err) => {
  console.error(`chat-node: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => process.exit(0));
  });
}
