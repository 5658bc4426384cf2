"""What a session shows while runs train (netclaims.progress)."""

from __future__ import annotations

from netclaims.progress import TrainingProgress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _zoo(progress: TrainingProgress, clock: Clock) -> None:
    progress({"event": "zoo", "total": 4, "stored": 2})
    for done in range(1, 5):
        clock.now += 10
        progress({"event": "trained", "done": done, "total": 4, "label": f"run {done}"})
    progress({"event": "zoo-done", "total": 4})


def test_a_log_gets_one_line_when_a_zoo_starts_and_one_when_it_is_done():
    lines, clock = [], Clock()
    progress = TrainingProgress(lines.append, clock=clock)
    progress.context = "SD-7 on mlp"
    _zoo(progress, clock)
    assert lines == ["[netclaims] SD-7 on mlp: training 4 runs (2 already in the store)",
                     "[netclaims] SD-7 on mlp: 4 runs trained in 0:40"]


def test_a_terminal_gets_one_live_line_with_runs_elapsed_and_time_left():
    written, shown, ended, clock = [], [], [], Clock()
    progress = TrainingProgress(written.append, shown.append, lambda: ended.append(len(shown)),
                                clock=clock)
    progress.context = "SD-7 on mlp"
    _zoo(progress, clock)
    assert written == []  # everything in place
    assert shown[2] == ("[netclaims] SD-7 on mlp: 2/4 runs · 0:20 elapsed · ~0:20 left · "
                        "last: run 2")
    assert shown[-1] == "[netclaims] SD-7 on mlp: 4 runs trained in 0:40"
    assert ended == [len(shown)]  # the line is ended once, after the last rewrite


def test_a_single_run_shows_its_epochs():
    lines, shown, clock = [], [], Clock()
    log = TrainingProgress(lines.append, clock=clock)
    live = TrainingProgress(lambda _: None, shown.append, clock=clock)
    for progress in (log, live):
        for epoch in (1, 2, 3, 4):
            clock.now += 5
            progress({"event": "epoch", "epoch": epoch, "epochs": 4, "label": "mlp/mnist1d",
                      "seconds": 5.0, "test_acc": 0.5})
    assert lines == ["[netclaims] training mlp/mnist1d (4 epochs)",
                     "[netclaims] trained mlp/mnist1d in 20.0s: test_acc=0.500"]
    assert shown[1] == ("[netclaims] training mlp/mnist1d, epoch 2/4 · 0:10 elapsed · "
                        "~0:10 left")


def test_durations():
    assert [duration(s) for s in (0, 42.4, 725, 3723)] == ["0:00", "0:42", "12:05", "1:02:03"]
