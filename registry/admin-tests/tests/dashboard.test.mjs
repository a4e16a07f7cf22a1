// End-to-end tests of the registry's admin dashboard in headless Chromium,
// against the real registry binary and loopback probe targets.
// Run with admin-tests/run.sh (or `node --test tests/` after a cargo build).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  ADMIN_TOKEN,
  API,
  TELEMETRY_TOKEN,
  WAIT_MS,
  badge,
  card,
  launchBrowser,
  signIn,
  startStack,
  waitForText,
} from "../lib/harness.mjs";

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Runs `body` with a fresh stack and always tears it down; fails on page problems. */
function scenario(name, options, body) {
  test(name, { timeout: 60_000 }, async () => {
    const stack = await startStack(browser, options);
    try {
      await body(stack);
      assert.deepEqual(stack.problems, [], "the page reported problems");
    } catch (err) {
      err.message += `\n--- registry stderr ---\n${stack.registry.stderr}`;
      throw err;
    } finally {
      await stack.stop();
    }
  });
}

const tokenInStorage = (page) => page.evaluate(() => sessionStorage.getItem("streamguard.registry.adminToken"));

scenario("signs in, shows one card per provider, keeps the token in the tab only, logs out", {}, async (s) => {
  const { page } = s;
  const response = await s.open();
  const headers = response.headers();
  assert.match(headers["content-security-policy"], /default-src 'self'/);
  assert.equal(headers["x-frame-options"], "DENY");
  assert.equal(headers["referrer-policy"], "no-referrer");
  await signIn(page);

  const names = await page.locator("article.card").evaluateAll((cards) => cards.map((c) => c.dataset.provider));
  assert.deepEqual(names, ["agora", "zegocloud", "webrtc", "legacy", "mux"]);
  await waitForText(page.locator("#failover-order"), /^Failover order: agora → zegocloud → webrtc → mux$/);

  // Probed providers get checked in the background (1 s) and turn EXCELLENT.
  await waitForText(badge(page, "agora"), /EXCELLENT/);
  await waitForText(badge(page, "legacy"), /DISABLED/);
  await waitForText(badge(page, "mux"), /UNKNOWN/);
  const agora = card(page, "agora");
  for (const label of [
    "Uptime",
    "Error rate",
    "Active streams",
    "Total streams",
    "Consecutive failures",
    "Last health check",
    "Average latency",
    "Monthly cost",
  ]) {
    await agora.locator("dt", { hasText: label }).waitFor();
  }
  await waitForText(agora.locator('[data-field="monthlyCost"]'), /^49\.00 \/ month$/);
  await waitForText(agora.locator('[data-field="uptime"]'), /^100\.0 %$/);
  await waitForText(agora.locator('[data-field="averageLatency"]'), /\d ms$/);
  await agora.locator('[data-field="lastCheck"] time').waitFor();
  await agora.locator("figure.chart svg[role=img]").waitFor();
  // Status is text (and an icon), not only colour.
  assert.match(await badge(page, "agora").innerText(), /EXCELLENT/);

  // The token lives in sessionStorage, not in the URL, and survives a reload of the tab.
  assert.equal(await tokenInStorage(page), ADMIN_TOKEN);
  assert.ok(!page.url().includes(ADMIN_TOKEN));
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.locator("article.card").nth(4).waitFor();

  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Admin token").waitFor();
  await waitForText(page.locator("#login-error"), /Signed out/);
  assert.equal(await page.locator("article.card").count(), 0, "no data left on the page");
  assert.equal(await tokenInStorage(page), null);
});

