#!/bin/sh
# Install dockcache: its own venv (or pipx when present) and the docker/docker-compose
# launchers in a bin dir that must stand ahead of the real docker on PATH.
#
#   ./install.sh [--bin-dir DIR] [--prefix DIR]     install or update (idempotent)
#   ./install.sh --uninstall [--bin-dir DIR] ...    remove launchers and the venv (caches stay;
#                                                   `dockcache cache clear --all` removes them first)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
prefix=${DOCKCACHE_PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}/dockcache}
bindir=${DOCKCACHE_BIN_DIR:-$HOME/.local/bin}
action=install
while [ $# -gt 0 ]; do
  case $1 in
    --uninstall) action=uninstall ;;
    --bin-dir) bindir=$2; shift ;;
    --prefix) prefix=$2; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

is_ours() { [ -f "$1" ] && sed -n 2p "$1" | grep -qx '# dockcache-launcher'; }

uninstall() {
  for f in docker docker-compose; do
    if is_ours "$bindir/$f"; then rm -f "$bindir/$f"; echo "removed $bindir/$f"; fi
  done
  if [ -L "$bindir/dockcache" ]; then rm -f "$bindir/dockcache"; fi
  if [ -f "$prefix/.pipx" ] && command -v pipx >/dev/null 2>&1; then pipx uninstall dockcache >/dev/null 2>&1 || true; fi
  rm -rf "$prefix"
  echo "dockcache uninstalled (caches were left in place)"
}

install_python() {  # sets $py to the python that has dockcache installed
  if command -v pipx >/dev/null 2>&1 && [ -z "${DOCKCACHE_NO_PIPX:-}" ]; then
    # [mounts]: BuildKit's Dockerfile parser for cache mounts; where no wheel fits, without it
    pipx install --force "$here[mounts]" >/dev/null 2>&1 || pipx install --force "$here" >/dev/null
    py=$(sed -n '1s/^#!//p' "$(pipx environment --value PIPX_BIN_DIR)/dockcache")
    mkdir -p "$prefix"; : > "$prefix/.pipx"
  else
    [ -x "$prefix/venv/bin/python" ] || python3 -m venv ${DOCKCACHE_VENV_FLAGS:-} "$prefix/venv"
    "$prefix/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$here[mounts]" 2>/dev/null \
      || "$prefix/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$here"
    py=$prefix/venv/bin/python
  fi
}

install_launchers() {
  pyroot=$("$py" -c 'import os, shim; print(os.path.dirname(os.path.dirname(shim.__file__)))')
  mkdir -p "$bindir"
  for f in docker docker-compose; do
    if [ -e "$bindir/$f" ] && ! is_ours "$bindir/$f"; then
      echo "install.sh: $bindir/$f exists and is not dockcache's; choose another --bin-dir" >&2
      exit 1
    fi
    sed -e "s|^: \"\${DOCKCACHE_PYTHON:=}\".*|: \"\${DOCKCACHE_PYTHON:=$py}\"|" \
        -e "s|^: \"\${DOCKCACHE_PYROOT:=}\".*|: \"\${DOCKCACHE_PYROOT:=$pyroot}\"|" "$here/bin/$f" > "$bindir/.$f.tmp"
    chmod 0755 "$bindir/.$f.tmp"
    mv "$bindir/.$f.tmp" "$bindir/$f"
  done
  # docker-compose sources the docker launcher from its own directory.
  ln -sf "$(dirname "$py")/dockcache" "$bindir/dockcache"
}

path_hint() {
  first=$(PATH=$PATH command -v docker || true)
  if [ "$first" != "$bindir/docker" ]; then
    echo "add dockcache's launchers ahead of the real docker:  export PATH=\"$bindir:\$PATH\""
  fi
}

if [ $action = uninstall ]; then uninstall; exit 0; fi
install_python
install_launchers
echo "dockcache installed: launchers in $bindir, python $py"
path_hint
