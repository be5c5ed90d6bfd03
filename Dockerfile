# syntax=docker/dockerfile:1.7
# ledgerstream processor + generator image. Multi-stage: a full Rust toolchain builds the binary, a slim Debian
# runs it as an unprivileged user.

FROM rust:1.95-bookworm AS build
# rocksdb (bindgen: clang/libclang), rdkafka's bundled librdkafka (cmake, perl) and its ssl feature (libssl-dev).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev cmake perl pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ledgerstream \
 && install -D -m 0755 target/release/ledgerstream /out/ledgerstream

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ledgerstream --create-home ledgerstream
COPY --from=build /out/ledgerstream /usr/local/bin/ledgerstream
USER ledgerstream
WORKDIR /var/lib/ledgerstream
# RocksDB state and checkpoints; a volume so that a container restart resumes instead of rebuilding state.
VOLUME ["/var/lib/ledgerstream"]
CMD ["ledgerstream", "run", "--config", "/etc/ledgerstream/ledgerstream.toml"]
