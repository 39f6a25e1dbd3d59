//! Byte-for-byte comparison of prost's encoding of our types with Debian's
//! python protobuf encoding the same messages through pycriu's generated
//! modules (CRIU 3.17 protos, which CRIU's C side matches on these fields).
//!
//! The python half is `tests/py/wire_cases.py`; each case here must build the
//! very same message. The cases cover required fields holding zero, negative
//! int32 (10-byte varints), unpacked repeated uint32/uint64/fixed64, sint
//! zig-zag, nested and repeated messages, and the field order of `core_entry`,
//! whose upstream declaration is not in field-number order.

use std::collections::BTreeMap;
use std::process::Command;

use criu_proto::*;
use prost::Message;

const PYTHON: &str = "/usr/bin/python3";

/// Runs the python half and returns `case name -> encoded bytes`.
fn python_encodings() -> BTreeMap<String, Vec<u8>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/wire_cases.py");
    let output = Command::new(PYTHON)
        .arg(script)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {PYTHON} {script}: {err}"));
    assert!(
        output.status.success(),
        "{script} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("python output is UTF-8")
        .lines()
        .map(|line| {
            let (name, hex) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("malformed line from python: {line:?}"));
            (name.to_owned(), decode_hex(hex))
        })
        .collect()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex length: {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tags of the top-level fields of an encoded message, in wire order.
fn top_level_tags(mut bytes: &[u8]) -> Vec<u32> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (byte, rest) = bytes.split_first().expect("truncated varint");
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint longer than 10 bytes");
    }
    let mut tags = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        tags.push(u32::try_from(key >> 3).expect("tag fits u32"));
        match key & 7 {
            0 => {
                varint(&mut bytes);
            }
            1 => bytes = &bytes[8..],
            2 => {
                let len = usize::try_from(varint(&mut bytes)).expect("length fits usize");
                bytes = &bytes[len..];
            }
            5 => bytes = &bytes[4..],
            wire_type => panic!("unexpected wire type {wire_type}"),
        }
    }
    tags
}

/// One case: our message, checked against python's bytes both ways.
struct Case {
    name: &'static str,
    encoded: Vec<u8>,
    /// Decodes python's bytes into our type and re-encodes them.
    reencode_python: fn(&[u8]) -> Vec<u8>,
}

fn case<M: Message + Default + PartialEq + std::fmt::Debug>(
    name: &'static str,
    message: &M,
) -> Case {
    fn reencode<M: Message + Default>(bytes: &[u8]) -> Vec<u8> {
        M::decode(bytes)
            .unwrap_or_else(|err| panic!("python bytes do not decode: {err}"))
            .encode_to_vec()
    }
    let encoded = message.encode_to_vec();
    let decoded = M::decode(encoded.as_slice()).expect("our own bytes decode");
    assert_eq!(
        &decoded, message,
        "{name}: round trip through prost changed the message"
    );
    Case {
        name,
        encoded,
        reencode_python: reencode::<M>,
    }
}

fn dump_req() -> CriuReq {
    CriuReq {
        r#type: CriuReqType::Dump as i32,
        opts: Some(CriuOpts {
            images_dir_fd: 7,
            pid: Some(4242),
            leave_running: Some(true),
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            shell_job: Some(false),
            exec_cmd: vec!["/bin/true".into(), String::new(), "arg with spaces".into()],
            external: vec!["mnt[/a]:a".into(), "dev[1/2]:d".into()],
            veths: vec![CriuVethPair {
                if_in: "veth0".into(),
                if_out: "br0".into(),
            }],
            cpu_cap: Some(0xffff_ffff),
            ghost_limit: Some(0),
            manage_cgroups_mode: Some(CriuCgMode::Soft as i32),
            pre_dump_mode: Some(CriuPreDumpMode::VmRead as i32),
            network_lock: Some(CriuNetworkLockMethod::Nftables as i32),
            ps: Some(CriuPageServerInfo {
                address: Some("127.0.0.1".into()),
                port: Some(12345),
                ..Default::default()
            }),
            ..Default::default()
        }),
        notify_success: Some(true),
        keep_open: Some(true),
        ..Default::default()
    }
}

fn x86_gpregs() -> UserX86RegsEntry {
    // Python sets field i (declaration order, mode excluded) to 3 * i.
    let v = |i: u64| 3 * i;
    UserX86RegsEntry {
        r15: v(0),
        r14: v(1),
        r13: v(2),
        r12: v(3),
        bp: v(4),
        bx: v(5),
        r11: v(6),
        r10: v(7),
        r9: v(8),
        r8: v(9),
        ax: v(10),
        cx: v(11),
        dx: v(12),
        si: v(13),
        di: v(14),
        orig_ax: v(15),
        ip: v(16),
        cs: v(17),
        flags: v(18),
        sp: v(19),
        ss: v(20),
        fs_base: v(21),
        gs_base: v(22),
        ds: v(23),
        es: v(24),
        fs: v(25),
        gs: v(26),
        mode: Some(UserX86RegsMode::Native as i32),
    }
}

