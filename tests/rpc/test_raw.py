#!/usr/bin/python3
"""The RPC protocol over raw SOCK_SEQPACKET sockets, one criu_req per packet: what each request type
answers, keep_open, the PRE_DUMP sequence, option errors, descriptor passing and config precedence.
Every check is against CRIU 4.2's observable behaviour (docs: CRIU-FACTS.md section 1)."""

import errno
import os
import subprocess
import time

import pycriu.images
import pycriu.rpc_pb2 as rpc

from harness import (call, connect, describe, expect, expect_eq, expect_success, kill_pid,
                     main, recv, request, send, spawn_swrk, start_sleeper, test, wait_gone,
                     wait_state)


def open_dir(path, at=None):
    """An O_DIRECTORY descriptor, optionally moved to number `at`."""
    fd = os.open(path, os.O_DIRECTORY)
    if at is not None and fd != at:
        os.dup2(fd, at)
        os.close(fd)
        fd = at
    return fd


def with_images(kind, images_fd, **opts):
    req = request(kind)
    req.opts.images_dir_fd = images_fd
    for name, value in opts.items():
        setattr(req.opts, name, value)
    return req


@test
def version_reports_criu_4_2(ctx):
    resp = call(ctx.socket_path, request(rpc.VERSION))
    expect_success(resp, rpc.VERSION, "VERSION")
    expect_eq((resp.version.major_number, resp.version.minor_number), (4, 2), "version")
    # A gitid would make runc/go-criu/libcriu round the version up to 4.3.
    expect(not resp.version.HasField("gitid"), "gitid must be absent, got %r" % resp.version.gitid)


@test
def check_succeeds_on_this_kernel(ctx):
    resp = call(ctx.socket_path, request(rpc.CHECK))
    expect_success(resp, rpc.CHECK, "CHECK")


@test
def feature_check_answers_all_three_and_tests_only_the_requested(ctx):
    req = request(rpc.FEATURE_CHECK)
    req.features.mem_track = True
    req.features.lazy_pages = True
    req.features.pidfd_store = True
    resp = call(ctx.socket_path, req)
    expect_success(resp, rpc.FEATURE_CHECK, "FEATURE_CHECK all")
    for name in ("mem_track", "lazy_pages", "pidfd_store"):
        expect(resp.features.HasField(name), "features.%s missing" % name)
    # pidfd_open and pidfd_getfd exist on every kernel this project targets (>= 5.6).
    expect(resp.features.pidfd_store, "pidfd_store should be available on this kernel")

    none = request(rpc.FEATURE_CHECK)
    none.features.mem_track = False
    resp = call(ctx.socket_path, none)
    expect_success(resp, rpc.FEATURE_CHECK, "FEATURE_CHECK none")
    expect_eq((resp.features.mem_track, resp.features.lazy_pages, resp.features.pidfd_store),
              (False, False, False), "untested features")

    # The C server's helper crashes on a missing `features`; we treat it as "none requested".
    resp = call(ctx.socket_path, request(rpc.FEATURE_CHECK))
    expect_success(resp, rpc.FEATURE_CHECK, "FEATURE_CHECK without features")
    expect(not resp.features.pidfd_store, "pidfd_store was not requested")


@test
def cpuinfo_dump_writes_the_image_and_check_accepts_it(ctx):
    images = ctx.scratch("cpuinfo")
    fd = open_dir(images)
    try:
        resp = call(ctx.socket_path, with_images(rpc.CPUINFO_DUMP, fd, log_file="cpuinfo.log"))
        expect_success(resp, rpc.CPUINFO_DUMP, "CPUINFO_DUMP")
        expect(os.path.exists(os.path.join(images, "cpuinfo.img")), "cpuinfo.img not written")
        expect(os.path.exists(os.path.join(images, "cpuinfo.log")), "log not in the images dir")
        resp = call(ctx.socket_path, with_images(rpc.CPUINFO_CHECK, fd))
        expect_success(resp, rpc.CPUINFO_CHECK, "CPUINFO_CHECK")
    finally:
        os.close(fd)


