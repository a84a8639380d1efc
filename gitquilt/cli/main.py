"""Entry point of ``git quilt``: global options, lazy subcommands, errors → exit codes."""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
from typing import Any

import click

from gitquilt.cli import render
from gitquilt.errors import EXIT_FAILED, EXIT_INTERRUPTED, QuiltError
from gitquilt.ops import forked

#: command name → module under gitquilt.cli defining ``command``. Loaded on use only,
#: so that ``git quilt hook post-checkout`` does not pay for what it does not run.
COMMANDS = {
    "init": "cmd_init",
    "add": "cmd_add",
    "status": "cmd_status",
    "checkout": "cmd_checkout",
    "ls": "cmd_ls",
    "diff": "cmd_diff",
    "log": "cmd_log",
    "export": "cmd_export",
    "verify": "cmd_verify",
    "textconv": "cmd_textconv",
    "install": "cmd_install",
    "uninstall": "cmd_uninstall",
    "hook": "cmd_hook",
    "merge-driver": "cmd_merge_driver",
    "remote": "cmd_remote",
    "push": "cmd_push",
    "fetch": "cmd_fetch",
    "pull": "cmd_pull",
    "gc": "cmd_gc",
}


#: Set by :func:`main` (the console script) only: callers of :func:`run` in a long-lived
#: process keep an ordinary garbage collector.
_FREEZE_AFTER_IMPORT = False


def register(name: str, module: str) -> None:
    """Add a subcommand implemented in ``gitquilt.cli.<module>``."""
    COMMANDS[name] = module


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if _module_exists(COMMANDS[n]))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None or not _module_exists(module):
            return None
        cmd: click.Command = importlib.import_module(f"gitquilt.cli.{module}").command
        if _FREEZE_AFTER_IMPORT:
            # the modules just imported live until exit: keep the collector from walking
            # them again and again while the command allocates (tens of ms with pyarrow)
            gc.freeze()
        return cmd


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(f"gitquilt.cli.{module}") is not None


def _debug_enabled() -> bool:
    return os.environ.get("GITQUILT_DEBUG", "") not in ("", "0")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors (also GITQUILT_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or informational lines.")
@click.version_option(package_name="gitquilt", prog_name="git quilt")
def cli(debug: bool, quiet: bool) -> None:
    """Version data sets and models with git: packages of files pinned by a commit.

    \b
    Example:
      git quilt init
      git quilt add images/
      git commit -m "add images"
    """
    if debug:
        os.environ["GITQUILT_DEBUG"] = "1"
    render.OUT.quiet = quiet


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every failure into one line on stderr and an exit code."""
    global _FREEZE_AFTER_IMPORT
    _FREEZE_AFTER_IMPORT = True  # a process of its own, which exits right after the command
    # numpy (which pyarrow imports, lazily, after this) starts an OpenBLAS thread per core
    # that spins at exit; the CLI does no linear algebra. The process's own setting only.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    forked.allow()  # a process of its own: many-file work may fork workers (ops/forked.py)
    code = run(argv)
    gc.freeze()  # nor at exit, when finalisation would walk every object once more
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="git quilt", standalone_mode=False)
        # without standalone mode, click returns ctx.exit(N)'s code instead of raising
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        render.error("interrupted; rerun the command to finish")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        render.error("interrupted; rerun the command to finish")
        return EXIT_INTERRUPTED
    except QuiltError as exc:
        if _debug_enabled():
            import traceback

            traceback.print_exc()
        render.error(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_FAILED
    except OSError as exc:
        if _debug_enabled():
            import traceback

            traceback.print_exc()
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        render.error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks
        if _debug_enabled():
            import traceback

            traceback.print_exc()
        render.error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
        return EXIT_FAILED


def open_workspace() -> Any:
    """Open the workspace of the current directory (imported lazily by commands)."""
    from gitquilt.ops.workspace import Workspace

    return Workspace.open()
