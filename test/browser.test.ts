import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../cluster/chromium.ts";
import { REPO_ROOT } from "../cluster/launcher.ts";
import { TokenIssuer } from "../services/src/identity/tokens.ts";
import { history, send, sendReliably, sleep } from "./support/clients.ts";
import {
  freshRoom,
  inProcessNode,
  metric,
  type OccupiedConnection,
  ONE_PG_CONNECTION,
  occupyOnlyConnection,
  storedSeqs,
  useCluster,
} from "./support/cluster.ts";

/**
 * The web client in Debian's Chromium (driven by playwright-core), through the edge and the
 * gateway: two pages on different nodes chat over each of the four transports, and a page
 * whose node is killed carries on with nothing lost or doubled.
 */
const ROOMS_PER_PAGE = 4;
const cluster = await useCluster({
  nodes: 2,
  gateway: true,
  edge: true,
  nodeEnv: { ROOM_LIST_DEFAULT_LIMIT: String(ROOMS_PER_PAGE) },
});
const SCREENSHOTS = join(REPO_ROOT, "test-results", "screenshots");
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await launchChromium();
});
afterAll(() => browser?.close());

async function openChat(
  base: string,
  room: string,
  transport: string,
  name: string,
): Promise<Page> {
  const page = await newPage();
  await page.goto(`${base}/chat?room=${room}&transport=${transport}`);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Set" }).click();
  await expect
    .poll(() => page.locator("#status").textContent(), { timeout: 15_000 })
    .toContain("connected");
  return page;
}