@test
def cpuinfo_check_of_a_richer_cpu_fails_with_enotsup(ctx):
    images = ctx.scratch("cpuinfo-mismatch")
    fd = open_dir(images)
    try:
        expect_success(call(ctx.socket_path, with_images(rpc.CPUINFO_DUMP, fd)),
                       rpc.CPUINFO_DUMP, "CPUINFO_DUMP")
        path = os.path.join(images, "cpuinfo.img")
        with open(path, "rb") as image:
            loaded = pycriu.images.load(image)
        entry = loaded["entries"][0]["x86_entry"][0]
        # A feature this CPU lacks (bit 62 of XCR0 is reserved) makes the image "from a richer CPU".
        entry["xfeatures_mask"] = int(entry["xfeatures_mask"]) | (1 << 62)
        with open(path, "wb") as image:
            pycriu.images.dump(loaded, image)
        resp = call(ctx.socket_path, with_images(rpc.CPUINFO_CHECK, fd))
        expect(resp is not None and resp.type == rpc.CPUINFO_CHECK and not resp.success,
               "want CPUINFO_CHECK failure, got %s" % describe(resp))
        expect_eq(resp.cr_errno, errno.ENOTSUP, "cr_errno")
    finally:
        os.close(fd)


@test
def cpuinfo_dump_without_images_dir_fails_and_says_why(ctx):
    resp = call(ctx.socket_path, with_images(rpc.CPUINFO_DUMP, -1))
    expect(resp is not None and resp.type == rpc.CPUINFO_DUMP and not resp.success,
           "want CPUINFO_DUMP failure, got %s" % describe(resp))
    expect("Neither images_dir_fd nor images_dir" in resp.cr_errmsg,
           "cr_errmsg %r" % resp.cr_errmsg)


@test
def wait_pid_of_a_process_that_is_not_the_workers_child_fails(ctx):
    sleeper = start_sleeper()
    try:
        resp = call(ctx.socket_path, request(rpc.WAIT_PID, pid=sleeper.pid))
        expect(resp is not None and resp.type == rpc.WAIT_PID and not resp.success,
               "want WAIT_PID failure, got %s" % describe(resp))
        expect(sleeper.poll() is None, "the sleeper must not be affected")
    finally:
        sleeper.kill()
        sleeper.wait()


@test
def wait_pid_collects_a_page_server_child_on_a_kept_connection(ctx):
    images = ctx.scratch("ps-chld")
    fd = open_dir(images)
    sk = connect(ctx.socket_path)
    try:
        req = with_images(rpc.PAGE_SERVER_CHLD, fd, log_file="ps.log")
        req.opts.ps.port = 0
        req.keep_open = True
        send(sk, req)
        resp = recv(sk)
        expect_success(resp, rpc.PAGE_SERVER, "PAGE_SERVER_CHLD")
        expect(resp.ps.pid > 0 and resp.ps.port > 0, "ps info %r" % resp.ps)
        kill_pid(resp.ps.pid)
        send(sk, request(rpc.WAIT_PID, pid=resp.ps.pid))
        resp = recv(sk)
        expect_success(resp, rpc.WAIT_PID, "WAIT_PID")
        # Raw wait status of a SIGKILLed child: the signal number in the low 7 bits.
        expect_eq(resp.status & 0x7f, 9, "wait status signal")
    finally:
        sk.close()
        os.close(fd)


