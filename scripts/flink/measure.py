#!/usr/bin/env python3
"""Runs a command and writes its wall time, CPU time and peak RSS as JSON.

Usage: measure.py OUT.json COMMAND [ARG...]

The CPU time is that of every process the command starts, even those it
never waits for: PyFlink launches its JVM as a child and leaves it to exit
on its own once Python has gone, so the JVM is orphaned and `time` or
getrusage(RUSAGE_CHILDREN) in the caller would miss it. Here this process
makes itself a child subreaper (prctl), so orphans are re-parented to it
instead of to init, and it reaps every descendant with wait4, adding up
each one's user + system time. The wall time ends when the last of them
has exited. The peak RSS is the largest single process's.
"""

import ctypes
import json
import os
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"measure.py: prctl: {os.strerror(ctypes.get_errno())}")
    started = time.monotonic()
    main_pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    status, processes = 0, []
    while True:
        try:
            # Peek first: a zombie's name is still readable, a reaped one's not.
            pid = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT).si_pid
        except ChildProcessError:
            break
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        _, wait_status, usage = os.wait4(pid, 0)
        if pid == main_pid:
            status = os.waitstatus_to_exitcode(wait_status)
        processes.append({
            "name": name,
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_kib": usage.ru_maxrss,
        })
    wall = time.monotonic() - started
    with open(out, "w") as f:
        json.dump({
            "wall": wall,
            "cpu": sum(p["cpu"] for p in processes),
            "rss_kib": max(p["rss_kib"] for p in processes),
            "processes": processes,
            "status": status,
        }, f)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
