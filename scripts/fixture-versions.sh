# Exact versions of the test fixtures that come from Debian's newer suites (sourced by
# scripts/fixtures.sh). One place: change a version here and the cache picks it up.
# Format: NAME=SUITE:PACKAGE=VERSION[,PACKAGE=VERSION...] (all packages of one entry are unpacked
# into the same directory).
KND_FIXTURES=(
  # containerd 2.1 (Debian unstable) and 1.7 (Debian 13): the real-runtime tests (ctest label
  # `runtime`). runc stays bookworm's (unstable's needs a newer glibc).
  "containerd-2.1=sid:containerd=2.1.9+ds1-5"
  "containerd-1.7=trixie:containerd=1.7.24~ds1-6+deb13u1"
  # The hardware lab (test/vm, ctest label `hw`): Debian's 6.12 kernel, which has SR-IOV (igb),
  # soft-RoCE (rdma_rxe), dummy, 802.1q, ipvlan, bonding and vrf, booted by QEMU 10 (the first
  # QEMU with an emulated igb, i.e. SR-IOV) with its SeaBIOS. Both from bookworm-backports, so
  # they run on bookworm's libraries.
  "kernel-6.12=bookworm-backports:linux-image-6.12.95+deb12-amd64-unsigned=6.12.95-1~bpo12+1"
  "qemu-10.0=bookworm-backports:qemu-system-x86=1:10.0.2+ds-2+deb13u1~bpo12+1,qemu-system-data=1:10.0.2+ds-2+deb13u1~bpo12+1,seabios=1.16.3-2~bpo12+1"
  # The admission-policy tests (test/deploy, ctest deploy_manifests) evaluate the policies' CEL
  # with Google's cel-go, the implementation Kubernetes uses: its Go sources and those of its
  # imports (GOPATH layout under usr/share/gocode) from Debian 13, built in GOPATH mode by
  # test/deploy/celeval.sh with the Go 1.23 toolchain of bookworm-backports.
  "go-1.23=bookworm-backports:golang-1.23-go=1.23.5-1~bpo12+1,golang-1.23-src=1.23.5-1~bpo12+1"
  "cel-go=trixie:golang-github-google-cel-go-dev=0.18.2+ds-5+deb13u1,golang-github-antlr-antlr4-dev=4.11.1+ds-2,golang-golang-x-exp-dev=0.0~git20231006.7918f67-2,golang-google-genproto-dev=0.0~git20210726.e7812ac-4,golang-github-golang-protobuf-1-5-dev=1.5.4-1,golang-google-protobuf-dev=1.36.5-1,golang-golang-x-text-dev=0.22.0-1,golang-github-stoewer-go-strcase-dev=1.2.0-4"
)