@test
def page_server_daemon_answers_page_server_with_its_pid_and_port(ctx):
    images = ctx.scratch("ps-daemon")
    fd = open_dir(images)
    try:
        req = with_images(rpc.PAGE_SERVER, fd, log_file="ps.log")
        req.opts.ps.port = 0
        resp = call(ctx.socket_path, req)
        expect_success(resp, rpc.PAGE_SERVER, "PAGE_SERVER")
        expect(resp.ps.pid > 0 and resp.ps.port > 0, "ps info %r" % resp.ps)
        expect(os.path.exists("/proc/%d" % resp.ps.pid), "the page server is not running")
        # A daemon: not a child of the service (nor of its worker, which has exited).
        with open("/proc/%d/stat" % resp.ps.pid) as stat:
            parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        expect(parent != ctx.service_pid, "the daemon page server is the service's child")
        kill_pid(resp.ps.pid)
    finally:
        os.close(fd)


@test
def single_pre_dump_is_answered_as_single_pre_dump_and_leaves_the_tree_running(ctx):
    images = ctx.scratch("single-pre-dump")
    fd = open_dir(images)
    sleeper = start_sleeper()
    try:
        resp = call(ctx.socket_path, with_images(rpc.SINGLE_PRE_DUMP, fd, pid=sleeper.pid,
                                                 log_file="pre.log"), timeout=60)
        expect(resp is not None and resp.type == rpc.SINGLE_PRE_DUMP,
               "want a SINGLE_PRE_DUMP answer, got %s" % describe(resp))
        if not resp.success:
            print("  note: SINGLE_PRE_DUMP failed: %s" % resp.cr_errmsg.strip(), flush=True)
        expect(sleeper.poll() is None, "pre-dump must leave the tree running")
        state = wait_state(sleeper.pid, "S")
        expect(state == "S", "tree left in state %s" % state)
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


@test
def empty_notify_and_unknown_types_get_empty_failure(ctx):
    for name, packet in (("EMPTY", request(rpc.EMPTY).SerializeToString()),
                         ("NOTIFY", request(rpc.NOTIFY, notify_success=True).SerializeToString()),
                         # type 77: field 1 varint; python protobuf refuses to build it.
                         ("type 77", b"\x08\x4d")):
        resp = call(ctx.socket_path, packet)
        expect(resp is not None, "%s: no answer" % name)
        expect(resp.type == rpc.EMPTY and not resp.success, "%s: got %s" % (name, describe(resp)))
        expect("Invalid req" in resp.cr_errmsg, "%s: cr_errmsg %r" % (name, resp.cr_errmsg))


@test
def keep_open_serves_more_requests_on_whitelisted_types(ctx):
    images = ctx.scratch("keep-open")
    fd = open_dir(images)
    sk = connect(ctx.socket_path)
    try:
        for kind in (rpc.VERSION, rpc.FEATURE_CHECK, rpc.CPUINFO_DUMP, rpc.CPUINFO_CHECK,
                     rpc.VERSION):
            req = with_images(kind, fd) if kind in (rpc.CPUINFO_DUMP, rpc.CPUINFO_CHECK) \
                else request(kind)
            req.keep_open = True
            send(sk, req)
            expect_success(recv(sk), kind, "keep_open %s" % rpc.criu_req_type.Name(kind))
        # The last request without keep_open ends the connection after its answer.
        send(sk, request(rpc.VERSION))
        expect_success(recv(sk), rpc.VERSION, "final VERSION")
        try:
            send(sk, request(rpc.VERSION))
            leftover = recv(sk)
        except (BrokenPipeError, ConnectionResetError):
            leftover = None
        expect(leftover is None, "connection still served after a request without keep_open: %s"
               % describe(leftover))
    finally:
        sk.close()
        os.close(fd)


@test
def keep_open_on_other_types_closes_without_answer(ctx):
    sleeper = start_sleeper()
    try:
        for req in (request(rpc.CHECK, keep_open=True),
                    request(rpc.WAIT_PID, pid=1, keep_open=True),
                    with_images(rpc.DUMP, -1, pid=sleeper.pid)):
            if req.type == rpc.DUMP:
                req.keep_open = True
            resp = call(ctx.socket_path, req)
            expect(resp is None, "%s with keep_open answered: %s"
                   % (rpc.criu_req_type.Name(req.type), describe(resp)))
        expect(sleeper.poll() is None, "a refused DUMP must not touch the tree")
    finally:
        sleeper.kill()
        sleeper.wait()


