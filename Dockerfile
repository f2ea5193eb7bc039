# syntax=docker/dockerfile:1
# One image recipe for every service:
#   docker build --build-arg SERVICE=auth -t shop-auth .    (or products, orders)
#
# Stages: chef (the toolchain plus cargo-chef) -> planner (the dependency recipe) -> cacher
# (dependencies compiled, cached until Cargo.toml or Cargo.lock change) -> builder (the one
# binary) -> runtime-<service> (the binary alone on debian slim, non-root).

# The toolchain developers and CI use; the builder and the runtime share a Debian release so the
# binary finds the glibc it was linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
# Required: auth, products or orders. Any other value fails at the last FROM, which names the
# stage runtime-<SERVICE>.
ARG SERVICE

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# jemalloc (the services' allocator) is built from C with make, which the slim image lacks.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# SERVICE is not declared here on purpose: the dependency layer is then the same for all three
# images, and BuildKit compiles it once when compose builds them together.
FROM chef AS cacher
COPY --from=planner /src/recipe.json recipe.json
# jemalloc's build-time options (.cargo/config.toml), so the cooked allocator is the final one.
COPY .cargo .cargo
RUN cargo chef cook --release --locked --recipe-path recipe.json

FROM cacher AS builder
ARG SERVICE
COPY . .
RUN cargo build --release --locked --bin "$SERVICE" \
    && cp "target/release/$SERVICE" /service
# TLS is rustls with compiled-in roots throughout; fail the build if OpenSSL ever creeps back in.
RUN ldd /service > /tmp/libs \
    && if grep -E 'libssl|libcrypto' /tmp/libs; then echo "$SERVICE links OpenSSL" >&2; exit 1; fi

# debian slim rather than distroless/cc: that one is built on distroless/base, which ships libssl, and slim's bash lets the
# compose healthcheck speak HTTP through /dev/tcp with no curl (and so no OpenSSL) added. No CA
# bundle is needed: rustls uses the webpki roots built into the binary.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/shop/jwt
COPY --from=builder /service /app/service
USER 10001:10001
WORKDIR /app
ENTRYPOINT ["/app/service"]
CMD ["serve"]
# No HEALTHCHECK here: the port differs per service and may be moved with PORT, so
# docker-compose.yml declares the check next to the PORT it sets, and Kubernetes uses its own
# probes on /healthz and /readyz.

# One final stage per service only to EXPOSE the port that service listens on by default.
FROM runtime AS runtime-auth
EXPOSE 3001

FROM runtime AS runtime-products
EXPOSE 3002

FROM runtime AS runtime-orders
EXPOSE 3003

# hadolint ignore=DL3006
FROM runtime-${SERVICE}
