"""How big and how long a harness run is: the full run, ``--quick`` (under two minutes) and ``--smoke``.

Full run defaults follow the performance-anchors method: 3 s warm-up, 10 s runs, 3 repeats, 8 and 64
connections (and 1, for unloaded latency, on the baselines and the cached look-up), one million records with a
hot set of 100,000 for the cached scenarios. ``--quick`` keeps every scenario but shrinks data and time (20,000
records, 2 s runs, one repeat, and 64 connections only except for the baselines and the cached look-up); its
figures are for spotting regressions of the harness and gross ones of the node, not for the record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Plan", "full_plan", "quick_plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    mode: str
    records: int
    hot_keys: int
    warmup_s: float
    run_s: float
    repeats: int
    connections: tuple[int, ...] = (8, 64)
    sweep_connections: tuple[int, ...] = (1, 8, 64)
    """Connections for the baselines and the cached look-up (the ratios, and 1 for the unloaded latency);
    ``connections`` for the rest."""
    workers2_connections: int = 128
    cold_cache_entries: int = 1000
    forward_cold_cache_entries: int = 100
    """Cache of the asking node in ``forwarded_cold``: keys are uniform over the hot set, so with 100 entries 98 %
    (quick) to 99.9 % (full) of look-ups are forwarded, each answered from the authoritative node's cache."""
    zipf_exponent: float = 1.0
    batch_sizes: tuple[int, ...] = (100, 2000)
    rate: float | None = None
    """Offered rate for the fixed-rate runs; None means ``rate_fraction`` of the cached look-up's best req/s."""
    rate_fraction: float = 0.5
    rate_s: float = 10.0
    server_cpus: str = "1"
    client_cpus: str = "0"

    def __post_init__(self) -> None:
        if self.records < 10:
            raise ValueError(f"plan: records must be at least 10, got {self.records}")
        if not 1 <= self.hot_keys <= self.records:
            raise ValueError(f"plan: hot_keys must be between 1 and records ({self.records}), got {self.hot_keys}")
        if self.repeats < 1 or self.run_s < 1:
            raise ValueError("plan: repeats and run seconds must be at least 1")


def full_plan() -> Plan:
    return Plan(mode="full", records=1_000_000, hot_keys=100_000, warmup_s=3.0, run_s=10.0, repeats=3)


def quick_plan() -> Plan:
    return Plan(
        mode="quick",
        records=20_000,
        hot_keys=5_000,
        warmup_s=1.0,
        run_s=2.0,
        repeats=1,
        connections=(64,),
        rate_s=2.0,
    )


def with_overrides(plan: Plan, **changes: object) -> Plan:
    """``plan`` with the given fields replaced; None values mean "keep"."""
    return replace(plan, **{k: v for k, v in changes.items() if v is not None})
