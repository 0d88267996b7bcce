"""The `mindproject` command: the server's (`serve`, `token create`) and the client's (`login`,
`upload`, `download`, `devices`, `history`, `rm`, `revoke`, `unrevoke`, `completion`).

Modules: `main` (parser, dispatch), `failures` (exit codes and one-line errors), `profiles`
(~/.config/mindproject/config.toml), `output` (tables, JSON, JSON lines), `progress` (rich
bars), `commands` (the client commands, over the SDK only), `completion` (bash, zsh), `server`
(serve and token create: imported only when they run).
"""

from mindproject.cli.main import main

__all__ = ["main"]
