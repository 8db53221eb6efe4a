-- Rooms own the per-room sequence counter: a row lock on the room serialises its sends,
-- and a failed insert rolls the counter back, which keeps seq gapless.
CREATE TABLE rooms (
  name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE messages (
  room      text NOT NULL REFERENCES rooms (name),
  seq       bigint NOT NULL CHECK (seq > 0),
  id        uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  client_id text,
  user_id   text NOT NULL,
  user_name text NOT NULL,
  body      text NOT NULL,
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (room, seq)
);

-- A resend with the same client id hits this index and gets the original back.
CREATE UNIQUE INDEX messages_room_client_id ON messages (room, client_id) WHERE client_id IS NOT NULL;
