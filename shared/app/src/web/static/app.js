// Mailroom's web inbox: the little the server cannot do. Keyboard shortcuts, the
// composer's tabs, drafts kept in this browser, presence, local times and the mail
// frames' height. Loaded as a file (the CSP allows no inline script); htmx does the rest.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  // ---- times: the server writes UTC; show the reader's own time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      const local = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      if (t.title) {
        t.title = local; // the list keeps its relative label
      } else {
        t.textContent = local;
        t.title = d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
      }
    });
  }

  // ---- mail frames: sandboxed with an opaque origin, so the page cannot measure them;
  // the server guesses the lines a message needs (data-lines).
  function frames(root) {
    root.querySelectorAll("iframe.mail-body[data-lines]").forEach((f) => {
      const lines = parseInt(f.dataset.lines, 10) || 12;
      f.style.height = lines * 1.45 + 1.5 + "em";
    });
  }

  // ---- drafts: every change of a composer is kept in localStorage until it is sent,
  // so a lost session, a reload or a closed tab loses nothing.
  const draftKey = (form) => "mailroom:draft:" + form.dataset.draft;
  function restoreDrafts(root) {
    root.querySelectorAll("form[data-draft]").forEach((form) => {
      let saved = null;
      try {
        saved = JSON.parse(localStorage.getItem(draftKey(form)) || "null");
      } catch (_) {
        saved = null;
      }
      if (saved) {
        Object.entries(saved).forEach(([name, value]) => {
          const el = form.elements.namedItem(name);
          if (el && el.tagName === "TEXTAREA" && !el.value) el.value = value;
        });
        const state = form.querySelector("[data-draft-state]");
        if (state) state.textContent = "Draft restored.";
      }
      form.addEventListener("input", () => {
        const data = {};
        form.querySelectorAll("textarea, input[type=text], input[type=email]").forEach((el) => {
          if (el.name && el.value) data[el.name] = el.value;
        });
        localStorage.setItem(draftKey(form), JSON.stringify(data));
        const state = form.querySelector("[data-draft-state]");
        if (state) state.textContent = "Draft saved in this browser.";
      });
    });
  }
  // The server says a change was made (`HX-Trigger: mr-done`): clear that form's draft
  // and give the next reply a new idempotency key.
  document.addEventListener("mr-done", (e) => {
    const form = e.target.closest ? e.target.closest("form[data-draft]") : null;
    if (!form) return;
    localStorage.removeItem(draftKey(form));
    form.querySelectorAll("textarea, input[type=text], input[type=email]").forEach((el) => (el.value = ""));
    const rid = form.querySelector("[data-request-id]");
    if (rid) {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      rid.value = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    const state = form.querySelector("[data-draft-state]");
    if (state) state.textContent = "";
  });

  // ---- the composer's tabs (reply / comment), with arrow keys between them.
  function selectTab(name, focus) {
    document.querySelectorAll("[data-tab]").forEach((tab) => {
      const on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      const panel = document.getElementById(tab.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    });
    if (focus) {
      const area = document.querySelector(name === "reply" ? "[data-reply]" : "[data-comment]");
      if (area) area.focus();
    }
  }
  document.addEventListener("click", (e) => {
    const tab = e.target.closest("[data-tab]");
    if (tab) selectTab(tab.dataset.tab, true);
    if (e.target.closest("[data-help]")) document.getElementById("help")?.showModal();
  });
  document.addEventListener("keydown", (e) => {
    const tab = e.target.closest && e.target.closest("[data-tab]");
    if (tab && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
      const tabs = Array.from(document.querySelectorAll("[data-tab]"));
      const next = tabs[(tabs.indexOf(tab) + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
      selectTab(next.dataset.tab, false);
      next.focus();
    }
  });

  // ---- keyboard shortcuts (not while typing).
  function moveRow(step) {
    const links = Array.from(document.querySelectorAll("[data-row] > a"));
    if (!links.length) return;
    let i = links.indexOf(document.activeElement);
    if (i < 0) i = links.findIndex((a) => a.getAttribute("aria-current") === "true");
    const next = links[Math.max(0, Math.min(links.length - 1, i < 0 ? 0 : i + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (document.querySelector("dialog[open]")) return;
    const click = (sel) => document.querySelector(sel)?.click();
    switch (e.key) {
      case "j": moveRow(1); break;
      case "k": moveRow(-1); break;
      case "r": selectTab("reply", true); break;
      case "c": selectTab("comment", true); break;
      case "a": document.querySelector("[data-assign]")?.focus(); break;
      case "e": click("[data-close]"); break;
      case "/": document.querySelector("[data-search]")?.focus(); break;
      case "?": document.getElementById("help")?.showModal(); break;
      default: return;
    }
    e.preventDefault();
  });

  // ---- presence: tell the server every 10 s that this conversation is open here, and
  // whether a reply is being written.
  function presence() {
    const pane = document.getElementById("conv-pane");
    if (!pane || document.hidden) return;
    const reply = document.querySelector("[data-reply]");
    const state = reply && (reply.value || document.activeElement === reply) ? "replying" : "viewing";
    fetch("/app/c/" + encodeURIComponent(pane.dataset.conv) + "/presence", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
      body: "state=" + state,
    }).catch(() => {});
  }
  setInterval(presence, 10000);

  // ---- live updates (docs/chat.md): one WebSocket per page. The server pushes what
  // changed among what this page shows, and the polled parts ask at once instead of at
  // their next 10-second poll (which stays, for when the socket is down). Typing goes
  // both ways: a chat visitor's and a teammate's show under the conversation's header.
  let live = null;
  let liveRetry = 0;
  let typingSent = 0;
  let typingClear = null;
  const openConv = () => document.getElementById("conv-pane")?.dataset.conv || null;
  function liveSubscribe() {
    if (live && live.readyState === 1) {
      live.send(JSON.stringify({ type: "subscribe", inbox: "all", conversation: openConv() }));
    }
  }
  function refreshLive(conversationToo) {
    const rows = document.getElementById("rows");
    if (rows) htmx.trigger(rows, "mr-live");
    const conv = document.getElementById("conv-live");
    if (conv && conversationToo) htmx.trigger(conv, "mr-live");
  }
  // A polled part's refresh gives way to a change the agent makes there (assign, stage,
  // reply...: a request that targets the part): its answer is dropped when such a change
  // was under way or started while it was asked, so a view read before the change never
  // replaces the change's own answer (nor takes the form it came from out of the page
  // while it is sent). Counted per part (`view::PolledTpl`).
  const changing = {};
  const changes = {};
  document.addEventListener("htmx:beforeRequest", (e) => {
    const d = e.detail;
    const part = d.target && d.target.id;
    if (!part || !d.target.matches("[hx-trigger*='mr-live']")) return;
    if (d.elt === d.target) {
      d.xhr.mrPart = part;
      d.xhr.mrChanges = changes[part] || 0;
    } else {
      changes[part] = (changes[part] || 0) + 1;
      changing[part] = (changing[part] || 0) + 1;
      d.xhr.addEventListener("loadend", () => changing[part]--);
    }
  });
  document.addEventListener("htmx:beforeSwap", (e) => {
    // (beforeSwap is fired on the target: the refresh is told by its request, not by elt.)
    const x = e.detail.xhr;
    if (x && x.mrPart && (changing[x.mrPart] > 0 || x.mrChanges !== (changes[x.mrPart] || 0))) {
      e.detail.shouldSwap = false;
    }
  });
  function liveConnect() {
    if (!("WebSocket" in window) || !document.getElementById("rows") && !openConv()) return;
    live = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/app/live");
    live.onopen = () => {
      const again = liveRetry > 0;
      liveRetry = 0;
      document.body.dataset.live = "on";
      liveSubscribe();
      // Back after a drop: what changed meanwhile is fetched now, not at the next poll.
      if (again) refreshLive(true);
    };
    live.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (m.type === "event") {
        refreshLive(m.conversation === openConv());
      } else if (m.type === "presence" && m.conversation === openConv()) {
        // The teammate's page posts its presence as it opens: show it once that is stored.
        setTimeout(() => refreshLive(true), 600);
      } else if (m.type === "typing" && m.conversation === openConv()) {
        const el = document.getElementById("live-typing");
        if (!el) return;
        el.textContent = (m.name || "Someone") + (m.visitor ? " (visitor)" : "") + " is typing…";
        clearTimeout(typingClear);
        typingClear = setTimeout(() => (el.textContent = ""), 4000);
      }
    };
    live.onclose = () => {
      document.body.dataset.live = "off";
      liveRetry = Math.min(liveRetry + 1, 6);
      setTimeout(liveConnect, 500 * Math.pow(2, liveRetry - 1));
    };
  }
  document.addEventListener("input", (e) => {
    if (!e.target.matches || !e.target.matches("[data-reply]")) return;
    const now = Date.now();
    if (live && live.readyState === 1 && openConv() && now - typingSent > 2000) {
      typingSent = now;
      live.send(JSON.stringify({ type: "typing", conversation: openConv() }));
    }
  });

  // ---- a session that ended mid-way: to the sign-in page (drafts are kept).
  document.addEventListener("htmx:responseError", (e) => {
    if (e.detail.xhr && e.detail.xhr.status === 401) {
      window.location.assign("/app/signin?next=" + encodeURIComponent(window.location.pathname));
    }
  });

  function init(root) {
    localTimes(root);
    frames(root);
  }
  document.addEventListener("htmx:load", (e) => {
    init(e.detail.elt);
    if (e.detail.elt.id === "conv-pane" || e.detail.elt.querySelector?.("#conv-pane")) liveSubscribe();
  });
  document.addEventListener("DOMContentLoaded", () => {
    init(document);
    restoreDrafts(document);
    presence();
    liveConnect();
  });
})();
