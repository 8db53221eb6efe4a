import type { Message } from "@chat/shared";
import {
  ApiError,
  backoffMs,
  createRoom,
  createSession,
  history,
  isRetryable,
  listRooms,
  pause,
  type Session,
  sessionIsValid,
} from "./api.ts";
import { type Live, openLive, type TransportName } from "./live.ts";
import { renderMessage } from "./render.ts";

/**
 * The chat page: the thesis's four client prototypes (polling, long polling, streaming,
 * WebSocket) behind one switch. Text is only ever set with textContent: never parsed as HTML.
 */
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const view = {
  connection: $("connection"),
  servedBy: $("served-by"),
  notice: $("notice"),
  nameForm: $<HTMLFormElement>("name-form"),
  name: $<HTMLInputElement>("name"),
  transport: $<HTMLSelectElement>("transport"),
  rooms: $<HTMLUListElement>("rooms"),
  moreRooms: $<HTMLButtonElement>("more-rooms"),
  roomForm: $<HTMLFormElement>("room-form"),
  newRoom: $<HTMLInputElement>("new-room"),
  presence: $<HTMLUListElement>("presence"),
  roomTitle: $("room-title"),
  older: $<HTMLButtonElement>("older"),
  messages: $<HTMLOListElement>("messages"),
  newer: $<HTMLButtonElement>("newer"),
  composer: $<HTMLFormElement>("composer"),
  body: $<HTMLTextAreaElement>("body"),
};

const TRANSPORTS: TransportName[] = ["websocket", "longpoll", "sse", "polling"];
const query = new URLSearchParams(location.search);
const state = {
  session: JSON.parse(localStorage.getItem("chat.session") ?? "null") as Session | null,
  transport: (TRANSPORTS.find((t) => t === query.get("transport")) ?? "websocket") as TransportName,
  room: query.get("room") ?? "chat",
  /** The room list's pages loaded so far, and where the next one starts (null: no more). */
  rooms: [] as string[],
  roomsNext: null as string | null,
  live: undefined as Live | undefined,
  /** Counts room entries, so an answer that arrives after the user moved on is dropped. */
  visit: 0,
  /** Counts transports opened, so one that was closed cannot update the page. */
  connections: 0,
  firstSeq: 0,
  lastSeq: 0,
  mine: new Set<string>(),
  /** Messages that arrived below while the user read further up. */
  unseen: 0,
  /** Messages from others that arrived while the tab was hidden: counted in its title. */
  unread: 0,
  /** Messages apply one at a time, so a gap fill and live arrivals never interleave. */
  applying: Promise.resolve(),
  /** When the kept token was last checked with the server (a failing transport rechecks it). */
  sessionCheckedAt: 0,
};

/** The connection's state: each transport updates it as it goes. */
/** The connection's state, and beside it the node serving the page (not announced). */
function setStatus(text: string, node?: string | null): void {
  // A live region announces every change, even to the same words: polling sets it each second.
  if (view.connection.textContent !== text) view.connection.textContent = text;
  const servedBy = node ? ` · node ${node}` : "";
  if (view.servedBy.textContent !== servedBy) view.servedBy.textContent = servedBy;
}

/** What a notice is about, so that the next success of the same kind clears it. */
type NoticeAbout = "session" | "rooms" | "room" | "send" | "name";
let noticeAbout: NoticeAbout | null = null;

/** What the server refused, kept apart from the status, which a poll rewrites every second. */
function showNotice(about: NoticeAbout, text: string): void {
  noticeAbout = about;
  view.notice.textContent = text;
  view.notice.hidden = false;
}

