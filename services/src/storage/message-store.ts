import { ChatError, type Message, type User } from "@chat/shared";
import type { NodeMetrics } from "../metrics.ts";
import type { Database, Statement } from "./database.ts";

interface MessageRow extends Record<string, unknown> {
  room: string;
  seq: string;
  id: string;
  client_id: string | null;
  user_name: string;
  body: string;
  at: Date;
}

export interface RoomInfo {
  name: string;
  last_seq: number;
  created_at: string;
}

const MESSAGE_COLUMNS = "room, seq, id, client_id, user_name, body, at";
const UNIQUE_VIOLATION = "23505";
const CLIENT_ID_INDEX = "messages_room_client_id";

/** One statement: create the room if needed, take its next seq under the row lock, insert. */
const APPEND_SQL = {
  name: "append-message",
  text: `
  WITH next AS (
    INSERT INTO rooms (name, last_seq) VALUES ($1, 1)
    ON CONFLICT (name) DO UPDATE SET last_seq = rooms.last_seq + 1
    RETURNING last_seq
  )
  INSERT INTO messages (room, seq, client_id, user_id, user_name, body)
  SELECT $1, next.last_seq, $2, $3, $4, $5 FROM next
  RETURNING ${MESSAGE_COLUMNS}`,
};

/** The room's head on the queried server travels with the page, so a lagging replica shows. */
const PAGE_SQL = {
  name: "page-messages",
  text: `
  SELECT r.last_seq AS head, m.*
  FROM rooms r
  LEFT JOIN LATERAL (
    SELECT ${MESSAGE_COLUMNS} FROM messages
    WHERE room = r.name AND seq > $2 AND seq <= $3
    ORDER BY seq LIMIT $4
  ) m ON true
  WHERE r.name = $1`,
};

export interface AppendResult {
  message: Message;
  /** False when the client id was already stored and the original came back. */
  created: boolean;
}

/** The rooms' append-only logs in Postgres. */
export class MessageStore {
  readonly #db: Database;
  readonly #metrics: NodeMetrics;

  constructor(db: Database, metrics: NodeMetrics) {
    this.#db = db;
    this.#metrics = metrics;
  }

