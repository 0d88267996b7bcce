"""Shell completion scripts, generated from the argparse parser itself (so they cannot drift):
`mindproject completion bash` and `mindproject completion zsh`. Zsh runs the bash function
through `bashcompinit`, which zsh ships: one generator, both shells, no runtime hook."""

from __future__ import annotations

import argparse
import sys

from mindproject.cli.main import build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(flag for action in parser._actions for flag in action.option_strings)


def bash_script() -> str:
    parser = build_parser()
    commands = _subcommands(parser)
    cases = []
    for name, sub in commands.items():
        words = _flags(sub) + list(_subcommands(sub))
        choices = [
            str(choice)
            for action in sub._actions
            if not action.option_strings and action.choices and action.dest != "token_command"
            for choice in action.choices
        ]
        cases.append(f'        {name}) words="{" ".join(words + choices)}" ;;')
    top = " ".join([*commands, *_flags(parser)])
    return f"""# mindproject completion for bash: source it, or save it as
# ~/.local/share/bash-completion/completions/mindproject
_mindproject() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" i words
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            *) command="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$command" in
        "") words="{top}" ;;
{chr(10).join(cases)}
        *) words="" ;;
    esac
    if [[ -z "$command" || "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur") $(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _mindproject mindproject
"""


def zsh_script() -> str:
    return (
        "# mindproject completion for zsh: source it from ~/.zshrc\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script()
    )


def print_script(args: argparse.Namespace) -> int:
    sys.stdout.write(bash_script() if args.shell == "bash" else zsh_script())
    return 0