@test
def pre_dump_then_anything_but_dump_is_a_bad_req_seq(ctx):
    images = ctx.scratch("pre-dump")
    fd = open_dir(images)
    sleeper = start_sleeper()
    sk = connect(ctx.socket_path, timeout=60)
    try:
        send(sk, with_images(rpc.PRE_DUMP, fd, pid=sleeper.pid, log_file="pre.log", log_level=4))
        resp = recv(sk)
        expect_success(resp, rpc.PRE_DUMP, "PRE_DUMP")
        send(sk, request(rpc.VERSION))
        resp = recv(sk)
        expect(resp is not None and resp.type == rpc.EMPTY and not resp.success,
               "want EMPTY failure, got %s" % describe(resp))
        expect("Bad req seq" in resp.cr_errmsg, "cr_errmsg %r" % resp.cr_errmsg)
        expect(sleeper.poll() is None, "pre-dump must leave the tree running")
    finally:
        sk.close()
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


@test
def pre_dump_then_dump_on_the_same_connection(ctx):
    pre = ctx.scratch("pre-then-dump-1")
    final = os.path.join(pre, "..", os.path.basename(pre) + "-final")
    os.makedirs(final)
    pre_fd, final_fd = open_dir(pre), open_dir(final)
    sleeper = start_sleeper()
    sk = connect(ctx.socket_path, timeout=60)
    try:
        send(sk, with_images(rpc.PRE_DUMP, pre_fd, pid=sleeper.pid, log_file="pre.log"))
        expect_success(recv(sk), rpc.PRE_DUMP, "PRE_DUMP")
        send(sk, with_images(rpc.DUMP, final_fd, pid=sleeper.pid, log_file="dump.log",
                             leave_running=True,
                             parent_img="../" + os.path.basename(pre)))
        expect_success(recv(sk), rpc.DUMP, "DUMP after PRE_DUMP")
        expect(os.path.islink(os.path.join(final, "parent")), "parent symlink missing")
        expect(os.path.exists(os.path.join(final, "inventory.img")), "inventory.img missing")
        expect(sleeper.poll() is None, "leave_running dump must leave the tree running")
    finally:
        sk.close()
        os.close(pre_fd)
        os.close(final_fd)
        sleeper.kill()
        sleeper.wait()


@test
def log_file_with_a_slash_is_refused_with_ebadrqc(ctx):
    images = ctx.scratch("log-slash")
    fd = open_dir(images)
    sleeper = start_sleeper()
    try:
        resp = call(ctx.socket_path, with_images(rpc.DUMP, fd, pid=sleeper.pid,
                                                 log_file="sub/dump.log"))
        expect(resp is not None and resp.type == rpc.DUMP and not resp.success,
               "want DUMP failure, got %s" % describe(resp))
        expect_eq(resp.cr_errno, errno.EBADRQC, "cr_errno")
        expect("No subdirs are allowed in log_file name" in resp.cr_errmsg,
               "cr_errmsg %r" % resp.cr_errmsg)
        expect(sleeper.poll() is None, "refused options must not touch the tree")
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


@test
def images_dir_fd_is_reopened_from_the_clients_fd_table(ctx):
    images = ctx.scratch("fd-passing")
    # A number the service surely has no descriptor at: only /proc/<client>/fd/ can resolve it.
    fd = open_dir(images, at=347)
    try:
        resp = call(ctx.socket_path, with_images(rpc.CPUINFO_DUMP, fd, log_file="fd.log"))
        expect_success(resp, rpc.CPUINFO_DUMP, "CPUINFO_DUMP via fd 347")
        expect(os.path.exists(os.path.join(images, "cpuinfo.img")), "image not in the fd's dir")
    finally:
        os.close(fd)
    # The same number, now closed in the client: the server must fail, not use something of its own.
    resp = call(ctx.socket_path, with_images(rpc.CPUINFO_DUMP, 347))
    expect(resp is not None and resp.type == rpc.CPUINFO_DUMP and not resp.success,
           "closed images_dir_fd: got %s" % describe(resp))


