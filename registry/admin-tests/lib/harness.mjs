// Test harness for the dashboard's browser tests: loopback HTTP probe targets,
// the real registry binary on a free port over a temporary SQLite file, and
// Debian's Chromium driven by playwright-core. Every wait is bounded and every
// process started here is stopped by its PID.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKSPACE = path.resolve(here, "../../..");

export const ADMIN_TOKEN = "dashboard-admin-token-0123456789";
export const SUPER_TOKEN = "dashboard-super-token-0123456789";
/** What an app reports session telemetry with (telemetry is never anonymous by default). */
export const TELEMETRY_TOKEN = "dashboard-telemetry-token-0123456789";
export const API = "/api/streaming/providers";

/** Upper bound for anything a test waits for, unless it says otherwise. */
export const WAIT_MS = 10_000;

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

// Safety net: whatever is still running when node exits is killed by PID.
const livePids = new Set();
process.on("exit", () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A small HTTP server used as a provider's probe target. Answers 200 after a
 * few milliseconds (simulated latency); with `failEvery: n` every n-th answer is 503.
 */
export async function startTarget({ failEvery = 0, latencyMs = [2, 15] } = {}) {
  let requests = 0;
  const timers = new Set();
  const server = http.createServer((req, res) => {
    requests += 1;
    const fail = failEvery > 0 && requests % failEvery === 0;
    const delay = latencyMs[0] + Math.random() * (latencyMs[1] - latencyMs[0]);
    const timer = setTimeout(() => {
      timers.delete(timer);
      res.writeHead(fail ? 503 : 200, { "content-type": "text/plain", connection: "close" });
      res.end(fail ? "unavailable" : "ok");
    }, delay);
    timers.add(timer);
  });
  server.listen(0, "127.0.0.1");
  await withTimeout(once(server, "listening"), WAIT_MS, "probe target listening");
  const { port } = server.address();
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}/health`,
    get requests() {
      return requests;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      const closed = once(server, "close");
      server.close();
      server.closeAllConnections();
      await withTimeout(closed, WAIT_MS, "probe target closing");
    },
  };
}

/** The registry binary: $REGISTRY_BIN, else the cargo target dir's debug build. */
export function registryBinary() {
  if (process.env.REGISTRY_BIN) return path.resolve(process.env.REGISTRY_BIN);
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(WORKSPACE, process.env.CARGO_TARGET_DIR)
    : path.join(WORKSPACE, "target");
  return path.join(target, "debug", "streamguard-registry");
}

/**
 * Starts the registry binary with `providers` as its seed. Returns its URL and
 * `stop()` (SIGTERM, then SIGKILL if it does not exit in time).
 */
export async function startRegistry({ providers, healthIntervalMs = 1000, env = {} }) {
  const bin = registryBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `registry binary not found at ${bin}: run 'cargo build -p streamguard-registry' ` +
        "or set REGISTRY_BIN (admin-tests/run.sh does both)"
    );
  }
  const dir = mkdtempSync(path.join(tmpdir(), "sg-dashboard-"));
  const seed = path.join(dir, "providers.json");
  writeFileSync(seed, JSON.stringify({ providers }, null, 2));
  const child = spawn(bin, ["--seed", seed], {
    env: {
      ...process.env,
      STREAMGUARD_REGISTRY_ADDR: "127.0.0.1:0",
      STREAMGUARD_REGISTRY_DB: path.join(dir, "registry.db"),
      STREAMGUARD_ADMIN_TOKEN: ADMIN_TOKEN,
      STREAMGUARD_SUPER_ADMIN_TOKEN: SUPER_TOKEN,
      STREAMGUARD_TELEMETRY_TOKEN: TELEMETRY_TOKEN,
      STREAMGUARD_HEALTH_INTERVAL_MS: String(healthIntervalMs),
      STREAMGUARD_HEALTH_TIMEOUT_MS: "1000",
      RUST_LOG: process.env.RUST_LOG || "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  livePids.add(child.pid);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const exited = once(child, "exit");
  const lines = createInterface({ input: child.stdout });
  const firstLine = new Promise((resolve, reject) => {
    lines.once("line", resolve);
    exited.then(([code, signal]) =>
      reject(new Error(`registry exited early (${code ?? signal}):\n${stderr}`))
    );
  });
  let url;
  try {
    const line = await withTimeout(firstLine, WAIT_MS, "registry address line");
    const match = /^streamguard-registry listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
    if (!match) throw new Error(`unexpected first line: ${line}`);
    url = match[1];
  } catch (err) {
    child.kill("SIGKILL");
    livePids.delete(child.pid);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped = false;
  return {
    url,
    pid: child.pid,
    get stderr() {
      return stderr;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, "SIGTERM");
        try {
          await withTimeout(exited, WAIT_MS, "registry exit after SIGTERM");
        } catch {
          process.kill(child.pid, "SIGKILL");
          await withTimeout(exited, WAIT_MS, "registry exit after SIGKILL");
        }
      }
      livePids.delete(child.pid);
      lines.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A JSON client of the registry API, as "another client" in the tests. */
export function apiClient(baseUrl, token = ADMIN_TOKEN) {
  return async function call(method, route, body) {
    const headers = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(baseUrl + route, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    const payload = await response.json();
    if (!response.ok) {
      throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(payload)}`);
    }
    return payload.data;
  };
}

