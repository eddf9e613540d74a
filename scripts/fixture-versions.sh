# Exact versions of the test fixtures that come from Debian's newer suites (sourced by
# scripts/fixtures.sh). One place: change a version here and the cache picks it up.
# Format: NAME=SUITE:PACKAGE=VERSION
KND_FIXTURES=(
  # containerd 2.1 (Debian unstable) and 1.7 (Debian 13): the real-runtime tests (ctest label
  # `runtime`). runc stays bookworm's (unstable's needs a newer glibc).
  "containerd-2.1=sid:containerd=2.1.9+ds1-5"
  "containerd-1.7=trixie:containerd=1.7.24~ds1-6+deb13u1"
)
