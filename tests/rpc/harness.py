"""A tiny test harness for the RPC suite: locating our binaries, running a `criu service` with
--status-fd, raw SOCK_SEQPACKET requests, service health snapshots (fds, children), and a runner
that prints one PASS/FAIL line per test and a RESULT line per script.

Run with /usr/bin/python3 (Debian's pycriu and protobuf live there).

Environment (all optional; `cargo xtask test-rpc` sets them):
  CRIU_RS_CRIU          our `criu` binary            (default: <target>/debug/criu)
  CRIU_RS_SERVER        our `criu-server` binary     (default: <target>/debug/criu-server)
  CRIU_RS_SOCKET        socket of a running service  (default: start one for this script)
  CRIU_RS_SERVICE_PID   pid of that service          (needed with CRIU_RS_SOCKET for leak checks)
  CRIU_RS_WORK          scratch directory             (default: a fresh temporary directory)
"""

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import pycriu.rpc_pb2 as rpc

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(os.path.dirname(HERE))


class TestFailure(Exception):
    """A check that did not hold."""


def expect(condition, message):
    if not condition:
        raise TestFailure(message)


def expect_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


def target_dir():
    configured = os.environ.get("CARGO_TARGET_DIR")
    if configured:
        return configured if os.path.isabs(configured) else os.path.join(WORKSPACE, configured)
    return os.path.join(WORKSPACE, "target")


def binary(env_name, name):
    path = os.environ.get(env_name) or os.path.join(target_dir(), "debug", name)
    if not os.access(path, os.X_OK):
        raise TestFailure("%s is not built (%s); run `cargo build -p criu-cli -p criu-server` "
                          "or `cargo xtask test-rpc`" % (name, path))
    return path


def criu_binary():
    return binary("CRIU_RS_CRIU", "criu")


def server_binary():
    return binary("CRIU_RS_SERVER", "criu-server")


class Service:
    """`criu-server service` on a socket in `workdir`, started with --status-fd and stopped with
    SIGTERM."""

    def __init__(self, workdir, extra_args=(), env=None):
        self.workdir = workdir
        self.socket_path = os.path.join(workdir, "criu_service.socket")
        self.log_path = os.path.join(workdir, "service.log")
        read_end, write_end = os.pipe()
        args = [server_binary(), "service", "--address", self.socket_path,
                "--status-fd", str(write_end), "-W", workdir, "-o", self.log_path, "-v4"]
        args += list(extra_args)
        self.process = subprocess.Popen(args, pass_fds=(write_end,), env=env,
                                        stdin=subprocess.DEVNULL)
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], 10)
            expect(ready, "the service sent nothing on --status-fd within 10 s")
            byte = os.read(read_end, 1)
            expect_eq(byte, b"\0", "readiness byte on --status-fd")
            # The service closes the status fd right after the byte; wait for that, so that its
            # descriptor table is settled before any test counts it.
            ready, _, _ = select.select([read_end], [], [], 10)
            expect(ready and os.read(read_end, 1) == b"",
                   "the service did not close --status-fd after the readiness byte")
        except Exception:
            self.stop()
            raise
        finally:
            os.close(read_end)
        self.pid = self.process.pid

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Context:
    """What every test gets: the service socket and pid, the binaries, a scratch directory."""

    def __init__(self):
        self.owned_service = None
        self.work = os.environ.get("CRIU_RS_WORK") or tempfile.mkdtemp(prefix="criu-rs-rpc-")
        os.makedirs(self.work, exist_ok=True)
        self.criu = criu_binary()
        socket_path = os.environ.get("CRIU_RS_SOCKET")
        if socket_path:
            self.socket_path = socket_path
            pid = os.environ.get("CRIU_RS_SERVICE_PID")
            self.service_pid = int(pid) if pid else None
        else:
            service_dir = tempfile.mkdtemp(prefix="service-", dir=self.work)
            self.owned_service = Service(service_dir)
            self.socket_path = self.owned_service.socket_path
            self.service_pid = self.owned_service.pid
        self.counter = 0

    def scratch(self, name):
        """A fresh directory for one test."""
        self.counter += 1
        path = os.path.join(self.work, "%02d-%s" % (self.counter, name))
        os.makedirs(path)
        return path

    def close(self):
        if self.owned_service:
            self.owned_service.stop()


# --- raw protocol -------------------------------------------------------------------------------

def connect(path, timeout=10):
    """A connected SOCK_SEQPACKET socket. The connect itself is blocking, as real clients do it:
    with the service's listen backlog (16) full it waits for a free slot (bounded by SO_SNDTIMEO)
    instead of failing with EAGAIN as a non-blocking connect would."""
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    seconds = int(timeout)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                  struct.pack("ll", seconds, int((timeout - seconds) * 1e6)))
    sk.connect(path)
    sk.settimeout(timeout)
    return sk


