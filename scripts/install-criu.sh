#!/usr/bin/env bash
# Makes a working criu >= 4.2 available as .criu/bin/criu (what
# `stagegate criu-path` prints). Order: STAGEGATE_CRIU if set; the system criu
# if it is new enough and `criu check` passes; otherwise Debian sid's criu and
# its libraries (a newer libc than Debian 12's) unpacked into .criu/prefix and
# run through that prefix's own dynamic loader. Nothing outside .criu/ changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.criu"
say() { echo "criu: $*" >&2; }
want_major=4 want_minor=2

version_ok() { # version_ok CRIU...
  local v; v="$("$@" --version 2>/dev/null | sed -n 's/^Version: *\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
  [[ -n "$v" ]] || return 1
  set -- $v
  (( $1 > want_major || ($1 == want_major && $2 >= want_minor) ))
}
works() { version_ok "$@" && "$@" check >/dev/null 2>&1; }
link() { # link TARGET: .criu/bin/criu runs TARGET
  mkdir -p "$dest/bin"
  printf '#!/bin/sh\nexec %s "$@"\n' "$1" > "$dest/bin/criu.new"
  chmod 755 "$dest/bin/criu.new"; mv "$dest/bin/criu.new" "$dest/bin/criu"
}

if [[ -n "${STAGEGATE_CRIU:-}" ]]; then
  works "$STAGEGATE_CRIU" || { say "STAGEGATE_CRIU=$STAGEGATE_CRIU is not a working criu >= $want_major.$want_minor"; exit 1; }
  [[ "$(sed -n 2p "$dest/bin/criu" 2>/dev/null)" == "exec $STAGEGATE_CRIU \"\$@\"" ]] || link "$STAGEGATE_CRIU"
  exit 0
fi
[[ -x "$dest/bin/criu" ]] && works "$dest/bin/criu" && exit 0

if sys="$(command -v criu)" && works "$sys"; then
  say "using system criu at $sys"; link "$sys"; exit 0
fi

say "installing Debian sid's criu into $dest/prefix"
work="$dest/apt"; rm -rf "$work" "$dest/prefix"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$dest/prefix"
echo "deb http://deb.debian.org/debian sid main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq >/dev/null
# criu and the closure of its Depends (libc6 included): everything it loads.
pkgs="$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances criu | grep -v '^[ <]' | sort -u)"
(cd "$work/debs" && apt-get "${apt_opts[@]}" download $pkgs >/dev/null 2>&1)
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$dest/prefix"; done
lib="$dest/prefix/usr/lib/x86_64-linux-gnu"
link "$lib/ld-linux-x86-64.so.2 --library-path $lib $dest/prefix/usr/sbin/criu"
rm -rf "$work"
works "$dest/bin/criu" || { say "the unpacked criu does not pass 'criu check'"; "$dest/bin/criu" check || true; exit 1; }
say "$("$dest/bin/criu" --version | head -1) ready"