fn arm_gpregs() -> UserArmRegsEntry {
    let v = |i: u32| 1000 + i;
    UserArmRegsEntry {
        r0: v(0),
        r1: v(1),
        r2: v(2),
        r3: v(3),
        r4: v(4),
        r5: v(5),
        r6: v(6),
        r7: v(7),
        r8: v(8),
        r9: v(9),
        r10: v(10),
        fp: v(11),
        ip: v(12),
        sp: v(13),
        lr: v(14),
        pc: v(15),
        cpsr: v(16),
        orig_r0: v(17),
    }
}

fn core_entry() -> CoreEntry {
    CoreEntry {
        mtype: core_entry::March::X8664 as i32,
        thread_info: Some(ThreadInfoX86 {
            clear_tid_addr: 0x7fff_f7d8_fa10,
            gpregs: x86_gpregs(),
            fpregs: UserX86FpregsEntry {
                cwd: 0x37f,
                mxcsr: 0x1f80,
                mxcsr_mask: 0xffff,
                st_space: (0..32).collect(),
                xmm_space: (0..64).collect(),
                xsave: Some(UserX86XsaveEntry {
                    xstate_bv: 7,
                    ymmh_space: vec![1, 2, 3, 4],
                    ..Default::default()
                }),
                ..Default::default()
            },
            tls: Vec::new(),
        }),
        tc: Some(TaskCoreEntry {
            task_state: 1,
            flags: 0x40_0000,
            comm: "sleep".into(),
            ..Default::default()
        }),
        ids: Some(TaskKobjIdsEntry {
            vm_id: 1,
            files_id: 1,
            fs_id: 1,
            sighand_id: 1,
            ..Default::default()
        }),
        thread_core: Some(ThreadCoreEntry {
            futex_rla_len: 24,
            sched_nice: Some(-5),
            ..Default::default()
        }),
        ti_arm: Some(ThreadInfoArm {
            clear_tid_addr: 0x10000,
            tls: 0x20000,
            gpregs: arm_gpregs(),
            fpstate: UserArmVfpstateEntry {
                vfp_regs: vec![1, 1 << 63],
                fpscr: 1,
                fpexc: 2,
                fpinst: 3,
                fpinst2: 4,
            },
        }),
        ..Default::default()
    }
}

