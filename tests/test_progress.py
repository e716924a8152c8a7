"""Progress of long stages: Step messages are plain strings that carry their counts, a Tracker
reports a stage's units without flooding its callback, and the stages report through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from propensity.progress import Step, Tracker


def test_a_step_reads_as_text_and_carries_its_counts() -> None:
    step = Step("generate: drawing the clickstream", 2, 25)
    assert isinstance(step, str) and step == "[2/25] generate: drawing the clickstream"
    assert (step.text, step.done, step.total) == ("generate: drawing the clickstream", 2, 25)


def test_a_tracker_reports_each_activity_and_the_end_but_throttles_repeats() -> None:
    seen: list[str] = []
    track = Tracker(seen.append, total=100, prefix="stage", interval=3600.0)
    track.begin("one")
    for _ in range(99):
        track.advance()  # same activity, well inside the interval: not reported
    track.advance()  # the last unit is always reported
    track.note("a count worth reading")
    assert [(s.text, s.done) for s in seen if isinstance(s, Step)] == [("stage: one", 0), ("stage: one", 100)]
    assert seen[-1] == "stage: a count worth reading" and not isinstance(seen[-1], Step)


def test_a_tracker_never_counts_past_its_total_and_can_grow_it() -> None:
    seen: list[Step] = []
    track = Tracker(seen.append, total=3)  # type: ignore[arg-type]
    track.advance(5)
    assert seen[-1].done == 3
    track.begin("more work found", total=6)
    track.finish()
    assert (seen[-1].done, seen[-1].total, seen[-1].text) == (6, 6, "done")


def test_without_a_callback_a_tracker_is_silent() -> None:
    track = Tracker(None, total=2)
    track.begin("x")
    track.advance(2)
    track.note("y")
    assert track.done == 2


@pytest.mark.parametrize("writes", [False, True])
def test_generating_a_shop_reports_steps_from_zero_to_the_total(tmp_path: Path, writes: bool) -> None:
    from features.shop.config import load_generate_config
    from features.shop.generate import generate, generate_shop

    seen: list[str] = []
    cfg = load_generate_config(users=200, days=15)
    if writes:
        generate(tmp_path, cfg, progress=seen.append)
    else:
        generate_shop(cfg, progress=seen.append)
    steps = [s for s in seen if isinstance(s, Step)]
    assert steps[0].done == 0 and steps[-1].done == steps[-1].total
    assert [s.done for s in steps] == sorted(s.done for s in steps)  # never goes backwards
    assert len({s.total for s in steps}) == 1
    assert any("events in" in s for s in seen if not isinstance(s, Step))  # the counts still arrive
