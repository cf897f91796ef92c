"""Static checks of the console's browser files: WCAG AA contrast of the palette, nothing that
would put credentials or patient data into storage or URLs, the vendored uPlot note, packaging."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "services" / "console" / "static"


def _css_vars() -> dict[str, str]:
    css = (STATIC / "style.css").read_text(encoding="utf-8")
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# (text, background) pairs the stylesheet uses for text.
PAIRS = [
    ("fg", "bg"),
    ("fg", "card"),
    ("muted", "card"),
    ("muted", "bg"),
    ("link", "card"),
    ("link", "bg"),
    ("accent-fg", "accent"),
    ("crit", "card"),
    ("crit", "banner"),
    ("ok", "card"),
    ("card", "crit"),
    ("card", "high"),
    ("card", "med"),
    ("card", "low"),
]


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_text_colours_meet_wcag_aa(text: str, background: str) -> None:
    palette = _css_vars()
    assert contrast(palette[text], palette[background]) >= 4.5


def test_no_browser_storage_and_no_html_injection() -> None:
    for path in STATIC.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        for banned in (
            "localStorage",
            "sessionStorage",
            "indexedDB",
            "document.cookie",
            "innerHTML",
            "pushState",
            "location.hash",
        ):
            assert banned not in source, f"{path.name} uses {banned}"


def test_vendored_uplot_matches_its_source_note() -> None:
    vendor = STATIC / "vendor" / "uplot"
    note = (vendor / "SOURCE.md").read_text(encoding="utf-8")
    assert (vendor / "LICENSE").read_text(encoding="utf-8").startswith("The MIT License")
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE"):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in note, name


def test_static_files_are_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["services.console"]
    base = ROOT / "services" / "console"
    covered = {p for pattern in patterns for p in base.glob(pattern)}
    shipped = {p for p in STATIC.rglob("*") if p.is_file()}
    assert shipped <= covered, sorted(str(p.relative_to(base)) for p in shipped - covered)
