"""Commands that declare their flags once: `Flag` and `Command`, and what is derived from them.

`parse`, `Command.help`, `general_help` and `help_topic` come from the declarations (`main.COMMANDS`); a flag of
another command is refused naming the command it belongs to. absl and ml_collections are imported only when
parsing.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from typing import Any, Callable

from pkdot_jax.errors import UsageError, UserError

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


@dataclasses.dataclass(frozen=True)
class Flag:
  """A flag of one or more commands; `kind`: absl's DEFINE_<kind> (bool, string, integer, list) or "config" (a
  config name or file, with --config.FIELD=VALUE overrides)."""
  name: str
  kind: str
  help: str
  default: Any = None
  metavar: str = "VALUE"
  required: bool = False

  def usage(self) -> str:
    return f"--{'[no]' if self.kind == 'bool' else ''}{self.name}" + ("" if self.kind == "bool" else f"={self.metavar}")

  def describe(self) -> str:
    default = ",".join(self.default) if isinstance(self.default, (list, tuple)) else self.default
    note = " Required." if self.required else "" if default in (None, False, "") else f" (default: {default})"
    text = f"  {self.usage()}\n{_wrap(self.help + note, 6)}"
    if self.kind == "config":
      text += "\n  --config.FIELD=VALUE\n" + _wrap(
          "Override one field of the config (typed by the field; an unknown field is an error), e.g. "
          "--config.model.dtype=bfloat16 --config.seeds=0,1; a loss's argument: "
          "--config.distill.method_kwargs.pkdot.k=8.", 6)
    return text


@dataclasses.dataclass(frozen=True)
class Command:
  """A command: `args` are its positional arguments (a lowercase word is a required subcommand, an uppercase
  name an optional value); `run(flag_values, positional)` does its work."""
  summary: str
  description: str
  examples: tuple[str, ...]
  flags: tuple[Flag, ...]
  run: Callable[[Any, list[str]], None]
  args: tuple[str, ...] = ()

  def help(self, name: str) -> str:
    usage = " ".join(["pkdot", name, *self.args] + [f.usage() for f in self.flags if f.required] + ["[flags]"])
    lines = [f"pkdot {name}: {self.summary}", "", "usage:", f"  {usage}", "", _wrap(self.description, 0), "",
             "examples:", *[f"  {e}" for e in self.examples], "", "flags:", *[f.describe() for f in self.flags]]
    return "\n".join(lines) + "\n"

  def label(self, name: str) -> str:
    """The command with its subcommand, e.g. `data check`."""
    return " ".join([name, *[a for a in self.args if a.islower()]])


def _wrap(text: str, indent: int) -> str:
  return textwrap.fill(text, 100, initial_indent=" " * indent, subsequent_indent=" " * indent,
                       break_on_hyphens=False, break_long_words=False)


def general_help(commands: dict[str, Command]) -> str:
  lines = ["usage: pkdot COMMAND [flags]      (also: python -m pkdot_jax.main COMMAND [flags])", "", "commands:"]
  lines += [f"  {n:<8} {c.summary}" for n, c in commands.items()] + ["", "examples:"]
  lines += [f"  {c.examples[0]}" for c in commands.values()]
  lines += ["", "`pkdot COMMAND --help` (or `pkdot help COMMAND`) shows a command's flags.",
            _wrap("Errors in the command line, the config or the input print one line and exit with status 2; "
                  "--debug (or PKDOT_DEBUG=1) shows the traceback.", 0)]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- parsing
def _split(commands: dict[str, Command], args: list[str]) -> tuple[str | None, list[str]]:
  """(the first argument that is neither a flag nor a flag's value, the others); (None, args) if there is none."""
  valued = {f.name for c in commands.values() for f in c.flags if f.kind != "bool"}
  i = 0
  while i < len(args) and args[i] != "--":
    name = args[i].lstrip("-")
    if not args[i].startswith("-"):
      return args[i], args[:i] + args[i + 1:]
    i += 2 if "=" not in name and (name in valued or name.startswith("config.")) else 1
  return None, args


def _unknown_command(name: str, commands: dict[str, Command]) -> UsageError:
  return UsageError(f"unknown command {name!r}; commands are {', '.join(commands)} (see pkdot --help)")


def help_topic(commands: dict[str, Command], argv: list[str]) -> str | None:
  """The command whose help `argv` asks for ("" for the general help), None if it asks for none."""
  args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  name, rest = _split(commands, args)
  if name == "help":
    name, rest = _split(commands, rest)
  elif not any(a.split("=")[0] in HELP_FLAGS for a in args):
    return None
  if name is not None and name not in commands:
    raise _unknown_command(name, commands)
  return name or ""


def _load_config(args: list[str]) -> tuple[Any, list[str]]:
  """Takes `--config=SPEC` (or `--config SPEC`) out of args and loads it; checks that every override names a
  field of it (the error lists the fields there are). (None, args) without --config."""
  from pkdot_jax import configs
  spec, rest, i = None, list[str](), 0
  while i < len(args):
    if args[i] == "--config" and (i + 1 == len(args) or args[i + 1].startswith("-")):
      raise UsageError("--config needs a value: a built-in config name or a config file")
    if args[i] == "--config" or args[i].startswith("--config="):
      spec, i = (args[i + 1], i + 2) if args[i] == "--config" else (args[i][len("--config="):], i + 1)
    else:
      rest, i = rest + [args[i]], i + 1
  try:
    config = None if spec is None else configs.load(spec)
  except UserError as e:  # a config file or variant that does not exist: named as given
    raise type(e)(str(e) if f"{spec!r}" in str(e) else f"--config={spec}: {e}") from e
  if config is None:
    return None, rest
  for path in [a.split("=")[0][len("--config."):] for a in rest if a.startswith("--config.")]:
    node, done = config, list[str]()
    for part in path.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (not a group of fields)"
        hint = (f" (a loss's argument: --config.distill.method_kwargs.METHOD.{part})"
                if done == ["distill", "kwargs"] else "")
        raise UsageError(f"--config.{path}: unknown config field {part!r}; fields of "
                         f"{'config.' + '.'.join(done) if done else 'the config'}: {known or 'none'}{hint}")
      node, done = node[part], done + [part]
  return config, rest


def _not_ours(commands: dict[str, Command], command: str, flag: str) -> str:
  """The message for a flag that `command` does not declare, naming the commands that do."""
  base = flag.split(".")[0]
  owners = [n for n, c in commands.items() if any(f.name in (base, base[2:]) for f in c.flags)]
  if command in owners:  # a --config.FIELD override of a command that takes --config
    return f"--{flag}: a config override needs --config first"
  if owners:
    return (f"--{flag} is a flag of {', '.join(f'`pkdot {n}`' for n in owners)}, not of `pkdot {command}` "
            f"(see pkdot {command} --help)")
  return f"unknown flag --{flag} (see pkdot {command} --help)"


def parse(commands: dict[str, Command], argv: list[str]) -> tuple[str, Any, list[str]]:
  """`pkdot ARGS` -> (command, its absl FlagValues, its positional arguments after the subcommand). Loads and
  overrides the config; checks the flags and arguments but not that the required flags are given."""
  from absl import flags
  from ml_collections import config_flags
  name, args = _split(commands, argv[1:])
  name = name or "train"
  if name not in commands:
    raise _unknown_command(name, commands)
  command = commands[name]
  config, args = _load_config(args) if any(f.kind == "config" for f in command.flags) else (None, args)
  values = flags.FlagValues()
  try:
    for f in command.flags:
      if f.kind == "config" and config is not None:
        config_flags.DEFINE_config_dict("config", config, f.help, values, lock_config=True, sys_argv=["pkdot", *args])
      else:  # a --config not given is None
        getattr(flags, f"DEFINE_{'string' if f.kind == 'config' else f.kind}")(f.name, f.default, f.help,
                                                                                flag_values=values)
    positional = values(["pkdot", *args])[1:]
  except flags.UnrecognizedFlagError as e:
    raise UsageError(_not_ours(commands, name, e.flagname)) from e
  except flags.Error as e:
    raise UsageError(str(e).splitlines()[0]) from e
  words = [a for a in command.args if a.islower()]
  if positional[:len(words)] != words:
    got = f"got {positional[0]!r}" if positional else "none given"
    raise UsageError(f"`pkdot {name}` needs the subcommand {' '.join(words)} ({got}; see pkdot {name} --help)")
  if len(positional) > len(command.args):
    raise UsageError(f"unexpected argument {positional[len(command.args)]!r} for `pkdot {name}` "
                     f"(see pkdot {name} --help)")
  return name, values, positional[len(words):]


def check_required(commands: dict[str, Command], name: str, values: Any) -> None:
  missing = [f.usage().split("=")[0] for f in commands[name].flags if f.required and values[f.name].value is None]
  if missing:
    raise UsageError(f"{commands[name].label(name)} needs {' and '.join(missing)} (see pkdot {name} --help)")


def debug_requested(argv: list[str]) -> bool:
  """--debug / --nodebug / --debug=BOOL (the last wins) or the environment variable PKDOT_DEBUG."""
  value = os.environ.get("PKDOT_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
  for arg in argv[1:argv.index("--")] if "--" in argv else argv[1:]:
    if arg in ("--debug", "--nodebug") or arg.startswith("--debug="):
      value = arg == "--debug" or arg.split("=", 1)[-1].strip().lower() in ("1", "true", "yes", "t", "y")
  return value


