#!/bin/sh
# In-guest tests of the fwctl-guard VM bed (run by vm/init.sh once per kernel boot).
# For now a smoke test of the bed itself: the device nodes exist, the real clients
# nvme (nvme-cli) and cxl (ndctl) work against the emulated NVMe controller and CXL
# type-3 device, and `fwctl-guard probe` reports which program types the kernel accepts.
# Exit status 0 only when `nvme id-ctrl` and `cxl list -M` succeeded.

echo "--- device nodes"
ls -l /dev/nvme* /dev/cxl/ 2>&1

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

echo "--- /fwctl-guard probe"
/fwctl-guard probe
echo "fwctl-guard probe exit status: $?"

[ $nvme_rc -eq 0 ] && [ $cxl_rc -eq 0 ]
