"""reports: self-contained HTML reports of runs, and a browsable store.

- ``reports.render.render_run_report(run_dir) -> Path``: ``run_dir/report.html``
  (and ``store/index.html`` when the run sits in a store);
- ``reports.render.render_history_report(history, result, out_path, title) -> Path``:
  a report for a bare history (JSONL path, event dicts, or a ``checker.history.History``,
  including Porcupine and Jepsen files; untimed histories use the event position as clock);
- ``reports.render.update_store_index(store_dir) -> Path``: ``store/index.html``;
- ``splitbrain report RUN_DIR`` and ``splitbrain serve [--store DIR] [--port P]``
  (``harness/cli/report.py``; the server is Trio + h11, 127.0.0.1 only).

Facts are derived in ``model.py`` (pairing, fault intervals, stale-read
certificates, log divergence, downsampled series), side files are read in
``sources.py``, failure pictures drawn as SVG in ``svg.py``; the page's
zoomable timeline and plots are ``static/report.js`` (canvas, no library).
"""
