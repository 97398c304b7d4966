"""Commands run side by side: output per command, exit codes, a parallelism cap, and the deadline."""

import sys
import time

from nexus_pretrain.experiments.concurrent import run_concurrently


def py(code: str):
    return [sys.executable, "-c", code]


def test_exit_codes_and_logs(tmp_path):
    codes = run_concurrently({"ok": py("print('hello')"), "bad": py("raise SystemExit(3)")}, tmp_path, timeout=60)
    assert codes == {"ok": 0, "bad": 3}
    assert (tmp_path / "ok.log").read_text().splitlines()[-1] == "hello"
    assert (tmp_path / "bad.log").read_text().startswith(sys.executable)  # the command line heads its log


def test_at_most_max_parallel_run_at_once(tmp_path):
    # Each command appends its start and end times; with a cap of 1 no two intervals overlap.
    code = "import sys, time; s = time.time(); time.sleep(0.3); open(sys.argv[1], 'a').write(f'{s} {time.time()}\\n')"
    spans = tmp_path / "spans.txt"
    commands = {f"c{i}": [*py(code), str(spans)] for i in range(3)}
    assert run_concurrently(commands, tmp_path / "logs", timeout=60, max_parallel=1) == {f"c{i}": 0 for i in range(3)}
    intervals = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:]))


def test_the_deadline_stops_what_runs_and_skips_what_has_not_started(tmp_path):
    start = time.time()
    codes = run_concurrently({"slow": py("import time; time.sleep(60)"), "queued": py("pass")}, tmp_path, timeout=1,
                             max_parallel=1)
    assert time.time() - start < 30
    assert codes["slow"] != 0 and codes["queued"] == -1
