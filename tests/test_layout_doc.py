"""docs/layout.md ("Where things are") names every module of the package, so a new module gets its line."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "groupnorm"


def test_every_module_is_in_the_layout_page():
    text = (ROOT / "docs" / "layout.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "_version.py")
        and f"`{path.relative_to(PACKAGE)}`" not in text
        and f"`{path.name}`" not in text
    ]
    assert missing == [], f"docs/layout.md does not say where these are: {missing}"


def test_the_readme_points_to_it():
    assert "](docs/layout.md)" in (ROOT / "README.md").read_text()
