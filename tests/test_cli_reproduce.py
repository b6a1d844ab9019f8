"""The reproduce command a run records must repeat exactly that run."""

from harness.cli.run import reproduce_command


def test_reproduce_command_pins_the_seed_and_drops_test_count() -> None:
    words = ["splitbrain", "run", "--seed", "5", "--test-count", "3", "--bug", "no-dedup"]
    assert reproduce_command(words, 7) == [
        "splitbrain", "run", "--bug", "no-dedup", "--seed", "7",
    ]


def test_reproduce_command_handles_equals_forms_and_missing_seed() -> None:
    assert reproduce_command(["splitbrain", "run", "--seed=5"], 6) == [
        "splitbrain", "run", "--seed", "6",
    ]
    assert reproduce_command(["splitbrain", "run"], 9)[-2:] == ["--seed", "9"]
