"""Shell command lines to facts: programs through wrappers, installs, URLs, scripts."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, MutableMapping

from .budget import tick
from .config import config_lines
from .facts import Anchor, Fact, FactSet

MAX_DEPTH = 6
OPERATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "\n"})
REDIRECTS = frozenset({">", ">>", "<", ">&", "&>", "<&", ">|", "&>>", "<<<", "<>"})
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh", "source", "."})
PYTHONS = re.compile(r"^python(\d(\.\d+)?)?$")
FETCHERS = frozenset(
    {
        "git",
        "wget",
        "curl",
        "aria2c",
        "axel",
        "gdown",
        "svn",
        "hg",
        "rsync",
        "scp",
        "ipfs",
        "youtube-dl",
        "yt-dlp",
        "gsutil",
        "rclone",
        "lftp",
    }
)
# Downloaders that save under a name given by an option: (short, long) option.
SAVE_AS = {
    "wget": ("-O", "--output-document"),
    "curl": ("-o", "--output"),
    "aria2c": ("-o", "--out"),
    "axel": ("-o", "--output"),
}
_ARCHIVE = re.compile(r"\.(?:tar\.gz|tar\.xz|tar\.bz2|tgz|zip|gz|xz|bz2|7z|deb|rpm|exe)$")
_NO_NAME = frozenset({"download", "latest", "raw", "main", "master", "file", "bin", "releases"})
URL_TOKEN = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|magnet:\?|git@[\w.-]+:)", re.IGNORECASE)
ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_VAR = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][\w.-]*)\1")

# Wrapper programs and how many leading option tokens take a value.
_WRAPPER_OPTS_WITH_VALUE = {
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "--user", "--group"},
    "env": {"-u", "-C", "--unset", "--chdir", "-S"},
    "nice": {"-n", "--adjustment"},
    "ionice": {"-c", "-n", "-p", "-t"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"},
    "stdbuf": {"-i", "-o", "-e"},
    "nohup": set(),
    "exec": {"-a"},
    "command": set(),
    "builtin": set(),
    "time": {"-f", "-o"},
    "setsid": set(),
    "xargs": {"-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a"},
    "chroot": set(),
    "taskset": set(),
    "cpulimit": {"-l", "-p", "--limit", "--pid"},
    "runuser": {"-u", "-g"},
    "watch": {"-n", "--interval"},
    "proxychains": {"-f"},
    "proxychains4": {"-f"},
    "torsocks": set(),
    "screen": {"-S", "-c", "-L", "-Logfile"},
    "tmux": set(),
    "parallel": set(),
}
_POSITIONAL_FIRST = {"timeout": 1, "taskset": 1, "chroot": 1}
# Reserved words that open or continue a compound command: the program follows them
# (`while true; do curl ...; done`, `if ! pgrep x; then ./x; fi`, `{ ./x; }`).
RESERVED = frozenset({"do", "then", "else", "elif", "if", "while", "until", "!", "{", "}"})
# A file descriptor written against its redirect (`2>`, `1>>`, `0<`); `22 > log` is an
# argument followed by a redirect.
_FD_REDIRECT = re.compile(r"(?:^|(?<=[\s;&|(]))(\d+)(?=[<>])")
_SPLIT_OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|", "(", ")")

# `docker run` / `docker exec` options that take a value (`-e K=V`, `--name x`)
_CONTAINER_OPTS_WITH_VALUE = frozenset(
    "-e --env --env-file -v --volume -p --publish -w --workdir --name -u --user --network "
    "--net --entrypoint -m --memory --cpus --gpus --mount -l --label --add-host --device "
    "-h --hostname --restart --shm-size --ulimit --cap-add --ipc --pid --platform".split()
)
# screen option clusters that take a value: -S NAME, -dmS NAME, -mS NAME, -dmSL NAME
_SCREEN_VALUE = re.compile(r"-[A-Za-z]*[Sc][A-Za-z]*")

Analyze = Callable[[str, Anchor, int], None]


def _container_command(argv: list[str]) -> list[str] | None:
    """The command `docker run [options] IMAGE CMD...` or `docker exec [options]
    CONTAINER CMD...` runs inside the container (podman alike); None when only the
    image's own entrypoint runs (`docker run alpine/bombardier -c 1000 URL`)."""
    i = 2
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _CONTAINER_OPTS_WITH_VALUE else 1
    command = argv[i + 1 :]
    return command if command and not command[0].startswith("-") else None