fn all_cases() -> Vec<Case> {
    vec![
        case("dump_req", &dump_req()),
        case(
            "restore_req_negative_numbers",
            &CriuReq {
                r#type: CriuReqType::Restore as i32,
                opts: Some(CriuOpts {
                    images_dir_fd: -1,
                    inherit_fd: vec![InheritFd {
                        key: "pipe:[123]".into(),
                        fd: -3,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        case(
            "feature_check_req",
            &CriuReq {
                r#type: CriuReqType::FeatureCheck as i32,
                features: Some(CriuFeatures {
                    mem_track: Some(true),
                    lazy_pages: Some(false),
                    pidfd_store: None,
                }),
                pid: Some(0),
                ..Default::default()
            },
        ),
        case(
            "restore_resp_required_zero",
            &CriuResp {
                r#type: CriuReqType::Restore as i32,
                success: true,
                restore: Some(CriuRestoreResp { pid: 0 }),
                ..Default::default()
            },
        ),
        case(
            "dump_resp_failure",
            &CriuResp {
                r#type: CriuReqType::Dump as i32,
                success: false,
                dump: Some(CriuDumpResp {
                    restored: Some(false),
                }),
                cr_errno: Some(3),
                cr_errmsg: Some("process 99 not found".into()),
                ..Default::default()
            },
        ),
        case(
            "version_resp",
            &CriuResp {
                r#type: CriuReqType::Version as i32,
                success: true,
                version: Some(CriuVersion {
                    major_number: 4,
                    minor_number: 2,
                    gitid: Some("v4.2".into()),
                    sublevel: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
        case(
            "notify_resp",
            &CriuResp {
                r#type: CriuReqType::Notify as i32,
                success: true,
                notify: Some(CriuNotify {
                    script: Some("post-dump".into()),
                    pid: Some(17),
                }),
                ..Default::default()
            },
        ),
        case(
            "pstree_repeated_uint32",
            &PstreeEntry {
                pid: 100,
                ppid: 0,
                pgid: 100,
                sid: 1,
                threads: vec![100, 101, 300_000],
            },
        ),
        case(
            "creds_repeated_uint32",
            &CredsEntry {
                uid: 1000,
                gid: 1000,
                euid: 1000,
                egid: 1000,
                suid: 1000,
                sgid: 1000,
                fsuid: 1000,
                fsgid: 1000,
                cap_inh: vec![0, 0],
                cap_prm: vec![0xffff_ffff, 0x1ff],
                cap_eff: vec![0xffff_ffff, 0x1ff],
                cap_bnd: vec![0xffff_ffff, 0x1ff],
                secbits: 0,
                groups: vec![4, 24, 27],
                ..Default::default()
            },
        ),
        case(
            "mm_repeated_uint64_and_sint64",
            &MmEntry {
                mm_start_code: 0x5555_5555_4000,
                mm_end_code: 0x5555_5555_5000,
                mm_start_data: 0x5555_5555_6000,
                mm_end_data: 0x5555_5555_7000,
                mm_start_stack: 0x5555_5555_8000,
                mm_start_brk: 0x5555_5555_9000,
                mm_brk: 0x5555_5555_a000,
                mm_arg_start: 0x5555_5555_b000,
                mm_arg_end: 0x5555_5555_c000,
                mm_env_start: 0x5555_5555_d000,
                mm_env_end: 0x5555_5555_e000,
                exe_file_id: 1,
                mm_saved_auxv: vec![33, 0x7fff_f7fc_1000, 6, 4096, 0, 0],
                vmas: vec![VmaEntry {
                    start: 0x7fff_f7fc_1000,
                    end: 0x7fff_f7fc_3000,
                    pgoff: 0,
                    shmid: 0,
                    prot: 5,
                    flags: 0x22,
                    status: 0x209,
                    fd: -1,
                    madv: Some(0),
                    fdflags: None,
                }],
                dumpable: Some(1),
                ..Default::default()
            },
        ),
        case(
            "sk_opts_repeated_fixed64",
            &SkOptsEntry {
                so_sndbuf: 212_992,
                so_rcvbuf: 212_992,
                so_rcv_tmo_sec: 1,
                so_rcv_tmo_usec: 500_000,
                so_filter: vec![6, 0xffff_ffff_0000_0006],
                ..Default::default()
            },
        ),
        case(
            "pagemap_entry",
            &PagemapEntry {
                vaddr: 0x7fff_f7fc_1000,
                compat_nr_pages: 2,
                flags: Some(2),
                ..Default::default()
            },
        ),
        case("core_entry_field_order", &core_entry()),
    ]
}

#[test]
fn prost_encoding_matches_python_protobuf_byte_for_byte() {
    let python = python_encodings();
    let cases = all_cases();
    assert_eq!(
        python.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<_> = cases.iter().map(|c| c.name.to_owned()).collect();
            names.sort();
            names
        }
        .iter()
        .collect::<Vec<_>>(),
        "the python script and this test must define the same cases"
    );
    for case in &cases {
        let theirs = &python[case.name];
        assert_eq!(
            to_hex(&case.encoded),
            to_hex(theirs),
            "case {}: prost and python encodings differ",
            case.name
        );
        assert_eq!(
            to_hex(&(case.reencode_python)(theirs)),
            to_hex(theirs),
            "case {}: python's bytes do not survive decode + encode by prost",
            case.name
        );
    }
}

#[test]
fn repeated_scalars_are_unpacked() {
    // Packed would be one length-delimited record (key 0x2a for field 5);
    // unpacked is one varint record per element (key 0x28).
    let pstree = PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1, 2, 3],
    };
    let bytes = pstree.encode_to_vec();
    assert_eq!(top_level_tags(&bytes), vec![1, 2, 3, 4, 5, 5, 5]);
    assert!(
        !bytes.contains(&0x2a),
        "packed encoding in {}",
        to_hex(&bytes)
    );
    assert_eq!(&bytes[bytes.len() - 6..], &[0x28, 1, 0x28, 2, 0x28, 3]);
}

#[test]
fn fields_are_encoded_in_field_number_order() {
    // CRIU's rpc.proto declares images_dir (68) right after images_dir_fd (1)
    // and core.proto puts 6..13 before 3..5; protobuf-c and python write in
    // number order, and so does prost (it sorts by tag, not by declaration).
    // Python 3.17 has no images_dir, so this is checked on the tags.
    let opts = CriuOpts {
        images_dir_fd: -1,
        images_dir: Some("/tmp/img".into()),
        pid: Some(5),
        log_to_stderr: Some(true),
        leave_stopped: Some(true),
        unprivileged: Some(true),
        ..Default::default()
    };
    assert_eq!(
        top_level_tags(&opts.encode_to_vec()),
        vec![1, 2, 67, 68, 69, 71]
    );
    let tags = top_level_tags(&core_entry().encode_to_vec());
    assert_eq!(tags, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn required_fields_are_encoded_even_when_zero() {
    assert_eq!(CriuRestoreResp { pid: 0 }.encode_to_vec(), vec![0x08, 0x00]);
    let resp = CriuResp {
        r#type: CriuReqType::Empty as i32,
        success: false,
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec(), vec![0x08, 0x00, 0x10, 0x00]);
    // Defaults declared in the .proto reach the Rust defaults.
    let opts = CriuOpts::default();
    assert_eq!(opts.images_dir_fd, -1);
    assert_eq!(opts.log_level(), 2);
    assert_eq!(opts.cpu_cap(), 0xffff_ffff);
    assert_eq!(opts.ghost_limit(), 0x10_0000);
    assert_eq!(opts.pre_dump_mode(), CriuPreDumpMode::Splice);
    assert_eq!(opts.network_lock(), CriuNetworkLockMethod::Iptables);
    assert_eq!(RegFileEntry::default().mnt_id(), -1);
    assert_eq!(PacketSockEntry::default().fanout(), 0xffff_ffff);
    let tls = UserDescT::default();
    assert!(tls.read_exec_only && tls.seg_not_present);
}
