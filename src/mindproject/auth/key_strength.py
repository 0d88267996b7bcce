"""A rough estimate of how guessable a signing key is, to refuse placeholders of any length.

Length alone lets `changeme-changeme-changeme-changeme1` or `your-256-bit-secret-your-256-bit-
secret` through. The estimate (in the manner of zxcvbn, much simplified) splits a key into runs
of letters and digits and prices each run at its cheapest reading: a run seen before, repeats of a
shorter unit, or pieces that are common words, sequences (`abcd`, `4321`, `0123456789`) or single
characters of the run's alphabet. A key from `secrets.token_hex(16)` scores about 160 bits,
`secrets.token_urlsafe(32)` about 220; the placeholders people paste score below 90.
"""

from __future__ import annotations

import itertools
import math
import re

MIN_BITS = 100
# Bits for one word of the list below or one sequence (about log2 of an attacker's list of them),
# and for a repeat of what came before.
WORD_BITS = 11.0
PATTERN_BITS = 6.0

# Words that placeholder keys are made of (and some of the most common English words).
WORDS = frozenset(
    """
    a an the my your our me you we it is be to of in on at by for with and or not no yes this that
    here there please just real really very new old default example sample demo test testing dev
    prod production staging local key keys secret secrets password passwd pass pwd token tokens
    jwt hmac sha sign signing signature auth api app application service server client admin root
    user change changeme replace replaceme set insert put enter update fill generate generated
    random long strong super top private public hidden mindproject mind project telemetry device
    devices iot fleet upload uploads bit bits byte bytes hello world foo bar baz qux abc xyz
    qwerty asdf letmein welcome love dragon monkey master shadow sunshine football baseball
    princess trustno1 something value string text what goes should must needs need used use only
    never company corp secure security access login system data cloud aws sensor office home
    internal
    """.split()  # noqa: SIM905 (a list literal of 170 words is harder to read)
)
_RUN = re.compile(r"[A-Za-z0-9]+")


def estimated_bits(key: str) -> float:
    bits = 0.0
    seen: set[str] = set()
    for match in _RUN.finditer(key):
        run = match.group()
        if run.lower() in seen:
            bits += PATTERN_BITS
            continue
        seen.add(run.lower())
        bits += _run_bits(run)
    separators = len(key) - sum(len(m.group()) for m in _RUN.finditer(key))
    return bits + separators


def _alphabet(run: str) -> int:
    return (
        (26 if any(c.islower() for c in run) else 0)
        + (26 if any(c.isupper() for c in run) else 0)
        + (10 if any(c.isdigit() for c in run) else 0)
    )


def _run_bits(run: str) -> float:
    unit = _repeated_unit(run)
    if unit != run:
        return _run_bits(unit) + PATTERN_BITS
    char_bits = math.log2(_alphabet(run))
    lower = run.lower()
    # cheapest[i]: the fewest bits that spell run[:i]; pieces are words, sequences or characters.
    cheapest = [0.0] + [math.inf] * len(run)
    for end in range(1, len(run) + 1):
        cheapest[end] = cheapest[end - 1] + char_bits
        for start in range(max(0, end - 16), end - 1):
            piece = lower[start:end]
            if piece in WORDS or (end - start >= 3 and _is_sequence(piece)):
                cheapest[end] = min(cheapest[end], cheapest[start] + WORD_BITS)
        if lower[end - 1 : end] in WORDS:
            cheapest[end] = min(cheapest[end], cheapest[end - 1] + WORD_BITS)
    return cheapest[len(run)]


def _repeated_unit(run: str) -> str:
    """The shortest unit whose repeats (the last one possibly cut) make up the run."""
    for size in range(1, len(run) // 2 + 1):
        if all(run[i] == run[i - size] for i in range(size, len(run))):
            return run[:size]
    return run


def _is_sequence(piece: str) -> bool:
    """Each character one step up, or one down, from the last (digits wrap 9 -> 0)."""
    modulus = 10 if piece.isdigit() else 256
    steps = {(ord(b) - ord(a)) % modulus for a, b in itertools.pairwise(piece)}
    return steps in ({1}, {modulus - 1})
