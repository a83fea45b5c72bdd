"""Where code reaches a shell, a Python evaluator or an importer (qualified names)."""

from __future__ import annotations

# Calls whose first argument is a shell command string.
SHELL_STRING = frozenset(
    {
        "os.system",
        "os.popen",
        "subprocess.getoutput",
        "subprocess.getstatusoutput",
        "commands.getoutput",
        "commands.getstatusoutput",
        "asyncio.create_subprocess_shell",
        "IPython.utils.process.system",
        "IPython.utils.process.getoutput",
        "pexpect.spawn",
        "pexpect.run",
        "pexpect.popen_spawn.PopenSpawn",
        "sh.Command",
        "platform.popen",
    }
)
# get_ipython().<method>(cmd) that run a shell.
IPY_SHELL = frozenset({"system", "system_raw", "system_piped", "getoutput"})
# Calls whose first argument is a command string or an argv list.
SUBPROCESS = frozenset(
    {
        "subprocess.run",
        "subprocess.call",
        "subprocess.check_call",
        "subprocess.check_output",
        "subprocess.Popen",
        "pty.spawn",
        "asyncio.create_subprocess_exec",
    }
)
# os.exec*v*(path, argv) and posix_spawn(path, argv, env).
EXEC_ARGV = frozenset(
    {
        "os.execv",
        "os.execve",
        "os.execvp",
        "os.execvpe",
        "os.posix_spawn",
        "os.posix_spawnp",
    }
)
# os.execl*(path, arg0, arg1, ...) and os.spawnl*(mode, path, arg0, ...): index of the path.
EXEC_LIST = {
    "os.execl": 0,
    "os.execle": 0,
    "os.execlp": 0,
    "os.execlpe": 0,
    "os.spawnl": 1,
    "os.spawnle": 1,
    "os.spawnlp": 1,
    "os.spawnlpe": 1,
}
# os.spawnv*(mode, path, argv).
SPAWN_ARGV = frozenset({"os.spawnv", "os.spawnve", "os.spawnvp", "os.spawnvpe"})
# Calls that run a string as Python.
PYTHON_EXEC = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "builtins.exec",
        "builtins.eval",
        "builtins.compile",
        "code.InteractiveInterpreter.runsource",
        "runpy.run_path",
    }
)
IMPORTERS = frozenset(
    {"__import__", "importlib.import_module", "importlib.__import__", "builtins.__import__"}
)

SHELL_LINE_MAGICS = frozenset({"sx", "system", "sc", "!"})
SHELL_CELL_MAGICS = frozenset({"bash", "sh", "!", "sx", "system", "zsh"})
PYTHON_CELL_MAGICS = frozenset(
    {"capture", "time", "timeit", "prun", "python", "python3", "python2", "pypy", "debug"}
)
INSTALL_MAGICS = {
    "pip": "pip",
    "conda": "conda",
    "mamba": "mamba",
    "micromamba": "micromamba",
    "uv": "uv",
}
# Cell magics whose body is not code that runs on the machine.
INERT_CELL_MAGICS = frozenset(
    {"html", "HTML", "javascript", "js", "latex", "markdown", "svg", "sql", "md", "text"}
)