@test
def work_dir_fd_receives_the_log(ctx):
    images = ctx.scratch("work-images")
    work = ctx.scratch("work-dir")
    images_fd, work_fd = open_dir(images), open_dir(work)
    try:
        req = with_images(rpc.CPUINFO_DUMP, images_fd, log_file="work.log")
        req.opts.work_dir_fd = work_fd
        expect_success(call(ctx.socket_path, req), rpc.CPUINFO_DUMP, "CPUINFO_DUMP")
        expect(os.path.exists(os.path.join(work, "work.log")), "log not in the work dir")
        expect(not os.path.exists(os.path.join(images, "work.log")), "log in the images dir")
        expect(os.path.exists(os.path.join(images, "cpuinfo.img")), "image not in images dir")
    finally:
        os.close(images_fd)
        os.close(work_fd)


@test
def rpc_config_file_overrides_the_rpc_log_file(ctx):
    images = ctx.scratch("rpc-config")
    config = os.path.join(images, "..", "rpc-config.conf")
    with open(config, "w") as conf:
        conf.write("log-file from-config.log\n")
    fd = open_dir(images)
    try:
        req = with_images(rpc.CPUINFO_DUMP, fd, log_file="from-rpc.log",
                          config_file=os.path.abspath(config))
        expect_success(call(ctx.socket_path, req), rpc.CPUINFO_DUMP, "CPUINFO_DUMP")
        expect(os.path.exists(os.path.join(images, "from-config.log")),
               "opts.config_file must override the RPC log_file")
        expect(not os.path.exists(os.path.join(images, "from-rpc.log")),
               "the RPC log_file was used despite opts.config_file")
    finally:
        os.close(fd)


@test
def env_config_file_does_not_override_the_rpc_log_file(ctx):
    images = ctx.scratch("env-config")
    config = os.path.abspath(os.path.join(images, "..", "env-config.conf"))
    with open(config, "w") as conf:
        conf.write("log-file from-env.log\n")
    env = dict(os.environ, CRIU_CONFIG_FILE=config)
    fd = open_dir(images)
    process, sk = spawn_swrk(ctx.criu, env=env)
    try:
        send(sk, with_images(rpc.CPUINFO_DUMP, fd, log_file="from-rpc.log"))
        expect_success(recv(sk), rpc.CPUINFO_DUMP, "CPUINFO_DUMP via swrk")
        expect(os.path.exists(os.path.join(images, "from-rpc.log")),
               "the RPC log_file must win over $CRIU_CONFIG_FILE")
        expect(not os.path.exists(os.path.join(images, "from-env.log")),
               "$CRIU_CONFIG_FILE overrode the RPC log_file")
    finally:
        sk.close()
        os.close(fd)
        process.wait(10)


@test
def swrk_with_a_broken_env_config_exits_1_before_any_request(ctx):
    config = os.path.join(ctx.scratch("broken-config"), "broken.conf")
    with open(config, "w") as conf:
        conf.write("hopefully-this-option-will-never=exist\n")
    process, sk = spawn_swrk(ctx.criu, env=dict(os.environ, CRIU_CONFIG_FILE=config),
                             stderr=subprocess.PIPE)
    try:
        _, stderr = process.communicate(timeout=10)
        expect_eq(process.returncode, 1, "swrk exit code with a bad config file")
        expect(b"hopefully-this-option-will-never" in stderr,
               "the error does not name the bad option: %r" % stderr)
    finally:
        sk.close()


