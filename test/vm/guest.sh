# The hardware lab's guest side (runs as PID 1 after test/vm/init switched to the host's root).
# Sets up what a node has (its own /run, cgroups, loopback, the kernel's modules), runs
# the ctest labels that lab.sh asked for against the host's build tree, writes logs and exit codes
# to the `results` share and powers off. Every path is the host's path.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
off() { sync; echo o >/proc/sysrq-trigger; sleep 60; }
trap off EXIT

# /run is the guest's own (the host's holds its netns and sockets). /tmp stays the overlay's: a
# build tree or checkout under the host's /tmp (a CI clone) must remain visible.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /run/lock /dev/pts /dev/shm /results
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null || true
mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 results /results || exit 1
exec >/results/guest.log 2>&1

kmods=$(arg knd.kmods)
kver=$(uname -r)
# The guest kernel's modules, where modprobe (and the kernel's own module autoloading) look.
mkdir -p /lib/modules
[ -e "/lib/modules/$kver" ] || ln -s "$kmods/lib/modules/$kver" "/lib/modules/$kver"
echo "knd-vm: kernel $kver, $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
for m in igb igbvf veth bridge macvlan vxlan dummy 8021q ipvlan bonding vrf tun \
         crc32_generic rdma_rxe ib_uverbs rdma_ucm ib_umad vfio-pci; do
  modprobe "$m" || echo "knd-vm: modprobe $m failed"
done
hostname knd-vm
ip link set lo up
udevadm --version >/dev/null 2>&1 || true
# igb's VFs need their PF up to pass traffic; the PFs carry no address.
for pf in /sys/bus/pci/drivers/igb/0000:*/net/*; do ip link set "$(basename "$pf")" up; done
ip -br link
ls /sys/class/infiniband 2>/dev/null

build=$(arg knd.build)
export KND_VM=1 KND_BINARY_DIR=$build KND_FIXTURE_DIR=$(arg knd.fixtures)
rc=0
cd "$build" || exit 1
if [ -n "$(arg knd.exec)" ]; then
  bash "$(arg knd.exec)" >/results/exec.log 2>&1
  echo $? >/results/rc
  exit
fi
for label in $(arg knd.labels | tr , ' '); do
  echo "knd-vm: ctest -L ^$label\$"
  ctest -L "^$label\$" --output-on-failure --timeout "$(arg knd.timeout)" >"/results/ctest-$label.log" 2>&1
  r=$?
  echo "knd-vm: label $label: exit $r"
  [ $r -eq 0 ] || rc=$r
done
echo $rc >/results/rc