def program_name(token: str) -> str:
    return posixpath.basename(token).lower()


# Release builds carry a version or platform after the name: ttyd.x86_64, xmrig-6.21.0,
# ngrok-v3-stable-linux-amd64. Only such parts are cut, so ssh-keygen stays ssh-keygen.
_RELEASE_PART = re.compile(
    r"[-_.](?:v?\d[\w.]*|linux(?:64)?|amd64|x86_64|x86-64|x86|x64|arm64|aarch64|armv\d\w*|"
    r"arm|i[36]86|386|static|stable|musl|gnu|glibc|bin|elf|appimage)$"
)


def release_base(program: str) -> str:
    """The tool a release file name stands for, or the name itself."""
    if len(program) > 80:  # no tool's release file is named like this; keeps the loop short
        return program
    base = program
    while (cut := _RELEASE_PART.search(base)) is not None and cut.start() > 0:
        base = base[: cut.start()]
    return base


def url_tool(url: str) -> str:
    """The tool a download URL stands for: its file's release name (`cloudflared-linux-amd64`
    -> cloudflared), else the repository it comes from; "" when neither says."""
    from .repos import repository

    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    base = _ARCHIVE.sub("", program_name(path.rsplit("/", 1)[-1])) if "/" in path else ""
    tool = release_base(base) if base else ""
    if tool and "." not in tool and tool not in _NO_NAME and not tool.isdigit():
        return tool
    found = repository(url)
    return found[1] if found else ""


