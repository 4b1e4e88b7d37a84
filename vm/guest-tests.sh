#!/bin/sh
# In-guest tests of the fwctl-guard VM bed (run by vm/init.sh once per kernel boot).
# 1. Smoke test of the bed: device nodes, the real clients nvme (nvme-cli) and cxl (ndctl)
#    against the emulated NVMe controller and the CXL memdevs (QEMU's type-3 device on the
#    stock kernels, the kernel's cxl_test mock on the fwctl kernel), `fwctl-guard probe`.
# 2. The bed's suites (FWCTL_GUARD_TESTS in /etc/fwctl-guard-bed) of the integration-test
#    executable built on the host, one run per suite (each prints its own `test result:`
#    line): host and policy (here on this guest kernel, where `hook: auto` picks BPF LSM
#    when the kernel accepts it), then vm (stock kernels: real NVMe and CXL devices) or
#    fwctl (fwctl kernel: real fwctl devices), attacks, fleet, capabilities. Here a missing
#    privilege, device node or deny-capable hook fails a test; nothing may be ignored.
# The LSM world the host booted this kernel in (FWCTL_GUARD_LSM_WORLD: bpf-active with the
# kernel's default LSM list, bpf-inactive with Ubuntu's) must match the active LSM list,
# and is exported to the tests.
# Exit status 0 only when everything passed.

. /etc/fwctl-guard-bed

echo "--- device nodes (bed: $FWCTL_GUARD_BED)"
ls -l /dev/nvme* /dev/cxl/* /dev/fwctl/* 2>/dev/null
grep -E ' (nvme|nvme-generic|cxl|fwctl)$' /proc/devices
echo "tainted: $(cat /proc/sys/kernel/tainted)"
echo "module BTF: $(ls /sys/kernel/btf | grep -v '^vmlinux$' | tr '\n' ' ')"

echo "--- LSM world"
active_lsm=$(cat /sys/kernel/security/lsm)
case ",$active_lsm," in
    *,bpf,*) bpf_active=yes ;;
    *) bpf_active=no ;;
esac
echo "world $FWCTL_GUARD_LSM_WORLD; active LSMs $active_lsm; bpf active: $bpf_active"
case "$FWCTL_GUARD_LSM_WORLD:$bpf_active" in
    bpf-active:yes | bpf-inactive:no) world_rc=0 ;;
    *)
        echo "LSM world $FWCTL_GUARD_LSM_WORLD does not match the active list $active_lsm"
        world_rc=1
        ;;
esac

echo "--- nvme id-ctrl /dev/nvme0 | head -5"
nvme id-ctrl /dev/nvme0 > /tmp/id-ctrl.txt 2>&1
nvme_rc=$?
head -5 /tmp/id-ctrl.txt
echo "nvme id-ctrl exit status: $nvme_rc"

echo "--- cxl list -M"
cxl list -M > /tmp/cxl-list.txt 2>&1
cxl_rc=$?
cat /tmp/cxl-list.txt
# An empty list also exits 0: require the memdev.
if [ $cxl_rc -eq 0 ] && ! grep -q '"memdev":"mem0"' /tmp/cxl-list.txt; then
    echo "cxl list: no mem0"
    cxl_rc=1
fi
echo "cxl list exit status: $cxl_rc"

# Probed once per boot (it attaches every hook set and runs their self-tests: tens of
# seconds under TCG); the suites read it from FWCTL_GUARD_PROBE_JSON.
echo "--- /fwctl-guard probe --json"
/fwctl-guard probe --json > /tmp/probe.json
echo "fwctl-guard probe exit status: $?"
cat /tmp/probe.json
echo
export FWCTL_GUARD_PROBE_JSON=/tmp/probe.json

export FWCTL_GUARD_BIN=/fwctl-guard FWCTL_GUARD_REQUIRE_PRIVILEGED=1 FWCTL_GUARD_REQUIRE_VM=1
export FWCTL_GUARD_LSM_WORLD
export RUST_BACKTRACE=1
suite_rc=0
for t in $FWCTL_GUARD_TESTS; do
    echo "--- /tests/integration --suite $t"
    started=$(date +%s)
    /tests/integration --suite "$t" --test-threads=1
    rc=$?
    echo "/tests/integration --suite $t exit status: $rc ($(( $(date +%s) - started )) s)"
    [ $rc -eq 0 ] || suite_rc=1
done

[ $world_rc -eq 0 ] && [ $nvme_rc -eq 0 ] && [ $cxl_rc -eq 0 ] && [ $suite_rc -eq 0 ]
