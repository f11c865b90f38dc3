"""bench/capacity_model.py on the repo's own bench/RESULTS.md: the table is
internally consistent (no hard-coded figures), and it follows RESULTS.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import capacity_model as cm

RESULTS = cm.RESULTS.read_text()
SYNAPSE_DOC = cm.SYNAPSE_WORKERS_DOC.read_text()


@pytest.fixture(scope="module")
def run() -> tuple[cm.Measured, list[cm.Figure], list[cm.Row], str]:
    return cm.run([])


def test_every_figure_is_parsed_with_its_section(
    run: tuple[cm.Measured, list[cm.Figure], list[cm.Row], str],
) -> None:
    measured, figures, _, text = run
    sections = cm.sections(RESULTS)
    assert {f.key for f in figures} >= set(vars(measured)) - {"presence_puts_per_ghost_refresh"}
    for f in figures:
        assert f.value > 0 and math.isfinite(f.value), f
        if f.source.startswith("RESULTS.md: "):
            assert f.source.removeprefix("RESULTS.md: ").split(" ")[0] in sections, f
        assert f"`{f.key}`" in text  # printed with its source


def test_table_is_internally_consistent(
    run: tuple[cm.Measured, list[cm.Figure], list[cm.Row], str],
) -> None:
    m, _, rows, text = run
    a = cm.Assumptions()
    assert len(rows) == 9
    for r in rows:
        # Gateway processes cover the CPU and the sockets at the target, and no fewer would.
        assert r.processes * a.target >= r.gateway_cpu - 1e-9
        assert r.processes * r.sockets_per_process_cap * a.target >= r.sockets
        assert r.processes * m.heartbeat_per_s >= r.heartbeats
        assert r.processes * m.post_per_s >= r.msgs
        need = max(
            cm.size(r.gateway_cpu, 1.0, a.target, a.min_processes),
            cm.size(r.sockets, r.sockets_per_process_cap, a.target, a.min_processes),
        )
        assert r.processes == need
        assert math.isclose(sum(r.cpu_terms.values()), r.gateway_cpu)
        # Heartbeats follow the stated interval.
        assert math.isclose(r.heartbeats, r.online * a.devices_per_user / a.heartbeat_s)
        # Redis: the busiest shard is at the target unless a one-slot ceiling is over it.
        ceilings = r.limit("Redis presence bucket").utilisation + r.membership_load
        assert r.redis_max_shard <= a.target + 1e-9 or ceilings > a.target
        assert r.shards == 1 or r.shards >= cm.CLUSTER_MIN_MASTERS
        assert r.redis_max_shard >= sum(r.redis_terms.values()) / r.shards - 1e-9
        # Synapse persisters cover the sends at the target.
        persisters = r.limit("Synapse event persisters")
        assert persisters.utilisation <= a.target + 1e-9
        assert r.persisters * m.synapse_sends_per_s * a.target >= r.synapse_sends - 1e-9
        # Every limit that scales out is sized to the target; binding = max utilisation.
        for lim in r.limits:
            if lim.scales:
                assert lim.utilisation <= a.target + 1e-9, (r.online, r.msgs, lim)
        assert r.binding.utilisation == max(lim.utilisation for lim in r.limits)
        assert not r.nearest_ceiling.scales
        assert r.nearest_ceiling.utilisation <= r.binding.utilisation
        # A ceiling over 100 % is flagged in the table.
        if r.binding.utilisation > 1:
            assert not r.binding.scales
        assert f"**{r.binding.name}**" in text
    # Load only grows along each axis, and so do the processes.
    by = {(r.online, r.msgs): r for r in rows}
    for (u, msgs), r in by.items():
        for (u2, msgs2), r2 in by.items():
            if u2 >= u and msgs2 >= msgs:
                assert r2.processes >= r.processes
                assert r2.heartbeats >= r.heartbeats


def test_model_follows_results_md(tmp_path: Path) -> None:
    """A re-run of a bench changes the model: double the heartbeat throughput."""
    sections = cm.sections(RESULTS)
    old = sections["heartbeat"]
    row = next(
        line for line in old.splitlines() if line.startswith("| POST /internal/matrix/presence")
    )
    rate = cm.number(row.split("|")[2])
    new_row = row.replace(f"| {rate:.0f} |", f"| {rate * 2:.0f} |", 1)
    assert new_row != row
    results = tmp_path / "RESULTS.md"
    results.write_text(RESULTS.replace(row, new_row))
    argv = ["--results", str(results), "--online", "1000000", "--messages", "100"]
    m2, _, (r2,), _ = cm.run(argv)
    m1, _, (r1,), _ = cm.run(argv[2:])
    assert m2.heartbeat_per_s == 2 * m1.heartbeat_per_s
    assert math.isclose(r2.cpu_terms["heartbeats"] * 2, r1.cpu_terms["heartbeats"])
    assert r2.processes <= r1.processes


def test_missing_section_is_an_error(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(RESULTS.replace("<!-- heartbeat:start -->", "<!-- hb:start -->"))
    assert cm.main(["--results", str(results), "--table-only"]) == 2


def test_assumptions_are_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cm.main(["--table-only", "--online", "100000", "--messages", "1000"]) == 0
    one = capsys.readouterr().out
    assert one.count("\n") == 3  # header, separator, one row
    assert (
        cm.main(["--table-only", "--online", "100000", "--messages", "1000", "--heartbeat-s", "10"])
        == 0
    )
    assert capsys.readouterr().out != one
    # Fewer visible ghosts, fewer presence PUTs.
    rows = cm.model(
        cm.read_measured(RESULTS, SYNAPSE_DOC)[0],
        cm.Assumptions(matrix_visible_share=0.001),
        [1_000_000],
        [100.0],
    )
    base = cm.model(
        cm.read_measured(RESULTS, SYNAPSE_DOC)[0], cm.Assumptions(), [1_000_000], [100.0]
    )
    assert rows[0].presence_puts < base[0].presence_puts