/** A page on the edge in `room` over `transport`, once connected, under no name. */
async function openRoom(
  room: string,
  transport: string,
  options?: Parameters<Browser["newPage"]>[0],
): Promise<Page> {
  const page = await newPage(options);
  await page.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=${transport}`);
  await expect
    .poll(() => page.locator("#status").textContent(), { timeout: 15_000 })
    .toContain("connected");
  return page;
}

/** Stores m1…m`count` in `room`, one after another. */
async function fillRoom(room: string, count: number): Promise<void> {
  for (let i = 1; i <= count; i++)
    await sendReliably(() => cluster.gatewayUrl ?? "", room, `m${i}`, `${room}-${i}`);
}

/** A page that records what its policy blocks and what it logs as errors. */
async function newPage(options?: Parameters<Browser["newPage"]>[0]): Promise<Page> {
  const page = await browser.newPage(options);
  await page.addInitScript({ content: RECORD_POLICY_VIOLATIONS });
  const errors: string[] = [];
  consoleErrors.set(page, errors);
  page.on("console", (entry) => entry.type() === "error" && errors.push(entry.text()));
  page.on("pageerror", (error) => errors.push(error.message));
  return page;
}
const consoleErrors = new WeakMap<Page, string[]>();

/** Runs in the page before its own script: keeps what its Content-Security-Policy blocked. */
const RECORD_POLICY_VIOLATIONS = `
  globalThis.policyViolations = [];
  document.addEventListener("securitypolicyviolation", (event) =>
    globalThis.policyViolations.push(event.effectiveDirective + " " + event.blockedURI));
`;
const policyViolations = (page: Page) =>
  page.evaluate(() => (globalThis as { policyViolations?: string[] }).policyViolations);

async function say(page: Page, text: string): Promise<void> {
  await page.getByLabel("Message").fill(text);
  await page.getByLabel("Message").press("Enter");
}

const texts = (page: Page) => page.locator("#messages .text").allTextContents();
const seqsShown = async (page: Page) =>
  (
    await page
      .locator("#messages li")
      .evaluateAll((items) => items.map((item) => item.getAttribute("data-seq")))
  ).map(Number);
/** The node a page is served by, from its status line ("… · node node-1"). */
const nodeOf = async (page: Page) =>
  Number(/node node-(\d+)/.exec((await page.locator("#status").textContent()) ?? "")?.[1] ?? -1);

describe.each(["websocket", "longpoll", "sse", "polling"])(
  "the web client over %s",
  (transport) => {
    it("two pages on different nodes chat, and text is never interpreted as HTML", async () => {
      const room = freshRoom(transport);
      const edgePage = await openChat(cluster.edgeUrl ?? "", room, transport, "ada");
      const nodePage = await openChat(cluster.nodeUrl(1), room, transport, "bo");
      await say(edgePage, "hello from the edge page");
      // Stored before the second page speaks: the two sends race otherwise, and the order
      // asserted below is the order of their seqs.
      await expect
        .poll(() => texts(nodePage), { timeout: 15_000 })
        .toEqual(["hello from the edge page"]);
      await say(nodePage, "<script>window.pwned = true</script><b>bold?</b>");
      for (const page of [edgePage, nodePage]) {
        await expect
          .poll(() => texts(page), { timeout: 15_000 })
          .toEqual([
            "hello from the edge page",
            "<script>window.pwned = true</script><b>bold?</b>",
          ]);
        expect(
          await page.evaluate(() => (globalThis as { pwned?: boolean }).pwned),
        ).toBeUndefined();
        expect(await page.locator("#messages b").count()).toBe(0);
        expect(await policyViolations(page)).toEqual([]); // the app itself breaks no rule of its policy
        expect(consoleErrors.get(page)).toEqual([]); // no failed request (a missing icon), no exception
      }
      await edgePage.screenshot({ path: join(SCREENSHOTS, `chat-${transport}.png`) });
      await edgePage.close();
      await nodePage.close();
    });
  },
);

describe.each(["websocket", "longpoll", "sse", "polling"])(
  "a page over %s whose node is killed",
  (transport) => {
    it("reconnects through the gateway with nothing lost or doubled", async () => {
      const room = freshRoom(`kill-${transport}`);
      const page = await openChat(cluster.edgeUrl ?? "", room, transport, "kim");
      let victim = -1;
      await expect
        .poll(async () => (victim = await nodeOf(page)), { timeout: 10_000 })
        .toBeGreaterThanOrEqual(0);
      const total = 30;
      const sending = (async () => {
        for (let i = 0; i < total; i++) {
          await sendReliably(() => cluster.gatewayUrl ?? "", room, `m${i}`, `${room}-${i}`);
          await new Promise((resolve) => setTimeout(resolve, 40));
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await cluster.stopNode(victim, "SIGKILL");
      await sending;
      try {
        await expect
          .poll(() => seqsShown(page), { timeout: 30_000 })
          .toEqual(Array.from({ length: total }, (_, i) => i + 1));
        await page.screenshot({ path: join(SCREENSHOTS, `after-kill-${transport}.png`) });
      } finally {
        await page.close();
        await cluster.startNode(victim);
      }
    });
  },
);

describe.each(["websocket", "longpoll", "sse", "polling"])(
  "a page over %s while every node is down for seconds",
  (transport) => {
    it("comes back by itself once they are up, and shows what is said then", async () => {
      const room = freshRoom(`outage-${transport}`);
      const page = await openChat(cluster.edgeUrl ?? "", room, transport, "una");
      await say(page, "before");
      await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["before"]);
      await Promise.all([cluster.stopNode(0, "SIGKILL"), cluster.stopNode(1, "SIGKILL")]);
      try {
        // Each transport notices: a long poll held on a killed node is cut and asked again.
        await expect
          .poll(() => page.locator("#status").textContent(), { timeout: 10_000 })
          .toContain("reconnecting");
        await sleep(3000); // the gateway answers 503 meanwhile: no node to send it to
      } finally {
        await Promise.all([cluster.startNode(0), cluster.startNode(1)]);
      }
      // Sent once the gateway takes a node back (its next health check), under one client id.
      const sent = () =>
        send(cluster.gatewayUrl ?? "", room, "after", { clientId: `${room}-after` }).then(
          () => true,
          () => false,
        );
      await expect.poll(sent, { timeout: 30_000 }).toBe(true);
      await expect.poll(() => texts(page), { timeout: 30_000 }).toEqual(["before", "after"]);
      await expect
        .poll(() => page.locator("#status").textContent(), { timeout: 10_000 })
        .toContain("connected");
      await page.close();
    });
  },
);

describe("the page", () => {
  it("scrolls back through history and switches transport from its control", async () => {
    const room = freshRoom("history");
    for (let i = 1; i <= 60; i++) {
      await fetch(`${cluster.gatewayUrl}/api/rooms/${room}/messages`, {
        method: "POST",
        body: JSON.stringify({ body: `old ${i}` }),
      });
    }
    const page = await openChat(cluster.edgeUrl ?? "", room, "websocket", "sam");
    await expect.poll(() => seqsShown(page)).toHaveLength(50);
    expect((await seqsShown(page))[0]).toBe(11);
    await page.getByRole("button", { name: "Load older messages" }).click();
    await expect.poll(() => seqsShown(page)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    await page.getByLabel("Transport").selectOption("sse");
    await expect
      .poll(() => page.locator("#status").textContent(), { timeout: 10_000 })
      .toContain("server-sent events · connected");
    expect(page.url()).toContain("transport=sse");
    await say(page, "after switching");
    await expect
      .poll(() => seqsShown(page), { timeout: 10_000 })
      .toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
    await page.close();
  });

  it("a busy room opens at its newest message above the message box, and a reader scrolled up is not pulled down", async () => {
    const room = freshRoom("busy");
    await fillRoom(room, 40);
    const page = await openRoom(room, "websocket", { viewport: { width: 1100, height: 750 } });
    await expect.poll(() => texts(page), { timeout: 10_000 }).toHaveLength(40);
    const onScreen = async (selector: string) => {
      const box = await page.locator(selector).boundingBox();
      return box !== null && box.y >= 0 && box.y + box.height <= 750;
    };
    expect(await page.evaluate("window.scrollY")).toBe(0); // the list scrolls, not the page
    expect(await onScreen("#messages li:last-child")).toBe(true); // m40, not m1
    expect(await onScreen("#composer")).toBe(true);
    expect(await onScreen("#messages li:first-child")).toBe(false);

    await page.locator("#messages").evaluate((list) => {
      list.scrollTop = 0; // reading the oldest
    });
    await sendReliably(() => cluster.gatewayUrl ?? "", room, "from someone else", `${room}-41`);
    const newer = page.getByRole("button", { name: "1 new message ↓" });
    await expect.poll(() => newer.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await page.locator("#messages").evaluate((list) => list.scrollTop)).toBe(0);
    expect(await onScreen("#messages li:first-child")).toBe(true);
    await newer.click();
    expect(await onScreen("#messages li:last-child")).toBe(true);
    expect(await newer.isHidden()).toBe(true);

    await page.locator("#messages").evaluate((list) => {
      list.scrollTop = 0;
    });
    await say(page, "my own message");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toHaveLength(42);
    expect(await onScreen("#messages li:last-child")).toBe(true); // one's own send is followed
    expect(consoleErrors.get(page)).toEqual([]);
    await page.close();
  });

  it("a message lost on the socket is fetched before the next one shows, even when the first fetches fail or come back short", async () => {
    const room = freshRoom("gap");
    const page = await newPage();
    // The socket loses the broadcast of seq 2; everything else passes through untouched.
    await page.routeWebSocket(/\/socket\/websocket/, (socket) => {
      const server = socket.connectToServer();
      server.onMessage((frame) => {
        if (
          !(typeof frame === "string" && frame.includes('"publish"') && frame.includes('"seq":2,'))
        )
          socket.send(frame);
      });
    });
    // The first ask for what followed seq 1 gets nothing, as from a replica behind; the
    // second a 503, as from a node going away; the third is answered.
    let asked = 0;
    await page.route(
      (url) =>
        url.pathname === `/api/rooms/${room}/messages` && url.searchParams.get("after") === "1",
      (route) => {
        asked++;
        if (asked === 1) return route.fulfill({ json: { messages: [] } });
        if (asked === 2) return route.fulfill({ status: 503, json: {} });
        return route.continue();
      },
    );
    await page.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=websocket`);
    await expect
      .poll(() => page.locator("#status").textContent(), { timeout: 15_000 })
      .toContain("connected");
    const post = (i: number) =>
      sendReliably(() => cluster.gatewayUrl ?? "", room, `m${i}`, `${room}-${i}`);
    await post(1);
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["m1"]);
    await post(2);
    await post(3);
    await expect.poll(() => texts(page), { timeout: 15_000 }).toEqual(["m1", "m2", "m3"]);
    expect(asked).toBe(3);
    await post(4); // the page still takes live messages
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["m1", "m2", "m3", "m4"]);
    await page.close();
  });

  it("what a screen reader announces of the status changes with the connection, not on every poll", async () => {
    const page = await newPage();
    await page.goto(`${cluster.edgeUrl}/chat?room=${freshRoom("status")}&transport=polling`);
    await expect
      .poll(() => page.getByRole("status").textContent(), { timeout: 15_000 })
      .toBe("polling · connected");
    await page.evaluate(`
      globalThis.changes = 0;
      new MutationObserver((records) => (globalThis.changes += records.length)).observe(
        document.querySelector("[role=status]"),
        { childList: true, characterData: true, subtree: true },
      );
    `);
    await sleep(3500); // three polls, each answered by one node or the other
    expect(await nodeOf(page)).toBeGreaterThanOrEqual(0); // the node is still shown beside it
    // Every poll rewrote the live region, which a screen reader reads out each time.
    expect(await page.evaluate("globalThis.changes")).toBe(0);
    await page.close();
  });

  it("a tab left open in a busy room keeps its latest 500 messages, and brings older ones back on request", async () => {
    const room = freshRoom("long-open");
    const page = await openChat(cluster.edgeUrl ?? "", room, "websocket", "lev");
    for (let first = 1; first <= 560; first += 20) {
      // Twenty at a time: the page sees them live, in whatever order they are stored.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          sendReliably(
            () => cluster.gatewayUrl ?? "",
            room,
            `m${first + i}`,
            `${room}-${first + i}`,
          ),
        ),
      );
    }
    await expect.poll(async () => (await seqsShown(page)).at(-1), { timeout: 20_000 }).toBe(560);
    const range = (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => from + i);
    // Trimmed to 500 when it reached 550, then ten more arrived.
    expect(await seqsShown(page)).toEqual(range(51, 560));
    await page.getByRole("button", { name: "Load older messages" }).click();
    await expect.poll(() => seqsShown(page), { timeout: 10_000 }).toEqual(range(1, 560));
    expect(await page.getByRole("button", { name: "Load older messages" }).isHidden()).toBe(true);
    await page.close();
  });

  it("the tab's title names the room and counts what others said while it was in the background", async () => {
    const room = freshRoom("title");
    await sendReliably(() => cluster.gatewayUrl ?? "", room, "said before", `${room}-0`);
    const page = await openChat(cluster.edgeUrl ?? "", room, "websocket", "tia");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["said before"]);
    expect(await page.title()).toBe(`#${room} · chat`);
    // Headless Chromium shows every page; the page is told the tab went to the background.
    const setHidden = (hidden: boolean) =>
      page.evaluate(`
        Object.defineProperty(document, "hidden", { configurable: true, get: () => ${hidden} });
        document.dispatchEvent(new Event("visibilitychange"));
      `);
    await setHidden(true);
    for (let i = 1; i <= 2; i++)
      await sendReliably(() => cluster.gatewayUrl ?? "", room, `while away ${i}`, `${room}-${i}`);
    await say(page, "my own, from another window of mine");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toHaveLength(4);
    expect(await page.title()).toBe(`(2) #${room} · chat`); // history and one's own not counted
    await setHidden(false);
    expect(await page.title()).toBe(`#${room} · chat`);
    await page.close();
  });

  it("web addresses in a message are links, and a message from another day shows its date", async () => {
    const room = freshRoom("links");
    const body = "see https://example.com/a_(b)?c=d, not javascript:alert(1) nor <http://x.test/>.";
    await sendReliably(() => cluster.gatewayUrl ?? "", room, body, `${room}-1`);
    const links = async (page: Page) =>
      page
        .locator("#messages a")
        .evaluateAll((anchors) =>
          anchors.map((a) => [a.getAttribute("href"), a.textContent, a.getAttribute("rel")]),
        );
    const shownTime = (page: Page) => page.locator("#messages time").first().textContent();

    const today = await newPage({ locale: "en-US" });
    await today.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=sse`);
    await expect.poll(() => texts(today), { timeout: 10_000 }).toEqual([body]);
    expect(await links(today)).toEqual([
      [
        "https://example.com/a_(b)?c=d",
        "https://example.com/a_(b)?c=d",
        "noopener noreferrer nofollow",
      ],
      ["http://x.test/", "http://x.test/", "noopener noreferrer nofollow"],
    ]);
    expect(await shownTime(today)).toMatch(/^\d{1,2}:\d{2}\s[AP]M$/);

    const threeDaysLater = await newPage({ locale: "en-US" });
    await threeDaysLater.clock.setFixedTime(Date.now() + 3 * 24 * 3600_000);
    await threeDaysLater.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=sse`);
    await expect.poll(() => texts(threeDaysLater), { timeout: 10_000 }).toEqual([body]);
    expect(await shownTime(threeDaysLater)).toMatch(
      /^[A-Z][a-z]{2} \d{1,2}(, \d{4})?, \d{1,2}:\d{2}\s[AP]M$/,
    );
    for (const page of [today, threeDaysLater]) {
      expect(consoleErrors.get(page)).toEqual([]);
      await page.close();
    }
  });

  it("a message a busy node refuses over the socket (retryable) is sent again until it lands, once", async () => {
    const busy = await inProcessNode(cluster, { NODE_ID: "busy", ...ONE_PG_CONNECTION });
    const room = freshRoom("refused");
    let occupied: OccupiedConnection | undefined;
    try {
      const page = await openChat(busy.url, room, "websocket", "ivy");
      occupied = await occupyOnlyConnection(cluster, busy.url);
      await say(page, "sent while the node was busy");
      await expect
        .poll(() => metric(busy.url, "chat_pg_pool_timeouts_total"), { timeout: 10_000 })
        .toBeGreaterThan(0);
      await sleep(500); // the page's first resends over HTTP are refused too
      expect(await occupied.release()).toBe(201);
      await expect
        .poll(() => texts(page), { timeout: 15_000 })
        .toEqual(["sent while the node was busy"]);
      expect(await storedSeqs(cluster, room)).toEqual([1]);
      expect(await page.locator("#notice").isHidden()).toBe(true); // no "not sent" shown
      await page.close();
    } finally {
      await occupied?.release();
      await busy.stop();
    }
  });

  it("a room chosen while another is still loading is the only one shown, and stays live", async () => {
    const [slow, fast] = [freshRoom("slow"), freshRoom("fast")];
    for (const [room, count] of [
      [slow, 3],
      [fast, 2],
    ] as const) {
      for (let i = 1; i <= count; i++) {
        const sent = await fetch(`${cluster.gatewayUrl}/api/rooms/${room}/messages`, {
          method: "POST",
          body: JSON.stringify({ body: `${room.split("-")[0]} ${i}` }),
        });
        expect(sent.status).toBe(201);
      }
    }
    const page = await openChat(cluster.edgeUrl ?? "", fast, "websocket", "uma");
    await expect.poll(() => texts(page)).toEqual(["fast 1", "fast 2"]);
    // The slow room's history takes a second and a half to arrive.
    await page.route(
      (url) => url.pathname === `/api/rooms/${slow}/messages`,
      async (route) => {
        await sleep(1500);
        await route.continue();
      },
    );
    const enter = async (room: string) => {
      await page.getByLabel("New room name").fill(room);
      await page.getByRole("button", { name: "Create" }).click();
    };
    const slowAnswer = page.waitForResponse(
      (response) => new URL(response.url()).pathname === `/api/rooms/${slow}/messages`,
    );
    const slowAsked = page.waitForRequest(
      (request) => new URL(request.url()).pathname === `/api/rooms/${slow}/messages`,
    );
    await enter(slow);
    await slowAsked; // the slow room is loading
    await enter(fast);
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["fast 1", "fast 2"]);
    await (await slowAnswer).finished();
    await sleep(300); // time for the page to act on the slow answer, as it did before the fix
    expect(await texts(page)).toEqual(["fast 1", "fast 2"]);
    expect(await page.locator("#room-title").textContent()).toBe(`#${fast}`);
    await say(page, "fast 3");
    await expect
      .poll(() => texts(page), { timeout: 10_000 })
      .toEqual(["fast 1", "fast 2", "fast 3"]);
    await page.close();
  });
});

