import type { Message } from "@chat/shared";
import { describe, expect, it } from "vitest";
import type { DrillClient, DrillTransport } from "../drill/src/clients.ts";
import { Link } from "../drill/src/link.ts";
import { summary } from "../drill/src/report.ts";
import { verify } from "../drill/src/verify.ts";

/** A client that received the given seqs of room `r` (ids `m<seq>`, as stored). */
function clientWith(transport: DrillTransport, seqs: number[]): DrillClient {
  const link = new Link();
  link.up("node-0");
  return {
    name: `${transport}-0`,
    transport,
    room: "r",
    received: seqs.map((seq) => ({ room: "r", seq, id: `m${seq}` }) as Message),
    arrivals: seqs.map(() => performance.now()),
    link,
    errors: 0,
    lastError: undefined,
    send: () => Promise.reject(new Error("not sending")),
    close: () => {},
  };
}

describe("a drill's verdict and report", () => {
  it("counts lost and doubled messages per transport, and says which sends failed and why", () => {
    const stored = [1, 2, 3].map((seq) => ({ seq, id: `m${seq}`, client_id: null }));
    const result = verify({
      scenario: "kill",
      description: "",
      target: "local",
      durationMs: 1000,
      clients: [clientWith("sse", [1, 2, 3]), clientWith("phoenix-ws", [1, 3, 3])],
      stored: new Map([["r", stored]]),
      sends: {
        attempts: 10,
        failedAttempts: 4,
        failedSends: 1,
        failedSendsByTransport: new Map([["phoenix-ws", 1]]),
        attemptErrors: new Map([
          ["sse: send 503 unavailable", 1],
          ["phoenix-ws: push timeout", 3],
        ]),
        acknowledged: new Map(),
      },
      events: [],
      timeline: [],
    });

    expect(result.passed).toBe(false);
    expect(result.byTransport.sse).toMatchObject({ lost: 0, doubled: 0, failedSends: 0 });
    expect(result.byTransport["phoenix-ws"]).toMatchObject({ lost: 1, doubled: 1, failedSends: 1 });
    expect(result.sendErrors.map((e) => e.error)).toEqual([
      "phoenix-ws: push timeout",
      "sse: send 503 unavailable",
    ]);
    const report = summary(result);
    expect(report).toContain("failed sends by transport: phoenix-ws 1");
    expect(report).toContain("3 × phoenix-ws: push timeout");
  });
});