def _tokenize(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return line.replace(";", " ; ").replace("|", " | ").replace("&&", " && ").split()
    return [part for tok in tokens for part in _split_operators(tok)]


def _split_operators(token: str) -> list[str]:
    """shlex glues neighbouring punctuation (`);`, `&)`): split it into operators."""
    if token in OPERATORS or not token or set(token) - set(";&|()"):
        return [token]
    parts: list[str] = []
    rest = token
    while rest:
        op = next(o for o in _SPLIT_OPERATORS if rest.startswith(o))
        parts.append(op)
        rest = rest[len(op) :]
    return parts


def _commands(tokens: list[str], fds: list[str] | None = None) -> list[tuple[list[str], str]]:
    """Split a token list into simple commands, each with the operator that follows it.
    ``fds``: the digits the line writes against a redirect (`2>`), in order; a number
    apart from its redirect (`ngrok tcp 22 > log`) stays an argument."""
    pending = list(fds) if fds is not None else None
    out: list[tuple[list[str], str]] = []
    current: list[str] = []
    skip = False
    for i, tok in enumerate(tokens):
        if skip:
            skip = False
            continue
        if tok in OPERATORS:
            out.append((current, tok))
            current = []
        elif tok in REDIRECTS or (set(tok) <= set("<>&|") and ("<" in tok or ">" in tok)):
            skip = tok not in ("<<", "<<-")  # the redirect target is not an argument
        elif (
            tok.isdigit()
            and i + 1 < len(tokens)
            and tokens[i + 1] in REDIRECTS
            and (pending is None or tok in pending)
        ):
            if pending is not None:
                pending.remove(tok)
            continue
        else:
            current.append(tok)
    out.append((current, ""))
    return [(c, op) for c, op in out if c]


def _logical_lines(script: str) -> list[tuple[int, str, str | None]]:
    """(line index, text, heredoc body) with backslash continuations joined."""
    raw = script.split("\n")
    out: list[tuple[int, str, str | None]] = []
    i = 0
    while i < len(raw):
        start, text = i, raw[i]
        while text.endswith("\\") and i + 1 < len(raw):
            i += 1
            text = text[:-1] + " " + raw[i]
        body = None
        m = HEREDOC.search(text)
        if m:
            end = i + 1
            while end < len(raw) and raw[end].strip() != m.group(2):
                end += 1
            body = "\n".join(raw[i + 1 : end])
            text = text[: m.start()] + text[m.end() :]
            i = end
        out.append((start, text, body))
        i += 1
    return out


def _decode_pipeline(stage_text: str, filters: list[list[str]]) -> str | None:
    """Text that `echo TEXT | base64 -d | ...` produces, for the filters we know."""
    data = stage_text.encode()
    for argv in filters:
        name = program_name(argv[0])
        try:
            if name in ("base64", "base32") and any(a in ("-d", "--decode", "-D") for a in argv):
                decoder = base64.b64decode if name == "base64" else base64.b32decode
                data = decoder(b"".join(data.split()))
            elif name == "xxd" and "-r" in argv:
                data = binascii.unhexlify(b"".join(data.split()))
            elif name == "rev":
                data = b"\n".join(line[::-1] for line in data.split(b"\n"))
            elif name == "tr":
                continue
            else:
                return None
        except (ValueError, binascii.Error):
            return None
    return data.decode("utf-8", "replace")


class ShellScanner:
    """Turns shell text into facts. ``files`` is the session's memory of written files."""

    def __init__(
        self,
        facts: FactSet,
        files: MutableMapping[str, str],
        renames: MutableMapping[str, str],
        analyze_python: Analyze,
        environ: Mapping[str, str] | None = None,
        origins: MutableMapping[str, str] | None = None,
    ) -> None:
        self.facts = facts
        self.files = files
        self.renames = renames
        self.analyze_python = analyze_python
        self.environ = environ if environ is not None else {}  # variables set by earlier cells
        self.origins = origins if origins is not None else {}  # downloaded file -> its URL

    def remember_download(self, path: str, url: str) -> None:
        """A file saved under a name of its own (`wget -O cf URL`): running it later is
        running what the URL names (its release name or repository), from that URL."""
        local = program_name(path.strip())
        if not local or not URL_TOKEN.match(url):
            return
        self.origins[local] = url
        tool = url_tool(url)
        if tool and tool != local:
            self.renames[local] = tool

    # -- entry points ----------------------------------------------------
    def scan(self, script: str, anchor: Anchor, depth: int = 0) -> None:
        if depth > MAX_DEPTH or not script.strip():
            return
        variables: dict[str, str] = dict(self.environ)
        for index, text, body in _logical_lines(script):
            tick()
            where = dataclasses.replace(anchor, line_offset=anchor.line_offset + index)
            if text.strip():
                self.facts.add(
                    Fact("string", text=text.strip(), evidence=text.strip(), anchor=where)
                )
            self._line(text, body, where, depth, variables)

    def data_file(self, path: str, content: str, anchor: Anchor) -> None:
        """A written file that is no script: its text, and a configuration's `key = value`
        lines (config.py), for string rules."""
        self.facts.add(Fact("string", text=content, evidence=content[:200], anchor=anchor))
        flat = config_lines(path, content)
        if flat:
            self.facts.add(Fact("string", text=flat, evidence=flat[:200], anchor=anchor))

    def written(self, path: str, content: str, anchor: Anchor, depth: int) -> None:
        """`cat > path <<EOF` body: remembered, and analysed as what the file is."""
        self.files[path] = content
        ext = posixpath.splitext(path)[1].lower()
        if ext in (".py", ".ipy"):
            self.analyze_python(content, anchor, depth + 1)
        elif ext in ("", ".sh", ".bash", ".zsh", ".command"):
            self.scan(content, anchor, depth + 1)
        else:
            self.data_file(path, content, anchor)

    def scan_argv(self, argv: list[str], anchor: Anchor, depth: int = 0) -> None:
        text = " ".join(argv)
        self.facts.add(Fact("string", text=text, evidence=text, anchor=anchor))
        self._command(argv, anchor, depth, None)

    # -- internals --------------------------------------------------------
    def _line(
        self, text: str, body: str | None, anchor: Anchor, depth: int, variables: dict[str, str]
    ) -> None:
        tokens = _tokenize(text)
        if body is not None and tokens and program_name(tokens[0]) in ("cat", "tee"):
            for i, token in enumerate(tokens[:-1]):  # cat > config.json <<EOF
                if token in (">", ">>", ">|") and not tokens[i + 1].startswith("/dev/"):
                    self.written(self._expand(tokens[i + 1], variables), body, anchor, depth)
        commands = _commands(tokens, _FD_REDIRECT.findall(text))
        pipeline: list[list[str]] = []
        for argv, op in commands:
            argv = [self._expand(tok, variables) for tok in argv]
            while argv and (ASSIGN.match(argv[0]) or argv[0] in RESERVED):
                if argv[0] not in RESERVED:
                    name, _, value = argv[0].partition("=")
                    variables[name] = value
                argv = argv[1:]
            if not argv:
                continue
            pipeline.append(argv)
            if op == "|":
                continue
            self._pipeline(pipeline, anchor, depth, body)
            pipeline = []
        if pipeline:
            self._pipeline(pipeline, anchor, depth, body)

    @staticmethod
    def _expand(token: str, variables: dict[str, str]) -> str:
        if "$" not in token or not variables:
            return token
        return SHELL_VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), token)

    def _pipeline(
        self, stages: list[list[str]], anchor: Anchor, depth: int, body: str | None
    ) -> None:
        for argv in stages:
            self._command(argv, anchor, depth, body)
        real = self._unwrap(stages[-1])[0]
        last = program_name(real[0]) if real else ""
        first = stages[0]
        if (
            len(stages) >= 2
            and (last in SHELLS or PYTHONS.match(last))
            and program_name(first[0]) in ("echo", "printf", "cat")
        ):
            if program_name(first[0]) == "cat":
                text = "\n".join(self.files.get(a, "") for a in first[1:])
            else:
                text = " ".join(a for a in first[1:] if not a.startswith("-"))
            decoded = _decode_pipeline(text, stages[1:-1])
            if decoded is None:
                return
            if last in SHELLS:
                self.scan(decoded, anchor, depth + 1)
            else:
                self.analyze_python(decoded, anchor, depth + 1)

    def _unwrap(self, argv: list[str]) -> tuple[list[str], list[list[str]]]:
        """Strip wrappers like sudo/env/nohup/timeout: (the real command, the wrappers)."""
        wrappers: list[list[str]] = []
        for _ in range(8):
            if not argv:
                break
            name = program_name(argv[0])
            if name in ("screen", "tmux"):
                inner = self._unwrap_multiplexer(name, argv)
            elif name in ("docker", "podman") and argv[1:2] in (["run"], ["exec"]):
                command = _container_command(argv)
                if command is None:
                    break
                inner = command
            elif name in _WRAPPER_OPTS_WITH_VALUE:
                with_value = _WRAPPER_OPTS_WITH_VALUE[name]
                i = 1
                while i < len(argv) and (argv[i].startswith("-") or ASSIGN.match(argv[i])):
                    i += 2 if argv[i] in with_value else 1
                    if argv[i - 1] == "--":
                        break
                inner = argv[i + _POSITIONAL_FIRST.get(name, 0) :]
            else:
                break
            # the wrapper's own words; a multiplexer's command is re-split text, not a tail
            tail = len(argv) - len(inner)
            own = argv[:tail] if inner and tail > 0 and argv[tail:] == inner else argv
            wrappers.append(own)
            argv = inner
        return argv, wrappers

    @staticmethod
    def _unwrap_multiplexer(name: str, argv: list[str]) -> list[str]:
        rest = argv[1:]
        if name == "tmux" and rest[:1] in (["send-keys"], ["send"]):
            # tmux send-keys -t NAME 'cmd' Enter: the keys typed are the command
            keys, i = [], 1
            while i < len(rest):
                if rest[i] in ("-t", "-N"):
                    i += 2
                    continue
                if not rest[i].startswith("-") and rest[i] not in ("Enter", "C-m", "KPEnter"):
                    keys.append(rest[i])
                i += 1
            return shlex.split(" ".join(keys)) if keys else []
        if name == "tmux":
            rest = [a for a in rest if a not in ("new", "new-session", "new-window", "-d")]
            rest = [
                a
                for i, a in enumerate(rest)
                if not (a.startswith("-") or (i and rest[i - 1] in ("-s", "-n", "-t")))
            ]
            return shlex.split(rest[0]) + rest[1:] if len(rest) == 1 and " " in rest[0] else rest
        i = 0
        while i < len(rest) and rest[i].startswith("-"):
            # a cluster with S or c takes the session name or config file next, as
            # notebooks mean it (-S NAME, -dmS NAME, -mS NAME, -dmSL NAME)
            flag = rest[i]
            takes = flag in ("-Logfile", "-c") or bool(_SCREEN_VALUE.fullmatch(flag))
            i += 2 if takes else 1
        return rest[i:]

    def _command(self, argv: list[str], anchor: Anchor, depth: int, body: str | None) -> None:
        argv, wrappers = self._unwrap(argv)
        for wrapper in wrappers:  # wrappers are programs too (proxychains, torsocks, screen)
            self.facts.add(
                Fact(
                    "shell",
                    name=program_name(wrapper[0]),
                    text=" ".join(wrapper[1:]),
                    evidence=" ".join(wrapper + argv),
                    anchor=anchor,
                )
            )
        if not argv:
            return
        program = program_name(argv[0])
        args = argv[1:]
        evidence = " ".join(argv)
        self.facts.add(
            Fact("shell", name=program, text=" ".join(args), evidence=evidence, anchor=anchor)
        )
        origin = self.origins.get(program)
        if origin is not None:  # a file downloaded under this name: URL and repo rules see it
            self.facts.add(
                Fact(
                    "url",
                    text=origin,
                    evidence=f"{evidence} (downloaded from {origin})",
                    anchor=anchor,
                )
            )
        renamed = self.renames.get(program)
        tool = release_base(renamed or program)
        for name, how in ((renamed, "renamed from"), (tool, "release build of")):
            if name and name != program and (how == "renamed from" or tool != renamed):
                self.facts.add(
                    Fact(
                        "shell",
                        name=name,
                        text=" ".join(args),
                        evidence=f"{evidence} ({how} {name})",
                        anchor=anchor,
                    )
                )
        self._urls(program, args, anchor)
        if program in SAVE_AS:
            self._download(program, args)
        self._installs(program, args, anchor)
        self._nested(program, argv, args, anchor, depth, body)

    def _urls(self, program: str, args: list[str], anchor: Anchor) -> None:
        for arg in args:
            if URL_TOKEN.match(arg) or (
                program in FETCHERS and "/" in arg and "." in arg and not arg.startswith("-")
            ):
                self.facts.add(Fact("url", text=arg, evidence=arg, anchor=anchor))

    def _download(self, program: str, args: list[str]) -> None:
        """`wget -O cf URL`, `curl -sLo cf URL`, `aria2c --out=cf URL`: remember the name."""
        short, long = SAVE_AS[program]
        url = next((a for a in args if URL_TOKEN.match(a)), None)
        if url is None:
            return
        for i, arg in enumerate(args):
            following = args[i + 1] if i + 1 < len(args) else ""
            if arg == long:
                target = following
            elif arg.startswith(long + "="):
                target = arg[len(long) + 1 :]
            elif arg.startswith("-") and not arg.startswith("--") and short[1] in arg[1:]:
                rest = arg[arg.index(short[1], 1) + 1 :]  # -O cf, -Ocf, -qO cf, -sLo cf
                target = rest or following
            else:
                continue
            if target and target != "-" and not target.startswith("/dev/"):
                self.remember_download(target, url)

    def _installs(self, program: str, args: list[str], anchor: Anchor) -> None:
        manager, packages = _install_request(program, args)
        for package in packages:
            if URL_TOKEN.match(package.removeprefix("git+")):
                self.facts.add(
                    Fact("url", text=package.removeprefix("git+"), evidence=package, anchor=anchor)
                )
                continue
            name = _package_name(package)
            if name:
                self.facts.add(
                    Fact(
                        "install",
                        name=name,
                        manager=manager,
                        evidence=f"{manager} install {package}",
                        anchor=anchor,
                    )
                )

    def _nested(
        self,
        program: str,
        argv: list[str],
        args: list[str],
        anchor: Anchor,
        depth: int,
        body: str | None,
    ) -> None:
        if program in ("mv", "cp", "ln", "install") and len(args) >= 2:
            plain = [a for a in args if not a.startswith("-")]
            if len(plain) == 2:
                old, new = program_name(plain[0]), program_name(plain[1])
                self.renames[new] = self.renames.get(old, old)
                if old in self.origins:
                    self.origins[new] = self.origins[old]
        if program in ("cat", "tee") and body is not None:
            for target in args:
                if not target.startswith("-"):
                    self.written(target, body, anchor, depth)
            return
        is_python = bool(PYTHONS.match(program))
        if program in SHELLS or is_python:
            if "-c" in args:
                code = args[args.index("-c") + 1] if args.index("-c") + 1 < len(args) else ""
                if is_python:
                    self.analyze_python(code, anchor, depth + 1)
                else:
                    self.scan(code, anchor, depth + 1)
                return
            if body is not None:
                (self.analyze_python if is_python else self.scan)(body, anchor, depth + 1)
            script = next((a for a in args if not a.startswith("-")), None)
            if script is not None and is_python and args[:1] == ["-m"]:
                return
            if script is not None:
                self._run_file(script, anchor, depth, python=is_python)
            return
        if argv[0] in self.files or posixpath.basename(argv[0]) in self.files:
            self._run_file(argv[0], anchor, depth, python=argv[0].endswith(".py"))

    def _run_file(self, path: str, anchor: Anchor, depth: int, python: bool) -> None:
        content = self.files.get(path)
        if content is None:
            content = self.files.get(posixpath.basename(path))
        if content is None:
            return
        if python:
            self.analyze_python(content, anchor, depth + 1)
        else:
            self.scan(content, anchor, depth + 1)


