#!/usr/bin/python3
"""Load test of `criu service`: N connections (default 500) from C concurrent client processes
(default 20), alternating VERSION and CHECK, one request per connection as CRIU clients do. Every
request must be answered with success. Prints requests/s and latency percentiles; `--json` prints
one JSON object instead (for `cargo xtask bench`).

  /usr/bin/python3 tests/rpc/load.py [--socket PATH] [--connections N] [--clients C] [--json]

Without --socket (or $CRIU_RS_SOCKET) it starts its own service from the built criu-server."""

import argparse
import json
import multiprocessing
import os
import sys
import time

import pycriu.rpc_pb2 as rpc

from harness import Context, TestFailure, call, request, service_health, wait_for_health

KINDS = {"VERSION": rpc.VERSION, "CHECK": rpc.CHECK}


def one_client(job):
    """Runs this client's share of the connections; returns (kind, seconds, ok, detail) each."""
    socket_path, indexes = job
    results = []
    for index in indexes:
        name = "VERSION" if index % 2 == 0 else "CHECK"
        started = time.perf_counter()
        try:
            resp = call(socket_path, request(KINDS[name]), timeout=30)
            ok = resp is not None and resp.type == KINDS[name] and resp.success
            detail = "" if ok else ("no answer" if resp is None else str(resp).replace("\n", " "))
        except OSError as error:
            ok, detail = False, repr(error)
        results.append((name, time.perf_counter() - started, ok, detail))
    return results


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def run(socket_path, connections, clients):
    shares = [(socket_path, list(range(client, connections, clients))) for client in range(clients)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        per_client = pool.map(one_client, shares)
    elapsed = time.perf_counter() - started
    results = [result for share in per_client for result in share]
    latencies = sorted(seconds for _, seconds, _, _ in results)
    failures = [(name, detail) for name, _, ok, detail in results if not ok]
    by_kind = {}
    for name, seconds, _, _ in results:
        by_kind.setdefault(name, []).append(seconds)
    return {
        "connections": connections,
        "clients": clients,
        "answered_ok": len(results) - len(failures),
        "failures": len(failures),
        "first_failures": [{"request": name, "detail": detail} for name, detail in failures[:5]],
        "elapsed_s": round(elapsed, 4),
        "requests_per_s": round(len(results) / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1e3, 3),
            "p90": round(percentile(latencies, 0.90) * 1e3, 3),
            "p99": round(percentile(latencies, 0.99) * 1e3, 3),
            "max": round(latencies[-1] * 1e3, 3) if latencies else 0.0,
        },
        "latency_p99_ms_by_request": {
            name: round(percentile(sorted(values), 0.99) * 1e3, 3)
            for name, values in sorted(by_kind.items())
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default=os.environ.get("CRIU_RS_SOCKET"),
                        help="service socket (default: start a service)")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.connections < 1 or args.clients < 1:
        parser.error("--connections and --clients must be at least 1")

    if args.socket:
        os.environ["CRIU_RS_SOCKET"] = args.socket
    started = time.time()
    try:
        ctx = Context()
    except TestFailure as failure:
        if args.json:
            print(json.dumps({"passed": False, "error": str(failure)}, indent=2))
        else:
            print("FAIL load_all_requests_answered (%.2fs): %s" % (time.time() - started, failure))
            print("RESULT load: 0 passed, 1 failed", flush=True)
        sys.exit(1)
    try:
        baseline = service_health(ctx.service_pid)[0] if ctx.service_pid else None
        report = run(ctx.socket_path, args.connections, min(args.clients, args.connections))
        leaks = []
        if baseline is not None:
            fds, children = wait_for_health(ctx.service_pid, baseline)
            if fds != baseline:
                leaks.append("service fds %d -> %d" % (baseline, fds))
            if children:
                leaks.append("service children left: %r" % children)
        report["service_leaks"] = leaks
    finally:
        ctx.close()

    passed = report["failures"] == 0 and not report["service_leaks"]
    if args.json:
        report["passed"] = passed
        print(json.dumps(report, indent=2))
    else:
        latency = report["latency_ms"]
        print("load: %d connections from %d clients (VERSION/CHECK alternating) in %.2f s: "
              "%.0f requests/s, latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
              % (report["connections"], report["clients"], report["elapsed_s"],
                 report["requests_per_s"], latency["p50"], latency["p90"], latency["p99"],
                 latency["max"]))
        print("load: p99 by request: %s" % ", ".join(
            "%s %.2f ms" % item for item in report["latency_p99_ms_by_request"].items()))
        for failure in report["first_failures"]:
            print("load: failed %s: %s" % (failure["request"], failure["detail"]))
        for leak in report["service_leaks"]:
            print("load: after the run: %s" % leak)
        print("%s load_all_requests_answered (%.2fs)%s"
              % ("PASS" if passed else "FAIL", time.time() - started,
                 "" if passed else ": %d of %d requests failed; leaks: %s"
                 % (report["failures"], report["connections"],
                    "; ".join(report["service_leaks"]) or "none")))
        print("RESULT load: %d passed, %d failed" % (int(passed), int(not passed)), flush=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
