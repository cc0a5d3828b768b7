"""A whole Flower deployment on this machine: a SuperLink and one SuperNode per site on 127.0.0.1.

For trials and tests only: the processes talk without TLS (``--insecure``) and without node
authentication, which is acceptable on the loopback interface and nowhere else (README, "Deploying
across sites"). Every process starts in its own process group and is stopped by its id.

    python -m deploy.loopback --config configs/default.yaml --sites-dir /tmp/sites fl.rounds=2

runs the federation with each site's data cache and run directory under ``--sites-dir/<site>``,
waits for the run, and exits with 0 only if Flower reports it completed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
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
        """Stop every process group this object started (SIGTERM, then SIGKILL), by its id."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes:  # the groups' children (SuperExec, app processes) too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:  # orphans are reaped by init
            time.sleep(0.1)

    def alive(self) -> list[int]:
        """Ids of the process groups started here that still have a process."""
        groups = []
        for process in self.processes:
            try:
                os.killpg(process.pid, 0)
                groups.append(process.pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                groups.append(process.pid)
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
    def flwr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run the ``flwr`` command line against this SuperLink."""
        return subprocess.run(
            [str(BIN / "flwr"), *args], cwd=self.work_dir, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def run(
        self, run_config: Mapping[str, Any], app: Path | None = None, timeout: float = 600.0
    ) -> RunOutcome:
        """``flwr run --stream`` the app (default: this repository's code, staged) with ``run_config``;
        then ask Flower how the run ended."""
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


def main(argv: list[str] | None = None) -> int:
    """Run a federation on a loopback deployment; exit 0 only if Flower reports it completed."""
    from assembly.config import load_config

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/default.yaml", help="the federation YAML")
    parser.add_argument("--sites-dir", required=True, help="one folder per site: its data cache and outputs")
    parser.add_argument("--work-dir", help="FLWR_HOME and process logs (default: <sites-dir>/flower)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    sites_dir = Path(args.sites_dir).absolute()
    nodes = []
    for site in config.sites:
        node = {"site": site.name, "output-dir": str(sites_dir / site.name)}
        if site.source.kind == "synthetic":
            node["data-root"] = str(sites_dir / site.name / "data")
        else:
            node["data-root"] = str(Path(site.source.root).absolute())
            node["cache-dir"] = str(Path(config.data.cache_dir).absolute())
        nodes.append(node)
    # The ServerApp runs in the SuperLink's working directory: give it this one's output folder.
    overrides = [*args.overrides, f"output_dir={Path(config.output_dir).absolute()}"]
    run_config = {"config": str(Path(args.config).absolute()), "overrides": shlex.join(overrides)}
    with Loopback(Path(args.work_dir or sites_dir / "flower"), nodes) as loopback:
        outcome = loopback.run(run_config)
    print(outcome.log)
    print(f"run {outcome.run_id}: {outcome.status} {outcome.details}")
    return 0 if outcome.completed else 1


if __name__ == "__main__":
    sys.exit(main())
