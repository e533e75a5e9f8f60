"""What every fuzz target shares: input mutators, the time and memory guard, the registry.

A *target* is one parser of ours fed with one kind of input.  Its property is always the
same: on any input it returns, or raises one of the exception types its callers turn into
a one-line error (a :class:`~p2vimage.errors.P2VError` subclass, or a narrow parser error
such as ``PEError`` that every call site catches); never another exception, never longer
than :data:`EXAMPLE_SECONDS`, never more than :data:`MEMORY_CAP` bytes of new address
space.  Targets with more to check (no file outside the destination, nothing written to
a source) assert it themselves.

The targets are plain functions so that the pytest tests (bounded, derandomized) and
``benchmarks/fuzz.py`` (long, random) run exactly the same code.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: Wall-clock seconds one example may take before it counts as a hang.  Generous, because
#: the machine is shared and slow; every target's examples take milliseconds normally.
EXAMPLE_SECONDS = 20
#: Address space one example may add.  The largest allocation a header may legitimately
#: cause is partclone's 256 MiB checksum strip; a 4 GiB length field must fail instead.
MEMORY_CAP = 768 << 20

PROFILE_ENV = "P2VIMAGE_FUZZ_PROFILE"


class Hang(Exception):
    """An example ran longer than :data:`EXAMPLE_SECONDS` (a loop that never ends)."""


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def guard(seconds: int = EXAMPLE_SECONDS, memory: int = MEMORY_CAP) -> Iterator[None]:
    """Bound one example: SIGALRM raises :class:`Hang`, RLIMIT_AS turns an allocation
    beyond ``memory`` into MemoryError (which no target allows).

    Both are process-wide, so they are set for the example only and restored after; the
    pytest tests run in the main thread of their (xdist worker) process.
    """

    def on_alarm(_sig: int, _frame: Any) -> None:
        raise Hang(f"example still running after {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + memory
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, old_handler)


# --- mutation ---------------------------------------------------------------------------------

#: Values that break length and offset fields: zero, one, sign bits, all ones, 4 GiB.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


@st.composite
def _position(draw: st.DrawFn, length: int) -> int:
    """An offset into the data, biased to the first 512 bytes where the headers are."""
    if length <= 0:
        return 0
    if draw(st.booleans()):
        return draw(st.integers(0, min(length, 512) - 1))
    return draw(st.integers(0, length - 1))


@st.composite
def mutate(draw: st.DrawFn, data: bytes, max_ops: int = 6,
           splice_from: Sequence[bytes] = ()) -> bytes:
    """``data`` after a few random edits: bit flips, byte sets, a field overwritten with an
    interesting value (both byte orders, 1 to 8 bytes), truncation, insertion, deletion,
    duplication of a range, and splices from another seed."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(("flip", "set", "field", "truncate", "insert", "delete",
                                   "dup", "splice")))
        n = len(out)
        if op == "insert" or n == 0:
            pos = draw(_position(n + 1)) if n else 0
            out[pos:pos] = draw(st.binary(min_size=1, max_size=64))
            continue
        pos = draw(_position(n))
        if op == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            out[pos] = draw(st.integers(0, 255))
        elif op == "field":
            width = draw(st.sampled_from((1, 2, 4, 8)))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << 64) - 1))
            order = draw(st.sampled_from(("little", "big")))
            raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, order)
            out[pos : pos + width] = raw[: max(0, n - pos)]
        elif op == "truncate":
            del out[pos:]
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 256))]
        elif op == "dup":
            length = draw(st.integers(1, 256))
            out[pos:pos] = out[pos : pos + length]
        elif op == "splice" and splice_from:
            other = draw(st.sampled_from(list(splice_from)))
            if other:
                start = draw(st.integers(0, len(other) - 1))
                out[pos : pos + draw(st.integers(1, 512))] = other[start : start + 512]
    return bytes(out)


def mutated(seeds: Sequence[bytes], max_ops: int = 6) -> st.SearchStrategy[bytes]:
    """A seed, picked and mutated (seeds may be splice donors for each other)."""
    seeds = [s for s in seeds if s is not None]
    return st.sampled_from(seeds).flatmap(lambda s: mutate(s, max_ops, seeds))


def seeded_or_random(seeds: Sequence[bytes], magic: bytes = b"", max_size: int = 2048,
                     max_ops: int = 6) -> st.SearchStrategy[bytes]:
    """Mostly mutated seeds (to reach deep code), sometimes random bytes behind the magic
    (to reach the early refusals with inputs no seed resembles)."""
    random = st.binary(max_size=max_size).map(lambda b: magic + b)
    return st.one_of(mutated(seeds, max_ops), random, st.binary(max_size=64))


