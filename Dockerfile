# The zmesh image: zmesh-directory, zmesh-proxy and zmeshctl on Debian 12, run as the non-root
# user "zmesh" (uid/gid 10001, the Helm chart's default). docs/deploy.md, "Building the image":
#
#   docker build -t registry.example.com/zmesh/zmesh:0.1.0 .
#
# Build stage: the repository's own scripts/build (it installs the Debian packages listed in
# scripts/deps.txt, the -dev ones among them) without tests, benchmarks or the Python binding.
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY . .
RUN BUILD_DIR=/build ZMESH_JOBS="$(nproc)" scripts/build \
      -DZMESH_BUILD_TESTS=OFF -DZMESH_BUILD_BENCH=OFF -DZMESH_BUILD_PYTHON=OFF \
 && strip --strip-debug /build/bin/zmesh-directory /build/bin/zmesh-proxy /build/bin/zmeshctl

# Runtime stage: the shared libraries the three programs link against, nothing else.
FROM debian:12
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libabsl20220623 \
      libc-ares2 \
      libgrpc++1.51 \
      libgrpc29 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libraft2 \
      libre2-9 \
      libsqlite3-0 \
      libssl3 \
      libuv1 \
      libzmq5 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 zmesh \
 && useradd --system --uid 10001 --gid zmesh --home-dir /var/lib/zmesh --no-create-home \
      --shell /usr/sbin/nologin zmesh \
 && install -d -o zmesh -g zmesh -m 0750 /var/lib/zmesh \
 && install -d -o zmesh -g zmesh -m 2770 /run/zmesh
COPY --from=build /build/bin/zmesh-directory /build/bin/zmesh-proxy /build/bin/zmeshctl \
     /usr/local/bin/
# Defaults for `docker run`; the chart mounts its own /etc/zmesh.
COPY deploy/config/zmesh-directory.conf deploy/config/zmesh-proxy.conf /etc/zmesh/
COPY docs/deploy.md /usr/local/share/doc/zmesh/deploy.md
USER zmesh:zmesh
WORKDIR /var/lib/zmesh
# gRPC, Raft, directory metrics; proxy CALL, FANOUT, NOTIFY, CAST, proxy metrics.
EXPOSE 9500 9510 9520 9501 9502 9503 9504 9521
VOLUME ["/var/lib/zmesh"]
CMD ["zmesh-directory", "--config", "/etc/zmesh/zmesh-directory.conf"]
