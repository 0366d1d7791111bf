"""The docs show commands that exist: every ``clul-ray`` invocation in a shell block (and in
inline code) of README.md, docs/*.md, cluster/README.md and benchmarks/RESULTS.md names a
real command, and every ``--flag`` it shows is an option of that command; every ``make``
target shown is in the Makefile; every relative link points to a file that exists (and a
``#anchor`` to a heading in it).

Checked against the typer app's command tree, without running anything."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from clul_ray.cli import app

pytestmark = pytest.mark.pure

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "cluster" / "README.md",
                REPO / "benchmarks" / "RESULTS.md"])
SHELL = {"bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
ENDS = {";", "&&", "||", "|", ">", ">>", "2>", "&"}


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def blocks(text: str) -> Iterator[tuple[int, str, str]]:
    """(first line number, info string, body) of each fenced block."""
    for m in FENCE.finditer(text):
        yield text.count("\n", 0, m.start()) + 2, m.group(2).lower(), m.group(3)


def prose(text: str) -> str:
    """The text outside fenced blocks (the same length, so line numbers hold)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def logical_lines(body: str, first: int) -> Iterator[tuple[int, str]]:
    """Lines of a shell block with backslash continuations joined and ``$ `` prompts cut."""
    buf, start = "", first
    for i, line in enumerate(body.splitlines()):
        if not buf:
            start = first + i
            line = re.sub(r"^\s*\$\s", "", line)
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf = ""
    if buf:
        yield start, buf


def tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError as e:  # an unbalanced quote: the line cannot be checked as shown
        raise AssertionError(f"cannot split {line!r}: {e}") from None


def invocations(toks: list[str]) -> Iterator[list[str]]:
    """The arguments after each ``clul-ray`` (or ``python -m clul_ray.cli``), up to the end
    of that command (``;``, ``&&``, a pipe to another program, a redirection)."""
    for i, t in enumerate(toks):
        cli = t == "clul-ray" or t.endswith("/clul-ray")
        if t == "clul_ray.cli" and i and toks[i - 1] == "-m":
            cli = True
        if not cli:
            continue
        args: list[str] = []
        for j, a in enumerate(toks[i + 1:], i + 1):
            if a in ENDS:
                # '|' between alternatives of a synopsis (`(--ids X | --ids-file F)`) goes on
                nxt = toks[j + 1] if j + 1 < len(toks) else ""
                if a == "|" and nxt.lstrip("[(").startswith("-"):
                    continue
                break
            if a.endswith(";"):
                args.append(a.rstrip(";"))
                break
            args.append(a)
        yield args


def word(a: str) -> str:
    """A synopsis token without its brackets: ``[--json]`` -> ``--json``."""
    return a.strip("[](){}.,")


def resolve(args: list[str]):
    """The click command the arguments name, the names on the way, and the rest."""
    cmd, path, rest = typer.main.get_command(app), ["clul-ray"], list(args)
    while hasattr(cmd, "commands") and rest and not word(rest[0]).startswith("-"):
        name = word(rest[0])
        if name in ("", "…", "COMMAND"):  # a placeholder: `...`, `clul-ray COMMAND --help`
            return None, path + [name], rest[1:]
        if name not in cmd.commands:
            raise LookupError(f"`{' '.join(path)} {name}`: no such command "
                              f"(commands: {', '.join(sorted(cmd.commands))})")
        cmd, path, rest = cmd.commands[name], path + [name], rest[1:]
    return cmd, path, rest


def options(cmd) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("-"))
    return names


def problems(args: list[str]) -> list[str]:
    try:
        cmd, path, rest = resolve(args)
    except LookupError as e:
        return [str(e)]
    if cmd is None:
        return []
    if hasattr(cmd, "commands") and len(path) == 1 and not rest:
        return []
    known = options(cmd)
    out = []
    for a in rest:
        for part in re.split(r"[|]", word(a)):
            flag = part.split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in known:
                out.append(f"`{' '.join(path)}` has no option {flag} "
                           f"(options: {', '.join(sorted(known))})")
    return out


