// Takes the README's screenshot of the dashboard (docs/dashboard.png) with every
// kind of card on it: EXCELLENT, WARNING (a flaky target), CRITICAL (a stopped
// target, with the failover alert), DISABLED and UNKNOWN (no probe), plus a few
// reported failovers. Usage: node screenshot.mjs [output.png] [--phone]
// (run.sh --screenshot runs it after building the registry).

import path from "node:path";

import {
  API,
  TELEMETRY_TOKEN,
  WORKSPACE,
  badge,
  card,
  launchBrowser,
  signIn,
  startStack,
  startTarget,
  waitForText,
} from "./lib/harness.mjs";

const args = process.argv.slice(2);
const phone = args.includes("--phone");
const output = path.resolve(args.find((a) => !a.startsWith("--")) || path.join(WORKSPACE, "registry/docs/dashboard.png"));

const targets = {
  agora: await startTarget({ latencyMs: [4, 14] }),
  zegocloud: await startTarget({ latencyMs: [8, 30] }),
  webrtc: await startTarget({ failEvery: 4, latencyMs: [15, 45] }),
};
const probe = (name) => ({ type: "http", url: targets[name].url });
const providers = [
  { name: "agora", priority: 1, maxStreams: 100, monthlyCost: 49, config: { appId: "demo-agora", probe: probe("agora") } },
  { name: "zegocloud", priority: 2, maxStreams: 50, monthlyCost: 39, config: { appId: "demo-zego", probe: probe("zegocloud") } },
  { name: "webrtc", priority: 3, monthlyCost: 0, config: { probe: probe("webrtc") } },
  { name: "legacy", priority: 4, isActive: false, monthlyCost: 12.5, config: {} },
  { name: "mux", priority: 5, monthlyCost: 20, config: {} },
];

const browser = await launchBrowser();
const stack = await startStack(browser, {
  targets,
  providers,
  healthIntervalMs: 250,
  viewport: phone ? { width: 390, height: 844 } : { width: 1280, height: 900 },
});
try {
  const { page } = stack;
  await stack.open();
  await signIn(page);

  const telemetry = (body) =>
    fetch(`${stack.registry.url}/api/streaming/sessions/events`, {
      method: "POST",
      // Telemetry is never anonymous by default.
      headers: { "content-type": "application/json", authorization: `Bearer ${TELEMETRY_TOKEN}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  for (let i = 1; i <= 5; i++) await telemetry({ type: "start", provider: "agora", streamId: `live-${i}` });
  for (let i = 6; i <= 8; i++) await telemetry({ type: "start", provider: "zegocloud", streamId: `live-${i}` });
  await telemetry({ type: "end", provider: "agora", streamId: "live-1" });

  // Let some history build up (bounded: at most 30 s), then take zegocloud down.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const history = await stack.api("GET", `${API}/zegocloud/history`);
    if (history.checks.length >= 40) break;
    if (Date.now() > deadline) throw new Error("history did not build up in time");
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await targets.zegocloud.stop();
  await waitForText(card(page, "zegocloud").locator('[role="alert"]'), /automatic failover will activate/, 20_000);
  for (const stream of ["live-6", "live-7"]) {
    await telemetry({ type: "failover", provider: "zegocloud", streamId: stream, toProvider: "agora", reason: "3 failed health checks" });
  }
  await waitForText(badge(page, "webrtc"), /WARNING/, 20_000);
  await page.getByRole("button", { name: "Check now: agora" }).click();
  await waitForText(card(page, "agora").locator(".result"), /OK in/);
  await waitForText(page.locator("#failovers li"), /zegocloud → agora/);
  await page.screenshot({ path: output, fullPage: true });
  console.log(`screenshot saved to ${output}`);
} finally {
  await stack.stop();
  await browser.close();
}
