"""The capacity policy as a pure function: tables of sample histories and the capacity each must give."""

from __future__ import annotations

import itertools

import pytest

from borealis.serverless import ACU_CPU, ACU_MEMORY, Sample, Scaling, decide, demand
from borealis.serverless._policy import down_step, half_up, up_step

GIB = 1024**3


def history(
    capacities: list[float], *, cpu: float = 0.0, memory: int = 64 * 1024**2, connections: int = 1, end: float = 100.0
) -> list[Sample]:
    """One sample a second, ending at ``end``, with these capacities and one steady load."""
    start = end - len(capacities) + 1
    return [Sample(start + i, cpu, memory, connections, c) for i, c in enumerate(capacities)]


def busy(capacity: float, share: float) -> float:
    """The CPU use that is ``share`` of the quota of ``capacity`` ACUs."""
    return capacity * ACU_CPU * share


R = Scaling(0.5, 16)

# (name, samples, scaling, now, expected capacity)
CASES = [
    ("no samples: the bottom of the range", [], Scaling(2, 8), 0.0, 2.0),
    ("MinCapacity 0 runs at 0.5 (0 is a pause)", [], Scaling(0, 4), 0.0, 0.5),
    ("idle stays", history([1.0] * 5), R, 100.0, 1.0),
    ("CPU at the quota at 0.5: one step to 1", history([0.5] * 3, cpu=busy(0.5, 1.0)), R, 100.0, 1.0),
    ("CPU at the quota at 1: +0.5", history([1.0] * 3, cpu=busy(1, 1.0)), R, 100.0, 1.5),
    ("CPU at the quota at 4: a larger step, +2", history([4.0] * 3, cpu=busy(4, 1.0)), R, 100.0, 6.0),
    ("CPU at the quota at 8: +4", history([8.0] * 3, cpu=busy(8, 0.95)), R, 100.0, 12.0),
    ("CPU below the high mark stays", history([2.0] * 3, cpu=busy(2, 0.6)), R, 100.0, 2.0),
    ("demand far above: straight to it", history([1.0] * 3, cpu=1.4), R, 100.0, 8.0),
    ("never above MaxCapacity", history([4.0] * 3, cpu=busy(4, 1.0)), Scaling(0.5, 5), 100.0, 5.0),
    ("memory pressure: to what 75 % fits", history([1.0] * 3, memory=3 * GIB), R, 100.0, 2.0),
    ("memory under the mark stays", history([2.0] * 3, memory=2 * GIB), R, 100.0, 2.0),
    ("500 connections need 3 ACUs", history([1.0] * 3, connections=500), R, 100.0, 3.0),
    ("MinCapacity raised: up at once", history([1.0] * 30), Scaling(2, 8), 100.0, 2.0),
    ("MaxCapacity lowered: down at once", history([8.0] * 30), Scaling(0.5, 4), 100.0, 4.0),
    ("tier 0-1 reader follows the writer", history([1.0] * 3), Scaling(0.5, 8, floor=3), 100.0, 3.0),
    ("idle, but too soon after a rise: holds", history([2.0] * 10 + [4.0] * 15), R, 100.0, 4.0),
    ("idle for long enough: one step down", history([2.0] * 10 + [4.0] * 25), R, 100.0, 3.0),
    ("a step down just made: waits", history([8.0] * 30 + [6.0] * 2), R, 100.0, 6.0),
    ("a step down a while ago: the next one", history([8.0] * 30 + [6.0] * 6), R, 100.0, 4.5),
    ("down never below the load's need", history([8.0] * 40, cpu=busy(5, 0.7)), R, 100.0, 6.0),
    ("down never below MinCapacity", history([1.0] * 40), Scaling(1, 4), 100.0, 1.0),
    ("history shorter than the quiet time: holds", history([4.0] * 5), R, 100.0, 4.0),
]


@pytest.mark.parametrize(("samples", "scaling", "now", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(samples: list[Sample], scaling: Scaling, now: float, expected: float) -> None:
    assert decide(samples, scaling, now) == expected


def test_a_busy_instance_climbs_fast_then_settles_slowly() -> None:
    """A saturated instance reaches MaxCapacity in a few seconds; after the load it comes down step by step."""
    scaling = Scaling(0.5, 16)
    samples: list[Sample] = []
    capacity = 0.5
    trace = []
    for t in range(200):
        loaded = t < 60
        cpu = min(busy(capacity, 1.0), 3.0) if loaded else 0.01  # at most 3 CPUs of work to do
        samples.append(Sample(float(t), cpu, 256 * 1024**2, 10, capacity))
        capacity = decide(samples[-60:], scaling, float(t))
        trace.append(capacity)
    assert trace.index(16.0) < 10, trace[:12]  # 0.5 -> 1 -> 1.5 -> 2 -> 3 -> 4.5 -> ... in seconds
    assert max(trace[60:80]) == 16.0  # no drop in the first 20 s of quiet
    after = list(itertools.pairwise(trace[60:]))
    assert sum(b < a for a, b in after) >= 4 and all(a - b <= max(0.5, a / 4) for a, b in after)
    assert trace[-1] == 0.5


def test_every_decision_is_a_half_step_in_range() -> None:
    scaling = Scaling(1.5, 7.5)
    for cpu in (0.0, 0.1, 0.33, 0.9, 2.5):
        for start in (1.5, 2.0, 3.5, 7.5):
            capacity = decide(history([start] * 40, cpu=cpu), scaling, 100.0)
            assert 1.5 <= capacity <= 7.5 and capacity * 2 == int(capacity * 2), (cpu, start, capacity)


def test_steps_and_units() -> None:
    assert [up_step(c) for c in (0.5, 1, 2, 4, 8, 32)] == [0.5, 0.5, 1, 2, 4, 16]
    assert [down_step(c) for c in (1, 4, 8, 16)] == [0.5, 1, 2, 4]
    assert [half_up(x) for x in (0.1, 0.5, 0.51, 1.0000000001, 2.2)] == [0.5, 0.5, 1.0, 1.0, 2.5]
    assert demand(ACU_CPU * 0.7, 0, 0) == pytest.approx(1.0)
    assert demand(0.0, int(ACU_MEMORY * 0.75), 0) == pytest.approx(1.0)