scenario("refuses a wrong token with a visible message", {}, async (s) => {
  const { page } = s;
  await s.open();
  await page.getByLabel("Admin token").fill("not-the-admin-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitForText(page.locator("#login-error"), /Token refused/);
  assert.equal(await page.locator("#dashboard-view").isVisible(), false);
  assert.equal(await page.locator("article.card").count(), 0);
  assert.equal(await tokenInStorage(page), null);
  // The right token then works.
  await signIn(page);
});

scenario("disabling a provider turns its badge to DISABLED and drops it from the failover order", {}, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  await waitForText(badge(page, "zegocloud"), /EXCELLENT/);
  await page.getByRole("button", { name: "Disable zegocloud" }).click();
  await waitForText(badge(page, "zegocloud"), /DISABLED/);
  await waitForText(page.locator("#failover-order"), /^Failover order: agora → webrtc → mux$/);
  const list = await s.api("GET", `${API}/admin`);
  assert.equal(list.providers.find((p) => p.name === "zegocloud").isActive, false);

  await page.getByRole("button", { name: "Enable zegocloud" }).click();
  await waitForText(page.locator("#failover-order"), /^Failover order: agora → zegocloud → webrtc → mux$/);
  await badge(page, "zegocloud").filter({ hasNotText: /DISABLED/ }).waitFor();
});

scenario("editing priorities changes the failover order", {}, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  await waitForText(page.locator("#failover-order"), /^Failover order: agora → zegocloud → webrtc → mux$/);

  await page.getByLabel("Priority of webrtc").fill("0");
  await page.getByRole("button", { name: "Save priority: webrtc" }).click();
  await waitForText(page.locator("#failover-order"), /^Failover order: webrtc → agora → zegocloud → mux$/);
  await waitForText(card(page, "webrtc").locator(".result"), /Priority of webrtc set to 0/);

  await page.getByLabel("Priority of agora").fill("9");
  await page.getByLabel("Priority of agora").press("Enter");
  await waitForText(page.locator("#failover-order"), /^Failover order: webrtc → zegocloud → mux → agora$/);
  // Cards follow the same order.
  await page.waitForFunction(
    () => [...document.querySelectorAll("article.card")].map((c) => c.dataset.provider).join(",") ===
      "webrtc,zegocloud,legacy,mux,agora",
    null,
    { timeout: WAIT_MS }
  );

  // A bad value is refused in place, nothing is sent.
  await page.getByLabel("Priority of mux").fill("-3");
  await page.getByRole("button", { name: "Save priority: mux" }).click();
  await waitForText(card(page, "mux").locator(".result"), /whole number/);
  const mux = (await s.api("GET", `${API}/admin`)).providers.find((p) => p.name === "mux");
  assert.equal(mux.priority, 5);
});

// The background checker is off here, so the only checks are the ones the page runs.
scenario("manual health checks update the last-check time without a reload", { healthIntervalMs: 0 }, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  const lastCheck = card(page, "agora").locator('[data-field="lastCheck"]');
  await waitForText(lastCheck, /^never$/);
  await page.evaluate(() => {
    window.__noReload = true;
  });

  const clicked = Date.now();
  await page.getByRole("button", { name: "Check now: agora" }).click();
  await waitForText(card(page, "agora").locator(".result"), /Checked at \d\d:\d\d:\d\d: OK in/);
  await lastCheck.locator("time").waitFor();
  const first = Number(await lastCheck.locator("time").getAttribute("data-ms"));
  assert.ok(first >= clicked - 1000, `last check ${first} is from this click (${clicked})`);
  await waitForText(badge(page, "agora"), /EXCELLENT/);

  // A second check moves the time forward.
  await page.getByRole("button", { name: "Check now: agora" }).click();
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-provider="agora"] [data-field="lastCheck"] time')?.dataset.ms) > before,
    first,
    { timeout: WAIT_MS }
  );

  // "Check all" probes every provider (the disabled one and the one without a probe report so).
  await page.getByRole("button", { name: "Check all" }).click();
  await waitForText(page.locator("#notice"), /Checked 3 of 5 providers at .*: 3 OK, 0 failed; 2 without a probe\./);
  await card(page, "webrtc").locator('[data-field="lastCheck"] time').waitFor();
  await waitForText(card(page, "mux").locator(".result"), /No probe configured/);
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
});

