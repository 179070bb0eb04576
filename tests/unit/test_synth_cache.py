"""The synth cache the tests' local stacks share (infra/local/runtime.py `_synthesize`): processes
synthesizing at once each use a folder of their own, the first to finish is kept, and a cleanup
removes only other sources' synths and abandoned folders, never another process's synth under way."""

from __future__ import annotations

import json
import os
import time

import pytest

from infra.local import runtime


@pytest.fixture()
def fake_synth(monkeypatch):
    import infra.app

    calls = []

    def synth_template(outdir: str) -> dict:
        calls.append(outdir)
        (runtime.Path(outdir) / "asset.txt").write_text("code")
        return {"Resources": {"Fake": {"Type": "AWS::SNS::Topic"}}}

    monkeypatch.setattr(infra.app, "synth_template", synth_template)
    monkeypatch.setattr(runtime, "synth_key", lambda: "k-now")
    monkeypatch.setattr(runtime, "_synthesized", None)
    return calls


def test_a_synth_is_kept_under_its_key_and_only_stale_folders_are_removed(tmp_path, fake_synth):
    cache = tmp_path / "synth"
    (cache / "k-old").mkdir(parents=True)  # another version of the sources
    abandoned = cache / f"{runtime.SYNTH_WORK_PREFIX}crashed"
    abandoned.mkdir()
    hours_ago = time.time() - runtime.SYNTH_ABANDONED_S - 60
    os.utime(abandoned, (hours_ago, hours_ago))
    under_way = cache / f"{runtime.SYNTH_WORK_PREFIX}other-worker"
    under_way.mkdir()

    template, folder = runtime._synthesize(cache, lambda _: None)

    assert folder == cache / "k-now" and (folder / "asset.txt").read_text() == "code"
    assert json.loads((folder / "template.json").read_text()) == template
    assert sorted(p.name for p in cache.iterdir()) == sorted(["k-now", under_way.name])

    runtime._synthesized = None  # a later process finds it and does not synthesize again
    assert runtime._synthesize(cache, lambda _: None) == (template, folder) and len(fake_synth) == 1


def test_when_another_process_kept_the_same_sources_first_its_synth_is_used(tmp_path, fake_synth, monkeypatch):
    import infra.app

    cache = tmp_path / "synth"
    theirs = cache / "k-now"

    def slower_than_the_other(outdir: str) -> dict:
        theirs.mkdir(parents=True)
        (theirs / "template.json").write_text(json.dumps({"Resources": {}}))  # they finished first
        (runtime.Path(outdir) / "asset.txt").write_text("code")
        return {"Resources": {}}

    monkeypatch.setattr(infra.app, "synth_template", slower_than_the_other)
    _, folder = runtime._synthesize(cache, lambda _: None)
    assert folder == theirs
    assert [p.name for p in cache.iterdir()] == ["k-now"]  # our own working folder is gone