describe("rooms asked for one after another", () => {
  it("the last one asked for is entered, whatever order the answers come in, and what was typed meanwhile stays", async () => {
    const [first, second] = [freshRoom("asked-first"), freshRoom("asked-second")];
    const page = await openChat(cluster.edgeUrl ?? "", freshRoom("start"), "websocket", "ren");
    // The first room's creation is answered a second and a half late.
    await page.route(
      (url) => url.pathname === "/api/rooms",
      async (route) => {
        if (route.request().postData()?.includes(first)) await sleep(1500);
        await route.continue();
      },
    );
    const firstAnswer = page.waitForResponse(
      (response) => response.request().postData()?.includes(first) ?? false,
    );
    await page.getByLabel("New room name").fill(first);
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByLabel("New room name").fill(second);
    await page.getByRole("button", { name: "Create" }).click();
    await expect
      .poll(() => page.locator("#room-title").textContent(), { timeout: 10_000 })
      .toBe(`#${second}`);
    await page.getByLabel("New room name").fill("typing-meanwhile");
    await (await firstAnswer).finished();
    await sleep(300); // time for the page to act on the late answer
    expect(await page.locator("#room-title").textContent()).toBe(`#${second}`);
    expect(await page.getByLabel("New room name").inputValue()).toBe("typing-meanwhile");
    await say(page, "in the second room");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["in the second room"]);
    expect((await history(cluster.nodeUrl(0), second)).map((m) => m.body)).toEqual([
      "in the second room",
    ]);
    await page.close();
  });
});

