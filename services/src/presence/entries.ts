import type { Redis } from "ioredis";

/** One tracked presence, as Phoenix Presence lists it: extra fields plus its unique phx_ref. */
export type PresenceMeta = Record<string, unknown> & { phx_ref: string };

/** A presence as stored in its room's Redis hash, under its phx_ref. */
export interface PresenceEntry {
  key: string;
  meta: PresenceMeta;
  /** Whose liveness keeps the entry: `node:<id>` for sockets, a session id for LongPoll. */
  owner: string;
}

/** The Redis keys presence lives in: a hash of entries per room, an `alive` key per owner. */
export const presenceKeys = {
  entries: (room: string) => `chat:presence:${room}`,
  alive: (owner: string) => `chat:alive:${owner}`,
};

/**
 * Lists an entry only while the room holds fewer than ARGV[3], atomically so that concurrent
 * joins keep the cap: 1 added, 2 already listed (nothing to announce), 0 full.
 */
const TRACK_IF_ROOM = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 2 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;

/**
 * Removes each ref (ARGV[i]) whose owner's alive key (KEYS[i + 1]) is still missing, and
 * answers the removed entries. Checked and removed in one step: an owner that proved itself
 * alive after a reaper looked has re-listed its people already, and must keep them.
 */
const REMOVE_IF_OWNER_DEAD = `
local removed = {}
for i, ref in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    local entry = redis.call('HGET', KEYS[1], ref)
    if entry then
      redis.call('HDEL', KEYS[1], ref)
      removed[#removed + 1] = entry
    end
  end
end
return removed`;

/** A Redis connection with presence's scripts defined on it. */
export type PresenceRedis = Redis & {
  presenceTrack(key: string, ref: string, entry: string, max: number): Promise<number>;
  presenceRemoveIfOwnerDead(keyCount: number, ...keysThenRefs: string[]): Promise<string[]>;
};

export function definePresenceCommands(redis: Redis): PresenceRedis {
  redis.defineCommand("presenceTrack", { numberOfKeys: 1, lua: TRACK_IF_ROOM });
  redis.defineCommand("presenceRemoveIfOwnerDead", { lua: REMOVE_IF_OWNER_DEAD });
  return redis as PresenceRedis;
}

/** Removes the entries whose owners are still dead; answers those it removed. */
export async function removeIfOwnerDead(
  redis: PresenceRedis,
  room: string,
  entries: PresenceEntry[],
): Promise<PresenceEntry[]> {
  if (entries.length === 0) return [];
  const keys = [presenceKeys.entries(room), ...entries.map((e) => presenceKeys.alive(e.owner))];
  const refs = entries.map((e) => e.meta.phx_ref);
  const removed = await redis.presenceRemoveIfOwnerDead(keys.length, ...keys, ...refs);
  return removed.map((value) => JSON.parse(value) as PresenceEntry);
}