function clearNotice(...about: NoticeAbout[]): void {
  if (noticeAbout === null || !about.includes(noticeAbout)) return;
  noticeAbout = null;
  view.notice.textContent = "";
  view.notice.hidden = true;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function keepSession(session: Session | null): void {
  state.session = session;
  if (session) localStorage.setItem("chat.session", JSON.stringify(session));
  else localStorage.removeItem("chat.session");
}

const SESSION_RECHECK_MS = 10_000;

/**
 * A kept token stops working after `TOKEN_TTL_S` or when the deployment's secret changes, and
 * sockets refuse it with no reason a page can read: ask the server, and if it is refused take
 * a new guest token for the same name. True when the session was replaced.
 */
async function renewIfRefused(): Promise<boolean> {
  const session = state.session;
  if (!session || Date.now() - state.sessionCheckedAt < SESSION_RECHECK_MS) return false;
  state.sessionCheckedAt = Date.now();
  try {
    if (await sessionIsValid(session.token)) return false;
    keepSession(await createSession(session.user.name));
  } catch (error) {
    // Offline, or a node draining or overloaded: keep the session, and ask again later.
    if (!(error instanceof ApiError) || isRetryable(error.status)) return false;
    keepSession(null); // the name itself is refused now: carry on as the anonymous guest
    showNotice("session", `signed out: ${describe(error)}`);
  }
  return true;
}

const isMine = (message: Message) => state.mine.has(message.client_id ?? "");
const render = (message: Message) => renderMessage(message, isMine(message));

/** Exactly once, in order: older seqs are dropped, a gap is filled from history first. */
function receive(message: Message): void {
  state.applying = state.applying.then(async () => {
    if (message.room !== state.room || message.seq <= state.lastSeq) return;
    if (await fillGapBefore(message.seq, state.visit)) appendLive(message);
  });
}

const GAP_PAGE = 50;

/**
 * Fetches what is missing before `seq`, a page at a time. A failed answer (a node going away)
 * or a short one (a replica behind) is asked again after a pause, so one bad answer can
 * neither stop the list nor let a message show out of order. False if the user left the room.
 */
async function fillGapBefore(seq: number, visit: number): Promise<boolean> {
  for (let failures = 0; state.lastSeq < seq - 1 && visit === state.visit; ) {
    const missing = seq - 1 - state.lastSeq;
    const page = await history(state.room, {
      after: state.lastSeq,
      limit: Math.min(GAP_PAGE, missing),
    }).catch(() => undefined);
    if (visit !== state.visit) break;
    for (const missed of page?.messages ?? []) appendLive(missed);
    const progressed = seq - 1 - state.lastSeq < missing;
    failures = progressed ? 0 : failures + 1;
    if (failures > 0) await pause(backoffMs(failures, 500));
  }
  return visit === state.visit;
}

/** A message that arrived live, not with the history shown on entering: it may be unread. */
function appendLive(message: Message): void {
  if (append(message) && document.hidden && !isMine(message)) showUnread(state.unread + 1);
}

/** Shows the room's next message; any other seq is not shown (false). */
function append(message: Message): boolean {
  if (message.seq !== state.lastSeq + 1) return false;
  const follow = isAtBottom() || isMine(message);
  view.messages.append(render(message));
  state.lastSeq = message.seq;
  if (state.firstSeq === 0) state.firstSeq = message.seq;
  if (follow) {
    dropOldestBeyond(MAX_SHOWN);
    scrollToNewest();
  } else showUnseen(state.unseen + 1);
  return true;
}

/** Messages kept on the page: a tab left open in a busy room would otherwise grow for ever. */
const MAX_SHOWN = 500;

/**
 * Lets the oldest messages go once the list is a page of 50 past `max`, only while the user
 * follows the newest (nothing moves under a reader); "Load older messages" brings them back.
 */
function dropOldestBeyond(max: number): void {
  const list = view.messages;
  if (list.childElementCount < max + 50) return;
  while (list.childElementCount > max) list.firstElementChild?.remove();
  state.firstSeq = Number((list.firstElementChild as HTMLElement | null)?.dataset.seq);
  view.older.hidden = false;
}

/** The tab's title names the room, and what came while the tab was in the background. */
function showUnread(count: number): void {
  state.unread = count;
  document.title = `${count > 0 ? `(${count}) ` : ""}#${state.room} · chat`;
}

/** Within a few pixels of the newest message: the list follows what arrives. */
function isAtBottom(): boolean {
  const list = view.messages;
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

function scrollToNewest(): void {
  view.messages.scrollTop = view.messages.scrollHeight;
  showUnseen(0);
}

/** Someone reading older messages is not pulled down; a button says what came meanwhile. */
function showUnseen(count: number): void {
  state.unseen = count;
  view.newer.hidden = count === 0;
  view.newer.textContent = `${count} new message${count === 1 ? "" : "s"} ↓`;
}

/** Runs a button's page load with the button disabled: a second click would load it twice. */
async function onePageAtATime<T>(button: HTMLButtonElement, load: () => Promise<T>): Promise<T> {
  button.disabled = true;
  try {
    return await load();
  } finally {
    button.disabled = false;
  }
}

async function loadOlder(): Promise<void> {
  if (state.firstSeq <= 1) return;
  const visit = state.visit;
  const page = await history(state.room, { before: state.firstSeq, limit: 50 }).catch(
    (error: unknown) => void showNotice("room", `older messages not loaded: ${describe(error)}`),
  );
  if (!page || visit !== state.visit) return;
  clearNotice("room");
  const { messages } = page;
  // What the user was reading stays where it was on screen, the older page above it.
  const fromBottom = view.messages.scrollHeight - view.messages.scrollTop;
  view.messages.prepend(...messages.map(render));
  view.messages.scrollTop = view.messages.scrollHeight - fromBottom;
  state.firstSeq = messages[0]?.seq ?? state.firstSeq;
  view.older.hidden = state.firstSeq <= 1;
}

async function enterRoom(room: string): Promise<void> {
  state.live?.close();
  state.live = undefined;
  const visit = ++state.visit;
  state.room = room;
  state.firstSeq = 0;
  state.lastSeq = 0;
  view.messages.replaceChildren();
  showUnseen(0);
  showUnread(0);
  view.roomTitle.textContent = `#${room}`;
  updateUrl();
  // All at once: through a far edge each is a round trip to the origin.
  const [messages, roomsListed] = await Promise.all([
    latestMessages(room, visit),
    onePageAtATime(view.moreRooms, () => loadRooms()),
    renewIfRefused(),
  ]);
  if (messages === undefined || visit !== state.visit) return; // refused, or another room chosen
  if (!roomsListed) void onePageAtATime(view.moreRooms, () => loadRooms()); // the server is back
  state.lastSeq = (messages[0]?.seq ?? 1) - 1;
  for (const message of messages) append(message);
  view.older.hidden = state.firstSeq <= 1;
  connect();
}

/**
 * The room's latest page. While the server cannot be reached (the edge may serve the page
 * from its cache with every node down) it says so and tries again, until the visit ends; a
 * refusal (a bad room name in the address) is shown and not retried.
 */
async function latestMessages(room: string, visit: number): Promise<Message[] | undefined> {
  for (let attempt = 1; visit === state.visit; attempt++) {
    try {
      return (await history(room, { before: Number.MAX_SAFE_INTEGER, limit: 50 })).messages;
    } catch (error) {
      if (error instanceof ApiError && !isRetryable(error.status)) {
        showNotice("room", `room not shown: ${describe(error)}`);
        setStatus(`#${room} cannot be shown`);
        return undefined;
      }
      setStatus(`waiting for the server: ${describe(error)}`);
      await pause(backoffMs(attempt, 500));
    }
  }
  return undefined;
}

function connect(): void {
  state.live?.close();
  // A closed transport can still answer (a poll in flight): only the current one speaks.
  const connection = ++state.connections;
  const current = () => connection === state.connections;
  const transport = label(state.transport);
  setStatus(`${transport} · connecting…`);
  state.live = openLive(state.transport, state.room, () => state.lastSeq, state.session?.token, {
    onMessage: (message) => current() && receive(message),
    onStatus: (status, node) => {
      if (!current()) return;
      setStatus(`${transport} · ${status === "live" ? "connected" : "reconnecting…"}`, node);
      if (status === "reconnecting") void renewIfRefused().then((renewed) => renewed && connect());
    },
    onPresence: (names) => current() && renderPresence(names),
  });
}

/** Loads the room list's first page, or with `more` its next one, and shows what is loaded. */
async function loadRooms(more = false): Promise<boolean> {
  try {
    const page = await listRooms(more ? (state.roomsNext ?? "") : "");
    state.rooms = more ? [...state.rooms, ...page.rooms] : page.rooms;
    state.roomsNext = page.next;
    clearNotice("rooms");
    return true;
  } catch (error) {
    showNotice("rooms", `rooms not listed: ${describe(error)}`);
    return false;
  } finally {
    renderRooms();
  }
}

function renderRooms(): void {
  const all = [...new Set([state.room, ...state.rooms])].sort();
  view.moreRooms.hidden = state.roomsNext === null;
  view.rooms.replaceChildren(
    ...all.map((room) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `#${room}`;
      if (room === state.room) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => void enterRoom(room));
      item.append(button);
      return item;
    }),
  );
}

