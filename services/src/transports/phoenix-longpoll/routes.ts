import { ChatError, PHOENIX_LONGPOLL_PATH, type User } from "@chat/shared";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { clientAddress } from "../../http/client-address.ts";
import type { App, NodeServices } from "../../http/context.ts";
import { ANONYMOUS } from "../../identity/tokens.ts";
import type { PresenceState } from "../../presence/presence.ts";
import { broadcast, encode, encodePublish, parseVsn } from "../phoenix/serializer.ts";
import { LongPollFrames } from "./frames.ts";
import {
  type JoinedTopic,
  LongPollSessions,
  parseSessionToken,
  SESSION_PREFIX,
  type SessionInfo,
  type SessionRecord,
  sessionToken,
} from "./sessions.ts";

/** Messages one poll hands out per topic; the rest go with the next poll. */
const POLL_BATCH = 500;
const LOCK_MS = 10_000;

/**
 * Phoenix's LongPoll transport, sticky-free: the session lives in Redis, so a client's
 * consecutive polls and posts may each land on a different node. Statuses travel in the
 * JSON body as phoenix.js expects: 410 (new or gone session, with a token), 200 with
 * messages, 204 nothing new, 403 bad credentials, 500 try again.
 *
 * Exactly once, whoever retries: each answer with frames is a new version of the session's
 * cursors, named by the token phoenix.js sends back; a poll naming the previous version
 * (its answer was lost on a dying node, or a balancer retried the GET) is answered again
 * from the older cursors (see SessionRecord).
 */
export function phoenixLongPollRoutes(app: App, services: NodeServices): void {
  const { config, bus } = services;
  const sessions = new LongPollSessions(bus.commands, config.LONGPOLL_SESSION_TTL_MS);
  const frames = new LongPollFrames(services, sessions);
  const answer = (c: Context, body: Record<string, unknown>) => c.json(body, 200);

  app.get(PHOENIX_LONGPOLL_PATH, async (c) => {
    const { session: token, userToken } = tokensOf(c);
    try {
      if (!token)
        return answer(c, {
          status: 410,
          token: await open(c, services, sessions, userToken),
          messages: [],
        });
      const record = await sessions.touch(token.sid);
      if (!record || !knownVersion(record, token.version)) return answer(c, { status: 410 });
      await services.presence.keepAlive(
        LongPollSessions.owner(token.sid),
        config.LONGPOLL_SESSION_TTL_MS,
      );
      let result = await collect(services, sessions, token.sid, token.version);
      if (result?.frames.length === 0) {
        await waitForNews(c, services, sessions, token.sid, token.version);
        result = await collect(services, sessions, token.sid, token.version);
      }
      if (!result) return answer(c, { status: 410 });
      const next = sessionToken(token.sid, result.version);
      return answer(
        c,
        result.frames.length > 0
          ? { status: 200, token: next, messages: result.frames }
          : { status: 204, token: next },
      );
    } catch (error) {
      if (
        error instanceof ChatError &&
        (error.code === "invalid_token" || error.code === "unauthorized")
      ) {
        return answer(c, { status: 403 });
      }
      services.log.warn({ err: error }, "long poll failed");
      return answer(c, { status: 500 });
    }
  });

  app.post(
    PHOENIX_LONGPOLL_PATH,
    bodyLimit({ maxSize: config.MAX_REQUEST_BYTES, onError: (c) => answer(c, { status: 413 }) }),
    async (c) => {
      const sid = tokensOf(c).session?.sid;
      const record = sid ? await sessions.touch(sid).catch(() => null) : null;
      if (!sid || !record) return answer(c, { status: 410 });
      const session = record.info;
      const lines = (await c.req.text()).split("\n").filter((line) => line.trim() !== "");
      const replies: string[] = [];
      for (const line of lines) replies.push(...(await frames.handle(sid, session, line)));
      await sessions.enqueue(sid, replies);
      await bus.signal(LongPollSessions.wakeChannel(sid), "1");
      return answer(c, { status: 200 });
    },
  );
}

/** `token` carries both the session (prefixed) and, from socket params, the user's token. */
function tokensOf(c: Context) {
  const tokens = c.req.queries("token") ?? [];
  const session = tokens.find((t) => t.startsWith(SESSION_PREFIX));
  return {
    session: session ? parseSessionToken(session) : undefined,
    userToken:
      tokens.find((t) => t !== "" && !t.startsWith(SESSION_PREFIX)) ??
      c.req.header("x-phoenix-authtoken"),
  };
}

