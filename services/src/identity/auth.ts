import { ChatError, type User } from "@chat/shared";
import { createMiddleware } from "hono/factory";
import { ANONYMOUS, type TokenIssuer } from "./tokens.ts";

export interface AuthVariables {
  user: User;
}

/**
 * Resolves the caller from `Authorization: Bearer`, or `?token=` (EventSource and plain
 * links cannot set headers). No token means the anonymous guest unless tokens are required.
 */
export function authenticate(tokens: TokenIssuer, requireToken: boolean) {
  return createMiddleware<{ Variables: AuthVariables }>(async (c, next) => {
    const header = c.req.header("authorization");
    const bearer = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    if (header !== undefined && bearer === undefined) {
      throw new ChatError("invalid_token", "the Authorization header must be 'Bearer <token>'");
    }
    const token = bearer ?? c.req.query("token");
    if (token) c.set("user", await tokens.verify(token));
    else if (requireToken)
      throw new ChatError(
        "unauthorized",
        "this deployment requires a token; get one from POST /api/session",
      );
    else c.set("user", ANONYMOUS);
    await next();
  });
}
