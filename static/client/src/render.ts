import type { Message } from "@chat/shared";

/**
 * One message as the page shows it. Text is only ever set with textContent (never parsed as
 * HTML); web addresses become links built element by element.
 */
export function renderMessage(message: Message, mine: boolean): HTMLLIElement {
  const item = document.createElement("li");
  item.className = mine ? "message mine" : "message";
  item.dataset.seq = String(message.seq);
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("strong");
  who.textContent = message.user;
  meta.append(who, renderTime(new Date(message.at)));
  const text = document.createElement("div");
  text.className = "text";
  text.append(...linkify(message.body));
  item.append(meta, text);
  return item;
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayAndTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "numeric",
  minute: "2-digit",
});
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const whole = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

/** Today's messages by time alone; older ones with their day, so history is not misread. */
function renderTime(at: Date, now = new Date()): HTMLTimeElement {
  const when = document.createElement("time");
  when.dateTime = at.toISOString();
  when.title = whole.format(at);
  const format =
    at.toDateString() === now.toDateString()
      ? timeOfDay
      : at.getFullYear() === now.getFullYear()
        ? dayAndTime
        : dateAndTime;
  when.textContent = format.format(at);
  return when;
}

const WEB_ADDRESS = /\bhttps?:\/\/[^\s<>"]+/giu;

/** The body as text and links: only http(s) addresses, opened apart from the chat. */
function linkify(body: string): (string | HTMLAnchorElement)[] {
  const parts: (string | HTMLAnchorElement)[] = [];
  let shown = 0;
  for (const match of body.matchAll(WEB_ADDRESS)) {
    const address = withoutTrailingPunctuation(match[0]);
    parts.push(body.slice(shown, match.index));
    const link = document.createElement("a");
    link.href = address;
    link.textContent = address;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    parts.push(link);
    shown = match.index + address.length;
  }
  parts.push(body.slice(shown));
  return parts.filter((part) => part !== "");
}

/** "see https://example.com." links the address, not the full stop; a ")" only if opened. */
function withoutTrailingPunctuation(address: string): string {
  let end = address.length;
  for (;;) {
    const last = address[end - 1];
    const unbalanced =
      last === ")" &&
      address.slice(0, end).split(")").length > address.slice(0, end).split("(").length;
    if (!(last && (".,;:!?'".includes(last) || unbalanced))) break;
    end--;
  }
  return address.slice(0, end);
}