  /** Stores a message, or returns the original when this client id was already stored. */
  async append(
    room: string,
    user: User,
    body: string,
    clientId: string | null,
  ): Promise<AppendResult> {
    try {
      const [row] = await this.#db.write<MessageRow>(APPEND_SQL, [
        room,
        clientId,
        user.id,
        user.name,
        body,
      ]);
      this.#metrics.messagesStored.inc();
      return { message: toMessage(mustExist(row)), created: true };
    } catch (error) {
      if (clientId !== null && isClientIdConflict(error)) {
        this.#metrics.duplicateSends.inc();
        return { message: await this.#byClientId(room, clientId), created: false };
      }
      throw storageError(error);
    }
  }

  /**
   * Messages with after < seq <= upTo, ascending, at most `limit`. `floor` is a seq the
   * caller knows exists: a replica that has not replayed it is skipped for the primary.
   */
  async page(
    room: string,
    options: { after: number; limit: number; upTo?: number; floor?: number },
  ): Promise<{ messages: Message[]; head: number }> {
    const { after, limit, upTo = Number.MAX_SAFE_INTEGER, floor = 0 } = options;
    const rows = await this.#read<MessageRow & { head: string }>(
      PAGE_SQL,
      [room, after, upTo, limit],
      (found) => Number(found[0]?.head ?? 0) >= floor,
    );
    const head = Number(rows[0]?.head ?? 0);
    const messages = rows.filter((row) => row.seq !== null).map(toMessage);
    return { messages, head };
  }

  /** The `limit` messages just before `before`, ascending: scroll-back. */
  async pageBefore(room: string, before: number, limit: number): Promise<Message[]> {
    const sql = `SELECT * FROM (
      SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
    ) latest ORDER BY seq`;
    return (await this.#read<MessageRow>(sql, [room, before, limit])).map(toMessage);
  }

  /** The latest seq of each room, read on the primary (the source of truth for heads). */
  async heads(rooms: string[]): Promise<Map<string, number>> {
    const sql = "SELECT name, last_seq FROM rooms WHERE name = ANY($1)";
    const rows = await this.#readLatest<{ name: string; last_seq: string }>(sql, [rooms]);
    return new Map(rows.map((row) => [row.name, Number(row.last_seq)]));
  }

  /** Makes the room exist (joins create rooms); harmless when it already does. */
  async ensureRoom(room: string): Promise<void> {
    await this.#db
      .write("INSERT INTO rooms (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", [room])
      .catch((error: unknown) => {
        throw storageError(error);
      });
  }

  async createRoom(room: string): Promise<RoomInfo> {
    const sql =
      "INSERT INTO rooms (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING name, last_seq, created_at";
    const rows = await this.#db.write<RoomRow>(sql, [room]).catch((error: unknown) => {
      throw storageError(error);
    });
    const [row] = rows;
    if (!row) throw new ChatError("room_exists", `room "${room}" already exists`);
    return toRoomInfo(row);
  }

  /**
   * Rooms named after `after`, by name, at most `limit`. Read from the primary first: a room
   * made a moment ago must be listed, and a lagging replica may not have it yet.
   */
  async listRooms(after: string, limit: number): Promise<RoomInfo[]> {
    const sql =
      "SELECT name, last_seq, created_at FROM rooms WHERE name > $1 ORDER BY name LIMIT $2";
    return (await this.#readLatest<RoomRow>(sql, [after, limit])).map(toRoomInfo);
  }

  async #byClientId(room: string, clientId: string): Promise<Message> {
    const sql = `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room = $1 AND client_id = $2`;
    const [row] = await this.#db.write<MessageRow>(sql, [room, clientId]);
    return toMessage(mustExist(row));
  }

  async #read<R extends Record<string, unknown>>(
    sql: Statement,
    params: unknown[],
    isFresh?: (rows: R[]) => boolean,
  ): Promise<R[]> {
    return this.#db.read<R>(sql, params, isFresh).catch((error: unknown) => {
      throw storageError(error);
    });
  }

  /** Primary first; when it is down the replica's answer beats none (heads only go up). */
  async #readLatest<R extends Record<string, unknown>>(
    sql: string,
    params: unknown[],
  ): Promise<R[]> {
    try {
      return await this.#db.write<R>(sql, params);
    } catch (error) {
      if (!this.#db.replica) throw storageError(error);
      return this.#db.replica.query<R>(sql, params).then(
        (result) => result.rows,
        () => {
          throw storageError(error);
        },
      );
    }
  }
}

interface RoomRow extends Record<string, unknown> {
  name: string;
  last_seq: string;
  created_at: Date;
}

function toRoomInfo(row: RoomRow): RoomInfo {
  return {
    name: row.name,
    last_seq: Number(row.last_seq),
    created_at: row.created_at.toISOString(),
  };
}

function toMessage(row: MessageRow): Message {
  return {
    room: row.room,
    seq: Number(row.seq),
    id: row.id,
    client_id: row.client_id,
    user: row.user_name,
    body: row.body,
    at: row.at.toISOString(),
  };
}

function mustExist<T>(row: T | undefined): T {
  if (row === undefined) throw new Error("Postgres returned no row where one was certain");
  return row;
}

function isClientIdConflict(error: unknown): boolean {
  const pgError = error as { code?: string; constraint?: string };
  return pgError.code === UNIQUE_VIOLATION && pgError.constraint === CLIENT_ID_INDEX;
}

/** Storage failures reach clients as a retryable 503; a resend with the same client id is safe. */
function storageError(error: unknown): ChatError {
  if (error instanceof ChatError) return error;
  return new ChatError("unavailable", "storage is unavailable; retry with the same client_id", {
    retryable: true,
    retryAfter: 1,
    cause: error,
  });
}
