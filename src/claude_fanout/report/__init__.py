"""``fanout report``: a run as one self-contained HTML page (``timeline`` reads the run's log,
``page`` writes the HTML)."""
