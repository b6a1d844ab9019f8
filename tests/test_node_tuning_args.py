"""Node tuning options (--max-append-entries, --max-inflight-appends) and their plumbing.

The detection plans of some planted bugs need nodes that replicate one
entry at a time; these tests pin that the options are parsed, validated,
and reach every node's command line through ``splitbrain run --node-arg``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.db.base import DBOptions
from harness.db.raft_impl import RaftImplDB
from raft_impl.__main__ import build_parser, check_tuning_args, main


def test_append_options_are_parsed_with_defaults() -> None:
    parser = build_parser()
    defaults = parser.parse_args([])
    assert (defaults.max_append_entries, defaults.max_inflight_appends) == (256, 64)
    args = parser.parse_args(["--max-append-entries", "1", "--max-inflight-appends", "2"])
    assert (args.max_append_entries, args.max_inflight_appends) == (1, 2)
    assert "--max-append-entries" in parser.format_help()


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5"])
def test_bad_append_sizes_exit_2_with_a_message(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--id", "n1", "--data-dir", "d", "--peer-listen", "127.0.0.1:1",
              "--client-listen", "127.0.0.1:2", "--max-append-entries", value])
    assert exit_info.value.code == 2
    assert "--max-append-entries" in capsys.readouterr().err


def test_check_tuning_args_accepts_tuning_and_refuses_the_rest() -> None:
    check_tuning_args(["--max-append-entries", "1", "--election-timeout=0.2,0.4"])
    check_tuning_args([])
    for words, message in (
        (["--max-append-entries", "0"], "must be >= 1"),
        # was checked only by a starting node: `run --node-arg` then lost every node
        (["--snapshot-threshold=-1"], "snapshot-threshold: must be >= 1"),
        (["--bogus"], "unrecognized"),
        (["--id", "n9"], "--id"),
        (["--peer", "n9=127.0.0.1:5"], "--peer"),
        (["--read-mode", "lease"], "--read-mode"),
        (["--bug", "no-dedup"], "--bug"),
    ):
        with pytest.raises(ValueError, match=message):
            check_tuning_args(words)


def test_adapter_appends_node_args_to_every_command(tmp_path: Path) -> None:
    db = RaftImplDB(DBOptions(read_mode="lease", node_args=("--max-append-entries", "1")))
    db.plan(tmp_path, ["n1", "n2", "n3"])
    for node in ("n1", "n2", "n3"):
        command = db.command(node)
        assert command[-2:] == ["--max-append-entries", "1"]
        args = build_parser().parse_args(command[3:])
        assert args.max_append_entries == 1
        assert (args.id, args.read_mode) == (node, "lease")


def test_run_cli_refuses_bad_node_args_before_any_run(capsys, tmp_path: Path) -> None:
    from harness.cli.main import main as splitbrain

    store = str(tmp_path / "store")
    assert splitbrain(["run", "--node-arg=--max-append-entries=0", "--store", store]) == 2
    assert "--node-arg" in capsys.readouterr().err
    assert splitbrain(["run", "--node-arg=--id=n7", "--store", store]) == 2
    assert "set by the harness" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
