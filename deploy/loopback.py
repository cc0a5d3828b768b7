"""A whole Flower deployment on this machine: a SuperLink and one SuperNode per site on 127.0.0.1.

For trials and tests only: the processes talk without TLS (``--insecure``) and without node
authentication, which is acceptable on the loopback interface and nowhere else (docs/flower.md,
"A real deployment"). Every process starts in its own process group and is stopped by its id.

    python -m deploy.loopback --config configs/default.yaml --sites-dir /tmp/sites fl.rounds=2

runs the federation with each site's data cache and run directory under ``--sites-dir/<site>``,
waits for the run, and exits with 0 only if Flower reports it completed. The server's outputs go to
``<output_dir>/<name>-flower/`` (``runs/default-flower/`` here; ``name=...`` chooses another), so a
trial never meets ``python train.py``'s run of the same YAML; ``--resume`` and ``--overwrite`` work as
train.py's, and the run folder is checked before any Flower process starts. Every failure is one line.
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


LOOPBACK = "python -m deploy.loopback"
TRACEBACK_END = re.compile(r"^[\w.]+(Error|Exception|Exit|Interrupt|Failure)\b.*|^[\w.]+: ")


def without_tracebacks(log: str) -> str:
    """The streamed log less Python tracebacks (a failed ServerApp's error line says what matters)."""
    kept, inside = [], False
    for line in log.splitlines():
        text = re.sub(r"^\S*\s*(ERROR|INFO|WARNING|DEBUG)\s*:\s*", "", line.strip())
        if text.startswith("Traceback (most recent call last)"):
            inside = True
            continue
        if inside:
            if line.startswith((" ", "\t")) or not text or text.startswith(("^", "~")):
                continue
            inside = False
            if TRACEBACK_END.match(text):
                continue  # the exception's own line, after its traceback
        if text.endswith("raised an exception"):
            continue  # Flower's note before the traceback
        kept.append(line)
    return "\n".join(kept)


def failure_line(outcome: RunOutcome) -> tuple[str, int]:
    """The one line and exit status of a run Flower did not complete: the ServerApp's own error line
    (``error: ...`` exits 2, ``failed: ...`` 3, as train.py), else Flower's status and details (1)."""
    for line in reversed(outcome.log.splitlines()):
        text = line.strip()
        for prefix, code in (("error: ", 2), ("failed: ", 3)):
            if prefix in text:
                return text[text.index(prefix) :], code
    details = f": {outcome.details}" if outcome.details else ""
    return f"failed: Flower run {outcome.run_id} ended {outcome.status}{details}", 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The loopback's arguments: train.py's config, overrides, --resume and --overwrite, and where the
    sites keep their data and outputs."""
    from assembly.keys import OptionsAction
    from utils.cli import ArgumentParser

    parser = ArgumentParser(prog=LOOPBACK, description=__doc__)  # a refused argument is one line
    parser.add_argument("--config", default="configs/default.yaml", help="the federation YAML")
    parser.add_argument("--sites-dir", required=True, help="one folder per site: its data cache and outputs")
    parser.add_argument("--work-dir", help="FLWR_HOME and process logs (default: <sites-dir>/flower)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run after its last completed round"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value")
    parser.add_argument("--options", action=OptionsAction)
    return parser.parse_args(argv)


def resume_command(args: argparse.Namespace) -> str:
    """The loopback command line that continues the run ``args`` started."""
    words = ["--config", args.config, "--sites-dir", args.sites_dir]
    words += ["--work-dir", args.work_dir] if args.work_dir else []
    return f"{LOOPBACK} {shlex.join([*words, *args.overrides, '--resume'])}"


def named_in(overrides: list[str]) -> bool:
    """Whether the overrides choose the run's name."""
    return any(o.partition("=")[0].strip() == "name" for o in overrides)


def loopback_config(args: argparse.Namespace) -> Any:
    """The federation's config: the YAML and overrides, named ``<name>-flower`` unless ``name=`` is
    given, so that a loopback run never collides with ``python train.py``'s run of the same YAML, and
    its ``output_dir`` made absolute (as the ServerApp, elsewhere, writes it into the run)."""
    from assembly.config import load_config

    config = load_config(args.config, args.overrides)
    # The ServerApp runs in the SuperLink's working directory: it gets this one's output folder.
    placed = [f"output_dir={Path(config.output_dir).absolute()}"]
    if not named_in(args.overrides):
        placed.append(f"name={config.name}-flower")
    return load_config(args.config, [*args.overrides, *placed])


def check_run_dir(config: Any, args: argparse.Namespace) -> None:
    """The run folder's checks of every training command, made before any Flower process starts: a new
    run must not replace one unasked, a resumed one must exist and keep its config, the folders must be
    writable."""
    from assembly.setup import Asking, check_folders, check_request, holds_run
    from utils.errors import UserError

    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if args.resume and not holds_run(config.run_dir):
        raise UserError(f"--resume: {config.run_dir} holds no run to continue; start it without --resume")
    asking = Asking("--resume", "--overwrite")
    check_request(config, resume=args.resume, overwrite=args.overwrite, asking=asking)
    check_folders(config)


def completed_rounds(run_dir: Path) -> int | None:
    """The rounds in the server's checkpoint of ``run_dir`` (None where it has none yet)."""
    from utils.checkpoint import load_checkpoint
    from utils.errors import UserError

    try:
        return int(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["round"])
    except (UserError, KeyError, TypeError, ValueError):
        return None


def run(args: argparse.Namespace) -> int:
    """Check the run folder, start the deployment, run the federation and report how it ended."""
    from assembly.repository import in_repository
    from utils.interrupt import Interrupted

    config = loopback_config(args)
    check_run_dir(config, args)
    sites_dir = Path(args.sites_dir).absolute()
    nodes = []
    for site in config.sites:
        node = {"site": site.name, "output-dir": str(sites_dir / site.name)}
        if site.source.kind == "synthetic":
            node["data-root"] = str(sites_dir / site.name / "data")
        else:
            node["data-root"] = str(Path(site.source.root).absolute())
            node["cache-dir"] = str(in_repository(config.data.cache_dir))
        nodes.append(node)
    overrides = [*args.overrides, f"name={config.name}", f"output_dir={config.output_dir}"]
    run_config = {"config": str(Path(args.config).absolute()), "overrides": shlex.join(overrides)}
    if args.resume or args.overwrite:
        run_config["resume" if args.resume else "overwrite"] = True
    print(f"run folder {config.run_dir}; sites in {sites_dir}", flush=True)
    try:
        with Loopback(Path(args.work_dir or sites_dir / "flower"), nodes) as loopback:
            outcome = loopback.run(run_config, timeout=None)  # as long as the federation takes
    except Interrupted as err:  # every process is stopped by now; the server kept its last round
        err.run_dir, err.total = config.run_dir, config.fl.rounds
        err.completed = completed_rounds(config.run_dir)
        raise
    except RuntimeError as err:
        from utils.errors import UserError

        raise UserError(str(err)) from None
    print(without_tracebacks(outcome.log))
    if outcome.completed:
        print(f"run {outcome.run_id}: {outcome.status}")
        return 0
    line, code = failure_line(outcome)
    print(line, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run a federation on a loopback deployment; exit 0 only if Flower reports it completed (2 bad
    input, 3 a site diverged, 130 or 143 interrupted: the line printed says how to continue)."""
    from utils.cli import run_cli
    from utils.interrupt import command

    args = parse_args(argv)
    status: list[int] = []

    def job() -> None:
        status.append(run(args))

    code = command(lambda: run_cli(job), resume=lambda _: resume_command(args))
    return code or (status[0] if status else 0)


if __name__ == "__main__":
    sys.exit(main())
