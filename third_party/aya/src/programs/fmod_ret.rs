//! Modify return (`fmod_ret`) programs.

use aya_obj::{
    btf::{Btf, BtfKind},
    generated::{bpf_attach_type::BPF_MODIFY_RETURN, bpf_prog_type::BPF_PROG_TYPE_TRACING},
};

use crate::programs::{
    FdLink, FdLinkId, ProgramData, ProgramError, ProgramType, define_link_wrapper,
    load_program_with_attach_type, utils::attach_raw_tracepoint,
};

/// A program that can change the return value of a kernel function.
///
/// [`FModRet`] (`BPF_MODIFY_RETURN`) programs run after
/// [fentry](crate::programs::FEntry) programs and before the body of the
/// kernel function. Their context holds the function's arguments followed by
/// the return value so far, which is 0. If the program returns 0, the next
/// [`FModRet`] program runs, then the function itself. If it returns any other
/// value, the remaining [`FModRet`] programs and the whole body of the function
/// are skipped and that value becomes the function's return value.
/// [fexit](crate::programs::FExit) programs run in both cases and see the
/// final return value.
///
/// The verifier does not check the range of the returned value. For functions
/// that return an error code, such as the `security_*` LSM hooks, a program
/// must return either 0 or a negative errno.
///
/// The kernel accepts [`FModRet`] programs only for functions whose name starts
/// with `security_` and for functions on the error injection list (marked with
/// `ALLOW_ERROR_INJECTION`); loading the program for any other function fails.
/// Unlike [`Lsm`](crate::programs::Lsm) programs, [`FModRet`] programs on
/// `security_*` functions run whether or not the BPF LSM is active.
///
/// Like other tracing programs, an [`FModRet`] program is not run when it is
/// already running on the same CPU (the kernel counts this in the program's
/// `recursion_misses`); the function then proceeds as if the program had
/// returned 0.
///
/// # Minimum kernel version
///
/// The minimum kernel version required to use this feature is 5.7.
///
/// # Examples
///
/// ```no_run
/// # #[derive(thiserror::Error, Debug)]
/// # enum Error {
/// #     #[error(transparent)]
/// #     BtfError(#[from] aya::BtfError),
/// #     #[error(transparent)]
/// #     Program(#[from] aya::programs::ProgramError),
/// #     #[error(transparent)]
/// #     Ebpf(#[from] aya::EbpfError),
/// # }
/// # let mut bpf = Ebpf::load_file("ebpf_programs.o")?;
/// use aya::{Ebpf, programs::FModRet, BtfError, Btf};
///
/// let btf = Btf::from_sys_fs()?;
/// let program: &mut FModRet = bpf.program_mut("file_ioctl").unwrap().try_into()?;
/// program.load("security_file_ioctl", &btf)?;
/// program.attach()?;
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[doc(alias = "BPF_MODIFY_RETURN")]
#[doc(alias = "BPF_PROG_TYPE_TRACING")]
pub struct FModRet {
    pub(crate) data: ProgramData<FModRetLink>,
}

impl FModRet {
    /// The type of the program according to the kernel.
    pub const PROGRAM_TYPE: ProgramType = ProgramType::Tracing;

    /// Loads the program inside the kernel.
    ///
    /// Loads the program so it's executed when the kernel function `fn_name`
    /// is entered, before the function's body. The `btf` argument must contain
    /// the BTF info for the running kernel.
    pub fn load(&mut self, fn_name: &str, btf: &Btf) -> Result<(), ProgramError> {
        let Self { data } = self;
        data.attach_btf_id = Some(btf.id_by_type_name_kind(fn_name, BtfKind::Func)?);
        load_program_with_attach_type(BPF_PROG_TYPE_TRACING, BPF_MODIFY_RETURN, data)
    }

    /// Attaches the program.
    ///
    /// The returned value can be used to detach, see [`FModRet::detach`].
    pub fn attach(&mut self) -> Result<FModRetLinkId, ProgramError> {
        attach_raw_tracepoint(&mut self.data, None)
    }
}

