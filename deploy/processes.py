"""The processes of a loopback Flower deployment: the app's code staged for ``flwr run``, a SuperLink and
one SuperNode per site started on 127.0.0.1, runs started and followed through the ``flwr`` command line,
and every process stopped by the id of its process group (and of its descendants' groups).

The processes talk without TLS and without node authentication: for the loopback interface only
(:mod:`deploy.loopback`, the command that runs a federation on them, says more). The ServerApp also
uses :func:`run_config_arg`, the text of ``--run-config``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


APP_PACKAGES = ("configs", "assembly", "deploy", "data", "fl", "models", "utils")
APP_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".json")


def stage_app(dest: Path, root: Path = REPO) -> Path:
    """Copy the app's code and configs (nothing else) to ``dest`` for ``flwr run``.

    ``flwr run`` walks every file under the app folder before it drops what ``.gitignore`` names,
    which takes seconds when a virtual environment lives inside the checkout.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    for package in APP_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and path.suffix in APP_SUFFIXES and "__pycache__" not in path.parts:
                target = dest / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return dest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _toml_string(value: str) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def node_config_arg(values: Mapping[str, Any]) -> str:
    """``--node-config`` text: ``key="value"`` pairs separated by spaces (strings quoted)."""
    return " ".join(f"{key}={_toml_string(value)}" for key, value in values.items())


def run_config_arg(values: Mapping[str, Any]) -> str:
    """``--run-config`` text: booleans and numbers bare, everything else quoted."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = _toml_string(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent id, process group) of ``pid`` from ``/proc/<pid>/stat``; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), int(fields[2])


def group_of(pid: int) -> int | None:
    """The process group of ``pid`` (None when it is gone)."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class RunOutcome:
    """A finished Flower run: its id, Flower's status (``finished:completed`` when it worked), its
    details, the log streamed by ``flwr run --stream``, and Flower's own record of the run."""

    run_id: str
    status: str
    details: str
    log: str
    record: dict[str, Any]

    @property
    def completed(self) -> bool:
        """Whether Flower reports the run completed (``flwr run`` exits 0 even when it failed)."""
        return self.status == "finished:completed"


class Loopback:
    """Starts, runs on and stops a loopback SuperLink with one SuperNode per node config.

    Args:
        work_dir: holds ``flwr-home/`` (``FLWR_HOME``: the connection config, installed apps) and the
            processes' logs.
        node_configs: one mapping per SuperNode (``site``, ``data-root``, ``output-dir``, ...).
        env: extra environment for every process.
    """

    def __init__(
        self, work_dir: Path, node_configs: list[Mapping[str, Any]], env: Mapping[str, str] | None = None
    ):
        self.work_dir = Path(work_dir).absolute()
        self.node_configs = node_configs
        self.home = self.work_dir / "flwr-home"
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
            # The SuperNode starts flower-superexec and flwr-clientapp by name: this environment's.
            "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
            **(env or {}),
        }
        self.processes: list[subprocess.Popen] = []
        self.groups: set[int] = set()  # process groups of the started processes and their descendants
        self.port = 0
        self.app = self.work_dir / "app"  # the repository's code, staged by start()

    # -- processes -----------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        process = subprocess.Popen(
            args,
            cwd=self.work_dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def start(self, timeout: float = 60.0) -> None:
        """Start the SuperLink, wait until it listens, then start every SuperNode."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        stage_app(self.app)
        self.port = free_port()
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n'
            f'[superlink.loopback]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        link = self._start(
            "superlink",
            [str(BIN / "flower-superlink"), "--insecure", "--port", str(self.port),
             "--disable-runtime-dependency-installation"],
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if link.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SuperLink did not start: see {self.work_dir / 'superlink.log'}")
            time.sleep(0.1)
        for index, values in enumerate(self.node_configs):
            self._start(
                f"supernode-{values.get('site', index)}",
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                 "--port", str(free_port()), "--node-config", node_config_arg(values)],
            )  # fmt: skip

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every process this object started and every process they started (SIGTERM, then
        SIGKILL), by its id: the process groups it started, and those of their descendants, found
        before any is signalled (SuperExec starts the ServerApp in a session of its own, which would
        otherwise outlive the SuperLink and hold the run's lock)."""
        self.groups |= {p.pid for p in self.processes} | {group_of(pid) for pid in self.descendants()}
        self.groups.discard(None)
        self.groups.discard(os.getpgrp())  # never this process's own group
        for group in self.groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        for group in self.groups:  # whatever did not stop by itself
            _signal_group(group, signal.SIGKILL)
        for process in self.processes:
            process.wait()
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:  # orphans are reaped by init
            time.sleep(0.1)

    def descendants(self) -> set[int]:
        """The processes the started ones started, at any depth (read from ``/proc`` now)."""
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    parents[int(entry.name)] = stat[0]
        found, frontier = set(), {p.pid for p in self.processes}
        while frontier:
            children = {pid for pid, parent in parents.items() if parent in frontier} - found
            found |= children
            frontier = children
        return found

    def alive(self) -> list[int]:
        """Ids of the process groups started here (and by their processes) that still have a process."""
        groups = []
        for group in sorted(self.groups | {p.pid for p in self.processes}):
            try:
                os.killpg(group, 0)
                groups.append(group)
            except ProcessLookupError:
                pass
            except PermissionError:
                groups.append(group)
        return groups

    def __enter__(self) -> Loopback:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- runs ----------------------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float | None = 60.0) -> subprocess.CompletedProcess:
        """Run the ``flwr`` command line against this SuperLink."""
        return subprocess.run(
            [str(BIN / "flwr"), *args], cwd=self.work_dir, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def run(
        self, run_config: Mapping[str, Any], app: Path | None = None, timeout: float | None = 600.0
    ) -> RunOutcome:
        """``flwr run --stream`` the app (default: this repository's code, staged) with ``run_config``;
        then ask Flower how the run ended. ``timeout``: seconds the run may take (None: no limit)."""
        started = self.flwr(
            "run",
            str(app or self.app),
            "loopback",
            "--stream",
            "--run-config",
            run_config_arg(run_config),
            timeout=timeout,
        )
        log = started.stdout + started.stderr
        found = re.search(r"Successfully started run (\d+)", log)
        if not found:
            raise RuntimeError(f"flwr run did not start a run:\n{log}")
        run_id = found.group(1)
        deadline = time.monotonic() + 60.0
        while True:  # the stream can end a moment before the run's status is final
            listed = self.flwr("ls", "--run-id", run_id, "--format", "json")
            record = json.loads(listed.stdout)["runs"][0] if listed.returncode == 0 else {}
            status = str(record.get("status", "unknown"))
            if status.startswith("finished") or time.monotonic() > deadline:
                return RunOutcome(run_id, status, str(record.get("status-details", "")), log, record)
            time.sleep(0.5)