TEXT_TOKENS = ("\r\n", "\n", "\\\n", "\0", "\ufeff", "\ufffd", '"', ";", "=", ",", "%", "%%",
               "[", "]", ":", "..\\", "../", "/", "C:\\", "0x", "-1", "99999999999999999999",
               "9" * 5000, "\u0663", "\u00b2", "\U0001f600", "\ud800", " ", "\t")


@st.composite
def mutate_text(draw: st.DrawFn, text: str, max_ops: int = 6) -> str:
    """Line- and token-level edits of a text seed: lines dropped, duplicated, swapped, cut,
    and tokens that break parsers (quotes, separators, huge numbers, lone surrogates) put
    anywhere."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(("drop", "dup", "token", "cut", "random")))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
        elif op == "token":
            line = lines[i]
            at = draw(st.integers(0, len(line)))
            token = draw(st.sampled_from(TEXT_TOKENS))
            lines[i] = line[:at] + token + line[at:]
        elif op == "cut":
            line = lines[i]
            lines[i] = line[: draw(st.integers(0, len(line)))]
        else:
            lines.insert(i, draw(st.text(max_size=80)))
    return "".join(lines)


def mutated_text(seeds: Sequence[str], max_ops: int = 6) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(list(seeds)).flatmap(lambda s: mutate_text(s, max_ops)),
                     st.text(max_size=400))


def fix_u32(data: bytes, offset: int, value: int) -> bytes:
    """``data`` with a little-endian u32 at ``offset`` (when it fits): re-seals a checksum."""
    if offset + 4 > len(data):
        return data
    return data[:offset] + struct.pack("<I", value & 0xFFFFFFFF) + data[offset + 4 :]


# --- the registry -------------------------------------------------------------------------------


@dataclass
class Target:
    """One parser entry point under fuzz: how to make inputs and what it may raise."""

    name: str
    parser: str  # the module/function under test, for the report
    strategy: Callable[[], st.SearchStrategy[Any]]  # lazy: seeds are read on first use
    run: Callable[[Any], Any]
    allowed: tuple[type[BaseException], ...]
    weight: float = 1.0  # share of the CI example budget (slow targets get less)
    examples: int = field(default=0, init=False)  # examples run so far (for the benchmark)
    accepted: int = field(default=0, init=False)  # of which the parser returned a result

    def check(self, value: Any) -> None:
        """Run one example under the guard; anything not ``allowed`` propagates."""
        self.examples += 1
        with guard(), contextlib.suppress(*self.allowed):
            self.run(value)
            self.accepted += 1

    def hypothesis_test(self, base: settings, **overrides: Any) -> Callable[[], None]:
        """A ``@given`` test of this target with ``base`` settings scaled by ``weight``."""
        max_examples = overrides.pop("max_examples", max(5, round(base.max_examples *
                                                                  self.weight)))
        conf = settings(base, max_examples=max_examples, **overrides)

        @conf
        @given(self.strategy())
        def fuzz(value: Any) -> None:
            self.check(value)

        fuzz.__name__ = f"fuzz_{self.name}"
        fuzz.__qualname__ = f"fuzz_{self.name}"
        return fuzz


TARGETS: dict[str, Target] = {}


def target(name: str, parser: str, strategy: Callable[[], st.SearchStrategy[Any]],
           allowed: tuple[type[BaseException], ...] = (), weight: float = 1.0
           ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated function as the run step of target ``name``."""

    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        assert name not in TARGETS, name
        TARGETS[name] = Target(name, parser, strategy, fn, allowed, weight)
        return fn

    return deco


def register_profiles() -> None:
    """``fuzz-ci`` (the default, used by ``make test``) and ``fuzz-long`` (a local soak).

    CI runs are derandomized and keep no example database: every run tries the same
    examples, so a failure in CI reproduces on any machine with the same command and never
    depends on a database left behind by an earlier run.  ``benchmarks/fuzz.py`` explores
    with fresh random seeds instead (and prints them).
    """
    common: dict[str, Any] = dict(
        deadline=None,  # the guard bounds time; a wall-clock deadline flakes on busy CPUs
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example],
        print_blob=True,
    )
    settings.register_profile("fuzz-ci", max_examples=400, derandomize=True, **common)
    settings.register_profile("fuzz-long", max_examples=2000, derandomize=False, **common)


def ci_settings() -> settings:
    """The profile named by ``$P2VIMAGE_FUZZ_PROFILE`` (default ``fuzz-ci``)."""
    register_profiles()
    return settings.get_profile(os.environ.get(PROFILE_ENV, "fuzz-ci"))