@test
def swrk_serves_one_request_and_exits_0(ctx):
    process, sk = spawn_swrk(ctx.criu)
    try:
        send(sk, request(rpc.VERSION))
        expect_success(recv(sk), rpc.VERSION, "swrk VERSION")
        expect_eq(process.wait(10), 0, "swrk exit code after one request")
    finally:
        sk.close()


@test
def swrk_with_keep_open_exits_when_the_client_closes(ctx):
    process, sk = spawn_swrk(ctx.criu)
    for _ in range(3):
        send(sk, request(rpc.VERSION, keep_open=True))
        expect_success(recv(sk), rpc.VERSION, "swrk keep_open VERSION")
    time.sleep(0.1)
    expect(process.poll() is None, "keep_open swrk exited while the client still holds the socket")
    sk.close()
    expect_eq(process.wait(10), 0, "swrk exit code after the client closed")


@test
def swrk_failed_request_exits_nonzero(ctx):
    process, sk = spawn_swrk(ctx.criu, stderr=subprocess.DEVNULL)
    try:
        send(sk, request(rpc.EMPTY))
        resp = recv(sk)
        expect(resp is not None and resp.type == rpc.EMPTY and not resp.success,
               "got %s" % describe(resp))
        expect(process.wait(10) != 0, "swrk should exit non-zero after a failed request")
    finally:
        sk.close()


@test
def swrk_usage_needs_exactly_one_argument(ctx):
    for args in ([], ["3", "4"]):
        done = subprocess.run([ctx.criu, "swrk"] + args, capture_output=True, text=True, timeout=10)
        expect_eq(done.returncode, 1, "exit code of `criu swrk %s`" % " ".join(args))
        expect("Usage: criu swrk <fd>" in done.stdout + done.stderr,
               "usage text missing: %r" % (done.stdout + done.stderr))


@test
def dump_of_a_missing_pid_fails_with_esrch(ctx):
    images = ctx.scratch("dump-esrch")
    fd = open_dir(images)
    sleeper = start_sleeper()
    gone = sleeper.pid
    sleeper.kill()
    sleeper.wait()
    wait_gone(gone)
    try:
        resp = call(ctx.socket_path, with_images(rpc.DUMP, fd, pid=gone, log_file="esrch.log"))
        expect(resp is not None and resp.type == rpc.DUMP and not resp.success,
               "want DUMP failure, got %s" % describe(resp))
        expect_eq(resp.cr_errno, errno.ESRCH, "cr_errno (%s)" % describe(resp))
    finally:
        os.close(fd)


def dump_with_notifications(ctx, name, answer_for):
    """DUMP (leave_running) with notify_scripts; `answer_for(action)` gives the criu_req to send
    back for each NOTIFY. Returns (actions seen, final answer, the sleeper)."""
    images = ctx.scratch(name)
    fd = open_dir(images)
    sleeper = start_sleeper()
    sk = connect(ctx.socket_path, timeout=60)
    actions = []
    try:
        send(sk, with_images(rpc.DUMP, fd, pid=sleeper.pid, notify_scripts=True,
                             leave_running=True, log_file="dump.log"))
        while True:
            resp = recv(sk)
            if resp is None or resp.type != rpc.NOTIFY:
                return actions, resp, sleeper, images
            expect(resp.success, "NOTIFY with success=false")
            actions.append((resp.notify.script,
                            resp.notify.pid if resp.notify.HasField("pid") else None))
            send(sk, answer_for(resp.notify.script))
    finally:
        sk.close()
        os.close(fd)


@test
def dump_notifies_each_action_and_waits_for_the_clients_answer(ctx):
    actions, final, sleeper, images = dump_with_notifications(
        ctx, "notify-ok", lambda action: request(rpc.NOTIFY, notify_success=True))
    try:
        expect_success(final, rpc.DUMP, "DUMP with notify_scripts")
        names = [action for action, _ in actions]
        expect(names[:1] == ["pre-dump"], "first action %r" % names)
        expect("post-dump" in names, "no post-dump in %r" % names)
        expect(names.index("post-dump") > 0, "post-dump before pre-dump: %r" % names)
        expect(all(pid is None for _, pid in actions), "dump actions carry no pid: %r" % actions)
        expect(os.path.exists(os.path.join(images, "inventory.img")), "no inventory.img")
    finally:
        sleeper.kill()
        sleeper.wait()


