"""The README a newcomer meets: the two set-up commands first, a quick start of one screen whose commands
are valid, then the contents; and every link of the README and the docs pages leads somewhere."""

import re
import shlex
from pathlib import Path

import pytest

from assembly.config import load_config
from tests.conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, ROOT / "RESULTS.md", *sorted((ROOT / "docs").glob("*.md"))]
SETUP = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && python train.py",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt "
    "&& python -m pytest -q",
]
SCREEN = 50  # lines


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S)


def sections(text: str) -> list[str]:
    """The ``## `` headings, in order (outside code blocks)."""
    return [
        line[3:] for line in re.sub(r"```.*?```", "", text, flags=re.S).splitlines() if line.startswith("## ")
    ]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.*)$", text, flags=re.M)}


def test_the_readme_starts_with_the_two_setup_commands():
    text = README.read_text()
    first_lines = text.split("```", 4)
    assert first_lines[0].startswith("# ") and first_lines[0].count("\n") == 2  # the title, a blank line
    assert [block.strip() for block in code_blocks(text)[:2]] == [SETUP[0], SETUP[1]]


def test_a_quick_start_of_one_screen_then_the_contents():
    text = README.read_text()
    headings = sections(text)
    assert headings[:2] == ["Quick start", "Contents"]
    quick = text.split("## Quick start\n", 1)[1].split("## Contents\n", 1)[0]
    assert len(quick.strip().splitlines()) <= SCREEN
    contents = text.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((docs/[^)#]+)", contents))
    assert linked == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}  # every page is listed


def quick_start_commands() -> list[list[str]]:
    quick = README.read_text().split("## Quick start\n", 1)[1].split("## Contents\n", 1)[0]
    return [shlex.split(line, comments=True) for line in code_blocks(quick)[0].splitlines() if line.strip()]


def test_the_quick_start_commands_name_what_exists_and_valid_settings():
    commands = quick_start_commands()
    assert commands[0] == ["python", "train.py"]  # the first one makes runs/default, which the others read
    for words in commands:
        if words[0] != "python":
            assert words[0] == "tensorboard"
            continue
        script = words[2].replace(".", "/") + ".py" if words[1] == "-m" else words[1]
        assert (ROOT / script).is_file(), script
        rest = words[3:] if words[1] == "-m" else words[2:]
        config = rest[rest.index("--config") + 1] if "--config" in rest else "configs/default.yaml"
        assert (ROOT / config).is_file()
        overrides = [w for w in rest if "=" in w and not w.startswith("-")]
        if script in ("train.py", "deploy/loopback.py"):
            load_config(ROOT / config, overrides)  # raises on a key or value the schema refuses
        for flag in [w for w in rest if w.startswith("--")]:
            assert flag in (ROOT / script).read_text(), (script, flag)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_leads_to_a_file_and_a_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # the web
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        assert destination.exists(), f"{page.name}: {target}"
        if anchor and destination.suffix == ".md":
            assert anchor in anchors(destination), f"{page.name}: {target}"


def layout_blocks() -> dict[str, str]:
    """The Layout section's code block as {label: its text}: a label starts a line, its text runs on
    through the indented lines below it."""
    text = README.read_text()
    section = text[text.index("## Layout\n") :]
    block = code_blocks(section)[0]
    blocks: dict[str, str] = {}
    label = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            label, _, rest = line.partition(" ")
            blocks[label] = rest
        else:
            blocks[label] += " " + line.strip()
    return blocks


def modules(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}


def named(text: str) -> set[str]:
    return set(re.findall(r"\b[\w]+\.py\b", text))


def test_the_layout_names_every_module_and_only_modules_that_exist():
    blocks = layout_blocks()
    commands = blocks.pop("commands")
    assert named(commands) == modules(ROOT), "commands: the root's .py files"
    folders = {
        p.parent for p in ROOT.rglob("*.py")
        if not ({".venv", ".venv-ci", "tests", ".git", "runs", ".cache"} & set(p.relative_to(ROOT).parts))
        and p.parent != ROOT and ROOT / "docs" / "results" not in p.parents  # a study's own scripts
    }  # fmt: skip
    described = {ROOT / label.rstrip("/") for label in blocks if label.endswith("/")}
    assert folders - described == set(), (
        f"folders of Python code missing from the Layout: {folders - described}"
    )
    for label, text in blocks.items():
        folder = ROOT / label.rstrip("/")
        assert folder.exists(), f"the Layout names {label}, which does not exist"
        if folder.is_dir() and label != "tests/":
            listed = named(text) - {"__init__.py"}
            assert listed == modules(folder), (
                f"{label}: named but absent {sorted(listed - modules(folder))}, "
                f"present but unnamed {sorted(modules(folder) - listed)}"
            )
    assert named(blocks["configs/"].replace(".yaml", ".py")) == {
        p.name.replace(".yaml", ".py") for p in (ROOT / "configs").glob("*.yaml")
    }, "configs/: every config file, and only those"