function renderPresence(names: string[] | null): void {
  if (names === null) {
    const note = document.createElement("li");
    note.textContent = "shown with WebSocket or long polling";
    view.presence.replaceChildren(note);
    return;
  }
  view.presence.replaceChildren(
    ...names.sort().map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      return item;
    }),
  );
}

function label(transport: TransportName): string {
  return {
    websocket: "WebSocket",
    longpoll: "long polling",
    sse: "server-sent events",
    polling: "polling",
  }[transport];
}

function updateUrl(): void {
  const params = new URLSearchParams({ room: state.room, transport: state.transport });
  window.history.replaceState(null, "", `${location.pathname}?${params}`);
}

async function sendCurrent(): Promise<void> {
  const body = view.body.value;
  if (body.trim() === "" || !state.live) return;
  const clientId = crypto.randomUUID();
  state.mine.add(clientId);
  view.body.value = "";
  try {
    receive(await sendRenewingSession(state.live, body, clientId));
    clearNotice("send");
  } catch (error) {
    // Back in the box to edit, before anything typed since (a send can fail seconds later).
    view.body.value = view.body.value ? `${body}\n${view.body.value}` : body;
    showNotice("send", `not sent: ${describe(error)}`);
  }
}

/** A send refused for its token goes again, once, on a renewed session. */
async function sendRenewingSession(live: Live, body: string, clientId: string): Promise<Message> {
  try {
    return await live.send(body, clientId);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "invalid_token")) throw error;
    state.sessionCheckedAt = 0;
    if (!(await renewIfRefused())) throw error;
    connect();
    return (state.live ?? live).send(body, clientId);
  }
}

