"""The brain's latency knobs (services.brain.latency) take effect, and bad values are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common import config
from common.errors import ConfigError


def test_knobs_take_effect_in_a_fresh_process():
    """In a new process: the switch interval becomes 100 us and the thread's timer slack
    (read back with PR_GET_TIMERSLACK) becomes 1,000 ns; a thread started afterwards inherits the slack."""
    code = (
        "import sys, threading, os\n"
        "from services.brain import latency\n"
        "out = latency.apply(100, 1000)\n"
        "import ctypes\n"
        "def slack():  # PR_GET_TIMERSLACK: this thread's slack\n"
        "    return str(ctypes.CDLL(None).prctl(30, 0, 0, 0, 0))\n"
        "res = {}\n"
        "t = threading.Thread(target=lambda: res.update(child=slack())); t.start(); t.join()\n"
        "print(out['switch_interval_s'], out['timer_slack_ns'], slack(), res['child'])\n"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    interval, set_ns, main_slack, child_slack = got.stdout.split()
    assert float(interval) == pytest.approx(100e-6)
    assert (set_ns, main_slack, child_slack) == ("1000", "1000", "1000")


@pytest.mark.parametrize("field,value", [("gil_switch_interval_us", 5), ("gil_switch_interval_us", 200_000),
                                         ("timer_slack_ns", -1), ("timer_slack_ns", 2_000_000)])
def test_out_of_range_values_are_refused(field, value):
    """A switch interval outside 10..100000 us or a slack outside 0..1 ms is a config error."""
    with pytest.raises(ConfigError, match=field):
        config.from_dict({"brain": {field: value}})
