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
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from deploy.processes import Loopback, RunOutcome

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
    from assembly.run_folder import Asking, check_folders, check_request, holds_run
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
