# Container image of sqlalchemy-collectd-exporter.
#
#   docker build --build-arg SCE_GIT_REVISION=$(git rev-parse --short=12 HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t sqlalchemy-collectd-exporter .
#   docker run -p 25827:25827/udp -p 9827:9827 sqlalchemy-collectd-exporter
#
# The build context has no usable .git in a git worktree (or with .git ignored),
# so the revision comes in as a build argument; without it `--version` says
# "rev unknown".

FROM rust:bookworm AS build
ARG SCE_GIT_REVISION=""
ARG SOURCE_DATE_EPOCH
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sqlalchemy-collectd-exporter \
 && cp target/release/sqlalchemy-collectd-exporter /usr/local/bin/ \
 && /usr/local/bin/sqlalchemy-collectd-exporter --version

# glibc and libgcc (all the binary links against), no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/sqlalchemy-collectd-exporter /usr/local/bin/sqlalchemy-collectd-exporter
# The image's nonroot user, numeric so that Kubernetes' runAsNonRoot can check
# it. deploy/container/Containerfile (the image built without a registry)
# declares the same user, ports and entrypoint; tests/container.rs compares.
USER 65532:65532
# collectd datagrams in, /metrics out.
EXPOSE 25827/udp 9827
ENTRYPOINT ["/usr/local/bin/sqlalchemy-collectd-exporter"]
