#!/usr/bin/env bash
# Unpacks the test fixtures of scripts/fixture-versions.sh from Debian's package archive into a
# cache (default build/fixtures): `apt-get download` with a private apt configuration and
# `dpkg -x`. Nothing is installed over the system. Idempotent: with a warm cache it only checks
# that each fixture's directory is there.
#
#   scripts/fixtures.sh [--cache DIR] [NAME...]     (no NAME: all)
#
# Each fixture ends up in DIR/NAME (its packages' files under it, e.g. DIR/containerd-2.1/usr/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=build/fixtures
if [ "${1:-}" = --cache ]; then cache=$2; shift 2; fi
# shellcheck source=fixture-versions.sh
source scripts/fixture-versions.sh
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

wanted=("$@")
todo=()
for entry in "${KND_FIXTURES[@]}"; do
  name=${entry%%=*}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $name " ]]; then continue; fi
  # A fixture is complete when its stamp names exactly the pinned package version.
  if [ "$(cat "$cache/$name/.knd-fixture" 2>/dev/null)" = "${entry#*=}" ]; then continue; fi
  todo+=("$entry")
done
[ ${#todo[@]} -eq 0 ] && exit 0

apt_dir=$cache/.apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
suites=$(printf '%s\n' "${todo[@]}" | sed 's/^[^=]*=\([^:]*\):.*/\1/' | sort -u)
: >"$apt_dir/sources.list"
for s in $suites; do
  echo "deb http://deb.debian.org/debian $s main" >>"$apt_dir/sources.list"
done
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
  -o "Dir::Cache::archives=$apt_dir/archives" -o APT::Sandbox::User=root -qq)
echo "fixtures: apt-get update ("$suites")"
apt-get "${apt_opts[@]}" update

for entry in "${todo[@]}"; do
  name=${entry%%=*}
  IFS=, read -r -a pkgs <<<"${entry#*:}"   # PACKAGE=VERSION...
  echo "fixtures: $name <- ${pkgs[*]}"
  rm -rf "$apt_dir/debs" && mkdir -p "$apt_dir/debs"
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}")
  rm -rf "$cache/$name.tmp"
  for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$cache/$name.tmp"; done
  echo "${entry#*=}" >"$cache/$name.tmp/.knd-fixture"
  rm -rf "$cache/$name"
  mv "$cache/$name.tmp" "$cache/$name"
done
