/*
 * A 32-bit caller of NVMe admin passthrough, for the compat-ioctl attack test
 * (tests/src/tests/attacks.rs). Freestanding i386 (no libc: the test machines have no
 * 32-bit libc): `nvme32 DEVICE OPCODE` opens DEVICE, sends NVME_IOCTL_ADMIN_CMD with
 * OPCODE (decimal) and nsid 1 through the 32-bit ioctl entry point (int 0x80, so the
 * kernel takes compat_sys_ioctl), and exits with 0 on success or the errno.
 * Built by tests/build.rs with `gcc -m32 -static -nostdlib -ffreestanding`.
 */
typedef unsigned int u32;
typedef unsigned char u8;

/* struct nvme_passthru_cmd (include/uapi/linux/nvme_ioctl.h): 72 bytes, same layout
 * for 32- and 64-bit callers. */
struct nvme_passthru_cmd {
	u8 opcode, flags;
	unsigned short rsvd1;
	u32 nsid, cdw2, cdw3;
	u32 metadata_lo, metadata_hi, addr_lo, addr_hi;
	u32 metadata_len, data_len;
	u32 cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
	u32 timeout_ms, result;
};

#define NVME_IOCTL_ADMIN_CMD 0xC0484E41u

static int sys3(int nr, int a, int b, int c)
{
	int ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}

static void leave(int code)
{
	sys3(1, code, 0, 0); /* exit */
	for (;;)
		;
}

static int decimal(const char *s)
{
	int v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return v;
}

void entry(int *stack)
{
	int argc = stack[0];
	char **argv = (char **)&stack[1];
	struct nvme_passthru_cmd cmd;
	u8 *p = (u8 *)&cmd;
	int fd, ret;
	unsigned i;

	if (argc != 3)
		leave(100);
	for (i = 0; i < sizeof(cmd); i++)
		p[i] = 0;
	cmd.opcode = (u8)decimal(argv[2]);
	cmd.nsid = 1;
	fd = sys3(5, (int)argv[1], 2 /* O_RDWR */, 0); /* open */
	if (fd < 0)
		leave(101);
	ret = sys3(54, fd, (int)NVME_IOCTL_ADMIN_CMD, (int)&cmd); /* ioctl */
	leave(ret < 0 ? -ret : 0);
}

/* The kernel enters at _start with the stack holding argc, argv[], NULL, envp[]. */
__asm__(".globl _start\n_start:\n\tpushl %esp\n\tcall entry\n");