view.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  void sendCurrent();
});
view.body.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    void sendCurrent();
  }
});
view.nameForm.addEventListener("submit", (event) => {
  event.preventDefault();
  createSession(view.name.value).then(
    (session) => {
      keepSession(session);
      clearNotice("name", "session");
      connect();
    },
    (error) => showNotice("name", `name not set: ${describe(error)}`),
  );
});
let roomsRequested = 0;
view.roomForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = view.newRoom.value;
  // Answers may come back out of order: only the room asked for last is entered.
  const request = ++roomsRequested;
  createRoom(room, state.session?.token).then(
    () => {
      if (view.newRoom.value === room) view.newRoom.value = ""; // not what was typed since
      clearNotice("room");
      if (request === roomsRequested) return enterRoom(room);
    },
    (error) => showNotice("room", `room not created: ${describe(error)}`),
  );
});
view.transport.addEventListener("change", () => {
  state.transport = view.transport.value as TransportName;
  updateUrl();
  connect();
});
view.older.addEventListener("click", () => void onePageAtATime(view.older, loadOlder));
view.newer.addEventListener("click", scrollToNewest);
document.addEventListener("visibilitychange", () => !document.hidden && showUnread(0));
view.messages.addEventListener("scroll", () => state.unseen > 0 && isAtBottom() && showUnseen(0), {
  passive: true,
});
view.moreRooms.addEventListener(
  "click",
  () => void onePageAtATime(view.moreRooms, () => loadRooms(true)),
);

view.transport.value = state.transport;
view.name.value = state.session?.user.name ?? "";
void enterRoom(state.room);