def request(kind, **fields):
    req = rpc.criu_req()
    req.type = kind
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def send(sk, req):
    sk.send(req if isinstance(req, bytes) else req.SerializeToString())


def recv_raw(sk):
    """One packet, sized with MSG_PEEK|MSG_TRUNC; b"" when the server closed the connection."""
    size = len(sk.recv(1, socket.MSG_PEEK | socket.MSG_TRUNC))
    if size == 0:
        return sk.recv(1)
    return sk.recv(size)


def recv(sk):
    """One criu_resp, or None when the server closed the connection without answering."""
    data = recv_raw(sk)
    if not data:
        return None
    resp = rpc.criu_resp()
    resp.ParseFromString(data)
    return resp


def call(path, req, timeout=30):
    """One request on a fresh connection; the answer, or None when closed without one."""
    sk = connect(path, timeout)
    try:
        send(sk, req)
        return recv(sk)
    finally:
        sk.close()


def describe(resp):
    if resp is None:
        return "no answer (connection closed)"
    text = "%s success=%s" % (rpc.criu_req_type.Name(resp.type), resp.success)
    if resp.HasField("cr_errno"):
        text += " cr_errno=%d" % resp.cr_errno
    if resp.HasField("cr_errmsg"):
        text += " cr_errmsg=%r" % resp.cr_errmsg
    return text


def expect_success(resp, kind, what):
    expect(resp is not None, "%s: the server closed the connection without answering" % what)
    expect(resp.type == kind and resp.success,
           "%s: want %s success=True, got %s"
           % (what, rpc.criu_req_type.Name(kind), describe(resp)))


def spawn_swrk(criu, env=None, close_stdio=False, stderr=None):
    """`criu swrk N` over a socketpair, as libcriu does. Returns (process, our socket)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    number = theirs.fileno()

    def close_standard_fds():
        for fd in (0, 1, 2):
            try:
                os.close(fd)
            except OSError:
                pass

    process = subprocess.Popen([criu, "swrk", str(number)], pass_fds=(number,), env=env,
                               stderr=stderr,
                               preexec_fn=close_standard_fds if close_stdio else None)
    theirs.close()
    ours.settimeout(30)
    return process, ours


# --- processes ----------------------------------------------------------------------------------

def start_sleeper(seconds=300):
    """A `sleep` that is its own session leader, as a dumpable tree root without --shell-job."""
    return subprocess.Popen(["sleep", str(seconds)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def process_state(pid):
    """The state letter of /proc/PID/stat (S, R, T, t, Z...), None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def wait_state(pid, state, timeout=5):
    """Waits for a process to reach `state` (a task just resumed from ptrace runs briefly before it
    sleeps again); returns the last state seen."""
    deadline = time.time() + timeout
    while True:
        seen = process_state(pid)
        if seen == state or time.time() > deadline:
            return seen
        time.sleep(0.005)


def kill_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_gone(pid, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return True
        time.sleep(0.05)
    return False


def children_of(pid):
    """(pid, state) of every process whose parent is `pid`, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def service_health(pid):
    """The service's open fd count and its children (workers still running, zombies)."""
    return fd_count(pid), children_of(pid)


def wait_for_health(pid, baseline_fds, timeout=10):
    """Waits until the service is back to `baseline_fds` descriptors and has no children; returns
    the last observation."""
    deadline = time.time() + timeout
    while True:
        fds, children = service_health(pid)
        if fds == baseline_fds and not children:
            return fds, children
        if time.time() > deadline:
            return fds, children
        time.sleep(0.05)


# --- runner -------------------------------------------------------------------------------------

TESTS = []


def test(function):
    TESTS.append(function)
    return function


def main(script_name):
    only = set(sys.argv[1:])
    unknown = only - {function.__name__ for function in TESTS}
    if unknown:
        print("FAIL %s: no such test: %s" % (script_name, ", ".join(sorted(unknown))))
        print("RESULT %s: 0 passed, 1 failed" % script_name, flush=True)
        sys.exit(1)
    try:
        ctx = Context()
    except TestFailure as failure:
        print("FAIL setup (0.00s): %s" % failure)
        print("RESULT %s: 0 passed, 1 failed" % script_name, flush=True)
        sys.exit(1)
    passed = failed = 0
    try:
        for function in TESTS:
            name = function.__name__
            if only and name not in only:
                continue
            started = time.time()
            try:
                function(ctx)
            except TestFailure as failure:
                failed += 1
                print("FAIL %s (%.2fs): %s" % (name, time.time() - started, failure), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s (%.2fs): unexpected exception\n%s"
                      % (name, time.time() - started, traceback.format_exc()), flush=True)
            else:
                passed += 1
                print("PASS %s (%.2fs)" % (name, time.time() - started), flush=True)
    finally:
        ctx.close()
    print("RESULT %s: %d passed, %d failed" % (script_name, passed, failed), flush=True)
    sys.exit(1 if failed else 0)
