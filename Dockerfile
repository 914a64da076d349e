# The pipeline's binaries in one image: `capture` (binlog to Kafka), `views` (Kafka to ClickHouse) and the REST
# services `users`, `catalog` and `orders`.
# docker-compose.yml builds it once and runs each binary as its own service:
#
#   docker compose build            # or: docker build -t shop-cdc .
#   docker run --rm shop-cdc capture --help
#
# Configuration comes from the environment (CDC_CAPTURE_*, CDC_VIEWS_*; see capture/capture.example.toml and
# views/views.example.toml) or from a mounted TOML file (--config).

# Debian 12 in both stages, so the binaries find the glibc they were linked against.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by the rdkafka crate (bundled); the image already has a C toolchain, make and perl.
COPY . .
RUN cargo build --release --locked -p cdc-capture -p cdc-views -p cdc-services --bins \
    && mkdir -p /out \
    && cp target/release/capture target/release/views target/release/users target/release/catalog target/release/orders /out/ \
    && strip /out/*

FROM debian:bookworm-slim
# ca-certificates for TLS endpoints, curl for the health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/cdc --create-home cdc \
    && mkdir -p /var/lib/cdc/capture \
    && chown -R cdc:cdc /var/lib/cdc
COPY --from=build /out/ /usr/local/bin/
USER cdc
WORKDIR /var/lib/cdc
# The capture's checkpoints: keep them on a volume (docker-compose.yml does).
VOLUME ["/var/lib/cdc/capture"]
# Metrics and health: capture 9090, views 9091, users 8081, catalog 8082, orders 8083 (as docker-compose.yml sets).
EXPOSE 9090 9091 8081 8082 8083
ENV RUST_LOG=info
CMD ["capture", "--help"]
