"""Property-based tests of the id parsers: what a user can type (``--ids``) or point at
(``--ids-file``, ``ids:FILE``) either parses to exactly the ids meant or is refused with a
one-line :class:`ClulError`, never another exception. No Ray is started."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clul_ray.data.ids import parse_id_tokens, parse_ids, read_ids_file
from clul_ray.errors import ClulError

pytestmark = pytest.mark.pure

LO, HI = -(2**63), 2**63 - 1
# no example database: nothing is written into the repository (.hypothesis/)
FAST = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
ASCII_BLANK = " \t\r\n\f\v"

int64s = st.integers(min_value=LO, max_value=HI)


def oracle(tok: str) -> int | None:
    """The id ``tok`` means (ASCII decimal int64, optional sign), else None; written
    without a regex, independently of the parser."""
    body = tok[1:] if tok[:1] in ("+", "-") else tok
    if not body or any(c not in "0123456789" for c in body):
        return None
    if len(body.lstrip("0")) > 19:
        return None
    value = -int(body) if tok[:1] == "-" else int(body)
    return value if LO <= value <= HI else None


def one_line_error(fn, *args) -> str:
    with pytest.raises(ClulError) as info:
        fn(*args)
    msg = str(info.value)
    assert msg and len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, msg
    return msg


@st.composite
def written_ids(draw):
    """An int64 as a person or a program may write it: a '+' or leading zeros."""
    n = draw(int64s)
    sign = "-" if n < 0 else draw(st.sampled_from(["", "+"]))
    return n, sign + "0" * draw(st.integers(0, 3)) + str(abs(n))


@FAST
@given(written_ids(), st.text(ASCII_BLANK, max_size=3), st.text(ASCII_BLANK, max_size=3))
def test_any_ascii_decimal_int64_parses_to_itself(n_text, before, after):
    n, text = n_text
    assert parse_id_tokens([(1, text)], "--ids", "item") == [n]
    assert parse_ids(before + text + after, None) == [n]


@FAST
@given(st.lists(int64s, min_size=1, max_size=20))
def test_a_comma_separated_list_parses_in_order(ns):
    assert parse_ids(",".join(map(str, ns)), None) == ns


def not_ids():
    """Tokens that look like ids to Python's int() or to a hurried eye, and any text."""
    digits = st.text("0123456789", min_size=1, max_size=25)
    return st.one_of(
        st.text(max_size=30),
        # Unicode decimal digits other than ASCII ('２９', '٣', '߁' ...), mixed with ASCII
        st.text(st.characters(categories=["Nd"]), min_size=1, max_size=6),
        st.tuples(digits, st.characters(categories=["Nd"]), digits).map("".join),
        # underscores and whitespace inside a number
        st.tuples(digits, st.sampled_from(["_", " ", "\t", "\u3000", "\xa0", "\x85"]),
                  digits).map("".join),
        # other spellings int()/float() know
        st.tuples(st.sampled_from(["0x", "0o", "0b", "", "-", "+"]), digits,
                  st.sampled_from(["", "e3", ".0", "L", "j"])).map("".join),
        # outside int64, by a little and by a lot
        st.integers(min_value=HI + 1).map(str),
        st.integers(max_value=LO - 1).map(str),
        st.integers(20, 6000).map(lambda k: "9" * k),
    )


@FAST
@given(not_ids())
@example("２９")
@example("5_8")
@example("1 2")
@example("0x10")
@example("1e3")
@example("9223372036854775808")
@example("-9223372036854775809")
@example("+")
@example("")
@example("9" * 5000)
def test_any_other_string_is_refused_in_one_line(tok):
    expected = oracle(tok)
    if expected is not None:  # st.text() drew an id after all
        assert parse_id_tokens([(1, tok)], "--ids", "item") == [expected]
        return
    msg = one_line_error(parse_id_tokens, [(3, tok)], "--ids", "item")
    assert msg.startswith("--ids: item 3 ") or msg == "--ids: no ids given"
    assert len(msg) < 200, msg  # a long token is cut, not pasted whole


@FAST
@given(st.text(max_size=60))
def test_any_ids_option_parses_as_the_oracle_says_or_is_refused(text):
    parts = [p.strip(ASCII_BLANK) for p in text.split(",") if p.strip(ASCII_BLANK)]
    meant = [oracle(p) for p in parts]
    if parts and None not in meant:
        assert parse_ids(text, None) == meant
    else:
        one_line_error(parse_ids, text, None)


def id_file_bytes():
    """Random bytes, and lines of ids and junk in UTF-8 (with a BOM, CRLF, bad bytes)."""
    line = st.one_of(int64s.map(str), st.text(max_size=8), st.just(""),
                     st.integers(min_value=HI + 1).map(str))
    lines = st.lists(line, max_size=12).map(lambda ls: "\n".join(ls).encode())
    return st.one_of(
        st.binary(max_size=200),
        lines,
        st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf"]), lines).map(b"".join),
        lines.map(lambda b: b.replace(b"\n", b"\r\n")),
        st.tuples(lines, st.binary(min_size=1, max_size=4), lines).map(b"".join),
    )


@FAST
@given(id_file_bytes())
def test_any_ids_file_parses_or_is_refused_in_one_line(tmp_path, data):
    f = tmp_path / "ids.txt"
    f.write_bytes(data)
    try:
        ids = read_ids_file(str(f))
    except ClulError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, msg
        return
    assert ids.dtype == np.int64 and len(ids) == len(set(ids.tolist())) > 0
    text = data.decode("utf-8-sig")
    meant = [oracle(ln.strip(ASCII_BLANK)) for ln in text.split("\n") if ln.strip(ASCII_BLANK)]
    assert ids.tolist() == meant


def test_ray_unhandled_error_traces_silenced_unless_verbose(monkeypatch):
    """ensure_ray sets Ray's RAY_IGNORE_UNHANDLED_ERRORS unless --verbose (the traces Ray
    logs at exit for failed refs nobody read, after the one-line error)."""
    import ray

    from clul_ray import runtime

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # start no Ray
    monkeypatch.delenv(runtime.IGNORE_UNHANDLED_ENV, raising=False)
    monkeypatch.setenv(runtime.VERBOSE_ENV, "1")
    runtime.ensure_ray()
    assert runtime.IGNORE_UNHANDLED_ENV not in os.environ
    monkeypatch.setenv(runtime.VERBOSE_ENV, "0")
    runtime.ensure_ray()
    assert os.environ[runtime.IGNORE_UNHANDLED_ENV] == "1"