def shown_commands(page: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, arguments) of every ``clul-ray`` call the page shows, in shell blocks and in
    inline code that starts with ``clul-ray``."""
    text = page.read_text()
    for first, info, body in blocks(text):
        if info not in SHELL:
            continue
        for n, line in logical_lines(body, first):
            for args in invocations(tokens(line)):
                yield n, args
    for n, line in enumerate(prose(text).splitlines(), 1):
        for m in INLINE.finditer(line):
            code = m.group(1).strip()
            if "clul-ray " in code:
                for args in invocations(tokens(code)):
                    yield n, args


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(page: Path) -> Iterator[tuple[int, str]]:
    text = prose(page.read_text())
    for pattern in (LINK, REF_LINK):
        for m in pattern.finditer(text):
            yield text.count("\n", 0, m.start()) + 1, m.group(1)


# ---- the tests ------------------------------------------------------------------------------
def test_the_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("exact-deletion.md", "approximate.md", "tune.md", "continual.md", "serve.md",
                 "feature-unlearning.md", "cluster.md", "ARCHITECTURE.md", "RELIABILITY.md"):
        assert page in names, f"docs/{page} is missing"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_commands_shown_exist_with_their_options(page):
    seen, bad = 0, []
    for n, args in shown_commands(page):
        seen += 1
        bad += [f"{rel(page)}:{n}: {p}" for p in problems(args)]
    assert not bad, "\n".join(bad)
    if page.parent.name == "docs" and page.name not in ("ARCHITECTURE.md", "RELIABILITY.md"):
        assert seen, f"{rel(page)} shows no clul-ray command"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_make_targets_shown_exist(page):
    targets, bad = make_targets(), []
    for first, info, body in blocks(page.read_text()):
        if info in SHELL:
            for n, line in logical_lines(body, first):
                toks = tokens(line)
                for i, t in enumerate(toks[:-1]):
                    if t == "make" and (i == 0 or toks[i - 1] in ENDS) \
                            and not toks[i + 1].startswith("-") and toks[i + 1] not in targets:
                        bad.append(f"{rel(page)}:{n}: no Makefile target {toks[i + 1]!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_to_files(page):
    bad = []
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, …
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{rel(page)}:{n}: ({target})"
        if not dest.exists():
            bad.append(f"{where}: {path} does not exist")
        elif not dest.is_relative_to(REPO):
            bad.append(f"{where}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{where}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not bad, "\n".join(bad)


# ---- the checker itself -----------------------------------------------------------------------
def test_the_checker_finds_what_is_wrong():
    def check(line: str) -> list[str]:
        return [p for args in invocations(tokens(line)) for p in problems(args)]

    assert check("clul-ray delete --root R (--ids 1,2 | --ids-file F) [--json]") == []
    assert check("clul-ray tune --method M|all --forget class:3 --out d  # a comment --nope") == []
    assert check("ray job submit --address http://h:8265 -- clul-ray delete --root r --ids 1") == []
    assert check("clul-ray train --root r --help | less") == []
    assert check("clul-ray delete --root r --idz 1")[0].startswith(
        "`clul-ray delete` has no option --idz")
    assert "no such command" in check("clul-ray delet --root r")[0]
    assert check("clul-ray status --root r; clul-ray verify --root r --sample-id 3") == [
        check("clul-ray verify --root r --sample-id 3")[0]]
    assert slug("CLUL's strengths swept (`clul-ray tune --stream`)") == \
        "cluls-strengths-swept-clul-ray-tune---stream"


def test_the_tests_the_docs_name_exist():
    """ARCHITECTURE's invariants and RELIABILITY's rows each name their test: a renamed or
    removed test leaves no row pointing at nothing."""
    names = {m.group(1) for f in (REPO / "tests").rglob("test_*.py")
             for m in re.finditer(r"^def (test_\w+)", f.read_text(), re.M)}
    missing = [(rel(page), m.group(1)) for page in PAGES
               for m in re.finditer(r"::(test_\w+)", page.read_text())
               if m.group(1) not in names]
    assert missing == []
