#!/usr/bin/python3
"""Debian's pycriu (3.17, unmodified) as the client: `use_sk` against our `criu service` and
`use_binary` with our `criu` (pycriu spawns `criu swrk N` itself, with fds 0-2 closed)."""

import errno
import os
import signal

import pycriu
import pycriu.rpc_pb2 as rpc

from harness import (describe, expect, expect_eq, expect_success, kill_pid, main, recv, request,
                     send, spawn_swrk, start_sleeper, test, wait_gone)


def client(ctx, mode):
    criu = pycriu.criu()
    if mode == "sk":
        criu.use_sk(ctx.socket_path)
    else:
        criu.use_binary(ctx.criu)
    return criu


def version(criu):
    # pycriu 3.17 has no get_version(); send the request through its own transport.
    return criu._send_req_and_recv_resp(request(rpc.VERSION))


def images_options(criu, directory, **fields):
    criu.opts = rpc.criu_opts()
    criu.opts.images_dir_fd = os.open(directory, os.O_DIRECTORY)
    for name, value in fields.items():
        setattr(criu.opts, name, value)
    return criu.opts.images_dir_fd


def check_version(ctx, mode):
    resp = version(client(ctx, mode))
    expect_success(resp, rpc.VERSION, "pycriu %s VERSION" % mode)
    expect_eq((resp.version.major_number, resp.version.minor_number), (4, 2), "version")


def check_check(ctx, mode):
    client(ctx, mode).check()


def dump_and_restore(ctx, mode):
    images = ctx.scratch("pycriu-%s" % mode)
    criu = client(ctx, mode)
    sleeper = start_sleeper()
    pid = sleeper.pid
    fd = images_options(criu, images, pid=pid, log_file="dump.log", log_level=4)
    try:
        dumped = criu.dump()
        expect(not dumped.restored, "plain dump said restored")
        sleeper.wait(10)
        expect(wait_gone(pid, 10), "pid %d still taken after the dump" % pid)
        os.close(fd)
        fd = images_options(criu, images, log_file="restore.log", log_level=4)
        restored = criu.restore()
        expect_eq(restored.pid, pid, "restored pid")
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            expect(cmdline.read().startswith(b"sleep\0"), "restored process is not the sleep")
    finally:
        os.close(fd)
        kill_pid(pid)
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


@test
def use_sk_version(ctx):
    check_version(ctx, "sk")


@test
def use_binary_version(ctx):
    check_version(ctx, "binary")


@test
def use_sk_check(ctx):
    check_check(ctx, "sk")


@test
def use_binary_check(ctx):
    check_check(ctx, "binary")


@test
def use_sk_dump_and_restore_a_sleep(ctx):
    dump_and_restore(ctx, "sk")


@test
def use_binary_dump_and_restore_a_sleep(ctx):
    dump_and_restore(ctx, "binary")


@test
def use_binary_dump_of_a_missing_pid_raises_esrch(ctx):
    images = ctx.scratch("pycriu-esrch")
    sleeper = start_sleeper()
    gone = sleeper.pid
    sleeper.kill()
    sleeper.wait()
    wait_gone(gone)
    criu = client(ctx, "binary")
    fd = images_options(criu, images, pid=gone, log_file="dump.log")
    try:
        criu.dump()
    except pycriu.CRIUExceptionExternal as error:
        expect_eq(error.errno, errno.ESRCH, "errno")
        expect("No process with such pid" in str(error), "message %r" % str(error))
    else:
        raise AssertionError("dumping pid %d succeeded" % gone)
    finally:
        os.close(fd)


@test
def use_sk_restore_onto_a_taken_pid_raises_eexist(ctx):
    images = ctx.scratch("pycriu-eexist")
    criu = client(ctx, "sk")
    sleeper = start_sleeper()
    fd = images_options(criu, images, pid=sleeper.pid, leave_running=True, log_file="dump.log")
    try:
        criu.dump()
        os.close(fd)
        fd = images_options(criu, images, log_file="restore.log")
        try:
            criu.restore()
        except pycriu.CRIUExceptionExternal as error:
            expect_eq(error.errno, errno.EEXIST, "errno")
            expect("Process with requested pid already exists" in str(error),
                   "message %r" % str(error))
        else:
            raise AssertionError("restore over the running pid %d succeeded" % sleeper.pid)
    finally:
        os.close(fd)
        sleeper.kill()
        sleeper.wait()


@test
def use_sk_page_server_chld_then_wait_pid(ctx):
    images = ctx.scratch("pycriu-ps")
    criu = client(ctx, "sk")
    fd = images_options(criu, images, log_file="ps.log")
    try:
        criu.opts.ps.port = 0
        info = criu.page_server_chld()
        expect(info.pid > 0 and info.port > 0, "page server info %r" % info)
        os.kill(info.pid, signal.SIGKILL)
        status = criu.wait_pid(info.pid)
        expect(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
               "wait status %#x" % status)
    finally:
        os.close(fd)


@test
def swrk_with_stdio_closed_serves_and_logs_to_its_file(ctx):
    images = ctx.scratch("swrk-closed-stdio")
    fd = os.open(images, os.O_DIRECTORY)
    process, sk = spawn_swrk(ctx.criu, close_stdio=True)
    try:
        for kind in (rpc.VERSION, rpc.FEATURE_CHECK):
            req = request(kind, keep_open=True)
            send(sk, req)
            expect_success(recv(sk), kind, "%s with fds 0-2 closed" % rpc.criu_req_type.Name(kind))
        # A CPUINFO_CHECK without cpuinfo.img fails: its error must reach the log file (not a
        # closed fd 1/2, and not the socket if the log had been opened onto a low number).
        req = request(rpc.CPUINFO_CHECK)
        req.opts.images_dir_fd = fd
        req.opts.log_file = "closed-stdio.log"
        req.opts.log_level = 4
        send(sk, req)
        resp = recv(sk)
        expect(resp is not None and resp.type == rpc.CPUINFO_CHECK and not resp.success,
               "want CPUINFO_CHECK failure, got %s" % describe(resp))
        # As in CRIU, CPUINFO_*/CHECK exit 0 once their (failure) answer went out.
        expect_eq(process.wait(10), 0, "swrk exit code after an answered CPUINFO_CHECK")
        with open(os.path.join(images, "closed-stdio.log")) as log:
            text = log.read()
        expect("cpuinfo" in text and "Error" in text,
               "the failure is not in the log file: %r (answer: %s)" % (text, describe(resp)))
    finally:
        sk.close()
        os.close(fd)


if __name__ == "__main__":
    main("test_pycriu")