scenario("a provider whose probe target stops goes CRITICAL live, with the failover alert", {}, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  await waitForText(badge(page, "zegocloud"), /EXCELLENT/);
  await waitForText(page.locator("#live"), /Live updates: on/);
  await page.evaluate(() => {
    window.__noReload = true;
  });
  const alert = card(page, "zegocloud").locator('[role="alert"]');
  assert.equal(await alert.isVisible(), false);

  await s.targets.zegocloud.stop();
  // Three failed checks at 1 s; the page learns of it from the event stream.
  await waitForText(alert, /automatic failover will activate/, 20_000);
  await waitForText(badge(page, "zegocloud"), /CRITICAL/);
  // Pushed, not polled: the refresh that showed it was triggered by a live event
  // (the 30 s fallback restarts after every refresh, so it cannot have fired).
  assert.equal(await page.locator("#updated").getAttribute("data-reason"), "event");
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  await waitForText(card(page, "zegocloud").locator(".last-error"), /Last error:/);
  await waitForText(card(page, "zegocloud").locator("figcaption"), /[1-9]\d* failed/);
  // The other providers are unaffected.
  await waitForText(badge(page, "agora"), /EXCELLENT/);
  assert.equal(await card(page, "agora").locator('[role="alert"]').isVisible(), false);
});

scenario("changes made by another API client appear on the open page via the event stream", {}, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  await waitForText(page.locator("#live"), /Live updates: on/);
  await page.evaluate(() => {
    window.__noReload = true;
  });

  await s.api("PUT", `${API}/webrtc`, { priority: 0 });
  await waitForText(page.locator("#failover-order"), /^Failover order: webrtc → agora → zegocloud → mux$/);
  assert.equal(await page.locator("#updated").getAttribute("data-reason"), "event");
  assert.equal(await page.getByLabel("Priority of webrtc").inputValue(), "0");

  await s.api("PUT", `${API}/agora`, { isActive: false });
  await waitForText(badge(page, "agora"), /DISABLED/);

  // Session telemetry from a client (with the app's telemetry token): stream counts and a
  // failover.
  const post = (body) =>
    fetch(`${s.registry.url}/api/streaming/sessions/events`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TELEMETRY_TOKEN}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    }).then((r) => assert.equal(r.status, 200));
  await post({ type: "start", provider: "zegocloud", streamId: "stream-1" });
  await post({ type: "failover", provider: "zegocloud", streamId: "stream-1", toProvider: "webrtc", reason: "3 failed checks" });
  await waitForText(page.locator("#failovers li"), /zegocloud → webrtc/);
  await waitForText(page.locator("#failovers li"), /stream stream-1 · 3 failed checks/);
  await waitForText(card(page, "webrtc").locator('[data-field="activeStreams"]'), /^1$/);
  await waitForText(card(page, "zegocloud").locator('[data-field="totalStreams"]'), /^1$/);
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
});

scenario("the Live streams panel lists live placements with provider, standby and epoch", {}, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  await waitForText(page.locator("#streams-empty"), /No live streams/);
  assert.equal(await page.locator("#streams-table").isHidden(), true);

  // A publisher (with the app's telemetry token) claims its stream and reports its session;
  // the session report changes the stream counts, whose event refreshes the page.
  const send = (method, route, body) =>
    fetch(`${s.registry.url}${route}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${TELEMETRY_TOKEN}` },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    });
  const claim = await send("PUT", "/api/streaming/streams/match-7/placement", {
    provider: "agora",
    epoch: 2,
    standby: ["zegocloud"],
    clientId: "app-1",
  });
  assert.equal(claim.status, 200);
  const started = await send("POST", "/api/streaming/sessions/events", {
    type: "start",
    provider: "agora",
    streamId: "match-7",
    clientId: "app-1",
  });
  assert.equal(started.status, 200);
  const row = page.locator('#streams tr[data-stream="match-7"]');
  await waitForText(row.locator("th"), /^match-7$/);
  const cells = await row.locator("td").allTextContents();
  assert.deepEqual(cells, ["agora", "zegocloud", "2", "no viewers"]);
  assert.equal(await page.locator("#streams-empty").isHidden(), true);
  await page.getByRole("table", { name: /Live streams/ }).waitFor();

  // The publisher ends the stream: the row goes with the next refresh.
  assert.equal((await send("DELETE", "/api/streaming/streams/match-7/placement?clientId=app-1")).status, 204);
  const ended = await send("POST", "/api/streaming/sessions/events", {
    type: "end",
    provider: "agora",
    streamId: "match-7",
    clientId: "app-1",
  });
  assert.equal(ended.status, 200);
  await waitForText(page.locator("#streams-empty"), /No live streams/);
  assert.equal(await row.count(), 0);
});

