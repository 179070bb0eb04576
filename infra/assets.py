"""The Lambda code asset, built from the repo without docker.

`PythonFunction` would bundle in a container; instead every function ships the same folder:
`tally/` (the shared package) and `functions/` (the handlers). Third-party runtime dependencies
(Powertools, pydantic) come from the Powertools layer, and boto3 from the Lambda runtime; the one
more the invoice delivery needs, the `stripe` SDK, is copied from this environment (it is pure
Python, about 11 MB; without `requests` it speaks through urllib). Invoice PDFs need fpdf2 and its
fontTools and defusedxml, copied the same way without their optional compiled modules (built for
this Python, not the runtime's; fontTools falls back to its pure-Python code): about 9 MB. fpdf2's
third dependency, Pillow, is left out: it is compiled, and fpdf2 needs it only for images.
"""

from __future__ import annotations

import fcntl
import importlib
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / ".build"
LAMBDA_ASSET_DIR = BUILD_DIR / "lambda"

# destination (relative to the asset root) <- source (relative to the repo root)
_SOURCES = {"tally": "shared/tally", "functions": "functions"}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")
# Pure-Python packages shipped in the asset's root, from the installed distribution.
_VENDORED = ("stripe", "fpdf", "fontTools", "defusedxml")
# Optional compiled accelerators (and their sources) are not shipped: see the module's doc.
_IGNORE_VENDORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.c", "*.pyx", "*.pxd")


@contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds across processes: test workers and the local runtime synthesize concurrently,
    and one of them must never stage a tree that another is halfway through replacing."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / "lambda.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _copy_sources() -> Path:
    # Build beside the target, then swap, so the target is never a half-copied tree.
    staging = BUILD_DIR / f"lambda.tmp-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    for destination, source in _SOURCES.items():
        source_dir = REPO_ROOT / source
        if source_dir.is_dir():
            shutil.copytree(source_dir, staging / destination, ignore=_IGNORE)
        else:
            # The application code may not exist yet; synth must still work.
            (staging / destination).mkdir()
    for package in _VENDORED:
        installed = Path(importlib.import_module(package).__file__).parent
        shutil.copytree(installed, staging / package, ignore=_IGNORE_VENDORED)
    if LAMBDA_ASSET_DIR.exists():
        retired = BUILD_DIR / f"lambda.old-{uuid.uuid4().hex}"
        LAMBDA_ASSET_DIR.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    staging.rename(LAMBDA_ASSET_DIR)
    return LAMBDA_ASSET_DIR


def build_lambda_asset() -> Path:
    """Copy shared/tally and functions/ into .build/lambda afresh and return that folder."""
    with _build_lock():
        return _copy_sources()


@contextmanager
def lambda_code() -> Iterator[lambda_.Code]:
    """Build the asset and yield its `Code`, holding the build lock while the caller creates the
    functions: CDK stages (copies) an asset when the first function binds it, not when
    `Code.from_asset` is called."""
    with _build_lock():
        yield lambda_.Code.from_asset(str(_copy_sources()))
