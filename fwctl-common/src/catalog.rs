//! Opcode-name catalogs for the passthrough channels fwctl-guard watches.
//!
//! What this module is for: turning a numeric opcode into a stable, human-readable
//! name (and back) in the agent — metric labels, audit records, and policy files
//! that say `format-nvm` or `ACCESS_REG` instead of `0x80` / `0x805`.
//!
//! What it is not for: the kernel-side decode. The eBPF programs work on raw numbers
//! and never look names up (the lookups loop, which the verifier dislikes). The one
//! exception is [`cxl_send_command_opcode`], a plain bounds-checked array index the
//! eBPF side may use to turn a `CXL_MEM_SEND_COMMAND` command id into the mailbox
//! opcode the kernel will send. A name's presence here does not mean a kernel path
//! accepts the opcode; see each table's doc for what exactly it lists.
//!
//! Naming: kebab-case everywhere except [`MLX5`], which keeps the `MLX5_CMD_OP_`
//! suffix in UPPER_SNAKE. [`Catalog::opcode`] ignores case and treats `-` and `_`
//! as equal, so `format-nvm`, `FORMAT_NVM` and `Format_Nvm` all match.
//!
//! Provenance: values were checked against the kernel source text named in each
//! table's doc (torvalds/linux unless a mirror is named; mirrors were used where the
//! stored torvalds copy was too old) and, where a table goes beyond the kernel, the
//! other source is named on the entry.

/// A sorted opcode → name table.
///
/// Invariants (checked by this module's tests): `entries` is strictly increasing by
/// opcode, and names are unique even after case folding and `-`/`_` folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// `(opcode, name)` pairs, strictly sorted by opcode.
    pub entries: &'static [(u32, &'static str)],
}

impl Catalog {
    /// Number of entries.
    pub const fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table has no entries.
    pub const fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Name of `opcode`, by binary search. Userspace only (loops).
    pub const fn name(&self, opcode: u32) -> Option<&'static str> {
        let entries = self.entries;
        let mut lo = 0usize;
        let mut hi = entries.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (op, name) = entries[mid];
            if op == opcode {
                return Some(name);
            }
            if op < opcode {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        None
    }

    /// Opcode whose name matches `name`, ignoring ASCII case and treating `-` and `_`
    /// as the same character. Linear scan; userspace only.
    pub const fn opcode(&self, name: &str) -> Option<u32> {
        let entries = self.entries;
        let mut i = 0;
        while i < entries.len() {
            let (op, candidate) = entries[i];
            if names_match(candidate, name) {
                return Some(op);
            }
            i += 1;
        }
        None
    }
}

