# Runs in the hardware lab's guest (test/vm/lab.sh --exec bench/vf_attach_lab.sh): the attach
# benchmark (knd-bench-attach: knd, CNI host-device + static + tuning, the kernel floor) on an
# igb VF and, for comparison in the same guest, on a veth end. Writes vf.json and veth.json to the
# lab's results directory.
set -eu
build=$KND_BINARY_DIR
n=${KND_BENCH_ITERATIONS:-20}
pf=$(basename "$(ls -d /sys/bus/pci/drivers/igb/0000:*/net/* | head -1)")
echo 1 >"/sys/class/net/$pf/device/sriov_numvfs"
for _ in $(seq 50); do [ -d "/sys/class/net/$pf/device/virtfn0/net" ] && break; sleep 0.2; done
vf=$(basename "$(ls -d /sys/class/net/$pf/device/virtfn0/net/*)")
echo "VF $vf of $pf"
"$build/bench/knd-bench-attach" --iterations "$n" --device "$vf" >/results/vf.json
"$build/bench/knd-bench-attach" --iterations "$n" >/results/veth.json
echo 0 >"/sys/class/net/$pf/device/sriov_numvfs"
