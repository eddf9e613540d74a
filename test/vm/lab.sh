#!/usr/bin/env bash
# The hardware lab: boots Debian's 6.12 kernel under QEMU 10 with emulated Intel 82576 NICs
# (igb, SR-IOV with 7 VFs each, on one virtual wire) behind an emulated IOMMU (VT-d), and
# soft-RoCE, and runs ctest labels inside, against this build tree. The host's root is the
# guest's root (read-only 9p, with a tmpfs overlay in the guest), so the guest runs the host's
# binaries, tools and Python. No network is needed.
#
#   test/vm/lab.sh [--build DIR] [--timeout SECONDS] [--pfs N] [LABEL...]
#   test/vm/lab.sh [--build DIR] --exec SCRIPT      (runs SCRIPT with bash in the guest instead)
#
# LABEL defaults to `vm` (the tests that need the lab's hardware). Logs go to DIR/vm/results:
# console.log (the guest kernel), guest.log (setup), ctest-LABEL.log (each label's ctest output).
# Exits with the guest's ctest status, or 124 when the guest did not finish in time.
# Uses KVM when /dev/kvm works, else software emulation (TCG); KND_LAB_ACCEL=tcg|kvm forces one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
timeout=1800
pfs=2
labels=()
exec_script=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --pfs) pfs=$2; shift 2 ;;
    --exec) exec_script=$(realpath "$2"); shift 2 ;;
    -*) echo "lab.sh: unknown option $1" >&2; exit 2 ;;
    *) labels+=("$1"); shift ;;
  esac
