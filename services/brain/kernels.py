"""The brain's compiled tick path, made ready before the first tick: its core (candles,
conflation, latency histogram, for the configured base interval and its higher timeframe),
every kernel loaded (or compiled) up front, and a spare's warm-up of the same kernels.

numba compiles a kernel (or loads it from its on-disk cache) at its first call; done on the
first ticks, that would stall them by tens to hundreds of milliseconds."""

from __future__ import annotations

from typing import Any

import numpy as np

from common import records
from common.config import AegisConfig
from common.ring import ring_load
from services.brain import candles, conflate, engine, exit_lane

HIGHER_TIMEFRAME_FACTOR = 15  # 1 m base -> 15 m


def new_core(cfg: AegisConfig):
    base_ms = cfg.brain.candle_interval_s * 1000
    return engine.new_core(base_interval_ms=base_ms, higher_intervals_ms=(base_ms * HIGHER_TIMEFRAME_FACTOR,),
                           batch=cfg.brain.read_batch)


def load_kernels(core, buf):
    """Load (or compile) every kernel of the tick path for ``core``'s types; returns the
    bound ``process`` entry point. numba compiles (or loads from its cache) on first call,
    which would otherwise stall the first ticks by tens to hundreds of milliseconds."""
    process = engine.bind(core, buf)  # compiled entry point, types resolved once
    candles.flush_due(core.candles, 0, 0)
    candles.reset_output(core.candles)
    conflate.drain_dirty(core.conflate)
    core.latency.percentile(99)
    exit_lane.warm(buf)  # the exit lane's scan: never compiled in front of the first exit
    return process


def warm_kernels(cfg: AegisConfig) -> None:
    """A spare's warm-up: the same kernels on a throwaway core of the same types, so the
    spare's process already holds them when it takes over (numba keeps them per process)."""
    load_kernels(new_core(cfg), records.empty(cfg.brain.read_batch))
    ring_load(np.zeros(1, np.int64), 0)  # the ring reader's lag() and cursors


def warm_up(brain: Any) -> None:
    """Every kernel loaded before declaring readiness (``load_kernels``)."""
    brain.process = load_kernels(brain.core, brain.buf)
    brain.reader.lag()
