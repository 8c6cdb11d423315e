// Mailroom's chat widget: one script a site embeds with
//   <script src="https://HOST/chat/v1/widget.js" data-widget="ID" async></script>
// Vanilla JS, no framework, everything inside its own shadow root (the site's CSS does not
// reach in and ours does not leak out). Visitor text is only ever set as textContent.
// The session token (signed by the server) is kept in this site's localStorage, so a
// reload or another page of the site resumes the same chat. Protocol: docs/chat.md.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.widget) return;
  var widget = script.dataset.widget;
  var base = new URL(script.src, location.href);
  // On AWS the socket is API Gateway's WebSocket API, on another host: data-socket names
  // it (the stack's ChatSocketUrl output); `mailroom serve` serves both on one host.
  var socket = script.dataset.socket ||
    (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/chat/v1/ws";
  var wsUrl = socket + (socket.indexOf("?") < 0 ? "?" : "&") + "widget=" + encodeURIComponent(widget);
  var storeKey = "mailroom-chat:" + widget;

  function load() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "null"); } catch (_) { return null; }
  }
  function save(v) {
    try { localStorage.setItem(storeKey, JSON.stringify(v)); } catch (_) { /* private mode */ }
  }

  var host = document.createElement("div");
  host.setAttribute("data-mailroom-chat", widget);
  var root = host.attachShadow({ mode: "open" });
  var css =
    ":host{all:initial}" +
    "*{box-sizing:border-box;font:14px/1.4 system-ui,sans-serif}" +
    ".launch{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:24px;" +
    "padding:12px 18px;background:var(--mr-colour,#1f4fd1);color:#fff;cursor:pointer}" +
    ".panel{position:fixed;right:20px;bottom:76px;z-index:2147483000;width:320px;max-width:calc(100vw - 40px);" +
    "height:440px;max-height:calc(100vh - 100px);display:flex;flex-direction:column;background:#fff;color:#1a1a1a;" +
    "border:1px solid #888;border-radius:8px;box-shadow:0 4px 18px rgba(0,0,0,.25)}" +
    ".panel[hidden]{display:none}" +
    "header{padding:10px 12px;background:var(--mr-colour,#1f4fd1);color:#fff;border-radius:8px 8px 0 0;display:flex;justify-content:space-between;align-items:center}" +
    "header h2{margin:0;font-weight:600}" +
    "header button{background:transparent;color:#fff;border:1px solid #fff;border-radius:4px;cursor:pointer}" +
    ".log{flex:1;overflow-y:auto;margin:0;padding:8px 12px}" +
    ".log>div{margin:6px 0;padding:6px 8px;border-radius:6px;white-space:pre-wrap;word-wrap:break-word}" +
    ".log>.visitor{background:#e8eefc;margin-left:32px}" +
    ".log>.agent{background:#f1f1f1;margin-right:32px}" +
    ".log>.note{background:transparent;color:#444;font-style:italic;padding:0}" +
    ".who{display:block;font-size:12px;color:#444}" +
    ".status{min-height:1.4em;padding:0 12px;color:#444;font-size:12px}" +
    "form{display:flex;flex-direction:column;gap:6px;padding:8px 12px;border-top:1px solid #ddd}" +
    "label{display:flex;flex-direction:column;font-size:12px;color:#333}" +
    "input,textarea{border:1px solid #767676;border-radius:4px;padding:6px;color:#1a1a1a;background:#fff}" +
    "textarea{resize:none;height:56px}" +
    "form button{align-self:flex-end;border:0;border-radius:4px;padding:6px 14px;background:var(--mr-colour,#1f4fd1);color:#fff;cursor:pointer}" +
    ":focus-visible{outline:3px solid #ffbf47;outline-offset:1px}" +
    ".err{color:#a00000;font-size:12px;padding:0 12px}";
  root.innerHTML =
    "<style>" + css + "</style>" +
    '<button class="launch" type="button" aria-expanded="false" aria-controls="mr-panel">Chat with us</button>' +
    '<section class="panel" id="mr-panel" role="dialog" aria-label="Chat" hidden>' +
    '<header><h2>Chat</h2><button type="button" class="close" aria-label="Close the chat">×</button></header>' +
    '<div class="log" role="log" aria-live="polite" aria-label="Messages" tabindex="0"></div>' +
    '<p class="status" aria-live="polite"></p>' +
    '<p class="err" role="alert"></p>' +
    '<form class="who-form" hidden>' +
    '<label>Your name <input name="name" autocomplete="name" maxlength="100"></label>' +
    '<label>Your email <input name="email" type="email" autocomplete="email" required maxlength="254"></label>' +
    '<button type="submit">Start the chat</button></form>' +
    '<form class="msg-form" hidden>' +
    '<label>Message <textarea name="text" required maxlength="4000"></textarea></label>' +
    '<button type="submit">Send</button></form>' +
    "</section>";
  var $ = function (sel) { return root.querySelector(sel); };
  var launch = $(".launch"), panel = $(".panel"), log = $(".log"), status = $(".status"), err = $(".err");
  var whoForm = $(".who-form"), msgForm = $(".msg-form"), text = msgForm.elements.namedItem("text");

  var ws = null, ready = false, retry = 0, typingSent = 0, typingTimer = null, pending = [];
  var state = load() || {};

  function line(kind, who, body) {
    var li = document.createElement("div");
    li.className = kind;
    if (who) {
      var w = document.createElement("span");
      w.className = "who";
      w.textContent = who;
      li.appendChild(w);
    }
    li.appendChild(document.createTextNode(body));
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }
  function show(history) {
    log.textContent = "";
    (history || []).forEach(function (m) {
      line(m.from === "visitor" ? "visitor" : "agent", m.from === "visitor" ? "You" : (m.name || "Support"), m.text);
    });
  }
  function send(obj) {
    if (ws && ws.readyState === 1) { ws.send(JSON.stringify(obj)); return true; }
    return false;
  }

  function connect() {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () {
      retry = 0;
      err.textContent = "";
      if (state.token) send({ type: "resume", token: state.token, page: location.href });
      else send({ type: "hello", page: location.href });
    };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      switch (m.type) {
        case "need_identity":
          state = {};
          save(state);
          greet(m);
          whoForm.hidden = false;
          msgForm.hidden = true;
          break;
        case "ready":
          state = { token: m.token };
          save(state);
          ready = true;
          show(m.history);
          greet(m);
          whoForm.hidden = true;
          msgForm.hidden = false;
          while (pending.length) send(pending.shift());
          break;
        case "message":
          status.textContent = "";
          line(m.from === "visitor" ? "visitor" : "agent", m.from === "visitor" ? "You" : (m.name || "Support"), m.text);
          break;
        case "typing":
          status.textContent = (m.name || "Support") + " is typing…";
          clearTimeout(typingTimer);
          typingTimer = setTimeout(function () { status.textContent = ""; }, 4000);
          break;
        case "pong":
          break;
        case "agents":
          away(m.online === false, m.away);
          break;
        case "error":
          err.textContent = m.message || "Something went wrong.";
          break;
      }
    };
    ws.onclose = function () {
      ready = false;
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 500 * Math.pow(2, retry - 1));
    };
  }
  function greet(m) {
    if (m.greeting && !log.querySelector(".note.greeting")) {
      var li = document.createElement("div");
      li.className = "note greeting";
      li.textContent = m.greeting;
      log.insertBefore(li, log.firstChild);
    }
    if (m.colour && /^#[0-9a-fA-F]{6}$/.test(m.colour)) host.style.setProperty("--mr-colour", m.colour);
    // null: the server cannot tell (on AWS); only a clear "no" shows the away note.
    away(m.agents_online === false, m.away);
  }
  function away(isAway, message) {
    var note = log.querySelector(".note.away");
    if (isAway && !note) {
      note = document.createElement("div");
      note.className = "note away";
      note.textContent = message || "We are away right now. Leave a message and we will answer by email.";
      log.appendChild(note);
    } else if (!isAway && note) {
      note.remove();
    }
  }

  whoForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var name = whoForm.elements.namedItem("name").value.trim();
    var email = whoForm.elements.namedItem("email").value.trim();
    if (!email) return;
    if (!send({ type: "start", name: name, email: email, page: location.href })) {
      err.textContent = "Not connected yet; trying again.";
    }
  });
  msgForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = text.value.trim();
    if (!body) return;
    var msg = { type: "message", text: body, page: location.href };
    line("visitor", "You", body);
    text.value = "";
    typingSent = 0; // the next keystroke starts a new line: say so at once
    if (!ready || !send(msg)) pending.push(msg);
  });
  text.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      msgForm.requestSubmit();
    }
  });
  text.addEventListener("input", function () {
    var now = Date.now();
    if (ready && now - typingSent > 2000) {
      typingSent = now;
      send({ type: "typing" });
    }
  });
  function toggle(open) {
    panel.hidden = !open;
    launch.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      if (!ws) connect();
      var first = whoForm.hidden ? text : whoForm.elements.namedItem("name");
      setTimeout(function () { first.focus(); }, 0);
    } else {
      launch.focus();
    }
  }
  launch.addEventListener("click", function () { toggle(panel.hidden); });
  $(".close").addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") toggle(false); });

  // Keep-alive: the server keeps the visitor "online" (replies go live, not by email), and
  // API Gateway closes a socket idle for ten minutes.
  setInterval(function () { if (ready) send({ type: "ping" }); }, 20000);

  (document.body || document.documentElement).appendChild(host);
  // A visitor with a chat under way is reconnected at once (history and replies follow).
  if (state.token) toggle(true);
})();
