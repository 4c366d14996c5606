# The FogEdge node image (gateway and detector): Debian 12 with Node 20 (balena's base image),
# ffmpeg from Debian. The same npm ci, UI build and compiled program as a box installed by hand.
FROM balenalib/%%BALENA_ARCH%%-debian-node:20-bookworm-build AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build:ui && npm run build && npm prune --omit=dev --no-audit --no-fund

FROM balenalib/%%BALENA_ARCH%%-debian-node:20-bookworm-run
# ffmpeg records and decodes; util-linux gives setpriv (ffmpeg dies with the node); curl and procps for health checks.
RUN install_packages ffmpeg openssl ca-certificates util-linux curl procps
WORKDIR /app
COPY --from=build /app ./
ENV NODE_ENV=production FOGEDGE_DATA_DIR=/data
EXPOSE 8080 1883 8883 1935
STOPSIGNAL SIGTERM
CMD ["node", "build/gateway/main.js"]
