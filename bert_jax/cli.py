"""`bert-jax COMMAND [--flags]`: one console script, a module per command.

Each command lives in `bert_jax.commands.<name>`, defines its absl flags at
import and a `main(argv)`; only the chosen command's module is imported, so
`bert-jax bench` never imports TensorFlow.

Bad input never ends in a traceback: a bad flag, an unknown flag, a config
file that is missing, a directory or does not parse, and a `--config.KEY`
override of a key the config lacks are each one line on stderr and exit
status 2, like the `UserError`s a command raises (BERT_JAX_TRACEBACK=1 shows
the traceback). `bert-jax COMMAND --help` lists the command's own flags.

The console script starts quietly: TensorFlow's, XLA's and CUDA's start-up
lines are not shown (`bert_jax.quiet`; BERT_JAX_VERBOSE_STARTUP=1 shows them).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pathlib
import re
import sys
import textwrap

from bert_jax import quiet
from bert_jax.errors import UserError

COMMANDS = {
    "pretrain": ("pretrain", "pre-train a BERT from a config (MLM + NSP/SOP)"),
    "evaluate": ("evaluate", "evaluate a pre-training checkpoint on held-out data"),
    "create-data": ("create_data", "raw text -> masked sentence-pair TFRecord shards"),
    "build-vocab": ("build_vocab", "train a WordPiece, SentencePiece or byte-level BPE vocabulary"),
    "inspect-data": ("inspect_data", "preflight a corpus or created shards"),
    "tokenize": ("tokenize", "tokenize stdin (any vocabulary kind), one JSON object per line"),
    "convert": ("convert", "import/export Hugging Face and Google TF checkpoints"),
    "extract-features": ("extract_features", "per-token hidden states as JSON lines"),
    "bench": ("bench", "time the pre-training step; compare with the reference"),
    "finetune": ("finetune", "fine-tune and evaluate on GLUE / SQuAD / NER"),
    "compile": ("compile", "compile the train step ahead of time for a topology"),
    "distill": ("distill", "distil a fine-tuned teacher into a smaller student"),
    "quantize": ("quantize", "post-training int8 quantisation of a fine-tuned model"),
    "prune": ("prune", "magnitude or attention-head pruning of a fine-tuned model"),
    "export": ("export", "TensorFlow SavedModel with the tokenizer in the graph"),
    "score": ("score", "BERTScore of candidates against references (as bert_score)"),
    "embed": ("embed", "sentence vectors, or a cosine search over a corpus"),
}

_HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-helpshort", "-?")
_HELPFULL_ARGS = ("--helpfull", "-helpfull")
# setup.py's extras, for naming the one a command's missing import needs.
_EXTRA_OF_PACKAGE = {"qwix": "compress", "apache_beam": "beam", "libtpu": "tpu", "jax_cuda12_plugin": "tpu"}


def _usage() -> str:
    lines = ["usage: bert-jax COMMAND [--flags]   (bert-jax COMMAND --help for its flags)", ""]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<17} {text}")
    return "\n".join(lines)


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"bert_jax.commands.{module}") is not None


def _fail(prog: str, message: str) -> None:
    """The one line every bad input ends in: `PROG: error: MESSAGE`, exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _import_command(name: str):
    """The command's module; a missing optional package is a UserError naming its extra."""
    try:
        return importlib.import_module(f"bert_jax.commands.{COMMANDS[name][0]}")
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if not top or top == "bert_jax":
            raise  # our own module missing is a bug, not the user's install
        extra = _EXTRA_OF_PACKAGE.get(top)
        fix = f"pip install -e '.[{extra}]'" if extra else "a core requirement: reinstall with pip install -e ."
        raise UserError(f"needs the Python package {top!r}, which is not installed; {fix}") from e


# ----------------------------------------------------------------- --help


# What a flag's value looks like, by absl's flag_type(), for `--name=VALUE` in the help.
_VALUE_OF_TYPE = {"int": "INT", "integer": "INT", "float": "FLOAT", "string": "STR", "string enum": "CHOICE",
                  "multi string": "STR (repeatable)", "comma separated list of strings": "A,B,..."}