define_link_wrapper!(FModRetLink, FModRetLinkId, FdLink, FdLinkId, FModRet);

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, ffi::CString, io};

    use assert_matches::assert_matches;
    use aya_obj::{
        Function, ProgramSection,
        btf::{BtfError, BtfType, Func, FuncLinkage, FuncProto, Int, IntEncoding},
        generated::{BPF_ALU64, BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV, bpf_cmd, bpf_insn},
    };
    use libc::EINVAL;

    use super::*;
    use crate::{
        VerifierLogLevel,
        sys::{Syscall, override_syscall},
    };

    const FN_NAME: &str = "security_file_ioctl";
    // `fake_btf` adds `int`, the prototype and then the function.
    const FN_BTF_ID: u32 = 3;

    fn fake_btf() -> Btf {
        let mut btf = Btf::new();
        let int_name = btf.add_string("int");
        let int_id = btf.add_type(BtfType::Int(Int::new(int_name, 4, IntEncoding::Signed, 0)));
        let proto_id = btf.add_type(BtfType::FuncProto(FuncProto::new(Vec::new(), int_id)));
        let fn_name = btf.add_string(FN_NAME);
        let fn_id = btf.add_type(BtfType::Func(Func::new(
            fn_name,
            proto_id,
            FuncLinkage::Global,
        )));
        assert_eq!(fn_id, FN_BTF_ID);
        btf
    }

    fn fake_program() -> FModRet {
        let insn = |code: u32| bpf_insn {
            code: code as u8,
            _bitfield_align_1: [],
            _bitfield_1: bpf_insn::new_bitfield_1(0, 0),
            off: 0,
            imm: 0,
        };
        let program = aya_obj::Program {
            license: CString::new("GPL").unwrap(),
            kernel_version: None,
            section: ProgramSection::FModRet { sleepable: false },
            section_index: 0,
            address: 0,
        };
        let function = Function {
            address: 0,
            name: "deny".to_owned(),
            section_index: object::SectionIndex(0),
            section_offset: 0,
            // r0 = 0; exit
            instructions: vec![insn(BPF_ALU64 | BPF_MOV | BPF_K), insn(BPF_JMP | BPF_EXIT)],
            func_info: Default::default(),
            line_info: Default::default(),
            func_info_rec_size: 0,
            line_info_rec_size: 0,
        };
        FModRet {
            data: ProgramData::new(
                Some(Cow::Borrowed("deny")),
                (program, function),
                None,
                VerifierLogLevel::default(),
            ),
        }
    }

    #[test]
    fn test_load_uses_modify_return_and_function_btf_id() {
        override_syscall(|call| match call {
            Syscall::Ebpf {
                cmd: bpf_cmd::BPF_PROG_LOAD,
                attr,
            } => {
                let attr = unsafe { &attr.__bindgen_anon_3 };
                assert_eq!(attr.prog_type, BPF_PROG_TYPE_TRACING as u32);
                assert_eq!(attr.expected_attach_type, BPF_MODIFY_RETURN as u32);
                assert_eq!(attr.attach_btf_id, FN_BTF_ID);
                assert_eq!(attr.insn_cnt, 2);
                Ok(crate::MockableFd::mock_signed_fd().into())
            }
            _ => Err((-1, io::Error::from_raw_os_error(EINVAL))),
        });

        let mut program = fake_program();
        program.load(FN_NAME, &fake_btf()).unwrap();
        assert_matches!(program.fd(), Ok(_));
    }

    #[test]
    fn test_load_unknown_function() {
        // The BTF lookup fails before any syscall.
        override_syscall(|_| Err((-1, io::Error::from_raw_os_error(EINVAL))));

        let mut program = fake_program();
        assert_matches!(
            program.load("security_does_not_exist", &fake_btf()),
            Err(ProgramError::Btf(BtfError::UnknownBtfTypeName { type_name }))
                if type_name == "security_does_not_exist"
        );
    }

    #[test]
    fn test_attach_take_link_detach() {
        override_syscall(|call| match call {
            Syscall::Ebpf {
                cmd: bpf_cmd::BPF_PROG_LOAD,
                ..
            } => Ok(crate::MockableFd::mock_signed_fd().into()),
            Syscall::Ebpf {
                cmd: bpf_cmd::BPF_RAW_TRACEPOINT_OPEN,
                attr,
            } => {
                let attr = unsafe { &attr.raw_tracepoint };
                // A tracing program is attached to the function it was loaded
                // for, so no name is passed.
                assert_eq!(attr.name, 0);
                assert_eq!(attr.prog_fd, crate::MockableFd::mock_unsigned_fd());
                Ok(crate::MockableFd::mock_signed_fd().into())
            }
            _ => Err((-1, io::Error::from_raw_os_error(EINVAL))),
        });

        let mut program = fake_program();
        program.load(FN_NAME, &fake_btf()).unwrap();

        let link_id = program.attach().unwrap();
        let link = program.take_link(link_id).unwrap();
        let link: FdLink = link.into();
        drop(link);

        let link_id = program.attach().unwrap();
        program.detach(link_id).unwrap();
        assert_matches!(
            program.detach(FModRetLinkId(FdLinkId(crate::MockableFd::mock_signed_fd()))),
            Err(ProgramError::NotAttached)
        );
    }
}
