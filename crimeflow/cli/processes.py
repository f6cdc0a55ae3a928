"""Start, wait for and stop local service processes (API, MLflow UI, stand-ins, benchmarks).

Every process is started in its own session, hence its own process group: `stop` signals the
whole group, so workers a server forked (uvicorn `--workers`, Prefect's sub-processes) end with
it instead of being orphaned. Output goes to a log file rather than a pipe: nobody has to drain
a pipe (a full one blocks the child), and a failed start can show the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 40
PROC = Path("/proc")


class ProcessExitedError(RuntimeError):
    """A service process exited while we were waiting for it to answer."""


class ServiceProcess(subprocess.Popen[bytes]):
    """A Popen that remembers its name and log file (for error messages)."""

    name: str
    log_file: Path

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} returncode={self.returncode}>"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    # Another process can take it before the caller binds; acceptable for tests and demos.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(log_file: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when there is none)."""
    if log_file is None:
        return ""
    try:
        with Path(log_file).open("rb") as handle:
            # Read only the end: a server's log can be large after a long benchmark.
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str] | None,
    log_file: Path,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Start `args` in a new process group, stdout and stderr appended to `log_file`."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        # The child gets its own copy of the descriptor; ours can close right away.
        process = ServiceProcess(
            list(args),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.name = name
    process.log_file = log_file
    return process


def _describe(process: subprocess.Popen[bytes]) -> tuple[str, Path | None]:
    """A process's name and log file, when it was started by `start`."""
    name = getattr(process, "name", None) or str(process.args)
    return name, getattr(process, "log_file", None)


def _get(url: str, timeout_s: float) -> int:
    """The HTTP status of GET `url` (no proxies: services are local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_http(
    url: str,
    timeout_s: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll GET `url` until it answers 2xx; fail fast, with the log's tail, if `process` exits."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            name, log = _describe(process)
            raise ProcessExitedError(
                f"{name} exited with code {process.returncode} before {url} answered; "
                f"log tail:\n{log_tail(log)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            status = _get(url, timeout_s=min(2.0, remaining))
            if 200 <= status < 300:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as error:
            last = str(error)
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
    tail = ""
    if process is not None:
        tail = f"; log tail:\n{log_tail(_describe(process)[1])}"
    raise TimeoutError(f"{url} did not answer 2xx within {timeout_s} s (last: {last}){tail}")


@dataclass(frozen=True)
class ProcStat:
    """One process as its /proc/<pid>/stat line describes it (Linux)."""

    pid: int
    ppid: int
    pgid: int
    # R running, S sleeping, D disk wait, Z zombie, T stopped, ...
    state: str
    # User + system CPU time so far, in clock ticks (os.sysconf("SC_CLK_TCK") per second).
    cpu_ticks: int

    @property
    def zombie(self) -> bool:
        """Whether the process has exited and only waits to be reaped."""
        return self.state == "Z"


def parse_stat(line: str) -> ProcStat:
    """Read a /proc/<pid>/stat line; ValueError when it is not one.

    The command name sits in parentheses and may itself hold spaces and parentheses, so the
    fields are split after its *last* closing parenthesis.
    """
    head, paren, rest = line.rpartition(")")
    pid, opened, _command = head.partition(" (")
    fields = rest.split()
    if not paren or not opened or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {line[:80]!r}")
    # After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    return ProcStat(
        pid=int(pid),
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The stat of one process; None when it is gone (or /proc is absent or unreadable)."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None


def scan_processes(proc: Path = PROC) -> Iterator[ProcStat]:
    """Every process /proc lists, zombies included (see `.zombie`); nothing without /proc."""
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if entry.name.isdigit():
            # A process can exit between the listing and the read: it is skipped then.
            stat = read_stat(int(entry.name), proc)
            if stat is not None:
                yield stat


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies do not count)."""
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    # Scanning /proc, because a signal probe also finds zombies: orphans wait for init to reap
    # them, which takes seconds on some hosts, though they are already dead.
    return any(p.pgid == pgid and not p.zombie for p in scan_processes())


def _signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    """SIGTERM the process's group, SIGKILL it after `timeout_s`; the leader's exit code.

    The exit code follows Popen: negative for death by a signal (-15 SIGTERM, -9 SIGKILL).
    """
    if process.poll() is not None and not _group_alive(process.pid):
        return int(process.returncode)
    # start() made the child a session leader, so its pid is its group id.
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        process.wait()
    # Children that outlive a graceful leader get the rest of the grace period, then SIGKILL.
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return int(process.returncode)
