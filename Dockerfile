# Two images from one build:
#   docker build --target builder -t phonehome-builder .   # the builder side (build, receive)
#   docker build --target relay   -t phonehome-relay .     # the relay, for build images to copy:
#     COPY --from=phonehome-relay /phonehome-relay /usr/local/bin/phonehome-relay

FROM denoland/deno:2.9.6 AS compile
WORKDIR /src
COPY deno.json main.ts ./
COPY src ./src
COPY scripts ./scripts
RUN deno task compile /out

# A stage that holds only the relay binary, for COPY --from in build images.
FROM scratch AS relay
COPY --from=compile /out/phonehome-relay /phonehome-relay

FROM gcr.io/distroless/cc-debian12:nonroot AS builder
COPY --from=compile /out/phonehome-builder /usr/local/bin/phonehome-builder
ENTRYPOINT ["/usr/local/bin/phonehome-builder"]
CMD ["--help"]
