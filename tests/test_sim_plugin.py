"""The pytest plugin's fixtures, exercised in a user's suite through pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_sim_cluster_fixture_runs_a_jepsen_style_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_partitions_and_crashes(sim_cluster):
            sim_cluster.run(nemesis="partition,kill", time_limit=3, quiet=1).assert_valid()

        def test_planted_bug_is_caught(sim_cluster):
            result = sim_cluster.run(
                schedule=[{"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}},
                          {"at": 3.0, "f": "heal", "value": None}],
                bugs=["stale-leader-read"], cluster={"check_quorum": False},
                time_limit=3.5, quiet=1, seed=0)
            result.assert_invalid()
            assert result.run_dir.is_dir()
        """
    )
    outcome = pytester.runpytest("-p", "no:randomly", "-q")
    outcome.assert_outcomes(passed=2)


def test_failing_test_prints_run_directory_and_report(pytester: pytest.Pytester) -> None:
    store = pytester.path / "my-store"
    pytester.makepyfile(
        """
        def test_expects_valid_but_bug_is_on(sim_cluster):
            sim_cluster.run(
                schedule=[{"at": 0.5, "f": "partition", "value": {"shape": "isolate-leader"}},
                          {"at": 3.0, "f": "heal", "value": None}],
                bugs=["stale-leader-read"], cluster={"check_quorum": False},
                time_limit=3.5, quiet=1, seed=0).assert_valid()
        """
    )
    outcome = pytester.runpytest("-p", "no:randomly", "-q", f"--splitbrain-store={store}",
                                 "--splitbrain-seed=5")
    outcome.assert_outcomes(failed=1)
    text = outcome.stdout.str()
    assert "INVALID" in text
    assert "evidence: Stale read: process " in text
    assert "run directory: " + str(store) in text
    assert "splitbrain runs" in text  # the report section the plugin adds
    runs = [p for p in store.rglob("history.jsonl")]
    assert runs, "the run went to --splitbrain-store"
    if (runs[0].parent / "report.html").exists():
        assert "report: " in text


def test_seed_option_makes_runs_reproducible(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import hashlib

        def test_one(sim_cluster, splitbrain_seed):
            assert splitbrain_seed == 42
            result = sim_cluster.run(nemesis="partition", time_limit=2, quiet=1, report=False)
            digest = hashlib.sha256((result.run_dir / "history.jsonl").read_bytes()).hexdigest()
            print("DIGEST", digest)
        """
    )
    first = pytester.runpytest("-p", "no:randomly", "-s", "--splitbrain-seed=42")
    second = pytester.runpytest("-p", "no:randomly", "-s", "--splitbrain-seed=42")
    first.assert_outcomes(passed=1)
    digests = [line.split("DIGEST ")[1][:64] for line in first.outlines + second.outlines
               if "DIGEST " in line]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_cluster_fixture_is_available(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_has_cluster(cluster):
            assert callable(cluster.run)
        """
    )
    pytester.runpytest("-p", "no:randomly", "-q").assert_outcomes(passed=1)


def test_cluster_fixture_runs_real_processes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_real(cluster):
            result = cluster.run(nodes=3, time_limit=2, rate=20, quiet_period=0.5,
                                 render_report=False)
            assert result.kind == "real" and result.run_dir.is_dir()
            assert (result.run_dir / "history.jsonl").stat().st_size > 0
            result.assert_valid()
        """
    )
    outcome = pytester.runpytest("-p", "no:randomly", "-q")
    outcome.assert_outcomes(passed=1)
