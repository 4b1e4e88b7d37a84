#!/bin/sh
# PID 1 of the fwctl-guard test VM (cargo xtask vm-test packs this as /init).
# Mounts the kernel file systems, loads the bed's modules in the order the host
# computed (/lib/modules/fwctl-guard/load.order), waits for the bed's devices
# (/etc/fwctl-guard-bed, written from xtask/src/vm/bed.rs, which also names the LSM
# world the host booted this kernel in), runs /guest-tests.sh and
# reports its exit status on the serial console as FWCTL_GUARD_VM_RESULT=<code>, which
# the host reads. Then powers off.

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
. /etc/fwctl-guard-bed
echo "FWCTL_GUARD_VM_INIT: init started (bed: $FWCTL_GUARD_BED, lsm world: $FWCTL_GUARD_LSM_WORLD)"

modules=/lib/modules/fwctl-guard
while read -r ko; do
    insmod "$modules/$ko" || echo "init: insmod $ko failed"
done < "$modules/load.order"

# The bed's devices, for up to FWCTL_GUARD_DEVICE_WAIT seconds (probing under TCG is slow).
all_present() {
    for dev in $FWCTL_GUARD_DEVICES; do
        [ -e "$dev" ] || return 1
    done
}
i=0
while [ $i -lt $((FWCTL_GUARD_DEVICE_WAIT * 10)) ] && ! all_present; do
    sleep 0.1
    i=$((i + 1))
done
for dev in $FWCTL_GUARD_DEVICES; do
    [ -e "$dev" ] || echo "init: $dev did not appear within $FWCTL_GUARD_DEVICE_WAIT s"
done
echo "init: waited for $FWCTL_GUARD_DEVICES until $(cut -d' ' -f1 /proc/uptime) s after boot"

echo "uname -r: $(uname -r)"
echo "lsm: $(cat /sys/kernel/security/lsm)"
echo "lsm world: $FWCTL_GUARD_LSM_WORLD"
echo "===== /guest-tests.sh ====="
sh /guest-tests.sh
rc=$?
echo "FWCTL_GUARD_VM_RESULT=$rc"

sync
poweroff -f
# Not reached unless poweroff failed; panic=-1 plus QEMU's -no-reboot end the VM.
sleep 5
echo o > /proc/sysrq-trigger
