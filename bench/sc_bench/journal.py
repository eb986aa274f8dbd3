"""What the report says about how the run went: the commands and configs it used, as printed
(no path of this machine in them), and its notes and errors."""
import os
import re
import shlex

from .common import PY, ROOT, relative
from .processes import PROCS


class Journal:
    def __init__(self):
        self.notes = []
        self.errors = []
        self.commands = []      # (group, label, command) in first-use order, ports as placeholders
        self.configs = {}       # kind -> (file name, text) of the first config of that kind
        self.binary = None      # the socket-connector under test, printed as relative() names it

    def show(self, text, subs=None):
        """A command or config as printed: repository-relative paths (the binary by its file name
        when it lies outside the checkout), $TMP, python3, and PORT / BACKEND for the ports that
        change from relay to relay and metric to metric."""
        if PROCS.tmp:
            text = text.replace(PROCS.tmp, "$TMP")
        if self.binary and os.path.isabs(self.binary):
            text = text.replace(self.binary, relative(self.binary))
        text = text.replace(PY + " ", "python3 ").replace(ROOT + "/", "")
        for port, name in (subs or {}).items():
            text = re.sub(rf"(?<!\d){port}(?!\d)", name, text)
        return text

    def note_cmd(self, group, label, cmd, subs=None):
        text = self.show(cmd if isinstance(cmd, str) else shlex.join(cmd), subs)
        if all(c != text for _, _, c in self.commands):
            self.commands.append((group, label, text))

    def write_config(self, name, text, kind, subs=None):
        path = os.path.join(PROCS.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        self.configs.setdefault(kind, (self.show(name, subs), self.show(text, subs)))
        return path
