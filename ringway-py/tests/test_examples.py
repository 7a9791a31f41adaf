"""The tutorial's programs under ringway-py/examples run to the end (both
start methods), with the output they promise."""
import os
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(__file__), "..", "examples")

EXPECT = {
    "queue_one_to_one.py": "done",
    "queue_many.py": "eaten: 15 of 15",
    "queue_many_no_sentinels.py": "eaten: 15 of 15",
    "queue_tasks.py": "sum of squares: 2470",
    "pipe_simplex.py": "received 10 messages",
    "pipe_duplex.py": "sum of squares: 285",
    "counter_lock.py": "{'count': 0}",
}


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("example", sorted(EXPECT))
def test_example_runs(example, method):
    code = (
        "import multiprocessing as mp, runpy, sys\n"
        "mp.set_start_method(%r)\n"
        "sys.argv = [%r]\n"
        "runpy.run_path(%r, run_name='__main__')\n"
    ) % (method, example, os.path.join(HERE, example))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert EXPECT[example] in out.stdout, out.stdout


def test_every_example_is_run():
    assert {f for f in os.listdir(HERE) if f.endswith(".py")} == set(EXPECT)


# The ones whose only difference from the multiprocessing version is the
# import: with multiprocessing's import they print the same.
SAME_BUT_IMPORT = {
    "queue_one_to_one.py": "from ringway import Queue",
    "queue_many.py": "from ringway import Queue",
    "queue_tasks.py": "from ringway import Queue",
    "pipe_simplex.py": "from ringway import Pipe",
    "pipe_duplex.py": "from ringway import Pipe",
}


@pytest.mark.parametrize("example", sorted(SAME_BUT_IMPORT))
def test_with_multiprocessing_s_import_it_prints_the_same(example, tmp_path):
    src = open(os.path.join(HERE, example)).read()
    ours = SAME_BUT_IMPORT[example]
    assert ours in src
    theirs = src.replace(ours, ours.replace("ringway", "multiprocessing"))
    path = tmp_path / example
    path.write_text(theirs)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert EXPECT[example] in out.stdout, out.stdout