/** Debian's Chromium with a fresh profile directory; `close()` removes it. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
  const profile = mkdtempSync(path.join(tmpdir(), "sg-dashboard-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(WAIT_MS);
  // The persistent context opens one blank tab; tests open their own.
  for (const page of context.pages()) await page.close();
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The providers most tests use: three probed, one disabled, one without probe. */
export async function startDefaultTargets() {
  return {
    agora: await startTarget(),
    zegocloud: await startTarget(),
    webrtc: await startTarget(),
  };
}

export function defaultProviders(targets) {
  const http = (name) => ({ type: "http", url: targets[name].url });
  return [
    {
      name: "agora",
      priority: 1,
      maxStreams: 100,
      monthlyCost: 49,
      config: { appId: "demo-agora", secret: { appCertificate: "x" }, probe: http("agora") },
    },
    {
      name: "zegocloud",
      priority: 2,
      maxStreams: 50,
      monthlyCost: 39,
      config: { appId: "demo-zego", probe: http("zegocloud") },
    },
    { name: "webrtc", priority: 3, monthlyCost: 0, config: { probe: http("webrtc") } },
    { name: "legacy", priority: 4, isActive: false, monthlyCost: 12.5, config: {} },
    { name: "mux", priority: 5, monthlyCost: 20, config: {} },
  ];
}

/**
 * Everything one scenario needs: probe targets, a registry, a browser tab.
 * Watches the tab for script errors, CSP violations, requests to other
 * origins and any URL carrying the token. `stop()` tears it all down.
 */
export async function startStack(browser, { healthIntervalMs = 1000, viewport, targets, providers, env } = {}) {
  targets = targets || (await startDefaultTargets());
  const registry = await startRegistry({
    providers: providers || defaultProviders(targets),
    healthIntervalMs,
    env,
  });
  const page = await browser.context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
  });
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(registry.url + "/") && !url.startsWith("data:")) {
      problems.push(`request to another origin: ${url}`);
    }
    if (url.includes(ADMIN_TOKEN) || url.includes(SUPER_TOKEN)) problems.push(`token in a URL: ${url}`);
  });
  return {
    targets,
    registry,
    page,
    api: apiClient(registry.url),
    problems,
    async open() {
      const response = await page.goto(registry.url + "/admin", { waitUntil: "domcontentloaded" });
      return response;
    },
    async stop() {
      const errors = [];
      for (const step of [
        () => page.close(),
        () => registry.stop(),
        ...Object.values(targets).map((t) => () => t.stop()),
      ]) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length) throw errors[0];
    },
  };
}

/** Signs in through the form and waits for the dashboard to show `cards` cards. */
export async function signIn(page, token = ADMIN_TOKEN, cards = 5) {
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#dashboard-view").waitFor({ state: "visible" });
  await page.locator("article.card").nth(cards - 1).waitFor({ state: "visible" });
}

export function card(page, name) {
  return page.locator(`article.card[data-provider="${name}"]`);
}

export function badge(page, name) {
  return card(page, name).locator('[data-role="status"]');
}

/** Waits (bounded) until `locator`'s text matches `pattern`. */
export async function waitForText(locator, pattern, timeout = WAIT_MS) {
  await locator.filter({ hasText: pattern }).first().waitFor({ state: "visible", timeout });
}