@test
def a_notify_answered_with_failure_fails_the_dump(ctx):
    actions, final, sleeper, images = dump_with_notifications(
        ctx, "notify-refused", lambda action: request(rpc.NOTIFY, notify_success=False))
    try:
        expect_eq([action for action, _ in actions], ["pre-dump"], "actions before the refusal")
        expect(final is not None and final.type == rpc.DUMP and not final.success,
               "want DUMP failure, got %s" % describe(final))
        expect("RPC client reported script error" in final.cr_errmsg,
               "cr_errmsg %r" % final.cr_errmsg)
        expect(sleeper.poll() is None, "the tree died")
        expect(not os.path.exists(os.path.join(images, "inventory.img")),
               "a failed dump left inventory.img")
    finally:
        sleeper.kill()
        sleeper.wait()


@test
def a_notify_answered_with_another_request_type_fails_the_dump(ctx):
    actions, final, sleeper, _ = dump_with_notifications(
        ctx, "notify-wrong-type", lambda action: request(rpc.VERSION))
    try:
        expect_eq(len(actions), 1, "NOTIFY messages before the failure")
        expect(final is not None and final.type == rpc.DUMP and not final.success,
               "want DUMP failure, got %s" % describe(final))
        expect(sleeper.poll() is None, "the tree died")
    finally:
        sleeper.kill()
        sleeper.wait()


@test
def dump_and_restore_of_a_session_leader_sleep(ctx):
    images = ctx.scratch("dump-restore")
    fd = open_dir(images)
    sleeper = start_sleeper()
    pid = sleeper.pid
    try:
        resp = call(ctx.socket_path, with_images(rpc.DUMP, fd, pid=pid, log_file="dump.log",
                                                 log_level=4), timeout=60)
        expect_success(resp, rpc.DUMP, "DUMP")
        expect(not resp.dump.restored, "a plain dump must say restored=false")
        sleeper.wait(10)
        expect(wait_gone(pid, 10), "pid %d still taken after the dump" % pid)
        resp = call(ctx.socket_path, with_images(rpc.RESTORE, fd, log_file="restore.log",
                                                 log_level=4), timeout=60)
        expect_success(resp, rpc.RESTORE, "RESTORE")
        expect_eq(resp.restore.pid, pid, "restored root pid")
        expect(os.path.exists("/proc/%d" % pid), "restored process not running")
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            expect(cmdline.read().startswith(b"sleep\0"), "restored process is not the sleep")
    finally:
        os.close(fd)
        kill_pid(pid)
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


@test
def restore_onto_a_taken_pid_fails_with_eexist(ctx):
    images = ctx.scratch("restore-eexist")
    fd = open_dir(images)
    sleeper = start_sleeper()
    try:
        resp = call(ctx.socket_path, with_images(rpc.DUMP, fd, pid=sleeper.pid,
                                                 leave_running=True, log_file="dump.log"),
                    timeout=60)
        expect_success(resp, rpc.DUMP, "DUMP leave_running")
        expect(sleeper.poll() is None, "leave_running dump killed the tree")
        resp = call(ctx.socket_path, with_images(rpc.RESTORE, fd, log_file="restore.log"),
                    timeout=60)
        expect(resp is not None and resp.type == rpc.RESTORE and not resp.success,
               "want RESTORE failure, got %s" % describe(resp))
        expect_eq(resp.restore.pid, -1, "restore.pid on failure")
        expect_eq(resp.cr_errno, errno.EEXIST, "cr_errno (%s)" % describe(resp))
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


if __name__ == "__main__":
    main("test_raw")
