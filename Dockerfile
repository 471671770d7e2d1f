# syntax=docker/dockerfile:1
# secretsync's container image: built in a Rust image, run on a distroless base as the
# non-root user 65532 (the `nonroot` user of distroless; deploy/ runs it as that user with a
# read-only root filesystem).
#
#   docker build -t <registry>/secretsync:<tag> .
#
# The binary links OpenSSL and zlib (libgit2 and libssh2 use them). Both stages are Debian 12
# ("bookworm"), and the build stage copies exactly those libraries into the image, so the
# runtime needs nothing beyond glibc and libgcc.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Without the `demo` feature: the image has no use for the local test environment.
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/parse.rs \
    && cargo build --release --locked --no-default-features --bin secretsync \
    && rm -rf src benches
COPY src src
COPY benches benches
COPY deploy/crds deploy/crds
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --no-default-features --bin secretsync \
    && mkdir -p /out/rootfs/usr/local/bin \
    && cp target/release/secretsync /out/rootfs/usr/local/bin/secretsync \
    && libdir=/out/rootfs/usr/lib/$(gcc -print-multiarch) \
    && mkdir -p "$libdir" \
    && ldd target/release/secretsync | awk '$3 ~ /^\// { print $3 }' \
       | grep -E '/lib(ssl|crypto|z)\.so' \
       | xargs -r -I{} cp -L {} "$libdir/"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/rootfs/ /
# OpenSSL (libgit2's HTTPS) and rustls read the same CA bundle.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 9090 9292
ENTRYPOINT ["/usr/local/bin/secretsync"]
CMD ["run"]
