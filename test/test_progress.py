"""hmr_ros.progress.Progress (tqdm): what it writes to a captured stream, on a terminal and
in a log."""

from __future__ import annotations

import io

from hmr_ros.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, total=5, steps=5, **kwargs) -> Progress:
    with Progress(total, "demo", stream=stream, **kwargs) as bar:
        for i in range(steps):
            bar.update(1, loss=0.123456, people=i)
    return bar


def test_disabled_writes_nothing_but_counts(capsys):
    stream = io.StringIO()
    bar = _run(stream, enabled=False)
    assert stream.getvalue() == ""
    assert bar.n == 5 and bar.info == {"loss": 0.123456, "people": 4}
    _run(None, enabled=False)
    assert capsys.readouterr() == ("", "")


def test_log_gets_plain_lines_start_and_end():
    stream = io.StringIO()
    _run(stream, log_interval_s=3600.0)
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 2, lines  # started, finished: nothing in between within the interval
    assert lines[0].startswith("demo:") and "0/5" in lines[0]
    assert "5/5" in lines[1] and "100%" in lines[1]
    assert "loss=0.1235 people=4" in lines[1]  # floats with 4 significant digits


def test_log_gets_one_line_per_interval_and_no_repeated_last_line():
    stream = io.StringIO()
    _run(stream, log_interval_s=0.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 6, lines  # the start and one per update (interval 0)
    for k, line in enumerate(lines):
        assert f" {k}/5 " in line
    assert all("people=" in line for line in lines[1:])
    assert "people=3" in lines[4] and "people=4" in lines[5]


def test_terminal_gets_a_bar_redrawn_in_place():
    stream = _Terminal()
    _run(stream)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    final = text.rstrip("\n").split("\r")[-1]
    assert "5/5" in final and "100%" in final and "loss=0.1235 people=4" in final


def test_default_stream_is_stderr(capsys):
    _run(None, log_interval_s=3600.0)
    out, err = capsys.readouterr()
    assert out == "" and "demo: 100%" in err and "5/5" in err


def test_values_are_kept_until_replaced_and_a_set_count_resumes():
    stream = io.StringIO()
    with Progress(10, "train", stream=stream, log_interval_s=3600.0) as bar:
        bar.n = 6  # resumed at step 6
        bar.update(2, loss=1.5)
        bar.update(1, val_pa=80.25)
        bar.update(1, loss=0.5)
        assert bar.n == 10
    final = stream.getvalue().splitlines()[-1]
    assert "10/10" in final and "loss=0.5 val_pa=80.25" in final


def test_without_a_total_it_counts():
    stream = io.StringIO()
    with Progress(None, "count", stream=stream, log_interval_s=3600.0) as bar:
        for _ in range(3):
            bar.update(1, frame="a")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("count: 0it") and lines[-1].startswith("count: 3it")
    assert "frame=a" in lines[-1] and "\r" not in stream.getvalue()
