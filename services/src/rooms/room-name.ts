import { ChatError, ROOM_NAME_PATTERN } from "@chat/shared";

/** A room name from a URL, topic or body, or a 400 `invalid_room` saying what is allowed. */
export function parseRoomName(raw: unknown): string {
  if (typeof raw === "string" && ROOM_NAME_PATTERN.test(raw)) return raw;
  throw new ChatError(
    "invalid_room",
    "room names are 1-64 characters: lowercase letters, digits, '_' and '-', starting with a letter or digit",
  );
}
