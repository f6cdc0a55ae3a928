"""crimeflow.cli.processes against tiny real children: `python -m http.server` and short scripts."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from crimeflow.cli.processes import (
    ProcessExitedError,
    ProcStat,
    free_port,
    log_tail,
    parse_stat,
    read_stat,
    scan_processes,
    start,
    stop,
    wait_http,
)

PY = sys.executable


needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")


def _alive(pid: int) -> bool:
    """Whether a pid exists and is not a zombie."""
    stat = read_stat(pid)
    return stat is not None and not stat.zombie


def _wait_for_text(path: Path, text: str, timeout_s: float = 5.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}: {content!r}")


def test_free_port_can_be_bound_and_differs_between_calls():
    ports = {free_port() for _ in range(5)}
    assert len(ports) > 1
    port = ports.pop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_http_server_is_waited_for_then_stopped(tmp_path):
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hi")
    log = tmp_path / "logs" / "http.log"
    process = start(
        "http.server",
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        env=None,
        log_file=log,
        cwd=tmp_path / "www",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/hello.txt", timeout_s=10, process=process)
        # Its own session and group: signals to our group never reach it, and vice versa.
        assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
    finally:
        code = stop(process, timeout_s=5)
    assert code == -15  # http.server does not handle SIGTERM: it dies of it
    assert not _alive(process.pid)
    # stdout and stderr went to the log file: the request line is there.
    assert "GET /hello.txt" in log.read_text()


def test_wait_http_fails_fast_with_the_log_tail_when_the_process_exits(tmp_path):
    script = "import sys; print('cannot bind: boom', flush=True); sys.exit(3)"
    process = start("doomed", [PY, "-c", script], env=None, log_file=tmp_path / "doomed.log")
    tick = time.monotonic()
    with pytest.raises(ProcessExitedError, match="boom") as caught:
        wait_http(f"http://127.0.0.1:{free_port()}/", timeout_s=30, process=process)
    assert time.monotonic() - tick < 5
    assert "code 3" in str(caught.value) and "doomed" in str(caught.value)


def test_wait_http_keeps_polling_through_non_2xx_until_timeout(tmp_path):
    port = free_port()
    process = start(
        "http.server",
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        env=None,
        log_file=tmp_path / "http.log",
        cwd=tmp_path,
    )
    try:
        with pytest.raises(TimeoutError, match="HTTP 404"):
            wait_http(f"http://127.0.0.1:{port}/missing", timeout_s=0.8, process=process)
    finally:
        stop(process, timeout_s=5)


def test_wait_http_without_a_process_times_out_on_a_closed_port():
    with pytest.raises(TimeoutError, match="did not answer"):
        wait_http(f"http://127.0.0.1:{free_port()}/", timeout_s=0.3)


def test_graceful_exit_code_is_returned(tmp_path):
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    log = tmp_path / "graceful.log"
    process = start("graceful", [PY, "-c", script], env=None, log_file=log)
    _wait_for_text(log, "ready")
    assert stop(process, timeout_s=5) == 0


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout(tmp_path):
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    log = tmp_path / "stubborn.log"
    process = start("stubborn", [PY, "-c", script], env=None, log_file=log)
    _wait_for_text(log, "ready")
    tick = time.monotonic()
    assert stop(process, timeout_s=0.3) == -9
    assert time.monotonic() - tick < 3


def test_children_die_with_the_group(tmp_path):
    # The leader forks a grandchild that ignores nothing, then waits; stopping the leader's
    # group must take the grandchild too (no orphaned uvicorn workers).
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(30)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    log = tmp_path / "parent.log"
    process = start("parent", [PY, "-c", script], env=None, log_file=log)
    child_pid = int(_wait_for_text(log, "child ").split()[1])
    assert _alive(child_pid)
    stop(process, timeout_s=5)
    deadline = time.monotonic() + 3
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child_pid)


def test_stop_on_an_exited_process_returns_its_code(tmp_path):
    process = start("quick", [PY, "-c", "raise SystemExit(7)"], env=None, log_file=tmp_path / "q")
    process.wait(timeout=10)
    assert stop(process) == 7


def test_env_is_passed_to_the_child(tmp_path):
    log = tmp_path / "env.log"
    script = "import os; print('value=' + os.environ['CRIMEFLOW_PROBE'], flush=True)"
    process = start(
        "env", [PY, "-c", script], env={**os.environ, "CRIMEFLOW_PROBE": "42"}, log_file=log
    )
    assert process.wait(timeout=10) == 0
    assert "value=42" in log.read_text()


def test_log_tail_returns_the_last_lines_only(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert log_tail(log, lines=3).splitlines() == ["line 9997", "line 9998", "line 9999"]
    assert log_tail(tmp_path / "absent.log") == ""
    assert log_tail(None) == ""


# --- the /proc reader ----------------------------------------------------------------------------

# A stat line after "pid (comm) state ppid pgrp": session tty_nr tpgid flags minflt cminflt
# majflt cmajflt utime stime cutime cstime priority nice threads ... (proc(5)).
STAT_TAIL = "4300 34817 4300 4194560 120 0 0 0 {utime} {stime} 3 1 20 0 1 0 52 9000 400"


def _stat_line(pid: int, command: str, state: str, ppid: int, pgid: int, ticks=(7, 5)) -> str:
    utime, stime = ticks
    return f"{pid} ({command}) {state} {ppid} {pgid} {STAT_TAIL.format(utime=utime, stime=stime)}\n"


@pytest.mark.parametrize("command", ["python", "Web Content", "a) (b c", "x) S 1 2 (", ")("])
def test_parse_stat_splits_after_the_commands_last_parenthesis(command):
    stat = parse_stat(_stat_line(4321, command, "S", 17, 4300, ticks=(250, 31)))
    assert stat == ProcStat(pid=4321, ppid=17, pgid=4300, state="S", cpu_ticks=281)
    assert not stat.zombie
    assert parse_stat(_stat_line(9, command, "Z", 1, 9)).zombie


@pytest.mark.parametrize(
    "line", ["", "123", "123 (cmd", "123 (cmd) S 1 2", "pid (cmd) S " + "1 " * 20]
)
def test_parse_stat_rejects_what_is_not_a_stat_line(line):
    with pytest.raises(ValueError):
        parse_stat(line)


def test_scan_processes_reads_each_pid_folder_and_skips_the_rest(tmp_path):
    proc = tmp_path / "proc"
    for pid, command, state in ((1, "init", "S"), (22, "my (odd) name", "R"), (33, "gone", "Z")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(_stat_line(pid, command, state, 1, pid))
    (proc / "44").mkdir()  # exited between the listing and the read: no stat any more
    (proc / "55").mkdir()
    (proc / "55" / "stat").write_text("garbled")
    (proc / "self").mkdir()
    (proc / "stat").write_text("cpu  1 2 3 4\n")
    found = {p.pid: p for p in scan_processes(proc)}
    assert sorted(found) == [1, 22, 33]
    assert found[22].state == "R" and found[33].zombie
    assert read_stat(22, proc) == found[22]
    assert read_stat(44, proc) is None and read_stat(55, proc) is None
    assert list(scan_processes(tmp_path / "absent")) == []


@needs_proc
def test_read_stat_of_this_process_matches_the_os():
    stat = read_stat(os.getpid())
    assert stat is not None
    assert (stat.pid, stat.ppid, stat.pgid, stat.state) == (
        os.getpid(),
        os.getppid(),
        os.getpgid(0),
        "R",  # it is reading its own stat right now
    )
    assert os.getpid() in {p.pid for p in scan_processes()}


@needs_proc
def test_a_real_child_named_with_spaces_and_parentheses_is_read(tmp_path):
    # The child renames itself (Linux allows it for its own comm), burns some CPU, then waits.
    script = (
        "import time\n"
        "open('/proc/self/comm', 'w').write('a) S 1 (b c')\n"
        "while time.process_time() < 0.3: pass\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    log = tmp_path / "odd.log"
    process = start("odd", [PY, "-c", script], env=None, log_file=log)
    try:
        _wait_for_text(log, "ready", timeout_s=30)
        assert "a) S 1 (b c" in Path(f"/proc/{process.pid}/comm").read_text()
        stat = read_stat(process.pid)
        assert stat is not None
        assert (stat.pid, stat.ppid, stat.pgid) == (process.pid, os.getpid(), process.pid)
        assert stat.state in {"S", "R"}
        # It burnt 0.3 s of CPU before saying ready (ticks are coarse: allow one short).
        assert stat.cpu_ticks >= 0.25 * os.sysconf("SC_CLK_TCK")
        assert process.pid in {p.pid for p in scan_processes()}
    finally:
        stop(process, timeout_s=5)
    assert read_stat(process.pid) is None
