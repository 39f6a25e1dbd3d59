# Builds the wire test cases with Debian's python protobuf and pycriu's
# generated modules (CRIU 3.17 protos) and prints "<case> <hex>" per line.
# crates/proto/tests/wire.rs builds the same messages with prost and compares.
import pycriu.rpc_pb2 as rpc
from pycriu.images import core_pb2, creds_pb2, mm_pb2, pagemap_pb2, pstree_pb2, sk_opts_pb2

cases = []

req = rpc.criu_req()
req.type = rpc.DUMP
req.opts.images_dir_fd = 7
req.opts.pid = 4242
req.opts.leave_running = True
req.opts.log_level = 4
req.opts.log_file = "dump.log"
req.opts.shell_job = False
req.opts.exec_cmd.extend(["/bin/true", "", "arg with spaces"])
req.opts.external.extend(["mnt[/a]:a", "dev[1/2]:d"])
veth = req.opts.veths.add()
veth.if_in = "veth0"
veth.if_out = "br0"
req.opts.cpu_cap = 0xFFFFFFFF
req.opts.ghost_limit = 0
req.opts.manage_cgroups_mode = rpc.SOFT
req.opts.pre_dump_mode = rpc.VM_READ
req.opts.network_lock = rpc.NFTABLES
req.opts.ps.address = "127.0.0.1"
req.opts.ps.port = 12345
req.notify_success = True
req.keep_open = True
cases.append(("dump_req", req))

req = rpc.criu_req()
req.type = rpc.RESTORE
req.opts.images_dir_fd = -1
req.opts.inherit_fd.add(key="pipe:[123]", fd=-3)
cases.append(("restore_req_negative_numbers", req))

req = rpc.criu_req()
req.type = rpc.FEATURE_CHECK
req.features.mem_track = True
req.features.lazy_pages = False
req.pid = 0
cases.append(("feature_check_req", req))

resp = rpc.criu_resp()
resp.type = rpc.RESTORE
resp.success = True
resp.restore.pid = 0
cases.append(("restore_resp_required_zero", resp))

resp = rpc.criu_resp()
resp.type = rpc.DUMP
resp.success = False
resp.cr_errno = 3
resp.cr_errmsg = "process 99 not found"
resp.dump.restored = False
cases.append(("dump_resp_failure", resp))

resp = rpc.criu_resp()
resp.type = rpc.VERSION
resp.success = True
resp.version.major_number = 4
resp.version.minor_number = 2
resp.version.gitid = "v4.2"
resp.version.sublevel = 0
cases.append(("version_resp", resp))

resp = rpc.criu_resp()
resp.type = rpc.NOTIFY
resp.success = True
resp.notify.script = "post-dump"
resp.notify.pid = 17
cases.append(("notify_resp", resp))

pstree = pstree_pb2.pstree_entry()
pstree.pid = 100
pstree.ppid = 0
pstree.pgid = 100
pstree.sid = 1
pstree.threads.extend([100, 101, 300000])
cases.append(("pstree_repeated_uint32", pstree))

creds = creds_pb2.creds_entry()
for name in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"):
    setattr(creds, name, 1000)
creds.cap_inh.extend([0, 0])
creds.cap_prm.extend([0xFFFFFFFF, 0x1FF])
creds.cap_eff.extend([0xFFFFFFFF, 0x1FF])
creds.cap_bnd.extend([0xFFFFFFFF, 0x1FF])
creds.secbits = 0
creds.groups.extend([4, 24, 27])
cases.append(("creds_repeated_uint32", creds))

mm = mm_pb2.mm_entry()
for i, name in enumerate(("mm_start_code", "mm_end_code", "mm_start_data", "mm_end_data",
                          "mm_start_stack", "mm_start_brk", "mm_brk", "mm_arg_start",
                          "mm_arg_end", "mm_env_start", "mm_env_end")):
    setattr(mm, name, 0x555555554000 + i * 0x1000)
mm.exe_file_id = 1
mm.mm_saved_auxv.extend([33, 0x7FFFF7FC1000, 6, 4096, 0, 0])
vma = mm.vmas.add()
vma.start = 0x7FFFF7FC1000
vma.end = 0x7FFFF7FC3000
vma.pgoff = 0
vma.shmid = 0
vma.prot = 5
vma.flags = 0x22
vma.status = 0x209
vma.fd = -1
vma.madv = 0
mm.dumpable = 1
cases.append(("mm_repeated_uint64_and_sint64", mm))

sk = sk_opts_pb2.sk_opts_entry()
sk.so_sndbuf = 212992
sk.so_rcvbuf = 212992
sk.so_snd_tmo_sec = 0
sk.so_snd_tmo_usec = 0
sk.so_rcv_tmo_sec = 1
sk.so_rcv_tmo_usec = 500000
sk.so_filter.extend([0x0000000000000006, 0xFFFFFFFF00000006])
cases.append(("sk_opts_repeated_fixed64", sk))

pme = pagemap_pb2.pagemap_entry()
pme.vaddr = 0x7FFFF7FC1000
# CRIU 3.17 calls field 2 "nr_pages"; 4.x renamed it "compat_nr_pages" and
# added a 64-bit nr_pages as field 5.
pme.nr_pages = 2
pme.flags = 2
cases.append(("pagemap_entry", pme))

core = core_pb2.core_entry()
core.mtype = core_pb2.core_entry.X86_64
core.tc.task_state = 1
core.tc.exit_code = 0
core.tc.personality = 0
core.tc.flags = 0x400000
core.tc.blk_sigset = 0
core.tc.comm = "sleep"
core.ids.vm_id = 1
core.ids.files_id = 1
core.ids.fs_id = 1
core.ids.sighand_id = 1
core.thread_core.futex_rla = 0
core.thread_core.futex_rla_len = 24
core.thread_core.sched_nice = -5
ti = core.thread_info
ti.clear_tid_addr = 0x7FFFF7D8FA10
for i, field in enumerate(ti.gpregs.DESCRIPTOR.fields):
    if field.name != "mode":
        setattr(ti.gpregs, field.name, i * 3)
ti.gpregs.mode = 1  # NATIVE
fp = ti.fpregs
fp.cwd = 0x37F
fp.swd = 0
fp.twd = 0
fp.fop = 0
fp.rip = 0
fp.rdp = 0
fp.mxcsr = 0x1F80
fp.mxcsr_mask = 0xFFFF
fp.st_space.extend(range(32))
fp.xmm_space.extend(range(64))
fp.xsave.xstate_bv = 7
fp.xsave.ymmh_space.extend([1, 2, 3, 4])
# Never both in a real image, but it pins down the encoding order of fields
# 2..5 against 6..13, which CRIU's core.proto declares out of order.
arm = core.ti_arm
arm.clear_tid_addr = 0x10000
arm.tls = 0x20000
for i, field in enumerate(arm.gpregs.DESCRIPTOR.fields):
    setattr(arm.gpregs, field.name, 1000 + i)
arm.fpstate.vfp_regs.extend([1, 2**63])
arm.fpstate.fpscr = 1
arm.fpstate.fpexc = 2
arm.fpstate.fpinst = 3
arm.fpstate.fpinst2 = 4
cases.append(("core_entry_field_order", core))

for name, message in cases:
    print(name, message.SerializeToString().hex())