done
[ ${#labels[@]} -gt 0 ] || labels=(vm)
if [ "$(id -u)" -ne 0 ]; then echo "lab.sh: needs root (the guest runs privileged tests)" >&2; exit 2; fi

cache=${KND_FIXTURE_DIR:-$build/fixtures}
"$root/scripts/fixtures.sh" --cache "$cache" kernel-6.12 qemu-10.0 dpdk-22.11
cache=$(cd "$cache" && pwd)  # the guest gets it on its command line
kdir=$cache/kernel-6.12
qdir=$cache/qemu-10.0
kver=$(basename "$(echo "$kdir"/lib/modules/*)")
# Debian's kernel package leaves modules.dep to its postinst; make it once.
[ -s "$kdir/lib/modules/$kver/modules.dep" ] || depmod -b "$kdir" "$kver"

vm=$build/vm
mkdir -p "$vm"
# The initramfs: busybox, the modules for 9p and overlayfs (decompressed, in load order), init.
initrd=$vm/initramfs-$kver.gz
stamp="$kver $(cat "$root/test/vm/init" /bin/busybox | sha256sum | cut -c1-16)"
if [ "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
  t=$(mktemp -d "$vm/initramfs.XXXXXX")
  mkdir -p "$t/bin" "$t/mod"
  cp /bin/busybox "$t/bin/busybox"
  cp "$root/test/vm/init" "$t/init"
  : >"$t/modules"
  for m in 9pnet_virtio 9p overlay; do
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    name=$(basename "$ko" .xz)
    xz -dc "$ko" >"$t/mod/$name"
    echo "$name" >>"$t/modules"
  done
  (cd "$t" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
  rm -rf "$t"
  mv "$initrd.tmp" "$initrd"
  echo "$stamp" >"$initrd.stamp"
fi

results=$vm/results
rm -rf "$results" && mkdir -p "$results"
nics=()
for i in $(seq 0 $((pfs - 1))); do
  # Each PF behind its own PCIe root port: its VFs take device numbers on the port's bus.
  nics+=(-device "pcie-root-port,id=port$i,chassis=$((i + 1)),slot=$((i + 1))"
    -netdev "hubport,id=wire$i,hubid=0" -device "igb,bus=port$i,netdev=wire$i,romfile=")
done
# An IOMMU (QEMU's emulated VT-d) gives every VF an IOMMU group of its own, as vfio-pci needs;
# iommu=pt leaves the kernel's own drivers untranslated.
cmdline="console=ttyS0 panic=-1 quiet intel_iommu=on iommu=pt knd.run=$root/test/vm/guest.sh knd.build=$build"
[ -z "$exec_script" ] || cmdline+=" knd.exec=$exec_script"
cmdline+=" knd.kmods=$kdir knd.fixtures=$cache knd.timeout=$timeout knd.labels=$(IFS=,; echo "${labels[*]}")"
echo "lab.sh: booting $kver (${pfs} igb PFs) for ctest labels: ${labels[*]}"
# boot ACCEL...: runs the guest to the end (or the time limit) and sets qrc. QEMU's stderr goes to
# results/qemu.log and to ours. A KVM that initialises but cannot emulate an instruction (nested
# virtualisation) stops the guest with "KVM internal error" and leaves QEMU waiting forever: that
# is watched for, and the guest is booted again under TCG. So is a QEMU that dies on a KVM
# error of its own (seen: "failed to set MSR 0x10a", then an assertion and SIGABRT).
boot() {
  rm -rf "${results:?}"/* && : >"$results/qemu.log"
  timeout --foreground $((timeout + 300)) "$qdir/usr/bin/qemu-system-x86_64" \
    -L "$qdir/usr/share/qemu" -L "$qdir/usr/share/seabios" \
    -M q35 "$@" -cpu max -smp "$(nproc)" -m 4096 -device intel-iommu \
    -nodefaults -display none -no-reboot -serial "file:$results/console.log" \
    -kernel "$kdir/boot/vmlinuz-$kver" -initrd "$initrd" -append "$cmdline" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$results,mount_tag=results,security_model=none" \
    "${nics[@]}" 2>"$results/qemu.log" &
  local pid=$!
  kvm_failed=0
  while kill -0 "$pid" 2>/dev/null; do
    if grep -q "KVM internal error" "$results/qemu.log"; then kvm_failed=1; kill "$pid"; fi
    sleep 1
  done
  qrc=0
  wait "$pid" || qrc=$?
  grep -v "^$" "$results/qemu.log" | head -5 >&2 || true
}
start=$(date +%s)
# KND_LAB_ACCEL=tcg|kvm forces one; by default KVM is tried when /dev/kvm is there.
accel=${KND_LAB_ACCEL:-$([ -c /dev/kvm ] && echo kvm || echo tcg)}
set +e
if [ "$accel" = kvm ]; then
  boot -accel kvm -accel tcg  # QEMU itself falls back to TCG when KVM fails to initialise
  if [ "$kvm_failed" = 1 ] || { [ ! -f "$results/rc" ] && [ "$qrc" -ne 0 ] && [ "$qrc" -ne 124 ] &&
      grep -qi "kvm" "$results/qemu.log"; }; then
    echo "lab.sh: KVM failed to run the guest; booting again with software emulation (TCG)" >&2
    start=$(date +%s)
    boot -accel tcg
  fi
else
  boot -accel tcg
fi
# A guest kernel that panics while it boots, before the guest's init has started (no
# guest.log), ran no test: that is the emulator's flake, not a result (seen once under TCG: an
# int3 oops in the kernel's boot-time code patching). It is booted once more, saying so; the
# first console is kept as console.first-boot.log.
if [ ! -f "$results/rc" ] && [ ! -e "$results/guest.log" ] &&
    grep -q "Kernel panic" "$results/console.log" 2>/dev/null; then
  echo "lab.sh: the guest kernel panicked while booting, before any test ran; booting again:" >&2
  grep -m3 -E "Oops|BUG|Kernel panic" "$results/console.log" >&2 || true
  first=$(mktemp)
  cp "$results/console.log" "$first"
  start=$(date +%s)
  boot -accel tcg
  mv "$first" "$results/console.first-boot.log"
fi
set -e
echo "lab.sh: guest ran $(($(date +%s) - start)) s (qemu exit $qrc)"
[ -f "$results/exec.log" ] && { echo "----- guest: $exec_script"; cat "$results/exec.log"; }
for label in "${labels[@]}"; do
  [ -f "$results/ctest-$label.log" ] && { echo "----- guest: ctest -L $label"; cat "$results/ctest-$label.log"; }
done
if [ ! -f "$results/rc" ]; then
  echo "lab.sh: the guest did not finish; its console and setup log:" >&2
  tail -40 "$results/console.log" >&2 || true
  tail -40 "$results/guest.log" >&2 || true
  [ $qrc -eq 124 ] && exit 124
  exit 1
fi
exit "$(cat "$results/rc")"