_VALUE_OPTIONS = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "-e",
    "--editable",
    "-n",
    "--name",
    "-p",
    "--prefix",
    "--channel",
    "-o",
    "--option",
    "--python",
    "--trusted-host",
    "--root",
}


def _install_request(program: str, args: list[str]) -> tuple[str, list[str]]:
    """(manager, requested packages) when the command installs packages."""
    manager = ""
    rest: list[str] = []
    if program in ("pip", "pip3") or re.match(r"^pip\d(\.\d+)?$", program):
        manager, rest = "pip", args
    elif PYTHONS.match(program) and args[:2] in (["-m", "pip"],):
        manager, rest = "pip", args[2:]
    elif program == "uv" and args[:1] == ["pip"]:
        manager, rest = "pip", args[1:]
    elif program == "uv" and args[:1] == ["add"]:
        return "pip", [a for a in args[1:] if not a.startswith("-")]
    elif program in ("conda", "mamba", "micromamba"):
        manager, rest = "conda", args
    elif program in ("apt", "apt-get", "aptitude"):
        manager, rest = "apt", args
    elif program == "dpkg" and ("-i" in args or "--install" in args):
        return "apt", [a for a in args if not a.startswith("-")]
    elif program in ("npm", "pnpm"):  # global or into the project: either way it runs here
        manager, rest = "npm", [a for a in args if a not in ("-g", "--global")]
    elif program == "yarn" and (args[:1] == ["add"] or args[:2] == ["global", "add"]):
        start = 1 if args[0] == "add" else 2
        return "npm", [a for a in args[start:] if not a.startswith("-")]
    if not manager:
        return "", []
    verbs = {"install", "add", "i", "create"}
    try:
        start = next(i for i, a in enumerate(rest) if a in verbs)
    except StopIteration:
        return manager, []
    packages: list[str] = []
    skip = False
    for arg in rest[start + 1 :]:
        if skip:
            skip = False
            continue
        if arg in _VALUE_OPTIONS:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        packages.append(arg)
    return manager, packages


def _package_name(spec: str) -> str:
    """`Foo_Bar[x]>=1.0` -> `foo-bar`; `./chrome-remote-desktop_current_amd64.deb` -> its name;
    an npm scope stays (`@whiskeysockets/baileys@6` -> `@whiskeysockets/baileys`)."""
    spec = spec.strip("'\"")
    scope = ""
    if spec.startswith("@") and "/" in spec:
        scope, spec = spec.split("/", 1)
        scope = scope.lower() + "/"
    if spec.endswith(".deb"):
        spec = posixpath.basename(spec).split("_")[0]
    elif spec.endswith((".whl", ".tar.gz", ".zip")):
        spec = posixpath.basename(spec).split("-")[0]
    spec = re.split(r"[\[<>=!~;@ ]|:(?=\w)", spec, maxsplit=1)[0]
    name = re.sub(r"[-_.]+", "-", spec).lower().strip("-")
    return scope + name if name else ""
