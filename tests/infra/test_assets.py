"""The Lambda code asset is a fresh copy of shared/tally and functions/, built without docker."""

from __future__ import annotations

import pytest

from infra import assets


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(assets, "BUILD_DIR", tmp_path / ".build")
    monkeypatch.setattr(assets, "LAMBDA_ASSET_DIR", tmp_path / ".build" / "lambda")
    monkeypatch.setattr(assets, "_SOURCES", {"tally": "shared/tally", "functions": "functions"})
    monkeypatch.setattr(assets, "_VENDORED", ())
    return tmp_path


def test_copies_packages_without_bytecode(repo):
    (repo / "shared/tally/__pycache__").mkdir(parents=True)
    (repo / "shared/tally/__init__.py").write_text("")
    (repo / "shared/tally/__pycache__/x.cpython-313.pyc").write_bytes(b"")
    (repo / "functions/ingest").mkdir(parents=True)
    (repo / "functions/ingest/handler.py").write_text("def handler(e, c): ...\n")
    (repo / "functions/ingest/stale.pyc").write_bytes(b"")

    built = assets.build_lambda_asset()

    assert built == repo / ".build/lambda"
    files = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file())
    assert files == ["functions/ingest/handler.py", "tally/__init__.py"]


def test_each_build_is_fresh(repo):
    (repo / "functions").mkdir()
    (repo / "functions/old.py").write_text("")
    assets.build_lambda_asset()
    (repo / "functions/old.py").unlink()

    built = assets.build_lambda_asset()

    assert not (built / "functions/old.py").exists()
    leftovers = [p.name for p in (repo / ".build").iterdir() if p.name.startswith("lambda.")]
    assert leftovers == ["lambda.lock"]


def test_missing_sources_still_give_an_asset(repo):
    built = assets.build_lambda_asset()
    assert (built / "tally").is_dir()
    assert (built / "functions").is_dir()


def test_the_stripe_sdk_ships_in_the_asset_without_bytecode(repo, monkeypatch):
    monkeypatch.setattr(assets, "_VENDORED", ("stripe",))

    built = assets.build_lambda_asset()

    assert (built / "stripe/__init__.py").is_file() and (built / "stripe/_invoice_service.py").is_file()
    assert not any(p.suffix == ".pyc" or p.name == "__pycache__" for p in (built / "stripe").rglob("*"))


def test_the_pdf_library_ships_pure_python_with_the_invoice_fonts(repo, monkeypatch):
    monkeypatch.setattr(assets, "_VENDORED", ("fpdf", "fontTools", "defusedxml"))
    (repo / "shared/tally/rendering/fonts").mkdir(parents=True)
    (repo / "shared/tally/rendering/fonts/DejaVuSans-subset.ttf").write_bytes(b"font")

    built = assets.build_lambda_asset()

    assert (built / "fpdf/fpdf.py").is_file() and (built / "fontTools/subset/__init__.py").is_file()
    assert (built / "fontTools/cu2qu/cu2qu.py").is_file()  # the pure-Python code an accelerator stands in for
    assert not any(p.suffix in (".so", ".c", ".pyc") for p in built.rglob("*"))
    assert (built / "tally/rendering/fonts/DejaVuSans-subset.ttf").is_file()
