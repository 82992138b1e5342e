"""What a server advertised, as a result carries it: upper-cased, stripped, unique, sorted and
bounded (Recorder.advertised), then valid UTF-8 and without a secret (build_result)."""

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from agent.probers import base
from agent.probers.base import CAPABILITIES_MAX, CAPABILITY_MAX, Recorder, capabilities_kept
from agent.probers.run import build_result
from shared.clock import WALL
from shared.messages import SECRET_MASK, SmtpAuth, SmtpConfig
from shared.secret import Secret
from shared.timefmt import utcnow
from testkit.peers.jobs import make_job


@pytest.mark.parametrize(
    ("advertised", "kept"),
    [
        (
            ["pipelining ", " SIZE 10240000", "starttls"],
            ["PIPELINING", "SIZE 10240000", "STARTTLS"],
        ),
        # blank entries dropped, the same capability in two spellings kept once
        (["", "   ", "8bitmime", "8BITMIME "], ["8BITMIME"]),
        # upper-cased before it is cut: "ß" becomes "SS"
        (["x" * (CAPABILITY_MAX - 1) + "ß"], ["X" * (CAPABILITY_MAX - 1) + "S"]),
        ([f"cap{i:03d}" for i in range(CAPABILITIES_MAX + 5)], None),
        ([], []),
    ],
)
def test_advertised_is_stripped_upper_cased_unique_sorted_and_bounded(
    advertised: list[str], kept: list[str] | None
) -> None:
    rec = Recorder(clock=WALL)
    rec.advertised(iter(advertised))
    if kept is None:  # too many: the first CAPABILITIES_MAX in sorted order
        kept = sorted(c.upper() for c in advertised)[:CAPABILITIES_MAX]
    assert rec.capabilities == kept


def test_a_list_met_again_is_kept_the_same_and_a_long_one_is_not_memoised() -> None:
    """The normal form is kept per distinct short list: a second session gets an equal list of
    its own; a list past CAPABILITIES_MEMO_TEXT_MAX is worked out afresh and not kept."""
    said = ("pipelining", "SIZE 100", "auth plain")
    one, two = Recorder(clock=WALL), Recorder(clock=WALL)
    one.advertised(said)
    assert one.capabilities is not None
    one.capabilities.append("X-MINE")
    two.advertised(list(said))
    assert two.capabilities == capabilities_kept(said) == ["AUTH PLAIN", "PIPELINING", "SIZE 100"]
    long = tuple(f"x-{i:04d}" for i in range(base.CAPABILITIES_MEMO_TEXT_MAX // 6 + 1))
    before = base._kept_memo.cache_info().currsize
    three = Recorder(clock=WALL)
    three.advertised(long)
    assert three.capabilities == capabilities_kept(long)
    assert base._kept_memo.cache_info().currsize == before


def test_a_server_varying_its_list_holds_a_few_megabytes_at_most() -> None:
    """A hostile server varies what it advertises on every session (a POP3 CAPA may be 64 KiB
    of empty lines, an EHLO reply a thousand keywords): the memo keeps lists of at most
    CAPABILITIES_MAX entries and CAPABILITIES_MEMO_TEXT_MAX characters, ~7 MB for its last
    CAPABILITIES_MEMO_MAX lists at most, whatever they say."""
    most, entries = base.CAPABILITIES_MEMO_MAX, CAPABILITIES_MAX
    width = base.CAPABILITIES_MEMO_TEXT_MAX // entries
    hostile: dict[str, Callable[[int], tuple[str, ...]]] = {
        "empty lines": lambda i: (f"X{i}", *[""] * 32_000),
        "short entries": lambda i: tuple(chr(0x4E00 + i * 1000 + j) for j in range(1000)),
        "the longest kept": lambda i: tuple(
            chr(0x10000 + i) + chr(0x10000 + j) * (width - 1) for j in range(entries)
        ),
    }
    held = {}
    for name, said in hostile.items():
        base._kept_memo.cache_clear()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(most):
                Recorder(clock=WALL).advertised(said(i))
            gc.collect()
            held[name] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    print({name: f"{size / 1e6:.1f} MB" for name, size in held.items()})
    assert max(held.values()) < 10_000_000


def _capabilities(config: SmtpConfig, advertised: list[str]) -> list[str] | None:
    rec = Recorder(clock=WALL)
    rec.capabilities = advertised
    rec.capabilities_before_tls = advertised
    job = make_job("smtp", 25, config)
    result = build_result(job, "agent-1", None, "ok", utcnow(), rec)
    assert result.capabilities_before_tls == result.capabilities
    return result.capabilities


@pytest.mark.parametrize(
    ("config", "advertised", "carried"),
    [
        (SmtpConfig(), ["AUTH PLAIN", "SIZE 100"], ["AUTH PLAIN", "SIZE 100"]),
        (SmtpConfig(), ["X-GR\udcfc\udcdfE", "SIZE"], ["X-GR\ufffd\ufffdE", "SIZE"]),
        (SmtpConfig(), ["X-GRÜSSE"], ["X-GRÜSSE"]),
        (
            SmtpConfig(auth=SmtpAuth(user="alice", password=Secret("pw-1"))),
            ["X-ECHO pw-1", "SIZE"],
            [f"X-ECHO {SECRET_MASK}", "SIZE"],
        ),
        (SmtpConfig(auth=SmtpAuth(user="alice", password=Secret("pw-1"))), [], []),
    ],
)
def test_a_result_carries_capabilities_as_valid_utf8_and_without_secrets(
    config: SmtpConfig, advertised: list[str], carried: list[str]
) -> None:
    assert _capabilities(config, advertised) == carried