def _flag_help(flag, config_file: bool) -> str:
    """One flag's entry: `--name=VALUE`, then its help and default, wrapped and indented."""
    from ml_collections.config_flags import config_flags  # the module: is_config_flag lives there

    text = flag.help or ""
    if config_flags.is_config_flag(flag):
        # A config flag's default is the whole config: say how to override a key instead.
        name = f"--{flag.name}=FILE" if config_file else f"--{flag.name}.KEY=VALUE"
        text += f" Override any key with --{flag.name}.KEY=VALUE (nested: --{flag.name}.A.B=VALUE)."
    elif flag.boolean:
        name = f"--[no]{flag.name}"
    else:
        name = f"--{flag.name}={_VALUE_OF_TYPE.get(flag.flag_type(), 'VALUE')}"
    if not config_flags.is_config_flag(flag) and flag.default not in (None, "", []):
        text += f" (default: {flag.default!r})" if isinstance(flag.default, str) else f" (default: {flag.default})"
    if _is_required(flag):
        text += " (required)"
    body = textwrap.fill(text, width=100, initial_indent="      ", subsequent_indent="      ",
                         break_on_hyphens=False, break_long_words=False)
    return f"  {name}\n{body}"


def _is_required(flag) -> bool:
    """Whether absl was told the flag is required (mark_flag_as_required adds this validator)."""
    return any("must have a value other than None" in str(getattr(v, "message", ""))
               for v in getattr(flag, "validators", ()))


def _command_help(name: str, module) -> str:
    """`bert-jax NAME --help`: the module's docstring, then its own flags with their help."""
    from absl import flags
    from ml_collections.config_flags import config_flags  # the module: is_config_flag lives there

    doc = (module.__doc__ or f"bert-jax {name}").strip()
    own = flags.FLAGS.get_key_flags_for_module(module)
    lines = [doc, "", f"flags of bert-jax {name}:"]
    for flag in own:
        file_flag = config_flags.is_config_flag(flag) and isinstance(
            flag.parser, config_flags.ConfigFileFlagParser
        )
        lines.append(_flag_help(flag, file_flag))
    lines += ["", f"bert-jax {name} --helpfull lists absl's own flags too (--verbosity, --logtostderr, ...)."]
    return "\n".join(lines)


# ----------------------------------------------------------- flag parsing


