"""The names of the files of a store (docs/DESIGN.md §7), for every writer and reader.

A run directory ``STORE/<test>/<stamp>/`` is written by the harness (real runs
and the simulator) and read by the checkers, the reports and ``splitbrain
serve``; they all take the names from here.
"""

from __future__ import annotations

TEST_JSON = "test.json"
HISTORY = "history.jsonl"
OBSERVATIONS = "observations.jsonl"
MESSAGES = "messages.jsonl"
RESULTS = "results.json"
REPORT = "report.html"
#: Why report.html is missing when rendering failed (the verdict stands without it).
REPORT_ERROR = "report-error.txt"
COVERAGE = "coverage.json"
#: A failing simulated case, enough to replay it (``splitbrain replay``).
REPRO = "repro.json"
#: One directory per node: stdout.jsonl, stderr.log, data/, final-log.json.
NODES = "nodes"
NODE_STDOUT = "stdout.jsonl"
NODE_STDERR = "stderr.log"
NODE_FINAL_LOG = "final-log.json"

#: A symlink to the newest run, in the store and in each test's directory.
LATEST = "latest"
#: The store's own page, listing runs and campaigns.
INDEX = "index.html"
CAMPAIGNS = "campaigns"
CAMPAIGN_JSON = "campaign.json"
