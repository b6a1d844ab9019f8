"""reports: self-contained HTML reports of runs."""
