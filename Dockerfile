# One image for the three Node services (chat node, gateway, edge); compose picks the command.
# Node 24 runs the TypeScript sources directly (type stripping), so there is no compile step.

FROM node:24-bookworm-slim AS deps
# The runtime stage copies only the root node_modules: a package npm leaves inside a workspace
# (a version clash) would be missing there, so the build stops and says which.
# Behind a TLS-intercepting proxy, pass its CA (PEM text) so npm can reach the registry.
# Build stages only: the runtime image never sees it.
ARG EXTRA_CA_CERT=""
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY services/package.json services/
COPY gateway/package.json gateway/
COPY static/package.json static/
RUN if [ -n "$EXTRA_CA_CERT" ]; then printf '%s\n' "$EXTRA_CA_CERT" > /tmp/extra-ca.pem; fi \
 && NODE_EXTRA_CA_CERTS=$([ -s /tmp/extra-ca.pem ] && echo /tmp/extra-ca.pem) \
    npm ci --no-audit --no-fund --ignore-scripts \
 && for w in shared services gateway static; do \
      if [ -d "$w/node_modules" ]; then \
        echo "$w/node_modules: $(ls $w/node_modules) did not hoist to the root; align its version" >&2; exit 1; \
      fi; \
    done \
 && cp -a node_modules /tmp/all-modules \
 && NODE_EXTRA_CA_CERTS=$([ -s /tmp/extra-ca.pem ] && echo /tmp/extra-ca.pem) \
    npm prune --omit=dev --no-audit --no-fund \
 && mv node_modules /tmp/prod-modules && mv /tmp/all-modules node_modules \
 && rm -f /tmp/extra-ca.pem && npm cache clean --force

FROM deps AS client
COPY shared shared
COPY static static
# esbuild's platform binary arrives as an optional dependency; no install script is needed.
RUN node static/build.ts

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared shared
COPY services services
COPY gateway gateway
COPY static/package.json static/
COPY static/src static/src
COPY --from=deps /tmp/prod-modules node_modules
COPY --from=client /app/static/dist static/dist
USER node
EXPOSE 4000 8000 8080
CMD ["node", "services/src/main.ts"]
