"""The Flower ServerApp: reads the federation YAML and runs the round loop over the Flower transport.

An entry point: :func:`serve` runs the federation of a config over any grid (the SuperLink's, or
``deploy/local.py``'s for tests) with the run set-up every training command shares
(``assembly/setup.py``: the run folder, resume and overwrite, the lock, the transport).

Its run config (``[tool.flwr.app.config]`` of ``pyproject.toml``, or ``flwr run --run-config``):

============== ==================== ==========================================================
key            default              meaning
============== ==================== ==========================================================
config         configs/default.yaml the federation YAML; relative paths are looked up in the app
                                    (the repository, shipped with ``flwr run``), then in the
                                    SuperLink's working directory
overrides      ""                   ``key.path=value`` overrides, separated by spaces
resume         false                continue after the last completed round
overwrite      false                replace an existing run of the same name (server and sites)
poll-interval  0.2                  seconds between polls for the sites' replies
node-wait      600                  seconds to wait for every site's SuperNode
reply-wait     86400                seconds to wait for every site's reply to a message (one day:
                                    a round of local training on a CPU can take hours); then the
                                    run stops with one line naming the sites without a reply, the
                                    checkpoint keeping the last completed round (``resume=true``)
============== ==================== ==========================================================
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fl.flower.nodes import SiteDirectory
from utils.bounds import parse_number
from utils.cli import describe_failure
from utils.errors import UserError
from utils.interrupt import Interrupted, interruptible, pass_on

APP_ROOT = Path(__file__).resolve().parents[1]

app = ServerApp()


def config_path(value: str) -> Path:
    """The federation YAML named by the run config: in the app first, else as given."""
    path = Path(value).expanduser()
    if not path.is_absolute() and (APP_ROOT / path).is_file():
        return APP_ROOT / path
    return path


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Load the config named by the run config and run the federation over ``grid``."""
    run_config = context.run_config

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        with interruptible():
            _main(grid, run_config, log)
    except Interrupted as err:
        # One line saying where the run stopped, then Flower's own stop (its handler, back in place).
        log(err.describe(lambda _: resume_hint(run_config)))
        pass_on(err)


def resume_hint(run_config: Any) -> str:
    """The ``flwr run`` that continues an interrupted run: its run config with ``resume=true``."""
    from deploy.processes import run_config_arg

    keys = {k: run_config[k] for k in ("config", "overrides") if k in run_config}
    return f"flwr run <app> <federation> --run-config '{run_config_arg({**keys, 'resume': True})}'"


def _main(grid: Grid, run_config: Any, log: Callable[[str], None]) -> None:
    try:
        path = config_path(str(run_config.get("config", "configs/default.yaml")))
        if not path.is_file():  # before the heavy imports: a wrong path fails at once
            raise UserError(f"run config config: {path} is not a file")
        try:
            overrides = shlex.split(str(run_config.get("overrides", "")))
        except ValueError as err:  # an unclosed quote
            raise UserError(f"run config overrides: {err}") from None
        poll = run_config.get("poll-interval", 0.2)
        poll_interval = parse_number(poll, "run config poll-interval", 0.001, 3600)
        node_wait = parse_number(run_config.get("node-wait", 600), "run config node-wait", 0, 7 * 24 * 3600)
        reply = run_config.get("reply-wait", 86400)
        reply_wait = parse_number(reply, "run config reply-wait", 1, 7 * 24 * 3600)
        directory = SiteDirectory(grid, poll_interval, node_wait, log)
        directory.ask()  # the nodes answer while torch and the config load

        from assembly.config import load_config

        config = load_config(path, overrides)
        serve(
            grid,
            config,
            resume=bool(run_config.get("resume", False)),
            overwrite=bool(run_config.get("overwrite", False)),
            poll_interval=poll_interval,
            reply_wait=reply_wait,
            log=log,
            directory=directory,
        )
    except Exception as err:  # the boundary: one line (an internal error's traceback goes to a file)
        print(describe_failure(err, "ServerApp")[0], flush=True)
        raise


def serve(
    grid: Grid,
    config: Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    poll_interval: float = 0.2,
    node_wait: float = 600.0,
    reply_wait: float = 86400.0,
    log: Callable[[str], None] = print,
    directory: SiteDirectory | None = None,
) -> dict[str, Any]:
    """Run the federation of ``config`` over ``grid`` and write the server's outputs; the results.

    Outputs in ``<output_dir>/<name>/`` on the server: ``config.yaml``, ``metrics.csv`` (the in-process
    columns; bytes are real message sizes), ``traffic.csv`` (every message), ``tb/``,
    ``checkpoints/last.ckpt`` (the global tensors and the algorithm's server state after the last
    completed round; ``resume`` continues from it), ``results.json``, ``results.md`` and
    ``figures/val_psnr.png``. Each site writes its own best model, figures and results at the site.
    """
    from assembly.setup import flower

    return flower(
        grid,
        config,
        resume=resume,
        overwrite=overwrite,
        poll_interval=poll_interval,
        node_wait=node_wait,
        reply_wait=reply_wait,
        log=log,
        directory=directory,
    )
