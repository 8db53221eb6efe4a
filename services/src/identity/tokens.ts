import { randomUUID } from "node:crypto";
import { ChatError, type User } from "@chat/shared";
import { sign, verify } from "hono/jwt";

const ALGORITHM = "HS256";

/**
 * Guest identity: an HMAC-signed JWT carrying the user's id and chosen name. Any node
 * holding the shared secret verifies it, so no session store is involved.
 */
export class TokenIssuer {
  readonly #secret: string;
  readonly #ttlSeconds: number;

  constructor(options: { secret: string; ttlSeconds: number }) {
    this.#secret = options.secret;
    this.#ttlSeconds = options.ttlSeconds;
  }

  async issueGuest(name: string): Promise<{ token: string; user: User }> {
    const user: User = { id: `u_${randomUUID()}`, name };
    const now = Math.floor(Date.now() / 1000);
    const token = await sign(
      { sub: user.id, name: user.name, iat: now, exp: now + this.#ttlSeconds },
      this.#secret,
      ALGORITHM,
    );
    return { token, user };
  }

  /** The token's user; a forged, malformed or expired token is a 401 `invalid_token`. */
  async verify(token: string): Promise<User> {
    try {
      const payload = await verify(token, this.#secret, ALGORITHM);
      if (typeof payload.sub !== "string" || typeof payload.name !== "string") {
        throw new Error("token lacks sub or name");
      }
      return { id: payload.sub, name: payload.name };
    } catch (error) {
      throw new ChatError(
        "invalid_token",
        "the token is invalid or expired; get a new one from POST /api/session",
        {
          cause: error,
        },
      );
    }
  }
}

/** Who a request without a token is, when the deployment allows guests. */
export const ANONYMOUS: User = { id: "anonymous", name: "guest" };
