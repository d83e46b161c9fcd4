"""The library is usable without the screen: importing it pulls in no UI code."""

import subprocess
import sys

import brokers

UI_PACKAGES = ("textual", "rich", "console")


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return {line.split(".")[0] for line in out.stdout.splitlines()}


def test_public_api_imports_without_ui():
    names = ", ".join(brokers.__all__)
    loaded = _modules_after(f"from brokers import {names}\nimport brokers.runtime")
    assert not loaded & set(UI_PACKAGES), sorted(loaded & set(UI_PACKAGES))


def test_adapters_stay_unimported_until_asked_for():
    loaded = _modules_after("import brokers.runtime\nfrom brokers import BrokerFactory")
    assert not loaded & {"alpaca", "ib_async", "ib_insync", "kiteconnect"}


def test_lint_imports_contract_holds():
    result = subprocess.run(["lint-imports"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_public_name_resolves_and_type_checkers_see_the_same_names():
    import ast
    from pathlib import Path

    source = Path(brokers.__file__).read_text(encoding="utf-8")
    checked: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                checked |= {alias.asname or alias.name for alias in statement.names}
    assert checked == set(brokers.__all__)
    for name in brokers.__all__:
        value = getattr(brokers, name)
        assert getattr(value, "__name__", name) == name
