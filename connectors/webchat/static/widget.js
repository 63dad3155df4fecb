/* omnirouter web chat widget: one <script> tag, no framework. Protocol: docs/webchat.md. */
(function () {
  "use strict";
  if (window.__omniChat) return;
  var script = document.currentScript;
  var src = new URL(script.src, location.href);
  var base = src.href.replace(/\/(v\/[^/]+\/)?widget\.js(\?.*)?$/, "");
  var VERSION = "__WIDGET_VERSION__";
  var STRINGS = {
    en: {
      open: "Chat with us", close: "Close chat", placeholder: "Write a message",
      label: "Your message", send: "Send", sending: "Sending…", sent: "Sent",
      failed: "Not sent, retrying…", refused: "Not sent", you: "You", us: "Support",
      offline: "Reconnecting…", tooLarge: "This message is too long.",
      limited: "Too many messages; please wait a moment.",
      greeting: "Before we start, tell us a little about you.",
      name: "Name", email: "Email", phone: "Phone", topic: "Topic", start: "Start chat",
      consent: "I agree that you keep these details to answer me.",
      closed: "We are closed now. We open {opens}.", leave: "Leave a message",
      leaveHint: "Write your message: we answer here when you come back.",
      byEmail: "Answer me by email too, in case I am not here",
      saved: "Thanks, noted.",
      rateUs: "Was your problem solved?", good: "5/5 Yes, solved", bad: "1/5 Not really",
      joined: "{name} has joined the chat", joinedNoName: "An agent has joined the chat"
    },
    es: {
      open: "Chatea con nosotros", close: "Cerrar el chat", placeholder: "Escribe un mensaje",
      label: "Tu mensaje", send: "Enviar", sending: "Enviando…", sent: "Enviado",
      failed: "No enviado, reintentando…", refused: "No enviado", you: "Tú", us: "Soporte",
      offline: "Reconectando…", tooLarge: "Este mensaje es demasiado largo.",
      limited: "Demasiados mensajes; espera un momento.",
      greeting: "Antes de empezar, cuéntanos un poco sobre ti.",
      name: "Nombre", email: "Correo electrónico", phone: "Teléfono", topic: "Tema",
      start: "Empezar el chat",
      consent: "Acepto que guardéis estos datos para responderme.",
      closed: "Ahora estamos cerrados. Abrimos {opens}.", leave: "Dejar un mensaje",
      leaveHint: "Escribe tu mensaje: te respondemos aquí cuando vuelvas.",
      byEmail: "Respondedme también por email, por si no estoy aquí",
      saved: "Gracias, anotado.",
      rateUs: "¿Se resolvió tu problema?", good: "5/5 Sí, resuelto", bad: "1/5 No del todo",
      joined: "{name} se ha unido al chat", joinedNoName: "Un agente se ha unido al chat"
    }
  };
  function pickLang(given) {
    var wanted = [given, script.getAttribute("data-lang"), document.documentElement.lang,
      navigator.language];
    for (var i = 0; i < wanted.length; i++) {
      var l = (wanted[i] || "").slice(0, 2).toLowerCase();
      if (STRINGS[l]) return l;
    }
    return "en";
  }
  var lang = pickLang(null);
  var texts = {};  // the channel's rewording of our strings, per language (welcome.look)
  function t(key) { return (texts[lang] || {})[key] || STRINGS[lang][key]; }

  var KEY = "omnichat:" + base;
  var store = {
    get: function () { try { return localStorage.getItem(KEY); } catch (e) { return null; } },
    set: function (v) { try { localStorage.setItem(KEY, v); } catch (e) { /* private mode */ } }
  };

  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/v/" + VERSION + "/widget.css";
  document.head.appendChild(css);

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    for (var k in attrs) n.setAttribute(k, attrs[k]);
    if (text) n.textContent = text;
    return n;
  }
  var root = el("aside", { "class": "omnichat", "aria-label": t("us") });
  var launcher = el("button", { type: "button", "class": "omnichat-launcher",
    "aria-expanded": "false", "aria-controls": "omnichat-panel" }, t("open"));
  var panel = el("div", { id: "omnichat-panel", "class": "omnichat-panel", role: "dialog",
    "aria-labelledby": "omnichat-title", hidden: "" });
  var head = el("div", { "class": "omnichat-head" });
  var title = el("h2", { id: "omnichat-title" }, t("us"));
  var closer = el("button", { type: "button", "class": "omnichat-close", "aria-label": t("close") },
    "×");
  var status = el("p", { "class": "omnichat-status", role: "status" });
  var logBox = el("div", { "class": "omnichat-log", role: "log", "aria-live": "polite",
    tabindex: "0", "aria-label": t("us") });
  var form = el("form", { "class": "omnichat-form" });
  var label = el("label", { "for": "omnichat-input", "class": "omnichat-sr" }, t("label"));
  var input = el("textarea", { id: "omnichat-input", rows: "2", placeholder: t("placeholder") });
  var sendBtn = el("button", { type: "submit", "class": "omnichat-send" }, t("send"));
  head.appendChild(title); head.appendChild(closer);
  form.appendChild(label); form.appendChild(input); form.appendChild(sendBtn);
  panel.appendChild(head); panel.appendChild(status); panel.appendChild(logBox);
  panel.appendChild(form);
  root.appendChild(launcher); root.appendChild(panel);
  document.body.appendChild(root);

  function relabel() {
    launcher.textContent = t("open"); closer.setAttribute("aria-label", t("close"));
    label.textContent = t("label"); input.placeholder = t("placeholder");
    sendBtn.textContent = t("send");
  }
  function setOpen(open) {
    if (open) { panel.removeAttribute("hidden"); input.focus(); connect(); }
    else { panel.setAttribute("hidden", ""); launcher.focus(); }
    launcher.setAttribute("aria-expanded", String(open));
  }
  launcher.addEventListener("click", function () { setOpen(panel.hasAttribute("hidden")); });
  closer.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") setOpen(false); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  // --- the log: each seq shown once, in order ---------------------------------------------
  var last = 0;          // highest seq shown on this page
  var pending = {};      // cid -> {text, node, state}
  var order = [];        // cids not yet sent, in the order written
  function bubble(who, text, cls) {
    var n = el("div", { "class": "omnichat-msg " + cls });
    n.appendChild(el("span", { "class": "omnichat-who" }, who));
    n.appendChild(el("p", {}, text));
    var st = el("span", { "class": "omnichat-state" });
    n.appendChild(st);
    logBox.appendChild(n);
    logBox.scrollTop = logBox.scrollHeight;
    return n;
  }
  function setState(node, key) {
    node.querySelector(".omnichat-state").textContent = key ? t(key) : "";
    node.setAttribute("data-state", key || "");
  }
  function show(frame) {
    if (frame.seq <= last) return;  // already shown (a replay overlapping a push)
    last = frame.seq;
    if (frame.from === "visitor" && pending[frame.cid]) {
      var p = pending[frame.cid];
      setState(p.node, "sent"); p.node.setAttribute("data-seq", frame.seq);
      delete pending[frame.cid]; order = order.filter(function (c) { return c !== frame.cid; });
      return;
    }
    var who = frame.from === "visitor" ? t("you") : (frame.name || t("us"));
    var n = bubble(who, frame.text, "omnichat-" + frame.from);
    n.setAttribute("data-seq", frame.seq);
    if (frame.from === "visitor") setState(n, "sent");
  }

  // --- where a waiting visitor stands (a `standing` frame, docs/webchat.md) ---------------
  // One line after the acknowledgement, rewritten in place as it changes: inside the log,
  // a polite live region, so each change is announced. Gone once an agent writes.
  var standingLine = null, standingAt = 0;
  function standing(f) {
    if (f.seq <= last) return;  // numbered like messages: shown once, resumed above it
    last = f.seq;
    var at = Date.parse(f.at) || 0;
    if (at < standingAt && standingLine) return;  // an older word than the one shown
    standingAt = at;
    var words = {
      en: function (n, m) {
        return "You are number " + n + " in the queue" + (m ? " · about " + m + " min" : "");
      },
      es: function (n, m) {
        return "Eres el número " + n + " en la cola" + (m ? " · unos " + m + " min" : "");
      }
    };
    // The wait as of `at`, less the time since (by this clock; never more than promised).
    var left = f.wait == null ? 0 : f.wait * 1000 - Math.max(0, Date.now() - at);
    if (!standingLine) {
      var line = standingLine = el("p", { "class": "omnichat-standing" });
      logBox.appendChild(line);
      new MutationObserver(function (changes, watch) {
        changes.forEach(function (c) {
          Array.prototype.forEach.call(c.addedNodes, function (n) {
            if (n.classList && n.classList.contains("omnichat-agent")) {
              line.remove(); watch.disconnect();
              if (standingLine === line) standingLine = null;
            }
          });
        });
      }).observe(logBox, { childList: true });
    }
    standingLine.setAttribute("data-position", f.position);
    standingLine.textContent = words[lang](f.position, left > 0 ? Math.ceil(left / 60000) : 0);
  }

  // --- who has the chat (an `assigned` frame, docs/webchat.md) ----------------------------
  // A line in the log (announced with it): the visitor waits in no queue any more.
  function assigned(f) {
    if (f.seq <= last) return;  // numbered: shown once, resumed above it
    last = f.seq;
    if (standingLine) { standingLine.remove(); standingLine = null; }
    var line = el("p", { "class": "omnichat-joined", "data-seq": f.seq });
    line.textContent = f.name ? t("joined").replace("{name}", f.name) : t("joinedNoName");
    logBox.appendChild(line);
    logBox.scrollTop = logBox.scrollHeight;
  }

  // --- the agent's live signals (`typing`, `seen` frames, docs/webchat.md) -----------------
  // "Chloé is typing…" on one polite status line above the box: announced when it appears,
  // not at every refresh; gone 6 s after the last word, or when the agent's message comes.
  // `seen` (numbered) marks the visitor's messages numbered up to `upto`.
  var typingLine = null, typingTimer = 0;
  function signal(f) {
    var words = {
      en: { typing: " is typing…", seen: "Seen", us: "Support" },
      es: { typing: " está escribiendo…", seen: "Visto", us: "Soporte" }
    }[lang] || {};
    if (f.t === "seen") {
      if (f.seq <= last) return;  // numbered: shown once, resumed above it
      last = f.seq;
      Array.prototype.forEach.call(logBox.querySelectorAll(".omnichat-visitor[data-seq]"), function (n) {
        if (+n.getAttribute("data-seq") > f.upto || n.getAttribute("data-state") === "seen") return;
        n.querySelector(".omnichat-state").textContent = words.seen;
        n.setAttribute("data-state", "seen");
      });
      return;
    }
    var done = function () { clearTimeout(typingTimer); typingLine.textContent = ""; };
    if (!typingLine) {
      typingLine = el("p", { "class": "omnichat-typing", role: "status", "aria-live": "polite" });
      panel.insertBefore(typingLine, form);
      new MutationObserver(function (changes) {
        changes.forEach(function (c) {
          Array.prototype.forEach.call(c.addedNodes, function (n) {
            if (n.classList && n.classList.contains("omnichat-agent")) done();
          });
        });
      }).observe(logBox, { childList: true });
    }
    var text = ((f.name || "").split(" ")[0] || words.us) + words.typing;  // first name
    if (typingLine.textContent !== text) typingLine.textContent = text;  // said once
    clearTimeout(typingTimer);
    typingTimer = setTimeout(done, 6000);
  }

  // --- the connection ----------------------------------------------------------------------
  // An identity token refused once (expired on a page left open) is not sent again: the
  // visitor goes on as a guest instead of reconnecting in a loop.
  var identityRefused = false;
  var ws = null, useHttp = false, failures = 0, timer = null, lastHeard = 0, polling = false;
  function hello() {
    var h = { t: "hello", session: store.get(), last: last, lang: lang };
    var identity = script.getAttribute("data-identity");
    if (identity && !identityRefused) h.identity = identity;
    return h;
  }
  function onFrame(f) {
    lastHeard = Date.now();
    if (f.t === "welcome") {
      if (f.session) store.set(f.session);
      if (f.title) title.textContent = f.title;
      if (f.lang && f.lang !== lang) { lang = pickLang(f.lang); relabel(); }
      status.textContent = ""; failures = 0;
      welcomed(f);
      order.forEach(function (cid) { transmit(cid); });
    } else if (f.t === "msg") { show(f); fileLinks(f); offerRating(f); }
    else if (f.t === "form") formSaved();
    else if (f.t === "standing") standing(f);
    else if (f.t === "assigned") assigned(f);
    else if (f.t === "typing" || f.t === "seen") signal(f);
    else if (f.t === "state") {
      var p = pending[f.cid];
      if (!p) return;
      if (f.state === "sent") show({ seq: f.seq, from: "visitor", cid: f.cid });
      else if (f.retry) { setState(p.node, "failed"); setTimeout(function () { transmit(f.cid); }, 2000); }
      else { setState(p.node, "refused"); delete pending[f.cid]; }
    } else if (f.t === "error") {
      if (f.code === "too_large" && pending[f.cid]) {
        setState(pending[f.cid].node, "refused"); delete pending[f.cid];
        status.textContent = t("tooLarge");
      } else if (f.code === "no_such_file" && pending[f.cid]) {
        setState(pending[f.cid].node, "refused"); delete pending[f.cid]; status.textContent = f.reason;
      } else if (f.code === 4429) status.textContent = t("limited");
      else if (f.code === 4401) {
        if (/identity/.test(f.reason || "")) identityRefused = true;
        else store.set("");
      }
    }
  }
  function connect() {
    if (ws || polling) return;
    if (useHttp) return httpLoop();
    var url = base.replace(/^http/, "ws");
    var sock = new WebSocket(url);
    ws = sock;
    sock.onopen = function () { sock.send(JSON.stringify(hello())); };
    sock.onmessage = function (e) { onFrame(JSON.parse(e.data)); };
    sock.onclose = function (e) {
      if (ws === sock) ws = null;
      if (!lastHeard || e.code === 1006 && !sock.__opened) failures++;
      if (failures >= 3) useHttp = true;
      status.textContent = t("offline");
      var wait = Math.min(30000, 500 * Math.pow(2, Math.min(failures, 6)));
      setTimeout(connect, e.code === 4429 ? 60000 : wait);
    };
    sock.addEventListener("open", function () { sock.__opened = true; });
  }
  function post(path, body) {
    return fetch(base + path, { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "text/plain" } }).then(function (r) { return r.json(); });
  }
  function httpLoop() {
    polling = true;
    post("/http", hello()).then(function (frames) {
      frames.forEach(onFrame);
      (function poll() {
        post("/poll", { session: store.get(), last: last }).then(function (fs) {
          fs.forEach(onFrame); poll();
        }, function () { polling = false; setTimeout(connect, 3000); });
      })();
    }, function () { polling = false; setTimeout(connect, 3000); });
  }
  function transmit(cid) {
    var p = pending[cid];
    if (!p) return;
    setState(p.node, "sending");
    var frame = { t: "msg", cid: cid, text: p.text };
    if (p.files && p.files.length) frame.files = p.files.map(function (x) { return x.file; });
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
    else if (useHttp) {
      frame.session = store.get();
      post("/http", frame).then(function (fs) { fs.forEach(onFrame); });
    }
  }
  setInterval(function () {
    if (ws && ws.readyState === 1) {
      if (lastHeard && Date.now() - lastHeard > 60000) { ws.close(); return; }
      ws.send('{"t":"ping"}');
    }
  }, 25000);
  function newCid() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    var files = attached.take();
    if (!text && !files.length) return;
    input.value = "";
    var cid = newCid();
    pending[cid] = { text: text, files: files, node: bubble(t("you"), text, "omnichat-visitor") };
    fileList(pending[cid].node, files);
    order.push(cid);
    transmit(cid);
    connect();
  });
  // --- the channel's look, the pre-chat form, out of hours, the satisfaction question -----
  // Each in its own functions: welcomed() is the one call from onFrame's welcome.
  var prechat = null, offline = null, rating = null, formSent = false;
  function look(l) {
    if (!l) return;
    texts = l.texts || {};
    transcript.offer(!!l.by_email);
    root.style.setProperty("--omnichat-color", l.color);
    root.style.setProperty("--omnichat-on-color", l.text_color);
    relabel();
  }
  function welcomed(f) {
    look(f.look);
    var fields = (f.look && f.look.form) || [];
    var fresh = !f.last && !last && !order.length;  // nothing said yet in this session
    if (f.opens_at && !offline) showClosed(f.opens_at, fresh);
    else if (!f.opens_at && offline) { offline.remove(); offline = null; }
    if (fresh && fields.length && !prechat && !formSent && !offline) showForm(fields, f.look.topics);
  }
  function when(iso) {
    var d = new Date(iso);
    var opts = { weekday: "long", hour: "2-digit", minute: "2-digit" };
    return new Intl.DateTimeFormat(lang, opts).format(d);
  }
  function field(box, name, type, options) {
    var id = "omnichat-f-" + name;
    var wrap = el("div", { "class": "omnichat-field" });
    wrap.appendChild(el("label", { "for": id }, t(name)));
    var input;
    if (options && options.length) {
      input = el("select", { id: id, name: name });
      options.forEach(function (o) { input.appendChild(el("option", { value: o }, o)); });
    } else input = el("input", { id: id, name: name, type: type,
      autocomplete: { name: "name", email: "email", phone: "tel" }[name] || "off" });
    wrap.appendChild(input);
    box.appendChild(wrap);
    return input;
  }
  function check(box, name, required) {
    var id = "omnichat-f-" + name;
    var wrap = el("div", { "class": "omnichat-check" });
    var box_ = el("input", { type: "checkbox", id: id, name: name });
    if (required) box_.required = true;
    wrap.appendChild(box_);
    wrap.appendChild(el("label", { "for": id }, t(name)));
    box.appendChild(wrap);
    return box_;
  }
  function sendForm(fields, byEmail) {
    var frame = { t: "form", consent: true, fields: fields, reply_by_email: !!byEmail };
    formSent = true;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
    else if (useHttp) {
      frame.session = store.get();
      post("/http", frame).then(function (fs) { fs.forEach(onFrame); });
    }
  }
  function formSaved() { status.textContent = t("saved"); }
  function showForm(fields, topics) {
    prechat = el("form", { "class": "omnichat-prechat", "aria-labelledby": "omnichat-greeting" });
    prechat.appendChild(el("p", { id: "omnichat-greeting" }, t("greeting")));
    var inputs = {};
    fields.forEach(function (name) {
      inputs[name] = field(prechat, name, name === "email" ? "email" : name === "phone" ? "tel" : "text",
        name === "topic" ? topics : null);
    });
    check(prechat, "consent", true);
    var byEmail = inputs.email ? transcript.consent(prechat, inputs.email) : null;
    prechat.appendChild(el("button", { type: "submit", "class": "omnichat-send" }, t("start")));
    prechat.addEventListener("submit", function (e) {
      e.preventDefault();
      var values = {};
      for (var k in inputs) if (inputs[k].value.trim()) values[k] = inputs[k].value.trim();
      sendForm(values, !!(byEmail && byEmail.checked && values.email));
      prechat.remove(); prechat = null; form.hidden = false; input.focus();
    });
    form.hidden = true;
    logBox.parentNode.insertBefore(prechat, form);
    var first = prechat.querySelector("input,select");
    if (first) first.focus();
  }
  function showClosed(opensAt, fresh) {
    offline = el("div", { "class": "omnichat-closed", role: "note" });
    offline.appendChild(el("p", {}, t("closed").replace("{opens}", when(opensAt))));
    logBox.parentNode.insertBefore(offline, logBox);
    if (!fresh) return;  // a returning visitor: their chat goes on as it was
    var leave = el("button", { type: "button", "class": "omnichat-send" }, t("leave"));
    offline.appendChild(leave);
    form.hidden = true;
    leave.addEventListener("click", function () {
      leave.remove();
      var details = el("form", { "class": "omnichat-prechat" });
      details.appendChild(el("p", {}, t("leaveHint")));
      var name = field(details, "name", "text"), email = field(details, "email", "email");
      check(details, "consent", true);
      var byEmail = transcript.consent(details, email);
      details.appendChild(el("button", { type: "submit", "class": "omnichat-send" }, t("start")));
      details.addEventListener("submit", function (e) {
        e.preventDefault();
        var values = {};
        if (name.value.trim()) values.name = name.value.trim();
        if (email.value.trim()) values.email = email.value.trim();
        // Answered by email too only when the chat can (look.by_email) and they ticked it.
        sendForm(values, !!(byEmail && byEmail.checked && values.email));
        details.remove(); form.hidden = false; input.focus();
      });
      offline.appendChild(details);
      name.focus();
    });
  }
  // The router's satisfaction question (purpose `followup`): two quick replies, each an
  // ordinary message starting with a score the router reads (4-5 closes, else reopens).
  function offerRating(f) {
    if (rating && f.from === "visitor") { rating.remove(); rating = null; }  // answered
    if (f.purpose !== "followup" || rating || f.seq < last) return;
    rating = el("div", { "class": "omnichat-quick", role: "group", "aria-label": t("rateUs") });
    ["good", "bad"].forEach(function (key) {
      var b = el("button", { type: "button", "class": "omnichat-send" }, t(key));
      b.addEventListener("click", function () {
        rating.remove(); rating = null;
        input.value = t(key); form.requestSubmit();
      });
      rating.appendChild(b);
    });
    logBox.parentNode.insertBefore(rating, form);
  }

  // "Call me back": its button, a phone field (empty: the number the pre-chat form stated),
  // and a `callback` frame (docs/webchat.md); the router's confirmation arrives as a msg.
  function callMeBack() {
    var S = {
      en: { ask: "Call me back", phone: "Your phone number", go: "Request the call",
        need: "Please enter your phone number.", bad: "That does not look like a phone number." },
      es: { ask: "Llámame", phone: "Tu número de teléfono", go: "Pedir la llamada",
        need: "Escribe tu número de teléfono.", bad: "Eso no parece un número de teléfono." }
    };
    function s(key) { return (S[lang] || S.en)[key]; }
    var ask = el("button", { type: "button", "class": "omnichat-callback",
      "aria-expanded": "false", "aria-controls": "omnichat-callback-form" }, s("ask"));
    var box = el("form", { id: "omnichat-callback-form", "class": "omnichat-callback-form",
      hidden: "" });
    var tel = el("input", { id: "omnichat-phone", type: "tel", autocomplete: "tel" });
    var go = el("button", { type: "submit", "class": "omnichat-send" }, s("go"));
    var hint = el("p", { "class": "omnichat-callback-hint", role: "alert" });
    var label = el("label", { "for": "omnichat-phone" }, s("phone"));
    box.appendChild(label); box.appendChild(tel); box.appendChild(go); box.appendChild(hint);
    panel.insertBefore(ask, form); panel.insertBefore(box, form);
    var cids = {};  // one client id per number: a resend is the same request
    function answer(f, cid) {
      if (f.cid !== cid) return;
      if (f.t === "error") { hint.textContent = s(f.code === "bad_phone" ? "bad" : "need"); tel.focus(); }
      else if (f.t === "state" && f.state === "sent") { box.setAttribute("hidden", "");
        ask.setAttribute("aria-expanded", "false"); hint.textContent = ""; ask.focus(); }
      else if (f.t === "state" && f.retry) setTimeout(function () { send(cid, 0); }, 2000);
    }
    function send(cid, tries) {
      var frame = { t: "callback", cid: cid };
      var phone = tel.value.trim();
      if (phone) frame.phone = phone;
      if (ws && ws.readyState === 1) {
        var sock = ws;
        sock.addEventListener("message", function on(e) {
          var f = JSON.parse(e.data);
          if (f.cid === cid && (f.t === "error" || f.t === "state")) {
            sock.removeEventListener("message", on); answer(f, cid);
          }
        });
        sock.send(JSON.stringify(frame));
      } else if (useHttp) {
        frame.session = store.get();
        post("/http", frame).then(function (fs) {
          fs.forEach(onFrame); fs.forEach(function (f) { answer(f, cid); });
        });
      } else if (tries < 20) { connect(); setTimeout(function () { send(cid, tries + 1); }, 500); }
    }
    ask.addEventListener("click", function () {
      var open = box.hasAttribute("hidden");
      ask.textContent = s("ask"); label.textContent = s("phone"); go.textContent = s("go");
      if (open) { box.removeAttribute("hidden"); tel.focus(); } else box.setAttribute("hidden", "");
      ask.setAttribute("aria-expanded", String(open));
    });
    box.addEventListener("submit", function (e) {
      e.preventDefault();
      var key = tel.value.replace(/[^0-9+]/g, "");
      hint.textContent = "";
      send(cids[key] = cids[key] || "cb" + newCid(), 0);
    });
  }
  callMeBack();

  // Answers and the transcript by email (docs/webchat.md, "Answers by email"): shown only
  // when the chat has an email channel (look.by_email). "Email me the transcript" sends a
  // `transcript` frame; without an agreed email the server says so, and a small form asks
  // for the email with its consent box, then asks again. The router's word comes as a msg.
  var transcript = (function () {
    var S = {
      en: { ask: "Email me the transcript", go: "Send me the transcript",
        asked: "Asked: the transcript is on its way.",
        nothing_yet: "There is nothing to send yet.",
        no_email_channel: "This chat cannot send transcripts by email." },
      es: { ask: "Envíame la transcripción por email", go: "Enviarme la transcripción",
        asked: "Pedida: la transcripción va de camino.",
        nothing_yet: "Todavía no hay nada que enviar.",
        no_email_channel: "Este chat no puede enviar transcripciones por email." }
    };
    function s(key) { return (S[lang] || S.en)[key]; }
    var offered = false;
    var ask = el("button", { type: "button", "class": "omnichat-callback", hidden: "",
      "aria-controls": "omnichat-transcript-form", "aria-expanded": "false" }, s("ask"));
    var box = el("form", { id: "omnichat-transcript-form", "class": "omnichat-prechat",
      hidden: "" });
    var wrap = el("div", { "class": "omnichat-field" });
    wrap.appendChild(el("label", { "for": "omnichat-t-email" }, t("email")));
    var address = el("input", { id: "omnichat-t-email", type: "email", autocomplete: "email",
      required: "" });
    wrap.appendChild(address); box.appendChild(wrap);
    var agree = el("input", { type: "checkbox", id: "omnichat-t-agree", required: "" });
    var agreeWrap = el("div", { "class": "omnichat-check" });
    var agreeLabel = el("label", { "for": "omnichat-t-agree" }, t("byEmail"));
    agreeWrap.appendChild(agree); agreeWrap.appendChild(agreeLabel); box.appendChild(agreeWrap);
    var go = el("button", { type: "submit", "class": "omnichat-send" }, s("go"));
    box.appendChild(go);
    var hint = el("p", { "class": "omnichat-callback-hint", role: "alert" });
    panel.insertBefore(ask, form); panel.insertBefore(box, form); panel.insertBefore(hint, form);
    function answer(f) {
      if (f.t === "state" && f.state === "sent") {
        hint.textContent = s("asked"); box.setAttribute("hidden", "");
        ask.setAttribute("aria-expanded", "false"); ask.focus();
      } else if (f.t === "state" && f.retry) setTimeout(function () { send(f.cid, 0); }, 2000);
      else if (f.t === "error" && f.code === "email_required") {
        hint.textContent = ""; box.removeAttribute("hidden");
        ask.setAttribute("aria-expanded", "true"); address.focus();
      } else if (f.t === "error" || f.t === "state") hint.textContent = s(f.code) || f.reason || "";
    }
    function send(cid, tries) {
      var frame = { t: "transcript", cid: cid };
      if (ws && ws.readyState === 1) {
        var sock = ws;
        sock.addEventListener("message", function on(e) {
          var f = JSON.parse(e.data);
          if (f.cid === cid && (f.t === "error" || f.t === "state")) {
            sock.removeEventListener("message", on); answer(f);
          }
        });
        sock.send(JSON.stringify(frame));
      } else if (useHttp) {
        frame.session = store.get();
        post("/http", frame).then(function (fs) {
          fs.forEach(function (f) { if (f.cid === cid) answer(f); });
        });
      } else if (tries < 20) { connect(); setTimeout(function () { send(cid, tries + 1); }, 500); }
    }
    function relabel() {
      ask.textContent = s("ask"); go.textContent = s("go"); agreeLabel.textContent = t("byEmail");
    }
    ask.addEventListener("click", function () { hint.textContent = ""; send("tr" + newCid(), 0); });
    box.addEventListener("submit", function (e) {
      e.preventDefault();
      sendForm({ email: address.value.trim() }, true);
      send("tr" + newCid(), 0);
    });
    return {
      offer: function (yes) {
        offered = yes; relabel();
        if (yes) ask.removeAttribute("hidden"); else ask.setAttribute("hidden", "");
      },
      // The consent box of a form with an email field, when this chat answers by email:
      // ticking it makes the email required. None (null) otherwise.
      consent: function (details, email) {
        if (!offered) return null;
        var box_ = check(details, "byEmail", false);
        box_.addEventListener("change", function () { email.required = box_.checked; });
        return box_;
      }
    };
  })();

  // --- attachments (docs/webchat.md, "Attachments") --------------------------------------
  // A labelled button opens the file picker; the file is uploaded at once (its type is
  // read by the server from the bytes), its name and state shown in a polite live line,
  // and the next message carries it. Files on messages show as links to the daemon.
  function fileList(node, files) {
    if (!files || !files.length) return;
    var origin = new URL(base).origin;
    var list = el("ul", { "class": "omnichat-files" });
    files.forEach(function (f) {
      var li = el("li");
      if (f.url) li.appendChild(el("a", { href: origin + f.url, download: f.name,
        target: "_blank", rel: "noopener" }, f.name));
      else li.textContent = f.name;
      list.appendChild(li);
    });
    node.insertBefore(list, node.querySelector(".omnichat-state"));
  }
  function fileLinks(f) {
    if (!f.files) return;
    var node = logBox.querySelector('[data-seq="' + f.seq + '"]');
    if (!node) return;
    var old = node.querySelector(".omnichat-files");
    if (old) old.remove();  // the visitor's own names become links
    fileList(node, f.files);
  }
  var attached = (function () {
    var S = {
      en: { attach: "Attach a file", uploading: "Uploading {name}…", ready: "{name} attached",
        refused: "{name} not attached: {why}", offline: "Connecting… try again in a moment." },
      es: { attach: "Adjuntar un archivo", uploading: "Subiendo {name}…",
        ready: "{name} adjuntado", refused: "{name} no adjuntado: {why}",
        offline: "Conectando… inténtalo de nuevo en un momento." }
    };
    function s(key, name, why) {
      return (S[lang] || S.en)[key].replace("{name}", name || "").replace("{why}", why || "");
    }
    var ready = [];
    var picker = el("input", { type: "file", id: "omnichat-file", hidden: "" });
    var button = el("button", { type: "button", "class": "omnichat-attach",
      "aria-label": s("attach"), title: s("attach") });
    // A drawn paperclip: an emoji needs a font the visitor's machine may not have.
    var NS = "http://www.w3.org/2000/svg";
    var icon = document.createElementNS(NS, "svg");
    icon.setAttribute("viewBox", "0 0 24 24"); icon.setAttribute("width", "20");
    icon.setAttribute("height", "20"); icon.setAttribute("aria-hidden", "true");
    var clip = document.createElementNS(NS, "path");
    clip.setAttribute("d", "M16.5 6.5l-7.8 7.8a2 2 0 0 0 2.8 2.8l8-8a4 4 0 0 0-5.6-5.6l-8.2 8.2a6 6 0 0 0 8.5 8.5l7-7");
    clip.setAttribute("fill", "none"); clip.setAttribute("stroke", "currentColor");
    clip.setAttribute("stroke-width", "2"); clip.setAttribute("stroke-linecap", "round");
    icon.appendChild(clip); button.appendChild(icon);
    var line = el("p", { "class": "omnichat-file", role: "status", "aria-live": "polite" });
    form.insertBefore(button, sendBtn); form.appendChild(picker);
    form.parentNode.insertBefore(line, form.nextSibling);
    button.addEventListener("click", function () { picker.click(); });
    picker.addEventListener("change", function () {
      var file = picker.files && picker.files[0];
      picker.value = "";
      if (!file) return;
      var session = store.get();
      if (!session) { line.textContent = s("offline"); connect(); return; }
      line.textContent = s("uploading", file.name);
      var url = base + "/upload?session=" + encodeURIComponent(session) +
        "&name=" + encodeURIComponent(file.name);
      // text/plain: no CORS preflight; the server reads the type from the bytes anyway.
      fetch(url, { method: "POST", body: file, headers: { "Content-Type": "text/plain" } })
        .then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
        .then(function (res) {
          if (res[0]) { ready.push(res[1]); line.textContent = s("ready", res[1].name); }
          else line.textContent = s("refused", file.name, res[1].error);
          button.focus();
        }, function () { line.textContent = s("refused", file.name, t("offline")); });
    });
    return {
      take: function () { var r = ready; ready = []; line.textContent = ""; return r; }
    };
  })();
  window.__omniChat = { open: function () { setOpen(true); }, base: base };
  if (store.get()) connect();  // a returning visitor: history and replies kept meanwhile
})();