/// Name comparison used by [`Catalog::opcode`]: ASCII case-insensitive, `-` == `_`.
pub const fn names_match(a: &str, b: &str) -> bool {
    let a = a.as_bytes();
    let b = b.as_bytes();
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if fold(a[i]) != fold(b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

const fn fold(c: u8) -> u8 {
    if c == b'_' {
        b'-'
    } else {
        c.to_ascii_lowercase()
    }
}

/// NVMe admin opcodes: the full `enum nvme_admin_opcode` of include/linux/nvme.h (plus `nvme_fabrics_command`, 0x7f) and, marked `[libnvme]`, NVMe 2.x opcodes the kernel header lacks, from linux-nvme/libnvme src/nvme/types.h.
///
/// Kernel text read: include/linux/nvme.h in the intel-lab-lkp/linux mirror @01d805e9
/// (v6.15-era: has `nvme_cmd_io_mgmt_recv`, `NVME_LOG_RMI`); libnvme @03297d8b.
/// Vendor-specific opcodes (0xc0..=0xff, `nvme_admin_vendor_start`) are not listed.
pub const NVME_ADMIN: Catalog = Catalog {
    entries: &[
        (0x00, "delete-io-sq"),
        (0x01, "create-io-sq"),
        (0x02, "get-log-page"),
        (0x04, "delete-io-cq"),
        (0x05, "create-io-cq"),
        (0x06, "identify"),
        (0x08, "abort"),
        (0x09, "set-features"),
        (0x0a, "get-features"),
        (0x0c, "async-event-request"),
        (0x0d, "namespace-management"),
        (0x10, "firmware-commit"),
        (0x11, "firmware-image-download"),
        (0x14, "device-self-test"),
        (0x15, "namespace-attachment"),
        (0x18, "keep-alive"),
        (0x19, "directive-send"),
        (0x1a, "directive-receive"),
        (0x1c, "virtualization-management"),
        (0x1d, "nvme-mi-send"),
        (0x1e, "nvme-mi-receive"),
        (0x20, "capacity-management"),                       // [libnvme]
        (0x21, "discovery-information-management"),          // [libnvme]
        (0x22, "fabric-zoning-receive"),                     // [libnvme]
        (0x24, "lockdown"),                                  // [libnvme]
        (0x25, "fabric-zoning-lookup"),                      // [libnvme]
        (0x28, "clear-exported-nvm-resource-configuration"), // [libnvme]
        (0x29, "fabric-zoning-send"),                        // [libnvme]
        (0x2a, "create-exported-nvm-subsystem"),             // [libnvme]
        (0x2d, "manage-exported-nvm-subsystem"),             // [libnvme]
        (0x31, "manage-exported-namespace"),                 // [libnvme]
        (0x35, "manage-exported-port"),                      // [libnvme]
        (0x39, "send-discovery-log-page"),                   // [libnvme]
        (0x3d, "track-send"),                                // [libnvme]
        (0x3e, "track-receive"),                             // [libnvme]
        (0x41, "migration-send"),                            // [libnvme]
        (0x42, "migration-receive"),                         // [libnvme]
        (0x45, "controller-data-queue"),                     // [libnvme]
        (0x7c, "doorbell-buffer-config"),
        (0x7f, "fabrics-commands"), // kernel: enum nvmf_fabrics_opcode
        (0x80, "format-nvm"),
        (0x81, "security-send"),
        (0x82, "security-receive"),
        (0x84, "sanitize"),
        (0x85, "load-program"), // [libnvme]
        (0x86, "get-lba-status"),
        (0x88, "program-activation-management"), // [libnvme]
        (0x89, "memory-range-set-management"),   // [libnvme]
    ],
};

/// NVMe NVM command set I/O opcodes: the full `enum nvme_opcode` of include/linux/nvme.h and, marked `[libnvme]`, those only in linux-nvme/libnvme `enum nvme_io_opcode`.
///
/// Same sources as [`NVME_ADMIN`]. Vendor-specific opcodes (0x80.., `nvme_cmd_vendor_start`)
/// and the fabrics opcode (0x7f) are not listed.
pub const NVME_IO: Catalog = Catalog {
    entries: &[
        (0x00, "flush"),
        (0x01, "write"),
        (0x02, "read"),
        (0x04, "write-uncor"),
        (0x05, "compare"),
        (0x08, "write-zeroes"),
        (0x09, "dsm"),
        (0x0c, "verify"),
        (0x0d, "resv-register"),
        (0x0e, "resv-report"),
        (0x11, "resv-acquire"),
        (0x12, "io-mgmt-recv"),
        (0x15, "resv-release"),
        (0x18, "cancel"),       // [libnvme]
        (0x19, "copy"),         // [libnvme]
        (0x1d, "io-mgmt-send"), // [libnvme]
        (0x79, "zone-mgmt-send"),
        (0x7a, "zone-mgmt-recv"),
        (0x7d, "zone-append"),
    ],
};

/// mlx5 command opcodes accepted by `mlx5ctl_validate_rpc()` in drivers/fwctl/mlx5/main.c (every case of its switch), values from include/linux/mlx5/mlx5_ifc.h `MLX5_CMD_OP_*` and the local enum in main.c.
///
/// Read: drivers/fwctl/mlx5/main.c @42d3b66d (newest stored); mlx5_ifc.h in the
/// intel-lab-lkp/linux mirror @01ee09a8 (recent) and torvalds @87d93e9a (older).
/// Scope rules (not encoded here): the first group in the driver is allowed at
/// CONFIGURATION, most `QUERY_*` need DEBUG_READ_ONLY, `SET_DIAGNOSTIC_PARAMS` needs
/// DEBUG_WRITE, and `ACCESS_REG`/`ACCESS_REGISTER_USER` are allowed at CONFIGURATION
/// when op_mod == 0 (a register write). `QUERY_VUID` is `MLX5_CMD_OPCODE_QUERY_VUID`
/// in mlx5_ifc.h.
pub const MLX5: Catalog = Catalog {
    entries: &[
        (0x100, "QUERY_HCA_CAP"),
        (0x101, "QUERY_ADAPTER"),
        (0x107, "QUERY_PAGES"),
        (0x109, "SET_HCA_CAP"),
        (0x10a, "QUERY_ISSI"),
        (0x10c, "QUERY_DRIVER_VERSION"),
        (0x10e, "QUERY_OTHER_HCA_CAP"),
        (0x111, "QUERY_SF_PARTITION"),
        (0x117, "QUERY_VHCA_MIGRATION_STATE"),
        (0x201, "QUERY_MKEY"),
        (0x203, "QUERY_SPECIAL_CONTEXTS"),
        (0x303, "QUERY_EQ"),
        (0x402, "QUERY_CQ"),
        (0x50b, "QUERY_QP"),
        (0x512, "QUERY_RDB"),
        (0x602, "QUERY_PSV"),
        (0x702, "QUERY_SRQ"),
        (0x707, "QUERY_XRC_SRQ"),
        (0x713, "QUERY_DCT"),
        (0x716, "QUERY_DC_CNAK_TRACE"),
        (0x719, "QUERY_XRQ"),
        (0x722, "QUERY_NVMF_BACKEND_CONTROLLER"),
        (0x725, "QUERY_XRQ_DC_PARAMS_ENTRY"),
        (0x727, "QUERY_XRQ_ERROR_PARAMS"),
        (0x728, "QUERY_NVMF_NAMESPACE_CONTEXT"),
        (0x730, "QUERY_ADJACENT_FUNCTIONS_ID"),
        (0x731, "DELEGATE_VHCA_MANAGEMENT"),
        (0x732, "QUERY_DELEGATED_VHCA"),
        (0x740, "QUERY_ESW_FUNCTIONS"),
        (0x750, "QUERY_VPORT_STATE"),
        (0x752, "QUERY_ESW_VPORT_CONTEXT"),
        (0x754, "QUERY_NIC_VPORT_CONTEXT"),
        (0x760, "QUERY_ROCE_ADDRESS"),
        (0x762, "QUERY_HCA_VPORT_CONTEXT"),
        (0x764, "QUERY_HCA_VPORT_GID"),
        (0x765, "QUERY_HCA_VPORT_PKEY"),
        (0x76f, "QUERY_VNIC_ENV"),
        (0x770, "QUERY_VPORT_COUNTER"),
        (0x773, "QUERY_Q_COUNTER"),
        (0x781, "QUERY_RATE_LIMIT"),
        (0x784, "QUERY_SCHEDULING_ELEMENT"),
        (0x805, "ACCESS_REG"),
        (0x80b, "QUERY_MAD_DEMUX"),
        (0x80d, "NOP"),
        (0x813, "QUERY_BURST_SIZE"),
        (0x819, "QUERY_DIAGNOSTIC_PARAMS"),
        (0x820, "SET_DIAGNOSTIC_PARAMS"),
        (0x821, "QUERY_DIAGNOSTIC_COUNTERS"),
        (0x822, "QUERY_CONG_STATUS"),
        (0x823, "MODIFY_CONG_STATUS"),
        (0x824, "QUERY_CONG_PARAMS"),
        (0x826, "QUERY_CONG_STATISTICS"),
        (0x82a, "QUERY_L2_TABLE_ENTRY"),
        (0x831, "QUERY_WOL_ROL"),
        (0x842, "QUERY_LAG"),
        (0x903, "QUERY_TIR"),
        (0x907, "QUERY_SQ"),
        (0x90b, "QUERY_RQ"),
        (0x90f, "QUERY_RMP"),
        (0x911, "QUERY_DELAY_DROP_PARAMS"),
        (0x915, "QUERY_TIS"),
        (0x919, "QUERY_RQT"),
        (0x932, "QUERY_FLOW_TABLE"),
        (0x935, "QUERY_FLOW_GROUP"),
        (0x937, "QUERY_FLOW_TABLE_ENTRY"),
        (0x93b, "QUERY_FLOW_COUNTER"),
        (0x93f, "QUERY_PACKET_REFORMAT_CONTEXT"),
        (0x942, "QUERY_MODIFY_HEADER_CONTEXT"),
        (0x962, "FPGA_QUERY_QP"),
        (0x964, "FPGA_QUERY_QP_COUNTERS"),
        (0x971, "QUERY_AFU"),
        (0x981, "QUERY_CAPI_PEC"),
        (0xa02, "QUERY_GENERAL_OBJECT"),
        (0xa05, "QUERY_UCTX"),
        (0xa09, "QUERY_UMEM"),
        (0xb02, "QUERY_NVMF_CC_RESPONSE"),
        (0xb03, "QUERY_EMULATED_FUNCTIONS_INFO"),
        (0xb05, "QUERY_REGEXP_PARAMS"),
        (0xb07, "QUERY_REGEXP_REGISTER"),
        (0xb08, "USER_QUERY_XRQ_DC_PARAMS_ENTRY"),
        (0xb0a, "USER_QUERY_XRQ_ERROR_PARAMS"),
        (0xb0c, "ACCESS_REGISTER_USER"),
        (0xb0d, "QUERY_VHCA_STATE"),
        (0xb0f, "QUERY_EMULATION_DEVICE_EQ_MSIX_MAPPING"),
        (0xb13, "QUERY_MATCH_SAMPLE_INFO"),
        (0xb14, "QUERY_CRYPTO_STATE"),
        (0xb22, "QUERY_VUID"),
        (0xb28, "QUERY_DPA_PARTITION"),
        (0xb2a, "QUERY_DPA_PARTITIONS"),
        (0xb2e, "POSTPONE_CONNECTED_QP_TIMEOUT"),
        (0xb2f, "QUERY_EMULATED_RESOURCES_INFO"),
        (0x8000, "QUERY_RSV_RESOURCES"),
        (0x8001, "QUERY_MTT"),
        (0x8006, "QUERY_SCHED_QUEUE"),
    ],
};

/// CXL mailbox opcodes: the full `enum cxl_opcode` of drivers/cxl/cxlmem.h (`CXL_MBOX_OP_*`, without INVALID/RAW = 0 and MAX).
///
/// Read: drivers/cxl/cxlmem.h @00586988 (v6.16+-era: has `DO_MAINTENANCE`, EDAC hooks).
/// include/uapi/cxl/features.h and include/uapi/fwctl/cxl.h define payload layouts,
/// not further opcodes; the fwctl CXL path uses 0x0500/0x0501/0x0502.
pub const CXL_MBOX: Catalog = Catalog {
    entries: &[
        (0x0100, "get-event-record"),
        (0x0101, "clear-event-record"),
        (0x0102, "get-event-interrupt-policy"),
        (0x0103, "set-event-interrupt-policy"),
        (0x0200, "get-fw-info"),
        (0x0201, "transfer-fw"),
        (0x0202, "activate-fw"),
        (0x0300, "get-timestamp"),
        (0x0301, "set-timestamp"),
        (0x0400, "get-supported-logs"),
        (0x0401, "get-log"),
        (0x0402, "get-log-caps"),
        (0x0403, "clear-log"),
        (0x0405, "get-sup-log-sublist"),
        (0x0500, "get-supported-features"),
        (0x0501, "get-feature"),
        (0x0502, "set-feature"),
        (0x0600, "do-maintenance"),
        (0x4000, "identify"),
        (0x4100, "get-partition-info"),
        (0x4101, "set-partition-info"),
        (0x4102, "get-lsa"),
        (0x4103, "set-lsa"),
        (0x4200, "get-health-info"),
        (0x4201, "get-alert-config"),
        (0x4202, "set-alert-config"),
        (0x4203, "get-shutdown-state"),
        (0x4204, "set-shutdown-state"),
        (0x4300, "get-poison"),
        (0x4301, "inject-poison"),
        (0x4302, "clear-poison"),
        (0x4303, "get-scan-media-caps"),
        (0x4304, "scan-media"),
        (0x4305, "get-scan-media"),
        (0x4400, "sanitize"),
        (0x4401, "secure-erase"),
        (0x4500, "get-security-state"),
        (0x4501, "set-passphrase"),
        (0x4502, "disable-passphrase"),
        (0x4503, "unlock"),
        (0x4504, "freeze-security"),
        (0x4505, "passphrase-secure-erase"),
    ],
};

/// SCSI CDB operation codes (first CDB byte) from include/scsi/scsi_proto.h; entries marked `[sg3_utils]` are from sg3_utils lib/sg_lib_data.c (`sg_lib_normal_opcodes`).
///
/// Read: include/scsi/scsi_proto.h @0016e820; sg3_utils @fb3d289c. Where the header
/// gives one value two names (device-type dependent), the block-device (SBC) name is
/// used and the other is noted. Vendor-specific CDBs (0xc0..) are not listed.
pub const SCSI_CDB: Catalog = Catalog {
    entries: &[
        (0x00, "test-unit-ready"),
        (0x01, "rezero-unit"),
        (0x03, "request-sense"),
        (0x04, "format-unit"),
        (0x05, "read-block-limits"),
        (0x07, "reassign-blocks"), // also INITIALIZE_ELEMENT_STATUS (changer)
        (0x08, "read-6"),
        (0x0a, "write-6"),
        (0x0b, "seek-6"),
        (0x0f, "read-reverse"),
        (0x10, "write-filemarks"),
        (0x11, "space"),
        (0x12, "inquiry"),
        (0x14, "recover-buffered-data"),
        (0x15, "mode-select-6"),
        (0x16, "reserve-6"),
        (0x17, "release-6"),
        (0x18, "copy"),
        (0x19, "erase"),
        (0x1a, "mode-sense-6"),
        (0x1b, "start-stop-unit"),
        (0x1c, "receive-diagnostic"),
        (0x1d, "send-diagnostic"),
        (0x1e, "allow-medium-removal"),
        (0x23, "read-format-capacities"),
        (0x24, "set-window"),
        (0x25, "read-capacity-10"),
        (0x28, "read-10"),
        (0x2a, "write-10"),
        (0x2b, "seek-10"), // also POSITION_TO_ELEMENT (changer)
        (0x2e, "write-verify-10"),
        (0x2f, "verify-10"),
        (0x30, "search-high"),
        (0x31, "search-equal"),
        (0x32, "search-low"),
        (0x33, "set-limits"),
        (0x34, "pre-fetch-10"), // also READ_POSITION (tape)
        (0x35, "synchronize-cache-10"),
        (0x36, "lock-unlock-cache"),
        (0x37, "read-defect-data"),
        (0x38, "medium-scan"),
        (0x39, "compare"),
        (0x3a, "copy-verify"),
        (0x3b, "write-buffer"),
        (0x3c, "read-buffer"),
        (0x3d, "update-block"),
        (0x3e, "read-long"),
        (0x3f, "write-long"),
        (0x40, "change-definition"),
        (0x41, "write-same-10"),
        (0x42, "unmap"),
        (0x43, "read-toc"),
        (0x44, "read-header"),
        (0x48, "sanitize"), // [sg3_utils]; not in scsi_proto.h
        (0x4a, "get-event-status-notification"),
        (0x4c, "log-select"),
        (0x4d, "log-sense"),
        (0x53, "xdwriteread-10"),
        (0x55, "mode-select-10"),
        (0x56, "reserve-10"),
        (0x57, "release-10"),
        (0x5a, "mode-sense-10"),
        (0x5e, "persistent-reserve-in"),
        (0x5f, "persistent-reserve-out"),
        (0x7f, "variable-length-cmd"),
        (0x83, "extended-copy"),
        (0x84, "receive-copy-results"),
        (0x85, "ata-16"),
        (0x86, "access-control-in"),
        (0x87, "access-control-out"),
        (0x88, "read-16"),
        (0x89, "compare-and-write"),
        (0x8a, "write-16"),
        (0x8c, "read-attribute"),
        (0x8d, "write-attribute"),
        (0x8e, "write-verify-16"),
        (0x8f, "verify-16"),
        (0x91, "synchronize-cache-16"),
        (0x93, "write-same-16"),
        (0x94, "zbc-out"),
        (0x95, "zbc-in"),
        (0x96, "write-buffer-16"), // [sg3_utils]
        (0x9b, "read-buffer-16"),  // [sg3_utils]
        (0x9d, "service-action-bidirectional"),
        (0x9e, "service-action-in-16"),
        (0x9f, "service-action-out-16"),
        (0xa0, "report-luns"),
        (0xa1, "ata-12"),
        (0xa2, "security-protocol-in"),
        (0xa3, "maintenance-in"),
        (0xa4, "maintenance-out"),
        (0xa5, "move-medium"),
        (0xa6, "exchange-medium"),
        (0xa8, "read-12"),
        (0xa9, "service-action-out-12"),
        (0xaa, "write-12"),
        (0xab, "service-action-in-12"), // also READ_MEDIA_SERIAL_NUMBER (obsolete)
        (0xae, "write-verify-12"),
        (0xaf, "verify-12"),
        (0xb0, "search-high-12"),
        (0xb1, "search-equal-12"),
        (0xb2, "search-low-12"),
        (0xb5, "security-protocol-out"),
        (0xb6, "send-volume-tag"),
        (0xb8, "read-element-status"),
        (0xea, "write-long-2"),
    ],
};

/// pds_core admin-queue opcodes the pds fwctl driver sends, from include/linux/pds/pds_adminq.h `enum pds_fwctl_cmd_opcode` (include/uapi/fwctl/pds.h defines none).
///
/// Read: pds_adminq.h @144530c1; drivers/fwctl/pds/main.c @479bec4c. These are the
/// driver→firmware commands (every user RPC travels as `rpc`). The operation a user
/// asks for is `fwctl_rpc_pds.in.op` (bits 15:0 command, 23:16 version) on endpoint
/// `in.ep`; both are firmware-defined and enumerated at runtime via `query`, so no
/// header lists them.
pub const PDS: Catalog = Catalog { entries: &[(70, "ident"), (71, "rpc"), (72, "query")] };

/// Broadcom HWRM `req_type` values relevant to security review, from include/linux/bnxt/hsi.h `struct cmd_nums`: every request type accepted by `bnxtctl_validate_rpc()` / `bnxtctl_dma_cmds[]` in drivers/fwctl/bnxt/main.c that could be verified, plus other NVM, firmware and debug writes.
///
/// Read: hsi.h @5f8a4f34; drivers/fwctl/bnxt/main.c @98f21c54. Entries marked
/// `[hsi 1.10.3.151]` are not in that hsi.h snapshot and were taken from the upstream
/// hsi.h update patch (HWRM 1.10.3.151). Not listed (value not verified):
/// `SCH_GRP_CFG`, `SCH_GRP_QCFG`, both in the bnxt fwctl DMA table.
pub const BNXT_HWRM: Catalog = Catalog {
    entries: &[
        (0x0, "ver-get"),
        (0xc, "error-recovery-qcfg"),
        (0x11, "func-reset"),
        (0x15, "func-qcaps"),
        (0x16, "func-qcfg"),
        (0x17, "func-cfg"),
        (0x18, "func-qstats"),
        (0x23, "port-qstats"),
        (0x25, "port-clr-stats"),
        (0x27, "port-phy-qcfg"),
        (0x28, "port-mac-qcfg"),
        (0x2a, "port-phy-qcaps"),
        (0x2b, "port-phy-i2c-write"),
        (0x2c, "port-phy-i2c-read"),
        (0x37, "queue-pri2cos-qcfg"),
        (0x39, "queue-cos2bw-qcfg"),
        (0x3c, "queue-dscp2pri-qcfg"),
        (0x47, "vnic-rss-qcfg"),
        (0x67, "port-events-log"), // [hsi 1.10.3.151]
        (0x87, "queue-global-qcfg"),
        (0x88, "queue-adptv-qos-rx-feature-qcfg"),
        (0x8a, "queue-adptv-qos-tx-feature-qcfg"),
        (0x8c, "queue-qcaps"),
        (0x8d, "queue-adptv-qos-rx-tuning-qcfg"),
        (0x8f, "queue-adptv-qos-tx-tuning-qcfg"),
        (0xa0, "tunnel-dst-port-query"),
        (0xb4, "port-qstats-ext"),
        (0xb5, "port-phy-mdio-write"),
        (0xb6, "port-phy-mdio-read"),
        (0xba, "port-qstats-ext-pfc-adv"), // [hsi 1.10.3.151]
        (0xbc, "port-tx-fir-qcfg"),
        (0xbe, "fw-livepatch-query"),
        (0xbf, "fw-livepatch"),
        (0xc0, "fw-reset"),
        (0xc1, "fw-qstatus"),
        (0xc2, "fw-health-check"),
        (0xc3, "fw-sync"),
        (0xc8, "fw-set-time"),
        (0xc9, "fw-get-time"),
        (0xca, "fw-set-structured-data"),
        (0xcb, "fw-get-structured-data"),
        (0xcf, "fw-secure-cfg"),
        (0xd4, "oem-cmd"),
        (0xd5, "port-prbs-test"),
        (0xd9, "port-dsc-dump"),
        (0xda, "port-ep-tx-qcfg"),
        (0xdd, "port-qcfg"),
        (0xdf, "port-mac-qcaps"),
        (0xe0, "temp-monitor-query"),
        (0xe1, "reg-power-query"),
        (0xe2, "core-frequency-query"),
        (0xe6, "stat-query-roce-stats"),
        (0xe7, "stat-query-roce-stats-ext"),
        (0x112, "cfa-redirect-query-tunnel-type"),
        (0x124, "cfa-adv-flow-mgnt-qcaps"),
        (0x190, "func-resource-qcaps"),
        (0x192, "func-backing-store-qcaps"),
        (0x194, "func-backing-store-qcfg"),
        (0x198, "func-qstats-ext"),
        (0x19c, "func-ptp-pin-qcfg"),
        (0x1a1, "func-ptp-ext-qcfg"),
        (0x1a4, "func-backing-store-qcfg-v2"),
        (0x1a8, "func-backing-store-qcaps-v2"),
        (0x1ac, "func-synce-qcfg"),
        (0x1c3, "func-ttx-pacing-rate-prof-query"),
        (0x200, "selftest-qlist"),
        (0x201, "selftest-exec"),
        (0x203, "selftest-retrieve-serdes-data"),
        (0x204, "pcie-qstats"),
        (0x218, "stat-generic-qstats"),
        (0x232, "port-phy-fdrstat"),
        (0xff0e, "dbg-serdes-test"),
        (0xff0f, "dbg-log-buffer-flush"),
        (0xff10, "dbg-read-direct"),
        (0xff11, "dbg-read-indirect"),
        (0xff12, "dbg-write-direct"),
        (0xff13, "dbg-write-indirect"),
        (0xff14, "dbg-dump"),
        (0xff15, "dbg-erase-nvm"),
        (0xff16, "dbg-cfg"),
        (0xff17, "dbg-coredump-list"),
        (0xff18, "dbg-coredump-initiate"),
        (0xff19, "dbg-coredump-retrieve"),
        (0xff1a, "dbg-fw-cli"),
        (0xff1c, "dbg-ring-info-get"),
        (0xff1e, "dbg-crashdump-erase"),
        (0xff20, "dbg-qcaps"),
        (0xff21, "dbg-qcfg"),
        (0xff25, "dbg-useq-flush"),
        (0xff26, "dbg-useq-qcaps"),
        (0xff2d, "dbg-ptrace"),
        (0xff2e, "dbg-sim-cable-state"),
        (0xff2f, "dbg-token-query-auth-ids"),
        (0xff30, "dbg-token-cfg"),
        (0xffec, "nvm-defrag"),
        (0xffee, "nvm-factory-defaults"),
        (0xfff0, "nvm-flush"),
        (0xfff1, "nvm-get-variable"),
        (0xfff2, "nvm-set-variable"),
        (0xfff3, "nvm-install-update"),
        (0xfff4, "nvm-modify"),
        (0xfff5, "nvm-verify-update"),
        (0xfff6, "nvm-get-dev-info"),
        (0xfff7, "nvm-erase-dir-entry"),
        (0xfff8, "nvm-mod-dir-entry"),
        (0xfff9, "nvm-find-dir-entry"),
        (0xfffa, "nvm-get-dir-entries"),
        (0xfffb, "nvm-get-dir-info"),
        (0xfffc, "nvm-raw-dump"),
        (0xfffd, "nvm-read"),
        (0xfffe, "nvm-write"),
        (0xffff, "nvm-raw-write-blk"),
    ],
};

/// `CXL_MEM_SEND_COMMAND` command ids (`struct cxl_send_command.id`) by name: positions in the `CXL_CMDS` list of include/uapi/linux/cxl_mem.h (ids 15-17, 19, 20 are `___DEPRECATED`).
///
/// Read: torvalds cxl_mem.h @0604aa87 (ids 0-20) and the mainline header as imported
/// into AOSP bionic (ids 21-24, appended after `GET_SCAN_MEDIA`). `MAX` (25) is not an id.
pub const CXL_SEND_COMMAND_IDS: Catalog = Catalog {
    entries: &[
        (0, "invalid"),
        (1, "identify"),
        (2, "raw"),
        (3, "get-supported-logs"),
        (4, "get-fw-info"),
        (5, "get-partition-info"),
        (6, "get-lsa"),
        (7, "get-health-info"),
        (8, "get-log"),
        (9, "set-partition-info"),
        (10, "set-lsa"),
        (11, "get-alert-config"),
        (12, "set-alert-config"),
        (13, "get-shutdown-state"),
        (14, "set-shutdown-state"),
        (15, "get-poison"),
        (16, "inject-poison"),
        (17, "clear-poison"),
        (18, "get-scan-media-caps"),
        (19, "scan-media"),
        (20, "get-scan-media"),
        (21, "get-timestamp"),
        (22, "get-log-caps"),
        (23, "clear-log"),
        (24, "get-sup-log-sublist"),
    ],
};

/// `CXL_MEM_COMMAND_ID_RAW`: the id whose opcode comes from `cxl_send_command.raw.opcode`
/// (u16 at byte 8) instead of [`CXL_SEND_COMMAND_OPCODES`].
pub const CXL_MEM_COMMAND_ID_RAW: u32 = 2;

/// `CXL_MEM_COMMAND_ID_MAX`: the kernel rejects `id == 0 || id >= MAX` with ENOTTY.
pub const CXL_MEM_COMMAND_ID_MAX: u32 = 25;

/// Mailbox opcode the kernel sends for each non-RAW `CXL_MEM_SEND_COMMAND` id, indexed by
/// id; 0 where the kernel has no `cxl_mem_commands[]` entry (INVALID, RAW, deprecated ids).
///
/// From `cxl_mem_commands[]` in drivers/cxl/core/mbox.c: each `CXL_CMD(X, ..)` maps
/// `CXL_MEM_COMMAND_ID_X` to `CXL_MBOX_OP_X`. Read: the newest mbox.c snapshot found,
/// a v6.10/v6.11-era text (has GET_LOG_CAPS/CLEAR_LOG/GET_SUP_LOG_SUBLIST and
/// GET_TIMESTAMP; still `<asm/unaligned.h>` and `cxl_memdev_state` mailbox calls), with
/// ids from include/uapi/linux/cxl_mem.h as in [`CXL_SEND_COMMAND_IDS`]. The id list is
/// append-only uAPI; a newer kernel may add ids ≥ 25, which this table reports as unknown.
/// Older kernels (before the poison/scan-media ids were deprecated) still map them: see
/// [`CXL_DEPRECATED_COMMAND_OPCODES`].
pub const CXL_SEND_COMMAND_OPCODES: [u16; CXL_MEM_COMMAND_ID_MAX as usize] = [
    0,      // 0  INVALID
    0x4000, // 1  IDENTIFY
    0,      // 2  RAW: opcode is raw.opcode
    0x0400, // 3  GET_SUPPORTED_LOGS
    0x0200, // 4  GET_FW_INFO
    0x4100, // 5  GET_PARTITION_INFO
    0x4102, // 6  GET_LSA
    0x4200, // 7  GET_HEALTH_INFO
    0x0401, // 8  GET_LOG
    0x4101, // 9  SET_PARTITION_INFO
    0x4103, // 10 SET_LSA
    0x4201, // 11 GET_ALERT_CONFIG
    0x4202, // 12 SET_ALERT_CONFIG
    0x4203, // 13 GET_SHUTDOWN_STATE
    0x4204, // 14 SET_SHUTDOWN_STATE
    0,      // 15 deprecated GET_POISON
    0,      // 16 deprecated INJECT_POISON
    0,      // 17 deprecated CLEAR_POISON
    0x4303, // 18 GET_SCAN_MEDIA_CAPS
    0,      // 19 deprecated SCAN_MEDIA
    0,      // 20 deprecated GET_SCAN_MEDIA
    0x0300, // 21 GET_TIMESTAMP
    0x0402, // 22 GET_LOG_CAPS
    0x0403, // 23 CLEAR_LOG
    0x0405, // 24 GET_SUP_LOG_SUBLIST
];

/// `(id, opcode)` for the deprecated ids as older kernels' `cxl_mem_commands[]` mapped
/// them (torvalds mbox.c @0c8393dc / @86329873 still list GET_POISON..GET_SCAN_MEDIA);
/// current kernels reject these ids with ENOTTY.
pub const CXL_DEPRECATED_COMMAND_OPCODES: [(u32, u16); 5] =
    [(15, 0x4300), (16, 0x4301), (17, 0x4302), (19, 0x4304), (20, 0x4305)];

/// The catalog that names the opcodes of `class` on `driver` (`model::class`,
/// `model::driver`): one per fwctl driver, the CXL mailbox for CXL memdevs and CXL fwctl
/// nodes, and one per NVMe command set and SCSI.
pub fn for_class(class: u8, driver: u8) -> Option<&'static Catalog> {
    use crate::model::{class, driver};
    match (class, driver) {
        (class::FWCTL, driver::MLX5) => Some(&MLX5),
        (class::FWCTL, driver::CXL) | (class::CXL_MEM, _) => Some(&CXL_MBOX),
        (class::FWCTL, driver::PDS) => Some(&PDS),
        (class::FWCTL, driver::BNXT) => Some(&BNXT_HWRM),
        (class::NVME_ADMIN, _) => Some(&NVME_ADMIN),
        (class::NVME_IO, _) => Some(&NVME_IO),
        (class::SCSI, _) => Some(&SCSI_CDB),
        _ => None,
    }
}

/// Mailbox opcode for a non-RAW `CXL_MEM_SEND_COMMAND` id, or `None` for INVALID, RAW,
/// deprecated and out-of-range ids.
///
/// Written as a `match` on the id rather than an indexed read of
/// [`CXL_SEND_COMMAND_OPCODES`]: LLVM turned the bounds-checked index into a bit-mask test
/// the BPF verifier could not follow ("unbounded memory access"). A unit test keeps the
/// two in agreement.
#[inline(always)]
pub fn cxl_send_command_opcode(id: u32) -> Option<u16> {
    let opcode = match id {
        1 => 0x4000,
        3 => 0x0400,
        4 => 0x0200,
        5 => 0x4100,
        6 => 0x4102,
        7 => 0x4200,
        8 => 0x0401,
        9 => 0x4101,
        10 => 0x4103,
        11 => 0x4201,
        12 => 0x4202,
        13 => 0x4203,
        14 => 0x4204,
        18 => 0x4303,
        21 => 0x0300,
        22 => 0x0402,
        23 => 0x0403,
        24 => 0x0405,
        _ => return None,
    };
    Some(opcode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cxl_send_command_match_agrees_with_the_table() {
        for id in 0..CXL_MEM_COMMAND_ID_MAX + 8 {
            let table = CXL_SEND_COMMAND_OPCODES.get(id as usize).copied().filter(|op| *op != 0);
            assert_eq!(cxl_send_command_opcode(id), table, "id {id}");
        }
    }

    #[derive(Clone, Copy)]
    enum Style {
        Kebab,
        UpperSnake,
    }

    fn check(cat: &Catalog, style: Style) {
        assert!(!cat.is_empty());
        for w in cat.entries.windows(2) {
            assert!(w[0].0 < w[1].0, "not strictly sorted at {:#x}/{:#x}", w[0].0, w[1].0);
        }
        for (i, &(op, a)) in cat.entries.iter().enumerate() {
            assert!(!a.is_empty());
            let ok = match style {
                Style::Kebab => a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                Style::UpperSnake => {
                    a.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                }
            };
            assert!(ok, "bad name style: {a}");
            assert!(!a.starts_with(['-', '_']) && !a.ends_with(['-', '_']), "{a}");
            for &(_, b) in &cat.entries[i + 1..] {
                assert!(!names_match(a, b), "duplicate name {a} / {b}");
            }
            // Round trips, including the folded spellings.
            assert_eq!(cat.name(op), Some(a));
            assert_eq!(cat.opcode(a), Some(op));
        }
    }

    #[test]
    fn nvme_admin_table() {
        check(&NVME_ADMIN, Style::Kebab);
        assert_eq!(NVME_ADMIN.len(), 48);
        assert_eq!(NVME_ADMIN.name(0x80), Some("format-nvm"));
        assert_eq!(NVME_ADMIN.name(0x10), Some("firmware-commit"));
        assert_eq!(NVME_ADMIN.name(0x11), Some("firmware-image-download"));
        assert_eq!(NVME_ADMIN.name(0x84), Some("sanitize"));
        assert_eq!(NVME_ADMIN.name(0x7f), Some("fabrics-commands"));
        assert_eq!(NVME_ADMIN.name(0x03), None);
        assert_eq!(NVME_ADMIN.name(0xc0), None);
        assert_eq!(NVME_ADMIN.opcode("FORMAT_NVM"), Some(0x80));
        assert_eq!(NVME_ADMIN.opcode("Security_Send"), Some(0x81));
    }

    #[test]
    fn nvme_io_table() {
        check(&NVME_IO, Style::Kebab);
        assert_eq!(NVME_IO.len(), 19);
        assert_eq!(NVME_IO.name(0x7d), Some("zone-append"));
        assert_eq!(NVME_IO.opcode("write_zeroes"), Some(0x08));
    }

    #[test]
    fn mlx5_table() {
        check(&MLX5, Style::UpperSnake);
        // 11 CONFIGURATION + 80 DEBUG_READ_ONLY + SET_DIAGNOSTIC_PARAMS + 2 ACCESS_REG*.
        assert_eq!(MLX5.len(), 94);
        assert_eq!(MLX5.name(0x805), Some("ACCESS_REG"));
        assert_eq!(MLX5.name(0x80d), Some("NOP"));
        assert_eq!(MLX5.name(0x109), Some("SET_HCA_CAP"));
        assert_eq!(MLX5.opcode("access-register-user"), Some(0xb0c));
        assert_eq!(MLX5.name(0x102), None); // INIT_HCA: not reachable through fwctl
    }

    #[test]
    fn cxl_mbox_table() {
        check(&CXL_MBOX, Style::Kebab);
        assert_eq!(CXL_MBOX.len(), 42);
        assert_eq!(CXL_MBOX.name(0x4000), Some("identify"));
        assert_eq!(CXL_MBOX.name(0x0502), Some("set-feature"));
        assert_eq!(CXL_MBOX.opcode("GET_SUPPORTED_FEATURES"), Some(0x0500));
        assert_eq!(CXL_MBOX.name(0), None);
    }

    #[test]
    fn scsi_cdb_table() {
        check(&SCSI_CDB, Style::Kebab);
        assert!(SCSI_CDB.entries.iter().all(|&(op, _)| op <= 0xff));
        assert_eq!(SCSI_CDB.name(0x85), Some("ata-16"));
        assert_eq!(SCSI_CDB.name(0xa1), Some("ata-12"));
        assert_eq!(SCSI_CDB.name(0x3b), Some("write-buffer"));
        assert_eq!(SCSI_CDB.opcode("REPORT_LUNS"), Some(0xa0));
    }

    #[test]
    fn pds_table() {
        check(&PDS, Style::Kebab);
        assert_eq!(PDS.opcode("RPC"), Some(71));
    }

    #[test]
    fn bnxt_hwrm_table() {
        check(&BNXT_HWRM, Style::Kebab);
        assert!(BNXT_HWRM.entries.iter().all(|&(op, _)| op <= 0xffff));
        assert_eq!(BNXT_HWRM.name(0xc0), Some("fw-reset"));
        assert_eq!(BNXT_HWRM.opcode("HWRM_NVM_WRITE"), None); // no prefix in names
        assert_eq!(BNXT_HWRM.opcode("nvm_write"), Some(0xfffe));
        assert_eq!(BNXT_HWRM.opcode("nvm-erase-dir-entry"), Some(0xfff7));
    }

    #[test]
    fn cxl_send_command_ids_table() {
        check(&CXL_SEND_COMMAND_IDS, Style::Kebab);
        assert_eq!(CXL_SEND_COMMAND_IDS.len(), CXL_MEM_COMMAND_ID_MAX as usize);
        assert_eq!(CXL_SEND_COMMAND_IDS.name(CXL_MEM_COMMAND_ID_RAW), Some("raw"));
        // Dense: the id is the index.
        for (i, &(id, _)) in CXL_SEND_COMMAND_IDS.entries.iter().enumerate() {
            assert_eq!(id as usize, i);
        }
    }

    #[test]
    fn cxl_send_command_opcodes_follow_cxl_cmd_macro() {
        // CXL_CMD(X, ..) maps CXL_MEM_COMMAND_ID_X to CXL_MBOX_OP_X: names must agree.
        for (id, &op) in CXL_SEND_COMMAND_OPCODES.iter().enumerate() {
            let id_name = CXL_SEND_COMMAND_IDS.name(id as u32).unwrap();
            if op != 0 {
                assert_eq!(CXL_MBOX.name(u32::from(op)), Some(id_name), "id {id}");
            }
        }
        for &(id, op) in &CXL_DEPRECATED_COMMAND_OPCODES {
            assert_eq!(CXL_SEND_COMMAND_OPCODES[id as usize], 0);
            let id_name = CXL_SEND_COMMAND_IDS.name(id).unwrap();
            assert_eq!(CXL_MBOX.name(u32::from(op)), Some(id_name), "id {id}");
        }
    }

    #[test]
    fn cxl_send_command_opcode_lookup() {
        assert_eq!(cxl_send_command_opcode(0), None);
        assert_eq!(cxl_send_command_opcode(1), Some(0x4000));
        assert_eq!(cxl_send_command_opcode(CXL_MEM_COMMAND_ID_RAW), None);
        assert_eq!(cxl_send_command_opcode(3), Some(0x0400));
        assert_eq!(cxl_send_command_opcode(16), None);
        assert_eq!(cxl_send_command_opcode(24), Some(0x0405));
        assert_eq!(cxl_send_command_opcode(CXL_MEM_COMMAND_ID_MAX), None);
        assert_eq!(cxl_send_command_opcode(u32::MAX), None);
    }

    #[test]
    fn name_matching() {
        assert!(names_match("format-nvm", "FORMAT_NVM"));
        assert!(names_match("a_b-c", "A-B_C"));
        assert!(!names_match("format-nvm", "format-nv"));
        assert!(!names_match("format-nvm", "format nvm"));
        assert_eq!(NVME_ADMIN.opcode(""), None);
        const F: Option<&str> = NVME_ADMIN.name(0x80); // usable in const context
        assert_eq!(F, Some("format-nvm"));
    }
}
