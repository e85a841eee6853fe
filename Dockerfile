# syntax=docker/dockerfile:1
#
# The replicar binary in a small Debian image (the default target):
#
#   docker build -t replicar .
#   docker run --rm replicar version
#
# The nats-server target is the NATS server the tests and scripts use
# (v2.15.2; replicar needs 2.11 or later), for the compose example:
#
#   docker build --target nats-server -t replicar-nats .
#
# Configuration is the REPLICAR_* environment (docs/CONFIG.md). The image
# listens on every interface, keeps its WAL in /var/lib/replicar, and runs
# as an unprivileged user.

ARG GO_VERSION=1.26.8
ARG DEBIAN=bookworm

FROM golang:${GO_VERSION}-${DEBIAN} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
    -o /out/replicar ./cmd/replicar

FROM golang:${GO_VERSION}-${DEBIAN} AS nats-build
ARG NATS_SERVER_VERSION=v2.15.2
RUN CGO_ENABLED=0 GOBIN=/out go install github.com/nats-io/nats-server/v2@${NATS_SERVER_VERSION}

FROM debian:${DEBIAN}-slim AS nats-server
RUN useradd --system --uid 10002 --home-dir /data nats && mkdir /data && chown nats /data
COPY --from=nats-build /out/nats-server /usr/local/bin/nats-server
USER nats
VOLUME /data
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
CMD ["--jetstream", "--store_dir", "/data", "--http_port", "8222"]

FROM debian:${DEBIAN}-slim AS replicar
# ca-certificates: TLS to NATS or to a backend with a public certificate.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/replicar replicar \
    && mkdir -p /var/lib/replicar && chown replicar /var/lib/replicar
COPY --from=build /out/replicar /usr/local/bin/replicar
USER replicar
# Inside a container the ports are reached from outside it, so they listen
# on every interface. REPLICAR_ADVERTISE should name the host peers dial
# (the service or pod DNS name); unset, it is the container's hostname.
ENV REPLICAR_LISTEN=0.0.0.0:6380 \
    REPLICAR_REPL_LISTEN=0.0.0.0:7380 \
    REPLICAR_HTTP_LISTEN=0.0.0.0:9380 \
    REPLICAR_NATS_LISTEN=0.0.0.0:4222 \
    REPLICAR_DATA_DIR=/var/lib/replicar
VOLUME /var/lib/replicar
# client (RESP), replication, HTTP (/status, /metrics, /healthz, /readyz),
# and the embedded NATS server when REPLICAR_NATS_URL is empty.
EXPOSE 6380 7380 9380 4222
# SIGTERM makes a leader hand over to its best follower; give it time.
STOPSIGNAL SIGTERM
ENTRYPOINT ["replicar"]