// The registry counts reports under X-Forwarded-For here, so the test can play several viewer
// hosts from loopback (one host counts at most two stalled viewers).
scenario("the Live streams panel shows each stream's audience and the outage its viewers confirm", { env: { STREAMGUARD_TRUST_FORWARDED_FOR: "true" } }, async (s) => {
  const { page } = s;
  await s.open();
  await signIn(page);
  const send = (method, route, body, from = "192.0.2.1") =>
    fetch(`${s.registry.url}${route}`, {
      method,
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${TELEMETRY_TOKEN}`,
        "x-forwarded-for": from,
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    });
  const claim = await send("PUT", "/api/streaming/streams/cup-final/placement", {
    provider: "agora",
    epoch: 1,
    clientId: "publisher-1",
  });
  assert.equal(claim.status, 200);
  // Four viewers on four hosts, three of them stalled: their sessions change the stream
  // counts, whose event refreshes the page.
  for (const [i, state] of ["ok", "stalled", "stalled", "stalled"].entries()) {
    const r = await send(
      "POST",
      "/api/streaming/sessions/alive",
      { clientId: `viewer-${i}`, sessions: [{ provider: "agora", streamId: "cup-final", role: "viewer", audience: state }] },
      `198.51.100.${i + 1}`
    );
    assert.equal(r.status, 200);
  }
  const tally = page.locator('#streams tr[data-stream="cup-final"] .tally[data-provider="agora"]');
  await waitForText(tally, /^agora: 4 viewers · 75% stalled · outage$/);
  assert.equal(await tally.getAttribute("data-outage"), "true");
  await page.getByRole("columnheader", { name: "Audience" }).waitFor();
  // The history says why the publisher is about to move.
  await waitForText(page.locator("#failovers li").first(), /agora · viewers stalled.*stream cup-final · AudienceStalled viewers=4 stalled=3 degraded=0 share=0.75/);
});

scenario("a phone-sized screen shows every card without horizontal scrolling", { viewport: { width: 390, height: 844 } }, async (s) => {
  const { page } = s;
  await s.open();
  // The login form fits too.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
  // A live stream with a long id and standby providers: the panel must fit too.
  const longId = "evening-match-".repeat(8) + "final";
  await s.api("PUT", `/api/streaming/streams/${longId}/placement`, {
    provider: "zegocloud",
    epoch: 1,
    standby: ["agora", "webrtc", "mux"],
    clientId: "phone-app",
  });
  await signIn(page);
  await waitForText(badge(page, "agora"), /EXCELLENT/);
  await card(page, "agora").locator("figure.chart svg[role=img]").waitFor();
  await waitForText(page.locator(`#streams tr[data-stream="${longId}"] th`), /final$/);
  const layout = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    cards: [...document.querySelectorAll("article.card")].map((c) => {
      const r = c.getBoundingClientRect();
      return { name: c.dataset.provider, left: r.left, right: r.right, width: r.width };
    }),
    wide: [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
      .map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className),
  }));
  assert.equal(layout.innerWidth, 390);
  assert.ok(layout.scrollWidth <= layout.innerWidth, `page is ${layout.scrollWidth}px wide`);
  assert.deepEqual(layout.wide, [], "elements reaching past the right edge");
  assert.equal(layout.cards.length, 5);
  for (const c of layout.cards) {
    assert.ok(c.left >= 0 && c.right <= 390, `${c.name} card spans ${c.left}..${c.right}`);
    assert.ok(c.width > 300, `${c.name} card uses the width (${c.width}px)`);
  }
  // Each card can be scrolled into view and read.
  for (const name of ["agora", "zegocloud", "webrtc", "legacy", "mux"]) {
    await card(page, name).scrollIntoViewIfNeeded();
    assert.ok(await card(page, name).isVisible());
  }
  // Controls stay usable: a disable from the phone works.
  await page.getByRole("button", { name: "Disable webrtc" }).click();
  await waitForText(badge(page, "webrtc"), /DISABLED/);
});

