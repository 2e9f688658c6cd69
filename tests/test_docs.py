"""Documentation as a contract: every hook is documented with its exact signature and tested."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from corecrm.hooks import all_spec_classes

ROOT = Path(__file__).resolve().parent.parent
HOOK_DOC = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")


def hook_specs() -> list[tuple[str, str]]:
    out = []
    for cls in all_spec_classes():
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("crm_"):
                args = [p for p in inspect.signature(fn).parameters if p != "self"]
                out.append((name, f"{name}({', '.join(args)})"))
    return sorted(out)


def test_there_are_hooks():
    assert len(hook_specs()) >= 20


@pytest.mark.parametrize("name, signature", hook_specs())
def test_hook_is_documented_with_its_exact_signature(name, signature):
    headings = re.findall(r"^### (crm_\w+\(.*\))$", HOOK_DOC, re.M)
    assert signature in headings, f"docs/hooks.md needs a heading '### {signature}'"


def test_documented_hooks_exist():
    documented = {h.split("(")[0] for h in re.findall(r"^### (crm_\w+\(.*\))$", HOOK_DOC, re.M)}
    assert documented == {n for n, _ in hook_specs()}


def _test_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                names.add(node.name)
    return names


@pytest.mark.parametrize("name, signature", hook_specs())
def test_hook_has_a_test(name, signature):
    assert any(t == f"test_hook_{name}" or t.startswith(f"test_hook_{name}_") for t in _test_names()), f"no test named test_hook_{name}[_...]"


@pytest.mark.parametrize("name, signature", hook_specs())
def test_hook_docstring_states_combination_and_version(name, signature):
    fn = next(getattr(c, name) for c in all_spec_classes() if hasattr(c, name))
    doc = inspect.getdoc(fn) or ""
    assert "Combination:" in doc and "versionadded" in doc


def test_readme_quick_start_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", section, re.S)
    commands = [ln for b in blocks for ln in b.strip().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(commands) == 2
    assert "corecrm demo" in commands[0] and "pytest" in commands[1]
