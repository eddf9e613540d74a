# Exact versions of the test fixtures that come from Debian's newer suites (sourced by
# scripts/fixtures.sh). One place: change a version here and the cache picks it up.
# Format: NAME=SUITE:PACKAGE=VERSION[,PACKAGE=VERSION...] (all packages of one entry are unpacked
# into the same directory).
# DPDK 22.11, Debian 12's own: dpdk-testpmd (package dpdk-dev), the userspace driver the hardware
# lab's vfio-pci test runs on a VF, with every library it links and the igb VF's PMD
# (librte-net-e1000-23). Unpacked only: installed, dpdk-dev pulls in 222 packages.
_knd_dpdk=22.11.11-0+deb12u1
_knd_dpdk_libs=(acl baseband-acc baseband-fpga-5gnr-fec baseband-fpga-lte-fec baseband-la12xx
  bbdev bitratestats bpf bus-auxiliary bus-dpaa bus-pci bus-vdev cfgfile cmdline common-dpaax
  common-iavf common-mlx5- compressdev crypto-scheduler cryptodev distributor dmadev eal efd
  ethdev event-skeleton eventdev fib gpudev graph gro gso hash ip-frag ipsec jobstats kvargs
  latencystats lpm mbuf member mempool-dpaa mempool-ring mempool-stack mempool meter metrics
  net-bnxt net-bond net-dpaa net-e1000- net-i40e net-ice net-ixgbe net-mlx5- net-null net-ring
  net node pcapng pci pdump pipeline port power rawdev rcu regexdev reorder rib ring sched
  security stack table telemetry timer vhost)
_knd_dpdk_pkgs=dpdk-dev=$_knd_dpdk,libpcap0.8=1.10.3-1
for _l in "${_knd_dpdk_libs[@]}"; do _knd_dpdk_pkgs+=",librte-${_l}23=$_knd_dpdk"; done

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
  # DPDK 22.11 for the hardware lab (the packages above).
  "dpdk-22.11=bookworm:$_knd_dpdk_pkgs"
)
unset _l