describe("what the server refuses", () => {
  it.each(["websocket", "longpoll", "sse", "polling"])(
    "a kept session the server no longer takes (over %s) is renewed under the same name, and the page chats",
    async (transport) => {
      // Signed with a secret the deployment no longer has: as after a rotation, or expiry.
      const stale = await new TokenIssuer({ secret: "rotated-away", ttlSeconds: 3600 }).issueGuest(
        "pat",
      );
      const room = freshRoom(`stale-${transport}`);
      const page = await newPage();
      await page.addInitScript({
        content: `localStorage.setItem("chat.session", ${JSON.stringify(JSON.stringify(stale))})`,
      });
      await page.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=${transport}`);
      await expect
        .poll(() => page.locator("#status").textContent(), { timeout: 15_000 })
        .toContain("connected");
      await say(page, "after the secret changed");
      await expect
        .poll(() => texts(page), { timeout: 15_000 })
        .toEqual(["after the secret changed"]);
      const [stored] = await history(cluster.nodeUrl(0), room);
      expect(stored?.user).toBe("pat");
      const kept = await page.evaluate(`localStorage.getItem("chat.session")`);
      const { token } = JSON.parse(String(kept)) as { token: string };
      expect(token).not.toBe(stale.token);
      const check = await fetch(`${cluster.nodeUrl(0)}/api/session`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(await check.json()).toMatchObject({ user: { name: "pat" } });
      await page.close();
    },
  );

  it("a page the edge serves while every node is down says it is waiting, and chats once they are back", async () => {
    const room = freshRoom("outage");
    await (await openChat(cluster.edgeUrl ?? "", room, "websocket", "oz")).close(); // the edge holds the page now
    const page = await newPage();
    await Promise.all([cluster.stopNode(0, "SIGKILL"), cluster.stopNode(1, "SIGKILL")]);
    try {
      await page.goto(`${cluster.edgeUrl}/chat?room=${room}&transport=websocket`);
      await expect
        .poll(() => page.locator("#status").textContent(), { timeout: 10_000 })
        .toContain("waiting for the server");
    } finally {
      await Promise.all([cluster.startNode(0), cluster.startNode(1)]);
    }
    // Before, the page stayed "connecting…" until reloaded: its first history request had failed.
    await expect
      .poll(() => page.locator("#status").textContent(), { timeout: 30_000 })
      .toContain("connected");
    await say(page, "after the outage");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["after the outage"]);
    await page.close();
  });

  it("a send refused over HTTP says why at once and keeps the text to edit", async () => {
    const page = await openChat(cluster.edgeUrl ?? "", freshRoom("too-long"), "polling", "lee");
    const tooLong = "x".repeat(5000);
    await say(page, tooLong);
    // Before, a 413 was retried like a lost connection, for ~15 s, before anything showed.
    await expect
      .poll(() => page.locator("#notice").textContent(), { timeout: 5000 })
      .toContain("MAX_MESSAGE_BYTES");
    expect(await page.getByLabel("Message").inputValue()).toBe(tooLong);
    await sleep(1500); // a poll rewrites the status line each second; the notice stays
    expect(await page.locator("#notice").textContent()).toContain("not sent");
    await say(page, "shorter");
    await expect.poll(() => texts(page), { timeout: 10_000 }).toEqual(["shorter"]);
    expect(await page.locator("#notice").isHidden()).toBe(true);
    await page.close();
  });

  it("on a phone-sized screen, where the whole page scrolls, a refusal shows while the user is at the message box", async () => {
    const room = freshRoom("narrow");
    await fillRoom(room, 30);
    const page = await openRoom(room, "websocket", { viewport: { width: 390, height: 800 } });
    await page.getByLabel("Message").scrollIntoViewIfNeeded();
    await say(page, "x".repeat(5000));
    await expect
      .poll(() => page.locator("#notice").textContent(), { timeout: 5000 })
      .toContain("MAX_MESSAGE_BYTES");
    expect(await page.evaluate("window.scrollY")).toBeGreaterThan(300); // scrolled down to type
    const notice = await page.locator("#notice").boundingBox();
    expect(notice?.y).toBeGreaterThanOrEqual(0); // was 1,500 px above the top of the screen
    expect((notice?.y ?? 0) + (notice?.height ?? 0)).toBeLessThanOrEqual(800);
    await page.close();
  });

  it("a send refused after more was typed comes back to the box before it, losing neither", async () => {
    const room = freshRoom("late-refusal");
    const page = await openChat(cluster.edgeUrl ?? "", room, "sse", "kai");
    await page.route(
      (url) => url.pathname === `/api/rooms/${room}/messages`,
      async (route) => {
        if (route.request().method() === "POST") await sleep(1000); // answered a second late
        await route.continue();
      },
    );
    const tooLong = "y".repeat(5000);
    await say(page, tooLong);
    await page.getByLabel("Message").fill("the next draft");
    await expect
      .poll(() => page.locator("#notice").textContent(), { timeout: 5000 })
      .toContain("MAX_MESSAGE_BYTES");
    expect(await page.getByLabel("Message").inputValue()).toBe(`${tooLong}\nthe next draft`);
    await page.close();
  });

  it("a name or a room the server refuses is reported, and the room name stays to correct", async () => {
    const page = await openChat(cluster.edgeUrl ?? "", freshRoom("refusals"), "websocket", "max");
    await page.getByLabel("Your name").fill("   "); // passes the form's `required`, not the server
    await page.getByRole("button", { name: "Set" }).click();
    await expect
      .poll(() => page.locator("#notice").textContent(), { timeout: 5000 })
      .toContain("name not set: name");
    // As from a browser that does not check the field's pattern.
    await page.locator("#new-room").evaluate((input) => input.removeAttribute("pattern"));
    await page.getByLabel("New room name").fill("Bad Room");
    await page.getByRole("button", { name: "Create" }).click();
    await expect
      .poll(() => page.locator("#notice").textContent(), { timeout: 5000 })
      .toContain("room not created: room names are");
    expect(await page.getByLabel("New room name").inputValue()).toBe("Bad Room");
    await page.close();
  });
});

describe("switching transport", () => {
  it("a transport switched away from cannot update the page: a poll answered after the switch leaves the new one's status alone", async () => {
    const room = freshRoom("switch");
    const page = await openChat(cluster.edgeUrl ?? "", room, "polling", "vic");
    const path = (url: URL | string) => new URL(url).pathname;
    let holding = () => {};
    const pollHeld = new Promise<void>((resolve) => {
      holding = resolve;
    });
    // Polls take a second and a half from now on, and the stream cannot be opened.
    await page.route(
      (url) => path(url) === `/api/rooms/${room}/messages`,
      async (route) => {
        holding();
        await sleep(1500);
        await route.continue();
      },
    );
    await page.route(
      (url) => path(url) === `/api/rooms/${room}/stream`,
      (route) => route.abort(),
    );
    await pollHeld;
    const pollAnswer = page.waitForResponse((r) => path(r.url()) === `/api/rooms/${room}/messages`);
    await page.getByLabel("Transport").selectOption("sse");
    await (await pollAnswer).finished();
    await sleep(300); // time for the page to act on the poll's answer
    expect(await page.locator("#status").textContent()).toMatch(
      /^server-sent events · (connecting|reconnecting)…$/,
    );
    await page.close();
  });
});

describe("the room list", () => {
  /** Every room's name, page by page through the API. */
  async function allRooms(): Promise<string[]> {
    const names: string[] = [];
    for (let after: string | null = ""; after !== null; ) {
      const response = await fetch(`${cluster.gatewayUrl}/api/rooms?after=${after}`);
      const page = (await response.json()) as { rooms: { name: string }[]; next: string | null };
      names.push(...page.rooms.map((room) => room.name));
      after = page.next;
    }
    return names;
  }

  it("shows rooms a page at a time, and More rooms adds the next page until all are listed", async () => {
    const prefix = freshRoom("list");
    for (let i = 1; i <= ROOMS_PER_PAGE + 3; i++) {
      const created = await fetch(`${cluster.gatewayUrl}/api/rooms`, {
        method: "POST",
        body: JSON.stringify({ name: `${prefix}-${i}` }),
      });
      expect(created.status).toBe(201);
    }
    const all = await allRooms();
    expect(all.length).toBeGreaterThan(2 * ROOMS_PER_PAGE);
    const current = `${prefix}-1`;
    const listed = (names: string[]) =>
      [...new Set([current, ...names])].sort().map((n) => `#${n}`);
    const page = await browser.newPage();
    await page.goto(`${cluster.edgeUrl}/chat?room=${current}`);
    const shown = () => page.locator("#rooms button").allTextContents();
    const more = page.getByRole("button", { name: "More rooms" });
    await expect.poll(shown).toEqual(listed(all.slice(0, ROOMS_PER_PAGE)));
    await more.click();
    await expect.poll(shown).toEqual(listed(all.slice(0, 2 * ROOMS_PER_PAGE)));
    for (let loaded = 2 * ROOMS_PER_PAGE; loaded < all.length; loaded += ROOMS_PER_PAGE) {
      await more.click();
      await expect.poll(shown).toEqual(listed(all.slice(0, loaded + ROOMS_PER_PAGE)));
    }
    expect(await more.isVisible()).toBe(false);
    await page.close();
  });
});

