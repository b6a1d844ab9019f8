"""One real test run and what it is made of, plus campaigns of runs.

``run`` drives a test (config, plan, nemesis, checking, report); ``cluster``
starts and stops the nodes; ``workload`` generates operations that
``clients`` send and record; ``collect`` polls node state into
observations; ``store`` names and writes run directories; ``coverage``
counts what a run exercised; ``campaign`` repeats runs over a matrix.
"""
