#!/usr/bin/env bash
# Installs every Debian 12 package that knd's build, tests and demo need.
# Idempotent: when everything is present it only runs `dpkg-query` and exits.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache git
  # libraries
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libnl-3-dev libnl-route-3-dev libnl-genl-3-dev libcurl4-openssl-dev libssl-dev
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libcpp-httplib-dev prometheus-cpp-dev
  libcap-dev libelf-dev  # kndctl doctor: capabilities, the netns guard's ELF headers
  # tests
  libgtest-dev libgmock-dev googletest
  containernetworking-plugins iproute2 procps iputils-ping  # ping: traffic between pods
  runc busybox-static  # the real-runtime tests (containerd itself comes from scripts/fixtures.sh)
  # the hardware lab (test/vm): QEMU and the kernel come from scripts/fixtures.sh; these are the
  # bookworm libraries that QEMU 10 links, the initramfs tools, and what the guest runs from the
  # host's root (RDMA verbs utilities and providers, ethtool)
  kmod cpio xz-utils
  libaio1 libcapstone4 libfdt1 libfuse3-3 libibverbs1 libpmem1 librdmacm1 libslirp0 liburing2
  libvdeplug2 libbpf1 libnuma1 libpixman-1-0 libseccomp2 libglib2.0-0 libgnutls30
  ibverbs-utils ibverbs-providers rdmacm-utils ethtool
  openssl  # kube_client_test generates a self-signed cert
  python3 python3-yaml  # test/deploy (manifest tests)
  # style
  clang-format clang-tidy
  clang  # the fuzz harnesses (scripts/fuzz.sh): clang 14 with libFuzzer
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
