# Two images from one build (plus a stage for build images to copy the relay from):
#   docker build --target builder -t phonehome-builder .   # the builder side (build, receive, gc)
#   docker build --target relay   -t phonehome-relay .     # only the relay binary, for build images:
#     COPY --from=phonehome-relay /phonehome-relay /usr/local/bin/phonehome-relay
# deploy/example-build-image shows a build image that does so, with tini as PID 1.

# Build stage: compiles both sides with the pinned dependencies of deno.lock.
FROM denoland/deno:2.9.6 AS compile
ENV DENO_NO_UPDATE_CHECK=1
WORKDIR /src
COPY deno.json deno.lock main.ts ./
COPY src ./src
COPY scripts ./scripts
RUN deno install --frozen --entrypoint main.ts && deno task compile /out

# A stage that holds only the relay binary, for COPY --from in build images. The binary needs
# glibc, so the build image must have it (Debian, Ubuntu, distroless cc; not Alpine/musl).
FROM scratch AS relay
COPY --from=compile /out/phonehome-relay /phonehome-relay

# The builder side: glibc, CA certificates and nothing else; runs as a non-root user. In a
# cluster it reads its service account's token (deploy/rbac.yaml) and dials the API itself.
FROM gcr.io/distroless/cc-debian12:nonroot AS builder
COPY --from=compile /out/phonehome-builder /usr/local/bin/phonehome-builder
ENTRYPOINT ["/usr/local/bin/phonehome-builder"]
CMD ["--help"]