/** The token names the last answer (normal) or the one before it (that answer was lost). */
const knownVersion = (record: SessionRecord, version: number) =>
  version === record.version || version === record.version - 1;

async function open(
  c: Context,
  services: NodeServices,
  sessions: LongPollSessions,
  userToken: string | undefined,
) {
  let user: User = ANONYMOUS;
  if (userToken) user = await services.tokens.verify(userToken);
  else if (services.config.REQUIRE_TOKEN)
    throw new ChatError("unauthorized", "a token is required");
  const info: SessionInfo = { vsn: parseVsn(c.req.query("vsn")), user, address: clientAddress(c) };
  return sessions.create(info);
}

/**
 * Everything the client has not had as of answer `version`: the replies of a lost answer
 * again, queued replies, then per topic presence and messages. Frames make a new version.
 */
async function collect(
  services: NodeServices,
  sessions: LongPollSessions,
  sid: string,
  version: number,
) {
  if (!(await sessions.lock(sid, LOCK_MS))) return { frames: [], version };
  try {
    const record = await sessions.touch(sid);
    if (!record || !knownVersion(record, version)) return undefined;
    const replies = version < record.version ? [...record.resend] : [];
    replies.push(...(await sessions.dequeueAll(sid)));
    const frames = [...replies];
    const topics = [...(await sessions.topics(sid))];
    const updated = await Promise.all(
      topics.map(([topic, joined]) =>
        catchUpTopic(services, record.info, topic, joined, version, frames),
      ),
    );
    if (frames.length === 0) return { frames, version };
    const next = version + 1;
    await sessions.save(sid, { ...record, version: next, resend: replies });
    for (const [i, [topic]] of topics.entries()) {
      const joined = updated[i];
      if (joined) await sessions.setTopic(sid, topic, withVersion(joined, version, next));
    }
    return { frames, version: next };
  } finally {
    await sessions.unlock(sid);
  }
}

/** Keeps the state of answers `version` and `next` only: older tokens are refused (410). */
function withVersion(
  joined: JoinedTopic & { nextCursor: number; nextPresence: string },
  version: number,
  next: number,
) {
  const { nextCursor, nextPresence, ...topic } = joined;
  const base = joined.cursors[version] ?? joined.start;
  return {
    ...topic,
    cursors: { [version]: base, [next]: nextCursor },
    presenceSent: { [version]: joined.presenceSent[version] ?? "", [next]: nextPresence },
  };
}

async function catchUpTopic(
  services: NodeServices,
  session: SessionInfo,
  topic: string,
  joined: JoinedTopic,
  version: number,
  frames: string[],
) {
  const state: PresenceState = await services.presence.list(joined.room);
  const presence = JSON.stringify(state);
  if (presence !== joined.presenceSent[version]) {
    // A whole presence_state each time it changes: phoenix.js's Presence syncs from it.
    frames.push(encode(broadcast(topic, "presence_state", state, joined.joinRef), session.vsn));
  }
  const cursor = joined.cursors[version] ?? joined.start;
  const messages = await services.chat.history(joined.room, cursor, POLL_BATCH);
  for (const message of messages)
    frames.push(encodePublish(session.vsn, topic, joined.joinRef, JSON.stringify(message)));
  return { ...joined, nextCursor: messages.at(-1)?.seq ?? cursor, nextPresence: presence };
}

/** Holds the poll until a joined room has news, a post queues replies, the node drains, or time is up. */
async function waitForNews(
  c: Context,
  services: NodeServices,
  sessions: LongPollSessions,
  sid: string,
  version: number,
): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  let registered: Promise<void> = Promise.resolve();
  await new Promise<void>((resolve) => {
    let done = false;
    const wake = () => {
      if (done) return;
      done = true;
      resolve();
    };
    const timer = setTimeout(wake, services.config.LONGPOLL_HOLD_MS);
    cleanups.push(() => clearTimeout(timer), services.drainer.track("phoenix-longpoll", wake));
    c.req.raw.signal.addEventListener("abort", wake, { once: true });
    registered = (async () => {
      cleanups.push(await services.bus.listen(LongPollSessions.wakeChannel(sid), wake));
      for (const joined of (await sessions.topics(sid)).values()) {
        cleanups.push(services.presence.listen(joined.room, { presenceChanged: wake }));
        const after = joined.cursors[version] ?? joined.start;
        const subscription = await services.chat.subscribe(joined.room, {
          after,
          to: { deliver: wake },
        });
        cleanups.push(() => subscription.close());
      }
    })().catch(wake);
  });
  await registered; // whatever registered after the wake-up is undone too
  for (const cleanup of cleanups) await cleanup();
}
