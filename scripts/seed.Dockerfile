# The image of docker-compose.yml's seed-admin and seed one-shots: scripts/seed with the bash,
# curl and jq it needs, on the Debian release the services' runtime image uses.
#   docker build -f scripts/seed.Dockerfile scripts
ARG DEBIAN_RELEASE=bookworm

FROM debian:${DEBIAN_RELEASE}-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl jq \
    && rm -rf /var/lib/apt/lists/*
# The seed-state volume copies this directory, and its owner, when it is first mounted.
RUN install -d -o 10001 -g 10001 /seed-state
COPY seed lib.sh /scripts/
USER 10001:10001
ENTRYPOINT ["/scripts/seed"]