def _flag_value(argv: list[str], name: str) -> str | None:
    """The last value given to --NAME in argv (`--NAME=V` or `--NAME V`), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        match = re.fullmatch(rf"--?{re.escape(name)}(=(.*))?", arg, flags=re.S)
        if match:
            if match.group(1) is not None:
                value = match.group(2)
            elif i + 1 < len(argv):
                value = argv[i + 1]
    return value


def _config_file_flags() -> list:
    """The `config_flags.DEFINE_config_file` flags defined (their value is a file path)."""
    from absl import flags
    from ml_collections.config_flags import config_flags  # the module: is_config_flag lives there

    return [
        flag for name, flag in flags.FLAGS._flags().items()
        if name == flag.name and config_flags.is_config_flag(flag)
        and isinstance(flag.parser, config_flags.ConfigFileFlagParser)
    ]


def _check_config_path(name: str, value: str) -> None:
    """A --NAME=FILE[:ARG] that is empty, missing or a directory, as a UserError."""
    file = value.split(":", 1)[0]  # FILE:ARG passes ARG to get_config
    path = pathlib.Path(file)
    if not file:
        raise UserError(f"--{name} is empty; pass a config file, e.g. --{name}=configs/demo.py")
    if path.is_dir():
        inside = sorted(p.as_posix() for p in path.glob("*.py") if not p.name.startswith("_"))[:4]
        hint = f" ({', '.join(inside)}{', ...' if len(inside) == 4 else ''})" if inside else ""
        raise UserError(f"--{name}={value}: {path} is a directory; pass one config file in it{hint}")
    if not path.exists():
        raise UserError(f"--{name}={value}: config file {path} does not exist; check the path "
                        f"(relative paths are from {os.getcwd()})")


def _overrides(argv: list[str]) -> list[tuple[str, str]]:
    """(flag name, dotted key) of each `--NAME.KEY=...` config override in argv."""
    found = []
    for arg in argv:
        match = re.match(r"--?(?:no)?([A-Za-z_]\w*)\.([^=]+)", arg)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


# The fine-tuning config's one learning rate and warmup (finetune/config.py):
# the pre-training optimizer block's pair is not there to be overridden.
_ONE_PAIR = {
    "optimizer.learning_rate": "learning_rate",
    "optimizer.warmup_steps": "warmup (a fraction of the steps)",
}


def _unknown_key_message(error: BaseException, argv: list[str]) -> str | None:
    """ConfigDict's KeyError/AttributeError for an override's missing key, as one line."""
    cause = error.args[0] if error.args else ""
    if isinstance(cause, BaseException):  # AttributeError(KeyError(...)) from ConfigDict.__getattr__
        cause = cause.args[0] if cause.args else ""
    text = str(cause)
    missing = re.match(r"""^['"]?([^'"\n]+)['"]?""", text)
    if not missing:
        return None
    key = missing.group(1)
    for name, dotted in _overrides(argv):
        parts = dotted.split(".")
        if key not in parts:
            continue
        above = parts[: parts.index(key)]
        source = _flag_value(argv, name)
        owner = f"the config from {source}" if source else f"--{name}"
        owner += f" (under {'.'.join(above)})" if above else ""
        line = f"--{name}.{dotted}: {owner} has no key {key!r}"
        if dotted in _ONE_PAIR:
            return f"{line}; fine-tuning has one learning rate and one warmup: use --{name}.{_ONE_PAIR[dotted]}"
        suggestion = re.search(r'Did you mean "([^"]+)"', text)
        if suggestion:
            return f"{line}; did you mean --{name}.{'.'.join([*above, suggestion.group(1)])}?"
        return f"{line}; override a key the config defines (the config file lists them)"
    return None


def _is_config_file(filename: str, argv: list[str]) -> bool:
    """Whether `filename` is a config file given to a DEFINE_config_file flag in argv."""
    names = [flag.name for flag in _config_file_flags()]
    files = {pathlib.Path(v.split(":", 1)[0]).resolve() for n in names if (v := _flag_value(argv, n))}
    return pathlib.Path(filename).resolve() in files


def _config_frame(error: BaseException, argv: list[str]) -> str | None:
    """`FILE:LINE` of the deepest traceback frame inside a config file named in argv."""
    where = None
    tb = error.__traceback__
    while tb is not None:
        if _is_config_file(tb.tb_frame.f_code.co_filename, argv):
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _flags_error_message(error, prog: str) -> str:
    """absl's flags.Error (unknown flag, bad value, missing required flag) as one line + fix."""
    from absl import flags

    text = str(error)
    if isinstance(error, flags.UnrecognizedFlagError):
        tip = re.search(r"Did you mean: (.*) \?", text)
        flag = f"--{error.flagname}"
        hint = f"did you mean --{tip.group(1)}?" if tip else f"{prog} --help lists its flags"
        return f"unknown flag {flag}; {hint}"
    if "Error whilst parsing config file" in text:
        # get_config() raised TypeError/ValueError; absl packed the traceback into the message.
        frames = re.findall(r'File "([^"]+)", line (\d+)', text)
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        flag = re.match(r"flag (--\S+?)=", text)
        where = f" at {frames[-1][0]}:{frames[-1][1]}" if frames else ""
        return f"{flag.group(1) if flag else '--config'}: the config file's get_config() failed{where}: {last}; fix the config file"
    inline = re.match(r"flag --(\w+)=.*: Overriding \w+ is not allowed", text)
    if inline:  # a DEFINE_config_dict flag: its config is built in, not read from a file
        name = inline.group(1)
        return f"--{name} takes no file here; change single keys with --{name}.KEY=VALUE ({prog} --help)"
    order = re.match(r"Found (--[^=\s]+)\S* in argv before a value for (--\w+) was specified", text)
    if order:  # config_flags applies overrides to the file's config, so the file must come first
        return f"{order.group(1)} comes before {order.group(2)}=FILE; put {order.group(2)}=FILE first"
    missing = re.findall(r"Flag (--\S+) must have a value other than None", text)
    if missing and len(missing) == len(text.splitlines()):
        return f"missing required flag{'s' * (len(missing) > 1)} {', '.join(missing)}; {prog} --help lists its flags"
    bad_value = re.match(r"flag --(\S+?)=", text)
    expected = _override_type(bad_value.group(1)) if bad_value else None
    if expected:
        return f"{_one_line(text)}; {expected}"
    return f"{_one_line(text)}; {prog} --help lists its flags"


def _override_type(name: str) -> str | None:
    """For a `--config.KEY` override flag: what the config holds there (its type and value)."""
    from absl import flags
    from ml_collections.config_flags import config_path

    flag = flags.FLAGS._flags().get(name)
    config, path = getattr(flag, "_config", None), getattr(flag, "_path", None)
    if config is None or path is None:
        return None
    try:
        value = config_path.get_value(path, config)
    except (KeyError, AttributeError):
        return None
    return f"the config's {path} is {type(value).__name__} {value!r}: give a value of that type"


def _check_config_paths(argv: list[str]) -> None:
    """Each config file given on the command line exists and is a file (config_flags would
    otherwise defer the error to the config's first use, as a traceback)."""
    for flag in _config_file_flags():
        value = _flag_value(argv[1:], flag.name)
        if value is not None:
            _check_config_path(flag.name, value)


