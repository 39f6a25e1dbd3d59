#!/usr/bin/python3
"""Debian's pycriu (3.17, unmodified) as the client: `use_sk` against our `criu service` and
`use_binary` with our `criu` (pycriu spawns `criu swrk N` itself, with fds 0-2 closed)."""

import errno
import glob
import os
import signal
import struct
import subprocess
import sys
import time

import pycriu
import pycriu.rpc_pb2 as rpc

from harness import (describe, expect, expect_eq, expect_success, kill_pid, main, process_state,
                     recv, request, send, spawn_swrk, start_sleeper, test, wait_gone)


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


# A target whose memory changes between iterations: 2048 pages, each starting with its index. On
# SIGUSR1 it rewrites the next 16 pages with the generation number and writes the generation to
# `gen`; on SIGUSR2 it checks every page against what it wrote and writes "ok" or the first
# mismatch to `verdict`.
TRACKED_TARGET = r"""
import os, signal, struct, sys, time
work = sys.argv[1]
PAGES, PAGE = 2048, 4096
memory = bytearray(PAGES * PAGE)
stamps = [0] * PAGES
for page in range(PAGES):
    memory[page * PAGE:page * PAGE + 8] = struct.pack("<II", page, 0)
generation = [0]
def put(name, text):
    with open(os.path.join(work, name + ".tmp"), "w") as f:
        f.write(text)
    os.rename(os.path.join(work, name + ".tmp"), os.path.join(work, name))
def write_more(*_):
    generation[0] += 1
    for page in range(16 * (generation[0] - 1), 16 * generation[0]):
        memory[page * PAGE:page * PAGE + 8] = struct.pack("<II", page, generation[0])
        stamps[page] = generation[0]
    put("gen", str(generation[0]))
def verify(*_):
    for page in range(PAGES):
        got = struct.unpack("<II", bytes(memory[page * PAGE:page * PAGE + 8]))
        if got != (page, stamps[page]):
            put("verdict", "page %d holds %r, want %r" % (page, got, (page, stamps[page])))
            return
    put("verdict", "ok")
signal.signal(signal.SIGUSR1, write_more)
signal.signal(signal.SIGUSR2, verify)
put("ready", "ready")
while True:
    time.sleep(1)
"""


def wait_file(path, want=None, timeout=10):
    """The contents of `path` once it exists (and equals `want`, if given)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                text = f.read()
            if want is None or text == want:
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError("%s did not show %r within %d s" % (path, want, timeout))


def varint_fields(message):
    """{field number: value} of the varint fields of a protobuf message (enough for pagemap_entry)."""
    fields, position = {}, 0
    while position < len(message):
        key, position = read_varint(message, position)
        if key & 7 != 0:
            raise AssertionError("pagemap_entry field %d is not a varint" % (key >> 3))
        fields[key >> 3], position = read_varint(message, position)
    return fields


def read_varint(data, position):
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7f) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


PE_PARENT = 1


def parent_pages(images):
    """Pages the task pagemaps of `images` leave to the parent images (PE_PARENT).

    Read by hand: pycriu 3.17 predates pagemap_entry.nr_pages (field 5; CRIU 4.x writes
    compat_nr_pages, field 2, as 0 beside it), so its decoder sees every entry as 0 pages."""
    total = 0
    for path in glob.glob(os.path.join(images, "pagemap-*.img")):
        if os.path.basename(path).startswith("pagemap-shmem"):
            continue
        with open(path, "rb") as f:
            data = f.read()
        position = 8  # the common and the pagemap magic
        first = True
        while position < len(data):
            size = struct.unpack_from("<I", data, position)[0]
            message = data[position + 4:position + 4 + size]
            position += 4 + size
            if first:  # pagemap_head
                first = False
                continue
            fields = varint_fields(message)
            in_parent = fields.get(3) == 1 or fields.get(4, 0) & PE_PARENT
            if in_parent:
                total += fields.get(5, fields.get(2, 0))
    return total


def pre_dump_chain_and_restore(ctx, mode):
    """pre-dump, pre-dump on it, dump on that (each a separate request, as p.haul and runc do),
    then restore the chain: untouched pages come from the first pre-dump, the rest from later ones."""
    work = ctx.scratch("pycriu-%s-pre-dump-chain" % mode)
    dirs = [os.path.join(work, name) for name in ("pre1", "pre2", "final")]
    for directory in dirs:
        os.makedirs(directory)
    target = subprocess.Popen([sys.executable, "-c", TRACKED_TARGET, work], start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    pid = target.pid
    fds = []
    try:
        wait_file(os.path.join(work, "ready"))
        for step, directory in enumerate(dirs):
            criu = client(ctx, mode)
            fields = dict(pid=pid, log_file="dump.log", log_level=4)
            if step > 0:
                fields["parent_img"] = "../" + os.path.basename(dirs[step - 1])
            fds.append(images_options(criu, directory, **fields))
            if step < 2:
                criu.pre_dump()
                expect(process_state(pid) not in (None, "Z"), "pre-dump %d left the target dead" % step)
                os.kill(pid, signal.SIGUSR1)
                wait_file(os.path.join(work, "gen"), str(step + 1))
            else:
                criu.dump()
        target.wait(10)
        expect(wait_gone(pid, 10), "pid %d still taken after the dump" % pid)
        # 2048 pages of which the target rewrote 32 between the iterations: with dirty tracking
        # nearly all of the buffer is left to the parents.
        for directory in dirs[1:]:
            in_parent = parent_pages(directory)
            expect(in_parent >= 1500, "%s leaves only %d pages to its parent"
                   % (os.path.basename(directory), in_parent))
        criu = client(ctx, mode)
        fds.append(images_options(criu, dirs[2], log_file="restore.log", log_level=4))
        restored = criu.restore()
        expect_eq(restored.pid, pid, "restored pid")
        os.kill(pid, signal.SIGUSR2)
        expect_eq(wait_file(os.path.join(work, "verdict")), "ok", "restored memory")
    finally:
        for fd in fds:
            os.close(fd)
        kill_pid(pid)
        if target.poll() is None:
            target.kill()
            target.wait()


@test
def use_binary_pre_dump_chain_keeps_untouched_pages_in_parents(ctx):
    pre_dump_chain_and_restore(ctx, "binary")


@test
def use_sk_pre_dump_chain_keeps_untouched_pages_in_parents(ctx):
    pre_dump_chain_and_restore(ctx, "sk")


if __name__ == "__main__":
    main("test_pycriu")
