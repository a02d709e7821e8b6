# syntax=docker/dockerfile:1
# AutoGuardRails controller image: a Rust build stage and a distroless, non-root runtime.
#   docker build -t autoguardrails:dev .
#   kind load docker-image autoguardrails:dev      # or: k3d image import autoguardrails:dev
# Not built by `make test` (no container engine on the development machines); see docs/install.md.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# aws-lc-rs (the one TLS crypto provider, for kube and the AWS SDK) builds aws-lc from C sources.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features jemalloc --bin autoguardrails \
 && install -D -m 0755 target/release/autoguardrails /out/autoguardrails

# glibc + libgcc only; runs as uid/gid 65532 ("nonroot"); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="autoguardrails" \
      org.opencontainers.image.description="Kubernetes controller: AWS cost signals to time-boxed IAM deny quarantines" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/autoguardrails /usr/local/bin/autoguardrails
USER 65532:65532
# 8080: /metrics /healthz /readyz   8081: /sns /events
EXPOSE 8080 8081
# Writes nothing to disk: works with readOnlyRootFilesystem (the chart mounts only /tmp).
ENTRYPOINT ["/usr/local/bin/autoguardrails"]
CMD ["controller"]