describe("the page through the edge", () => {
  it("runs under a Content-Security-Policy that lets no injected script run", async () => {
    const page = await openChat(cluster.edgeUrl ?? "", freshRoom("csp"), "websocket", "cy");
    // What text that slipped past escaping could try: an inline script, a beacon elsewhere.
    const ran = await page.evaluate(`(() => {
      const injected = document.createElement("script");
      injected.textContent = "globalThis.injectedRan = true";
      document.body.append(injected);
      const beacon = document.createElement("img");
      beacon.src = "http://example.invalid/beacon.png";
      document.body.append(beacon);
      return globalThis.injectedRan ?? false;
    })()`);
    expect(ran).toBe(false);
    await expect
      .poll(() => policyViolations(page))
      .toEqual(["script-src-elem inline", "img-src http://example.invalid/beacon.png"]);
    await page.close();
  });

  it("reloading serves the assets as cache hits", async () => {
    const page = await browser.newPage();
    const cacheHeaders: string[] = [];
    page.on("response", (response) => {
      if (response.url().includes("/assets/"))
        cacheHeaders.push(response.headers()["x-cache"] ?? "");
    });
    await page.goto(`${cluster.edgeUrl}/`);
    await page.reload();
    await expect.poll(() => cacheHeaders.length).toBeGreaterThanOrEqual(2);
    expect(cacheHeaders.at(-1)).toMatch(/HIT|REVALIDATED/);
    await page.close();
  });
});