/** Interactive elements of the accessibility tree with their names. */
async function accessibleControls(page) {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { nodes } = await cdp.send("Accessibility.getFullAXTree");
    const roles = new Set(["button", "textbox", "spinbutton", "checkbox", "switch", "combobox", "link", "image", "img"]);
    return nodes
      .filter((n) => !n.ignored && roles.has(n.role?.value))
      .map((n) => ({ role: n.role.value, name: (n.name?.value || "").trim() }));
  } finally {
    await cdp.detach();
  }
}

scenario("every button and input has an accessible name", {}, async (s) => {
  const { page } = s;
  await s.open();
  const login = await accessibleControls(page);
  assert.deepEqual(
    login.filter((c) => c.role !== "link"),
    [
      { role: "textbox", name: "Admin token" },
      { role: "button", name: "Sign in" },
    ]
  );
  await signIn(page);
  await waitForText(badge(page, "agora"), /EXCELLENT/);
  await card(page, "agora").locator("figure.chart svg[role=img]").waitFor();

  const controls = await accessibleControls(page);
  const unnamed = controls.filter((c) => !c.name);
  assert.deepEqual(unnamed, [], "controls without an accessible name");
  const count = (role) => controls.filter((c) => c.role === role).length;
  // Per card: toggle, save priority, check now; plus check all and log out.
  assert.equal(count("button"), 5 * 3 + 2);
  assert.equal(count("spinbutton"), 5);
  const buttonNames = controls.filter((c) => c.role === "button").map((c) => c.name);
  for (const name of ["Check all", "Log out", "Disable agora", "Enable legacy", "Save priority: mux", "Check now: webrtc"]) {
    assert.ok(buttonNames.includes(name), `${name} in ${buttonNames.join(" | ")}`);
  }
  assert.ok(controls.some((c) => c.role === "spinbutton" && c.name === "Priority of zegocloud"));

  // Every visible control in the DOM is in that tree, and clickable things are real buttons.
  const dom = await page.evaluate(() => {
    const visible = (e) => e.checkVisibility();
    return {
      buttons: [...document.querySelectorAll("button")].filter(visible).length,
      inputs: [...document.querySelectorAll("input")].filter(visible).length,
      fakeButtons: document.querySelectorAll("[role=button]:not(button), div[onclick], span[onclick], a:not([href])").length,
      unlabelledInputs: [...document.querySelectorAll("input")].filter((i) => !i.labels.length && !i.getAttribute("aria-label")).length,
    };
  });
  assert.equal(dom.buttons, count("button"));
  assert.equal(dom.inputs, count("spinbutton"));
  assert.equal(dom.fakeButtons, 0);
  assert.equal(dom.unlabelledInputs, 0);
  // Charts are images with a text alternative.
  const charts = controls.filter((c) => c.role === "image" || c.role === "img");
  assert.ok(charts.length >= 3, "probed providers have charts");
  for (const chart of charts) assert.match(chart.name, /chart/);
});

scenario("without the event stream, the 30 s refresh still brings changes in", {}, async (s) => {
  const { page } = s;
  // The stream is cut off, and the page's timers run on a clock the test moves forward.
  await page.route("**/api/streaming/providers/events", (route) => route.abort());
  await page.clock.install();
  await s.open();
  await signIn(page);
  await waitForText(page.locator("#live"), /Live updates: (off|reconnecting)/);
  await s.api("PUT", `${API}/mux`, { priority: 0 });
  await page.clock.runFor(5_000);
  // Nothing tells the page yet.
  assert.match(await page.locator("#failover-order").innerText(), /^Failover order: agora → /);
  await page.clock.runFor(26_000);
  await waitForText(page.locator("#failover-order"), /^Failover order: mux → agora → zegocloud → webrtc$/);
  assert.equal(await page.locator("#updated").getAttribute("data-reason"), "poll");
});
