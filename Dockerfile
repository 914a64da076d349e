# The pipeline's binaries in one image: `capture` (binlog to Kafka) and `views` (Kafka to ClickHouse).
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
RUN cargo build --release --locked -p cdc-capture -p cdc-views --bins \
    && mkdir -p /out \
    && cp target/release/capture target/release/views /out/ \
    && strip /out/capture /out/views

FROM debian:bookworm-slim
# ca-certificates for TLS endpoints, curl for the health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/cdc --create-home cdc \
    && mkdir -p /var/lib/cdc/capture \
    && chown -R cdc:cdc /var/lib/cdc
COPY --from=build /out/capture /out/views /usr/local/bin/
USER cdc
WORKDIR /var/lib/cdc
# The capture's checkpoints: keep them on a volume (docker-compose.yml does).
VOLUME ["/var/lib/cdc/capture"]
# Metrics and health: capture 9090, views 9091 (when listening on 0.0.0.0).
EXPOSE 9090 9091
ENV RUST_LOG=info
CMD ["capture", "--help"]
