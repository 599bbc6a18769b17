"""The documentation (README, the MkDocs site in docs/) says what the code does: every setting,
a runbook for every alert, commands that work in the context they name, and the two
commands that serve and build it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))
import dev  # noqa: E402
from tests.test_deploy_files import env_example  # noqa: E402


def pages() -> dict[str, str]:
    return {str(path.relative_to(DOCS)): path.read_text() for path in sorted(DOCS.rglob("*.md"))}


def nav_pages(nav: list) -> list[str]:
    found = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            found.extend(nav_pages(value) if isinstance(value, list) else [value])
    return found


def test_readme_is_the_front_door_under_250_lines():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    for command in ("python3 dev.py start", "python3 dev.py test", "python3 dev.py docs"):
        assert command in readme
    # A newcomer's tour links into every part of the site.
    for page in ("getting-started", "scheduling", "operating/runbooks", "api", "deploying/configuration"):
        assert f"(docs/{page}.md)" in readme


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    # mkdocs.yml uses no custom tags, so plain YAML reads it.
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    assert sorted(listed) == sorted(pages())
    assert config["theme"]["name"] == "material" and config["strict"] is True


def test_every_setting_of_env_example_is_on_the_configuration_page():
    page = (DOCS / "deploying" / "configuration.md").read_text()
    # The first cell of each table row names one setting or a few (`VAPI_API_KEY`, `VAPI_…`).
    first_cells = re.findall(r"^\| (`[^|]*)\|", page, re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}
    missing = sorted(set(env_example()) - documented)
    assert not missing, f"not in the configuration table: {missing}"


def test_every_alert_has_a_runbook_section():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    runbooks = (DOCS / "operating" / "runbooks.md").read_text()
    headings = re.findall(r"^## (\w+)$", runbooks, re.MULTILINE)
    assert headings == alerts  # one each, in the order of the rules


# A command that names its context: development (`python3 dev.py manage`), a compose
# deployment (`docker compose exec … python manage.py`), or the deploying pages, which are
# about servers. Prose may still say why a plain `python manage.py` is not the one to use.
BARE_MANAGE = re.compile(r"(?<!exec web )(?<!exec -T web )python manage\.py")


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^\s*```.*?\n(.*?)^\s*```", text, re.MULTILINE | re.DOTALL)


def test_the_context_check_sees_commands_in_code_blocks_only():
    text = "A plain `python manage.py` is wrong.\n\n```bash\npython manage.py shell\n```\n"
    assert [block for block in code_blocks(text) if BARE_MANAGE.search(block)] == ["python manage.py shell\n"]
    assert not BARE_MANAGE.search("docker compose exec -T web python manage.py check_calls")


@pytest.mark.parametrize("name", [name for name in pages() if not name.startswith("deploying/")])
def test_commands_outside_deploying_name_their_context(name):
    bare = [block for block in code_blocks(pages()[name]) if BARE_MANAGE.search(block)]
    assert not bare, f"{name}: use `python3 dev.py manage` or `docker compose exec web …`: {bare}"


def test_the_readme_commands_are_those_of_development():
    readme = (ROOT / "README.md").read_text()
    assert code_blocks(readme)
    assert not [block for block in code_blocks(readme) if BARE_MANAGE.search(block)]


def test_dev_py_docs_serves_the_site_on_its_own_port(monkeypatch):
    ran = []
    monkeypatch.setattr(dev, "ensure_venv", lambda requirements: ran.append(requirements))
    monkeypatch.setattr(dev, "run", lambda command, env=None: ran.append(command) or 0)
    assert dev.main(["docs"]) == 0
    requirements, command = ran
    assert requirements == "requirements-dev.txt"  # where mkdocs-material is pinned
    assert command[1:] == ["-m", "mkdocs", "serve", "--dev-addr", "127.0.0.1:8001"]
    assert "python3 dev.py docs" in dev.__doc__


def test_ci_builds_the_docs_strictly_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    build = ci.index("mkdocs build --strict")
    assert build < ci.index("python3 dev.py test")