@contextlib.contextmanager
def _flag_errors_as_user_errors(prog: str, argv: list[str]):
    """Turns what absl and config_flags raise for bad flags or configs into one-line UserErrors.

    absl's own parser prints a FATAL line and exits 1; config_flags lets a config file's
    SyntaxError or an override of a missing key escape as a traceback (at import for a
    DEFINE_config_dict flag, at parsing for a DEFINE_config_file one).
    """
    from absl import flags

    try:
        yield
    except flags.Error as e:
        raise UserError(_flags_error_message(e, prog)) from e
    except SyntaxError as e:
        if not e.filename or not _is_config_file(e.filename, argv):
            raise  # a syntax error in our own code is a bug
        raise UserError(f"{e.filename}:{e.lineno}: syntax error in the config file: {e.msg}; fix the file") from e
    except (KeyError, AttributeError) as e:
        raise UserError(_unknown_key_message(e, argv) or _config_failure(e, argv)) from e
    except UserError:
        raise
    except Exception as e:
        raise UserError(_config_failure(e, argv)) from e


def _config_failure(error: BaseException, argv: list[str]) -> str:
    """One line for an exception a config file raised while loading; re-raise anything else."""
    where = _config_frame(error, argv)
    if where is None:
        raise error  # not from a config file: a bug, keep its traceback
    return f"the config file raised {type(error).__name__} at {where}: {_one_line(error)}; fix the config file"


def _check_configs_loaded() -> None:
    """A config file that could not be read (e.g. permissions) is kept by config_flags as an
    error object that raises on first use, deep in the command; name it here instead."""
    from ml_collections.config_flags import config_flags  # the module: is_config_flag lives there

    error_config = getattr(config_flags, "_ErrorConfig", ())
    for flag in _config_file_flags():
        if isinstance(flag.value, error_config):
            raise UserError(f"--{flag.name}: cannot load the config file: "
                            f"{_one_line(object.__getattribute__(flag.value, '_error'))}")


# ------------------------------------------------------------------- run


def run(argv: list[str] | None = None) -> None:
    in_process = argv is not None
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2:
        print(_usage(), file=sys.stderr)  # a mistake, so stderr; `bert-jax --help` is stdout
        sys.exit(2)
    if argv[1] == "help" and len(argv) > 2:
        argv = [argv[0], argv[2], "--help"]
    if argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0)
    name = argv[1]
    if name not in COMMANDS or not _available(COMMANDS[name][0]):
        known = ", ".join(n for n, (m, _) in COMMANDS.items() if _available(m))
        _fail("bert-jax", f"unknown command {name!r}; commands: {known}")
    prog = f"bert-jax {name}"
    args = [prog] + argv[2:]
    if in_process:  # config_flags finds the --config.KEY overrides in sys.argv, not in the argv parsed
        sys.argv = args
    else:  # the console script: before the command imports TensorFlow or JAX (bert_jax/quiet.py)
        quiet.quiet_startup()
    try:
        with _flag_errors_as_user_errors(prog, args):  # a DEFINE_config_dict applies overrides at import
            module = _import_command(name)
        _help_and_exit(name, module, args)
        from absl import app  # imported late: `bert-jax --help` stays instant

        app.run(module.main, argv=args, flags_parser=lambda argv_: _parse_flags(prog, argv_))
    except UserError as e:
        if os.environ.get("BERT_JAX_TRACEBACK"):
            raise
        _fail(prog, str(e))


def _help_and_exit(name: str, module, args: list[str]) -> None:
    """`--help` (the command's flags) or `--helpfull` (all flags) on stdout, exit status 0."""
    flag_args = args[1 : args.index("--")] if "--" in args else args[1:]
    if any(a in _HELPFULL_ARGS for a in flag_args):
        from absl import flags

        print(_command_help(name, module) + "\n\n" + flags.FLAGS.get_help())
        sys.exit(0)
    if any(a in _HELP_ARGS for a in flag_args):
        print(_command_help(name, module))
        sys.exit(0)


def _parse_flags(prog: str, argv: list[str]) -> list[str]:
    """The flags_parser given to app.run: every bad flag or config is a one-line UserError."""
    from absl import flags

    _check_config_paths(argv)
    with _flag_errors_as_user_errors(prog, argv):
        rest = flags.FLAGS(argv)
    _check_configs_loaded()
    return rest


if __name__ == "__main__":
    run()
