#!/bin/sh
# PID 1 of the fwctl-guard test VM (cargo xtask vm-test packs this as /init).
# Mounts the kernel file systems, loads the NVMe and CXL modules in the order the host
# computed (/lib/modules/fwctl-guard/load.order), waits for the devices, runs
# /guest-tests.sh and reports its exit status on the serial console as
# FWCTL_GUARD_VM_RESULT=<code>, which the host reads. Then powers off.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/kernel/tracing /sys/fs/bpf /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mkdir -p /dev/pts /sys/fs/cgroup
mount -t devpts devpts /dev/pts -o mode=620,ptmxmode=666
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Loopback for the agent's metrics endpoint (the tests scrape it with curl).
ip link set lo up
echo "FWCTL_GUARD_VM_INIT: init started"

modules=/lib/modules/fwctl-guard
while read -r ko; do
    insmod "$modules/$ko" || echo "init: insmod $ko failed"
done < "$modules/load.order"

# Up to ~20 s for the devices (probing under TCG is slow).
i=0
while [ $i -lt 200 ]; do
    [ -e /dev/nvme0 ] && [ -e /dev/cxl/mem0 ] && break
    sleep 0.1
    i=$((i + 1))
done
[ -e /dev/nvme0 ] || echo "init: /dev/nvme0 did not appear"
[ -e /dev/cxl/mem0 ] || echo "init: /dev/cxl/mem0 did not appear"

echo "uname -r: $(uname -r)"
echo "lsm: $(cat /sys/kernel/security/lsm)"
echo "===== /guest-tests.sh ====="
sh /guest-tests.sh
rc=$?
echo "FWCTL_GUARD_VM_RESULT=$rc"

sync
poweroff -f
# Not reached unless poweroff failed; panic=-1 plus QEMU's -no-reboot end the VM.
sleep 5
echo o > /proc/sysrq-trigger
