"""Output line splitting (bounded, masked) and command-line masking, without processes."""

from __future__ import annotations

import pytest

from edgeloop.blocks.masking import SecretMask, shown_command
from edgeloop.blocks.process import MAX_LINE_BYTES, _Lines


def split(chunks: list[bytes], secrets: tuple[str, ...] = ()) -> list[str]:
    out: list[str] = []
    lines = _Lines(out.append, SecretMask(secrets))
    for chunk in chunks:
        lines.feed(chunk)
    lines.close()
    return out


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"a", b"b\n", b"c"], ["ab", "c"]),  # split across chunks; last line without \n
        ([b"crlf\r\n", b"\n"], ["crlf", ""]),
        ([b"\xff\xfe bad utf-8\n"], ["\ufffd\ufffd bad utf-8"]),
        ([], []),
    ],
)
def test_lines(chunks: list[bytes], expected: list[str]) -> None:
    assert split(chunks) == expected


def test_long_line_is_truncated_and_the_rest_dropped() -> None:
    chunk = b"x" * 10_000
    out = split([chunk] * 50 + [b"tail\nnext\n"])
    assert out[0] == "x" * MAX_LINE_BYTES + f" [line truncated at {MAX_LINE_BYTES} bytes]"
    assert out[1:] == ["next"]  # "tail" ended the long line: dropped with it


def test_secret_across_the_cut_is_masked() -> None:
    secret = "s3cr3t-value-0123456789"
    data = b"y" * (MAX_LINE_BYTES - 5) + secret.encode() + b"z" * 100_000 + b"\n"
    out = split([data[i : i + 4096] for i in range(0, len(data), 4096)], (secret,))
    assert len(out) == 1
    assert secret[:5] not in out[0][-80:]
    assert "***" in out[0]


def test_secrets_split_across_chunks_and_json_escaped() -> None:
    out = split([b"key=hun", b'ter"2 and {"k": "hunter\\"2"}\n'], ('hunter"2',))
    assert out == ['key=*** and {"k": "***"}']


def test_mask_prefers_the_longest_secret_and_ignores_empty() -> None:
    mask = SecretMask(["abc", "abcdef", ""])
    assert mask("abcdef abc") == "*** ***"
    assert not SecretMask(["", ""])
    assert SecretMask([])("abc") == "abc"


def test_shown_command_hides_the_hmac_key() -> None:
    mask = SecretMask(["tok-123"])
    cmd = ["py", "--hmac-key", "k", "--x", "a tok-123 b", "--hmac-key=k2", "--hmac-key", ""]
    assert shown_command(cmd, mask) == (
        "py",
        "--hmac-key",
        "***",
        "--x",
        "a *** b",
        "--hmac-key=***",
        "--hmac-key",
        "",
    )
