// Streamguard registry admin dashboard.
//
// Served as a static file by the registry (/admin/app.js) under
// `Content-Security-Policy: default-src 'self'`: no inline code, no external
// resources. Security model:
//   - the admin token is typed in, kept in sessionStorage (this tab only) and
//     sent as `Authorization: Bearer` on every admin call; it never goes in a URL;
//   - every piece of data shown comes from authenticated admin routes;
//   - live updates: the public event stream (`/api/streaming/providers/events`)
//     carries only public data, and EventSource cannot send an Authorization
//     header, so it is used only as a "something changed" signal that triggers
//     an authenticated re-fetch; a 30 s refresh covers what it does not signal
//     (admin-only fields, checks that do not change the public status) and
//     periods when the stream is down.
//   - everything received is inserted with textContent / DOM APIs, never as HTML.
(function () {
  "use strict";

  var API = "/api/streaming/providers";
  var STREAMS_API = "/api/admin/streams"; // live placements
  var AUDIENCE_API = "/api/admin/audience"; // viewers per stream and provider
  var TOKEN_KEY = "streamguard.registry.adminToken";
  var POLL_MS = 30000; // fallback refresh, counted from the last refresh
  var EVENT_THROTTLE_MS = 150; // bursts of events become one refresh
  var RECONNECT_MS = 5000; // after the event stream was refused (e.g. 429/503)
  var HISTORY_WINDOW_MS = 6 * 60 * 60 * 1000; // chart: last 6 hours
  var FAILOVERS_SHOWN = 20;
  var SVG_NS = "http://www.w3.org/2000/svg";

  var STATUS_ICON = {
    EXCELLENT: "★",
    HEALTHY: "✓",
    WARNING: "▲",
    CRITICAL: "✕",
    DISABLED: "⊘",
    UNKNOWN: "?",
  };

  var REASON_TEXT = {
    login: "sign-in",
    event: "live event",
    poll: "30 s refresh",
    action: "your change",
  };

  var state = {
    token: null,
    signedIn: false, // the token has been accepted by the registry
    source: null,
    pollTimer: null,
    eventTimer: null,
    reconnectTimer: null,
    inFlight: null,
    queued: null,
    generation: 0, // bumped on logout so late answers are dropped
    cards: new Map(),
  };

  var el = {};

  // ---------------------------------------------------------------- helpers

  function $(id) {
    return document.getElementById(id);
  }

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") node.textContent = value;
        else if (key === "className") node.className = value;
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    return node;
  }

  function ApiFailure(status, code, message, retryAfter) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.retryAfter = retryAfter;
  }

  function describeFailure(err) {
    if (!(err instanceof ApiFailure)) return String(err && err.message ? err.message : err);
    if (err.status === 0) return "The registry cannot be reached.";
    if (err.status === 429) {
      return "Too many requests: wait " + (err.retryAfter || "a few") + " s and try again.";
    }
    return err.message + " (" + err.status + " " + err.code + ")";
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatTime(ms) {
    var d = new Date(ms);
    var time = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
    var now = new Date();
    if (d.toDateString() === now.toDateString()) return time;
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + time;
  }

  function timeNode(ms) {
    if (ms === null || ms === undefined) return h("span", { text: "never" });
    return h("time", { datetime: new Date(ms).toISOString(), "data-ms": ms, text: formatTime(ms) });
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : value.toFixed(1) + " %";
  }

  function millis(value) {
    if (value === null || value === undefined) return "—";
    return (value < 10 ? value.toFixed(1) : String(Math.round(value))) + " ms";
  }

  function money(value) {
    return (value || 0).toFixed(2) + " / month";
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function replaceContent(node, child) {
    while (node.firstChild) node.removeChild(node.firstChild);
    if (child) node.appendChild(child);
  }

  // ---------------------------------------------------------------- API

  function api(method, path, body) {
    var token = state.token;
    var generation = state.generation;
    var headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    var init = {
      method: method,
      headers: headers,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      function (response) {
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (payload) {
            if (response.ok && payload && payload.success === true) return payload.data;
            var error = (payload && payload.error) || {};
            var failure = new ApiFailure(
              response.status,
              error.code || "http_" + response.status,
              error.message || response.statusText || "request failed",
              response.headers.get("Retry-After")
            );
            // The token stopped working while signed in (rotated, or registry restarted).
            if (response.status === 401 && state.signedIn && generation === state.generation) {
              logout("The registry no longer accepts this token. Sign in again.");
            }
            throw failure;
          });
      },
      function () {
        throw new ApiFailure(0, "network", "registry unreachable");
      }
    );
  }

  function providerPath(name, suffix) {
    return API + "/" + encodeURIComponent(name) + (suffix || "");
  }

  // ---------------------------------------------------------------- session

  function showLogin(message) {
    el.dashboardView.hidden = true;
    el.sessionBar.hidden = true;
    el.loginView.hidden = false;
    setText(el.loginError, message || "");
    el.token.value = "";
    el.token.focus();
  }

  function login(candidate, restored) {
    if (!candidate) {
      setText(el.loginError, "Enter the admin token.");
      el.token.focus();
      return Promise.resolve(false);
    }
    el.loginButton.disabled = true;
    setText(el.loginError, "");
    state.token = candidate;
    // The admin list is the validation: only a working admin token gets it.
    return api("GET", API + "/admin")
      .then(function () {
        try {
          sessionStorage.setItem(TOKEN_KEY, candidate);
        } catch (e) {
          // Storage can be unavailable (privacy mode); the session then lasts for this page.
        }
        state.signedIn = true;
        el.token.value = "";
        el.loginView.hidden = true;
        el.dashboardView.hidden = false;
        el.sessionBar.hidden = false;
        setText(el.notice, "");
        connectEvents();
        return refresh("login").then(function () {
          return true;
        });
      })
      .catch(function (err) {
        state.token = null;
        try {
          sessionStorage.removeItem(TOKEN_KEY);
        } catch (e) {
          /* nothing stored */
        }
        var message =
          err instanceof ApiFailure && err.status === 401
            ? "Token refused: the registry did not accept this admin token."
            : "Sign-in failed: " + describeFailure(err);
        if (restored) message = "Your saved session ended. " + message;
        showLogin(message);
        return false;
      })
      .finally(function () {
        el.loginButton.disabled = false;
      });
  }

  function logout(message) {
    state.generation += 1;
    state.token = null;
    state.signedIn = false;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* nothing stored */
    }
    closeEvents();
    clearTimeout(state.pollTimer);
    clearTimeout(state.eventTimer);
    state.eventTimer = null;
    state.queued = null;
    // Drop every piece of data from the page.
    state.cards.clear();
    replaceContent(el.cards, null);
    replaceContent(el.failovers, null);
    el.failoversEmpty.hidden = false;
    renderStreams({ streams: [], total: 0 }, []);
    setText(el.failoverOrder, "Failover order: none");
    setText(el.updated, "Not loaded yet");
    setText(el.notice, "");
    showLogin(message || "Signed out.");
  }

  // ---------------------------------------------------------------- live updates

  function setLive(mode) {
    var text = {
      connecting: "Live updates: connecting…",
      connected: "Live updates: on",
      reconnecting: "Live updates: reconnecting… (30 s refresh meanwhile)",
      off: "Live updates: off (refreshing every 30 s)",
    }[mode];
    el.live.dataset.state = mode;
    setText(el.live, text);
  }

  function closeEvents() {
    clearTimeout(state.reconnectTimer);
    if (state.source) {
      state.source.close();
      state.source = null;
    }
    setLive("off");
  }

  function onChangeSignal() {
    // Throttle, not debounce: a steady stream of events still refreshes.
    if (state.eventTimer) return;
    state.eventTimer = setTimeout(function () {
      state.eventTimer = null;
      refresh("event");
    }, EVENT_THROTTLE_MS);
  }

  function connectEvents() {
    closeEvents();
    if (!state.token || typeof EventSource === "undefined") return;
    // Public stream: no token and no cookies are sent; it only tells us when to re-fetch.
    var source = new EventSource(API + "/events");
    state.source = source;
    setLive("connecting");
    source.onopen = function () {
      setLive("connected");
    };
    source.addEventListener("providers", onChangeSignal);
    source.addEventListener("health", onChangeSignal);
    source.onerror = function () {
      if (state.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (429, 503): the browser gives up, so retry later ourselves.
        setLive("off");
        state.source = null;
        state.reconnectTimer = setTimeout(connectEvents, RECONNECT_MS);
      } else {
        setLive("reconnecting");
      }
    };
  }

  function schedulePoll() {
    clearTimeout(state.pollTimer);
    if (!state.token) return;
    state.pollTimer = setTimeout(function () {
      refresh("poll");
    }, POLL_MS);
  }

  // ---------------------------------------------------------------- refresh

  function refresh(reason) {
    if (!state.token) return Promise.resolve();
    if (state.inFlight) {
      // One refresh at a time; changes during it get one more afterwards.
      state.queued = reason;
      return state.inFlight;
    }
    var generation = state.generation;
    var since = Date.now() - HISTORY_WINDOW_MS;
    var run = Promise.all([
      api("GET", API + "/admin"),
      api("GET", API + "/failovers"),
      api("GET", STREAMS_API),
      api("GET", AUDIENCE_API),
    ])
      .then(function (results) {
        var list = results[0].providers;
        var histories = list.map(function (p) {
          return api("GET", providerPath(p.name, "/history?since=" + since)).catch(function () {
            return null; // deleted meanwhile: the chart just stays empty
          });
        });
        return Promise.all(histories).then(function (charts) {
          if (generation !== state.generation) return;
          render(list, charts, results[1].failovers, reason);
          renderStreams(results[2], results[3].audience);
        });
      })
      .catch(function (err) {
        if (generation !== state.generation) return;
        showNotice("Refresh failed: " + describeFailure(err), true);
      })
      .finally(function () {
        state.inFlight = null;
        if (generation !== state.generation) return;
        schedulePoll();
        if (state.queued) {
          var next = state.queued;
          state.queued = null;
          refresh(next);
        }
      });
    state.inFlight = run;
    return run;
  }

  function showNotice(text, isError) {
    el.notice.classList.toggle("error", !!isError);
    setText(el.notice, text);
  }

  // ---------------------------------------------------------------- rendering

  function render(list, histories, failovers, reason) {
    var seen = new Set();
    list.forEach(function (provider, i) {
      seen.add(provider.name);
      var card = state.cards.get(provider.name);
      if (!card) {
        card = createCard(provider.name);
        state.cards.set(provider.name, card);
      }
      updateCard(card, provider, histories[i]);
    });
    state.cards.forEach(function (card, name) {
      if (!seen.has(name)) {
        card.root.remove();
        state.cards.delete(name);
      }
    });
    // Keep the registry's order (priority, then name); move nodes only when it changed,
    // so a focused control is not disturbed by routine refreshes.
    var current = Array.prototype.map.call(el.cards.children, function (node) {
      return node.dataset.provider;
    });
    var wanted = list.map(function (p) {
      return p.name;
    });
    if (current.join("\n") !== wanted.join("\n")) {
      wanted.forEach(function (name) {
        el.cards.appendChild(state.cards.get(name).root);
      });
    }

    var order = list
      .filter(function (p) {
        return p.isActive;
      })
      .map(function (p) {
        return p.name;
      });
    setText(
      el.failoverOrder,
      order.length ? "Failover order: " + order.join(" → ") : "Failover order: none (no active provider)"
    );
    renderFailovers(failovers);
    el.updated.dataset.reason = reason;
    setText(el.updated, "Updated " + formatTime(Date.now()) + " (" + (REASON_TEXT[reason] || reason) + ")");
  }

  function stat(label, field) {
    var dd = h("dd", { "data-field": field, text: "—" });
    return { node: h("div", null, [h("dt", { text: label }), dd]), value: dd };
  }

  function createCard(name) {
    var id = "provider-" + name;
    var refs = { name: name, values: {} };
    refs.badge = h("span", { className: "badge", "data-role": "status" });
    refs.alert = h("p", { className: "alert", role: "alert", hidden: true });
    refs.meta = h("p", { className: "meta" });
    var stats = h("dl", { className: "stats" });
    [
      ["Uptime", "uptime"],
      ["Error rate", "errorRate"],
      ["Active streams", "activeStreams"],
      ["Total streams", "totalStreams"],
      ["Consecutive failures", "consecutiveFailures"],
      ["Last health check", "lastCheck"],
      ["Average latency", "averageLatency"],
      ["Monthly cost", "monthlyCost"],
    ].forEach(function (entry) {
      var s = stat(entry[0], entry[1]);
      refs.values[entry[1]] = s.value;
      stats.appendChild(s.node);
    });
    refs.lastError = h("p", { className: "last-error", hidden: true });
    refs.chart = h("div", { className: "chart-slot" });
    refs.chartCaption = h("figcaption");

    refs.toggle = h("button", { type: "button", "data-action": "toggle" });
    refs.priority = h("input", {
      id: id + "-priority",
      type: "number",
      min: 0,
      step: 1,
      inputmode: "numeric",
      "data-action": "priority-input",
    });
    refs.savePriority = h("button", {
      type: "button",
      "data-action": "save-priority",
      "aria-label": "Save priority: " + name,
      text: "Save priority",
    });
    refs.check = h("button", {
      type: "button",
      "data-action": "check",
      "aria-label": "Check now: " + name,
      text: "Check now",
    });
    refs.result = h("p", { className: "result", role: "status", "aria-live": "polite" });

    refs.root = h(
      "article",
      { className: "card", "data-provider": name, "aria-labelledby": id + "-title" },
      [
        h("div", { className: "card-head" }, [h("h3", { id: id + "-title", text: name }), refs.badge]),
        refs.alert,
        refs.meta,
        stats,
        refs.lastError,
        h("figure", { className: "chart" }, [refs.chart, refs.chartCaption]),
        h("div", { className: "actions" }, [
          refs.toggle,
          h("div", { className: "priority" }, [
            h("label", { for: id + "-priority" }, [
              "Priority",
              h("span", { className: "sr-only", text: " of " + name }),
            ]),
            refs.priority,
            refs.savePriority,
          ]),
          refs.check,
        ]),
        refs.result,
      ]
    );

    refs.toggle.addEventListener("click", function () {
      toggleProvider(refs);
    });
    refs.savePriority.addEventListener("click", function () {
      savePriority(refs);
    });
    refs.priority.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        savePriority(refs);
      }
    });
    refs.check.addEventListener("click", function () {
      checkProvider(refs);
    });
    return refs;
  }

  function updateCard(refs, p, history) {
    var s = p.statistics;
    refs.provider = p;
    refs.root.dataset.status = p.status;
    refs.badge.dataset.status = p.status;
    var badgeText = (STATUS_ICON[p.status] || "") + " " + p.status;
    if (refs.badge.dataset.text !== badgeText) {
      refs.badge.dataset.text = badgeText;
      replaceContent(refs.badge, h("span", { "aria-hidden": "true", text: STATUS_ICON[p.status] || "" }));
      refs.badge.appendChild(document.createTextNode(" " + p.status));
    }

    var critical = p.status === "CRITICAL";
    refs.alert.hidden = !critical;
    setText(
      refs.alert,
      critical
        ? "CRITICAL: " + s.consecutiveFailures + " failed checks in a row, automatic failover will activate."
        : ""
    );

    var probe = p.config && p.config.probe && p.config.probe.type ? p.config.probe.type : "none";
    setText(
      refs.meta,
      "Priority " + p.priority + " · " + (p.isActive ? "enabled" : "disabled") + " · probe: " + probe +
        (p.maxStreams === null || p.maxStreams === undefined ? "" : " · max " + p.maxStreams + " streams")
    );

    var v = refs.values;
    setText(v.uptime, percent(s.uptime));
    setText(v.errorRate, percent(s.errorRate));
    setText(v.activeStreams, String(s.activeStreams));
    setText(v.totalStreams, String(s.totalStreams));
    setText(v.consecutiveFailures, String(s.consecutiveFailures));
    if (v.lastCheck.dataset.ms !== String(s.lastCheck)) {
      v.lastCheck.dataset.ms = String(s.lastCheck);
      replaceContent(v.lastCheck, timeNode(s.lastCheck));
    }
    setText(v.averageLatency, millis(s.averageLatencyMs));
    setText(v.monthlyCost, money(p.monthlyCost));

    refs.lastError.hidden = !s.lastError;
    setText(refs.lastError, s.lastError ? "Last error: " + s.lastError : "");

    setText(refs.toggle, p.isActive ? "Disable" : "Enable");
    refs.toggle.setAttribute("aria-label", (p.isActive ? "Disable " : "Enable ") + p.name);
    refs.toggle.className = p.isActive ? "danger" : "primary";

    // Leave the field alone while someone is editing it.
    var serverValue = String(p.priority);
    var editing = document.activeElement === refs.priority || refs.priority.value !== refs.priority.dataset.server;
    if (!editing || refs.priority.dataset.server === undefined) refs.priority.value = serverValue;
    refs.priority.dataset.server = serverValue;

    if (history) renderChart(refs, history.checks);
  }

  function renderChart(refs, checks) {
    var W = 300;
    var H = 64;
    var stripTop = H - 9;
    var label;
    if (!checks.length) {
      label = "No health checks recorded in the last 6 hours.";
      replaceContent(refs.chart, null);
      var empty = svg("svg", {
        viewBox: "0 0 " + W + " " + H,
        role: "img",
        "aria-label": "Latency and health chart: " + label,
      });
      refs.chart.appendChild(empty);
      setText(refs.chartCaption, label);
      return;
    }
    var t0 = checks[0].at;
    var t1 = checks[checks.length - 1].at;
    var span = Math.max(t1 - t0, 1);
    var x = function (at) {
      return checks.length === 1 ? W / 2 : 2 + ((at - t0) / span) * (W - 4);
    };
    var oks = checks.filter(function (c) {
      return c.ok;
    });
    var failed = checks.length - oks.length;
    var maxLatency = oks.reduce(function (m, c) {
      return Math.max(m, c.latencyMs);
    }, 0);
    var minLatency = oks.reduce(function (m, c) {
      return Math.min(m, c.latencyMs);
    }, Infinity);
    // Scale to a high percentile so one slow outlier (often the first, cold
    // connection) does not flatten the line; outliers are clipped at the top.
    var sorted = oks
      .map(function (c) {
        return c.latencyMs;
      })
      .sort(function (a, b) {
        return a - b;
      });
    var p90 = sorted.length ? sorted[Math.floor((sorted.length - 1) * 0.9)] : 0;
    var scale = Math.max(Math.min(maxLatency, p90 * 1.5), 1);
    var y = function (latency) {
      return stripTop - 4 - (Math.min(latency, scale) / scale) * (stripTop - 8);
    };

    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
    // Latency line, broken at failed checks (their latency mostly measures the timeout).
    var segment = [];
    var flush = function () {
      if (segment.length === 1) segment.push(segment[0]);
      if (segment.length) {
        root.appendChild(
          svg("polyline", {
            class: "latency",
            points: segment.join(" "),
            "vector-effect": "non-scaling-stroke",
          })
        );
      }
      segment = [];
    };
    checks.forEach(function (c) {
      if (c.ok) segment.push(x(c.at).toFixed(1) + "," + y(c.latencyMs).toFixed(1));
      else flush();
    });
    flush();
    // Health strip: one mark per check.
    var w = Math.max((W - 4) / checks.length, 1.5);
    checks.forEach(function (c) {
      root.appendChild(
        svg("rect", {
          class: c.ok ? "ok" : "fail",
          x: Math.min(Math.max(x(c.at) - w / 2, 0), W - w).toFixed(1),
          y: c.ok ? stripTop + 3 : stripTop,
          width: w.toFixed(2),
          height: c.ok ? 6 : 9,
        })
      );
    });
    var minutes = Math.max(1, Math.round((Date.now() - t0) / 60000));
    var period = minutes >= 90 ? Math.round(minutes / 60) + " h" : minutes + " min";
    label =
      "Last " + period + ": " + checks.length + " checks, " + failed + " failed" +
      (oks.length ? "; latency " + millis(minLatency) + " to " + millis(maxLatency) : "") + ".";
    root.setAttribute("role", "img");
    root.setAttribute("aria-label", "Latency and health chart. " + label);
    replaceContent(refs.chart, root);
    setText(refs.chartCaption, label);
  }

  function renderFailovers(failovers) {
    replaceContent(el.failovers, null);
    el.failoversEmpty.hidden = failovers.length > 0;
    failovers.slice(0, FAILOVERS_SHOWN).forEach(function (f) {
      var detail = "stream " + f.streamId + (f.reason ? " · " + f.reason : "");
      el.failovers.appendChild(
        h("li", null, [
          timeNode(f.at),
          " ",
          // An outage confirmed by viewers names no target: the publisher's move is its own entry.
          h("span", { className: "route", text: f.to ? f.from + " → " + f.to : f.from + " · viewers stalled" }),
          " ",
          h("span", { className: "detail", text: detail }),
        ])
      );
    });
    if (failovers.length > FAILOVERS_SHOWN) {
      el.failovers.appendChild(
        h("li", { className: "detail", text: "… and " + (failovers.length - FAILOVERS_SHOWN) + " older" })
      );
    }
  }

  // One stream's audience: per provider, its viewers and how many of them are stalled; an
  // outage the viewers confirm is marked (it is why a publisher moves with AudienceStalled).
  function audienceCell(tallies) {
    if (!tallies || !tallies.length) return h("td", { className: "audience detail", text: "no viewers" });
    return h(
      "td",
      { className: "audience" },
      tallies.map(function (a) {
        var text =
          a.provider + ": " + a.viewers + (a.viewers === 1 ? " viewer" : " viewers") +
          " · " + Math.round(a.stalledShare * 100) + "% stalled" +
          (a.degraded ? " · " + a.degraded + " degraded" : "") +
          (a.outage ? " · outage" : "");
        return h("span", {
          className: "tally",
          "data-provider": a.provider,
          "data-outage": a.outage ? "true" : "false",
          text: text,
        });
      })
    );
  }

  // Live placements: where each published stream is, so viewers can be sent there.
  function renderStreams(data, audience) {
    var byStream = {};
    (audience || []).forEach(function (a) {
      (byStream[a.streamId] = byStream[a.streamId] || []).push(a);
    });
    replaceContent(el.streams, null);
    el.streamsEmpty.hidden = data.streams.length > 0;
    el.streamsTable.hidden = data.streams.length === 0;
    data.streams.forEach(function (s) {
      el.streams.appendChild(
        h("tr", { "data-stream": s.streamId }, [
          h("th", { scope: "row", text: s.streamId }),
          h("td", { className: "provider", text: s.provider }),
          h("td", { text: s.standby.length ? s.standby.join(", ") : "none" }),
          h("td", { className: "num", text: String(s.epoch) }),
          audienceCell(byStream[s.streamId]),
        ])
      );
    });
    el.streamsMore.hidden = data.total <= data.streams.length;
    setText(el.streamsMore, "… and " + (data.total - data.streams.length) + " more live streams");
  }

  // ---------------------------------------------------------------- actions

  function cardResult(refs, text, isError) {
    refs.result.classList.toggle("error", !!isError);
    setText(refs.result, text);
  }

  function busy(button, promise) {
    button.disabled = true;
    return promise.finally(function () {
      button.disabled = false;
    });
  }

  function toggleProvider(refs) {
    var enable = !refs.provider.isActive;
    return busy(
      refs.toggle,
      api("PUT", providerPath(refs.name), { isActive: enable })
        .then(function () {
          cardResult(refs, refs.name + (enable ? " enabled." : " disabled."), false);
          return refresh("action");
        })
        .catch(function (err) {
          cardResult(refs, "Could not change " + refs.name + ": " + describeFailure(err), true);
        })
    );
  }

  function savePriority(refs) {
    var raw = refs.priority.value.trim();
    if (!/^\d+$/.test(raw) || Number(raw) > 4294967295) {
      cardResult(refs, "Priority must be a whole number of 0 or more.", true);
      refs.priority.focus();
      return Promise.resolve();
    }
    var priority = Number(raw);
    return busy(
      refs.savePriority,
      api("PUT", providerPath(refs.name), { priority: priority })
        .then(function () {
          refs.priority.dataset.server = String(priority);
          cardResult(refs, "Priority of " + refs.name + " set to " + priority + ".", false);
          return refresh("action");
        })
        .catch(function (err) {
          cardResult(refs, "Could not save the priority: " + describeFailure(err), true);
        })
    );
  }

  function reportText(report) {
    if (!report.probe) return "No probe configured: nothing to check.";
    var when = report.lastCheck ? formatTime(report.lastCheck) : "now";
    return report.ok
      ? "Checked at " + when + ": OK in " + millis(report.latencyMs) + " (" + report.status + ")."
      : "Checked at " + when + ": failed, " + (report.error || "no answer") + " (" + report.status + ").";
  }

  function checkProvider(refs) {
    return busy(
      refs.check,
      api("POST", providerPath(refs.name, "/health-check"))
        .then(function (report) {
          cardResult(refs, reportText(report), report.probe !== null && !report.ok);
          return refresh("action");
        })
        .catch(function (err) {
          cardResult(refs, "Health check failed to run: " + describeFailure(err), true);
        })
    );
  }

  function checkAll() {
    return busy(
      el.checkAll,
      api("POST", API + "/health-check-all")
        .then(function (data) {
          var results = data.results;
          var probed = results.filter(function (r) {
            return r.probe;
          });
          var failed = probed.filter(function (r) {
            return !r.ok;
          });
          results.forEach(function (r) {
            var refs = state.cards.get(r.provider);
            if (refs) cardResult(refs, reportText(r), r.probe !== null && !r.ok);
          });
          var text =
            "Checked " + probed.length + " of " + results.length + " providers at " + formatTime(Date.now()) +
            ": " + (probed.length - failed.length) + " OK, " + failed.length + " failed" +
            (failed.length
              ? " (" + failed.map(function (r) { return r.provider; }).join(", ") + ")"
              : "") +
            (results.length > probed.length ? "; " + (results.length - probed.length) + " without a probe." : ".");
          showNotice(text, failed.length > 0);
          return refresh("action");
        })
        .catch(function (err) {
          showNotice("Check all failed: " + describeFailure(err), true);
        })
    );
  }

  // ---------------------------------------------------------------- start

  function start() {
    el.loginView = $("login-view");
    el.loginForm = $("login-form");
    el.loginButton = $("login-button");
    el.loginError = $("login-error");
    el.token = $("token");
    el.dashboardView = $("dashboard-view");
    el.sessionBar = $("session-bar");
    el.live = $("live");
    el.checkAll = $("check-all");
    el.logout = $("logout");
    el.failoverOrder = $("failover-order");
    el.updated = $("updated");
    el.notice = $("notice");
    el.cards = $("cards");
    el.failovers = $("failovers");
    el.failoversEmpty = $("failovers-empty");
    el.streams = $("streams");
    el.streamsEmpty = $("streams-empty");
    el.streamsTable = $("streams-table");
    el.streamsMore = $("streams-more");

    el.loginForm.addEventListener("submit", function (event) {
      event.preventDefault();
      login(el.token.value.trim(), false);
    });
    el.logout.addEventListener("click", function () {
      logout("Signed out.");
    });
    el.checkAll.addEventListener("click", checkAll);

    var saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      saved = null;
    }
    if (saved) login(saved, true);
    else el.token.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
